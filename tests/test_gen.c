/*
 * test_gen.c: the generator: sandbox, template contract, enumeration, shapes files.
 */
#include "gen.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static gen *g;
static gen_device dev;

/* Runs a shapes chunk and returns its status; *msg gets the message. */
static fat_status shapes(const char *src, int *n, const char **msg) {
    fat_problem *p = NULL;
    fat_status st = gen_shapes_string(g, "shapes.lua", src, &p, n);
    *msg = gen_errmsg(g);
    free(p);
    return st;
}

#define BAD_SHAPES(descr, src, want) do { \
    int n_; const char *m_; \
    CHECK(descr " is refused", shapes(src, &n_, &m_) == FAT_ERR_TEMPLATE); \
    CHECK_STR_HAS(descr " names the problem", m_, want); \
} while (0)

static const char *ok_shape = "batch=1, heads_q=8, seqlen=128, head_dim=64, dtype='bf16'";

static void test_shapes(void) {
    int n;
    const char *m;
    char src[1024];
    CHECK_INT("a valid shapes file loads", shapes("return { shape{batch=2, heads_q=32, heads_kv=8, seqlen_q=100, seqlen_k=300, head_dim=128, dtype='fp16', causal=true} }", &n, &m), FAT_OK);
    CHECK_INT("one shape", n, 1);
    CHECK_INT("sweep makes the cartesian product", shapes("return { sweep{batch=1, heads_q=8, seqlen={128,256,512}, head_dim={64,128}, dtype='bf16', causal={true,false}} }", &n, &m), FAT_OK);
    CHECK_INT("3 x 2 x 2 shapes", n, 12);
    CHECK_INT("plain tables are accepted", shapes("return { {batch=1, heads_q=8, seqlen=64, head_dim=64, dtype='bf16'} }", &n, &m), FAT_OK);

    fat_problem *p;
    CHECK_INT("the default suite loads", gen_shapes_file(g, NULL, &p, &n), FAT_OK);
    CHECK_INT("the default suite has 24 prefill + 10 LLM shapes", n, 34);
    if (n == 34) {
        CHECK_INT("first prefill shape: batch 32", p[0].batch, 32);
        CHECK_INT("first prefill shape: 32 heads", p[0].heads_q, 32);
        CHECK_INT("GQA shape: 8 kv heads", p[33].heads_kv, 8);
        CHECK_INT("GQA shape: 32k tokens", p[33].seqlen_q, 32768);
    }
    free(p);

    BAD_SHAPES("a syntax error", "return { shape{batch=1,, } }", "shapes.lua:1:");
    BAD_SHAPES("a missing field", "return {\n shape{batch=1, heads_q=8, seqlen=128, dtype='bf16'} }", "shapes.lua:2: missing field 'head_dim'");
    snprintf(src, sizeof src, "return {\n\n shape{%s, hed_dim=64} }", ok_shape);
    BAD_SHAPES("a misspelt field", src, "shapes.lua:3: unknown field 'hed_dim'");
    BAD_SHAPES("a mistyped field", "return { shape{batch='one', heads_q=8, seqlen=128, head_dim=64, dtype='bf16'} }", "shapes.lua:1: field 'batch' must be an integer");
    BAD_SHAPES("a non-positive size", "return { shape{batch=0, heads_q=8, seqlen=128, head_dim=64, dtype='bf16'} }", "field 'batch' must be positive");
    BAD_SHAPES("an absurd seqlen", "return { shape{batch=1, heads_q=8, seqlen=1e9, head_dim=64, dtype='bf16'} }", "is absurd");
    BAD_SHAPES("an absurd total", "return { shape{batch=60000, heads_q=600, seqlen=400000, head_dim=256, dtype='bf16'} }", "absurd");
    {
        fat_problem *kp = NULL;
        int kn = 0;
        CHECK_INT("a KV-cache shape loads",
                  gen_shapes_string(g, "shapes.lua", "return { shape{batch=4, heads_q=32, heads_kv=8, seqlen_q=1, "
                                    "seqlen_k=4096, head_dim=128, dtype='bf16', page_size=16, kv_cache=true, "
                                    "append=true} }", &kp, &kn), FAT_OK);
        CHECK("  its features: paged with 16-key pages, a cache, an append",
              kn == 1 && kp[0].features == (FAT_FEAT_PAGED | FAT_FEAT_CACHE | FAT_FEAT_APPEND | (16u << FAT_FEAT_PAGE_SHIFT))
              && FAT_FEAT_PAGE_SIZE(kp[0].features) == 16);
        free(kp);
    }
    BAD_SHAPES("a page size off the multiples of 8", "return { shape{batch=1, heads_q=8, seqlen=128, head_dim=64, dtype='bf16', page_size=12} }", "page_size 12 is not a multiple of 8 from 8 to 256");
    BAD_SHAPES("a page size above 256", "return { shape{batch=1, heads_q=8, seqlen=128, head_dim=64, dtype='bf16', page_size=512} }", "page_size 512");
    BAD_SHAPES("an append without a cache", "return { shape{batch=1, heads_q=8, seqlen=128, head_dim=64, dtype='bf16', append=true} }", "append needs kv_cache");
    BAD_SHAPES("varlen with a KV cache", "return { shape{batch=1, heads_q=8, seqlen=128, head_dim=64, dtype='bf16', varlen=true, kv_cache=true} }", "varlen with a KV cache");
    BAD_SHAPES("head_dim not a multiple of 8", "return { shape{batch=1, heads_q=8, seqlen=128, head_dim=100, dtype='bf16'} }", "head_dim 100 is not a multiple of 8");
    BAD_SHAPES("head_dim above 256", "return { shape{batch=1, heads_q=8, seqlen=128, head_dim=264, dtype='bf16'} }", "head_dim 264 is above 256");
    BAD_SHAPES("heads_q not a multiple of heads_kv", "return { shape{batch=1, heads_q=12, heads_kv=5, seqlen=128, head_dim=64, dtype='bf16'} }", "heads_q 12 is not a multiple of heads_kv 5");
    BAD_SHAPES("an unknown dtype", "return {\n sweep{batch=1, heads_q=8, seqlen=128, head_dim=64, dtype={'bf16','fp8'}} }", "shapes.lua:2: unknown dtype 'fp8'");
    BAD_SHAPES("io", "local f = io.open('/etc/passwd') return {}", "global 'io'");
    BAD_SHAPES("os", "os.execute('true') return {}", "global 'os'");
    BAD_SHAPES("load", "load('return 1')() return {}", "global 'load'");
    BAD_SHAPES("require of a system module", "require('os') return {}", "not found");
    BAD_SHAPES("an endless loop", "while true do end", "instruction limit");
    BAD_SHAPES("a memory bomb", "local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(1000) .. i end", "memory");
    BAD_SHAPES("an empty list", "return {}", "empty");
    BAD_SHAPES("not a list", "return 42", "must return a list");
    BAD_SHAPES("a plain table with an error", "return { {batch=1, heads_q=8, seqlen=128, head_dim=65, dtype='bf16'} }", "shape 1: head_dim 65");
    BAD_SHAPES("string.dump", "local s = string.dump(function() end) return {}", "dump");

    CHECK_INT("a missing file", gen_shapes_file(g, "/nonexistent/shapes.lua", &p, &n), FAT_ERR_IO);
    CHECK_STR_HAS("names the file", gen_errmsg(g), "/nonexistent/shapes.lua: cannot read");
}

/* Whether the device compiles for sm_90a (flash_hopper's target). */
static int has_sm90a(const gen_device *d) {
    for (int i = 0; i < d->ntargets; i++) if (strcmp(d->targets[i], "sm_90a") == 0) return 1;
    return 0;
}

/* Family fam refuses chunk with an append in every variant, the first reason holding want (a
 * prefill family reads a cache its launch does not write; the runtime appends first). */
static void append_refused(const char *fam, const fat_problem *chunk, const char *want) {
    fat_problem app = *chunk;
    gen_choice *ca;
    int na, va = 0;
    app.features |= FAT_FEAT_APPEND;
    CHECK_INT("  a chunk appended: enumerated", gen_enumerate(g, fam, &app, &dev, &ca, &na), FAT_OK);
    for (int i = 0; i < na; i++) va += ca[i].ok;
    CHECK_INT("  every variant refuses it", va, 0);
    CHECK_STR_HAS("  naming the append", na ? ca[0].reason : "", want);
    gen_choices_free(ca, na);
}

static void test_templates(void) {
    fat_problem p = { FAT_BF16, 64, 1, 0, 2, 8, 2, 100, 130 };
    gen_choice *c1, *c2;
    int n1, n2;
    CHECK_INT("naive enumerates", gen_enumerate(g, "naive", &p, &dev, &c1, &n1), FAT_OK);
    CHECK_INT("naive has 3 choices", n1, 3);
    CHECK_INT("enumeration repeats", gen_enumerate(g, "naive", &p, &dev, &c2, &n2), FAT_OK);
    int same = n1 == n2;
    for (int i = 0; same && i < n1; i++) same = strcmp(c1[i].canon, c2[i].canon) == 0 && c1[i].ok == c2[i].ok;
    CHECK("two enumerations list the same choices in the same order", same);
    if (n1 == 3) CHECK_STR_HAS("canonical text", c1[0].canon, "threads=64");
    gen_choices_free(c1, n1);
    gen_choices_free(c2, n2);

    int nf;
    const char *const *fams = gen_families(&nf);
    /* a prefill problem and a decoding step (one query row of 4 heads per KV head): each family
     * has valid variants for one of them at least, and every pruned choice says why */
    const fat_problem step = { FAT_BF16, 64, 1, 0, 2, 8, 2, 1, 130 };
    for (int f = 0; f < nf; f++) {
        int valid = 0;
        for (int k = 0; k < 2; k++) {
            CHECK_INT(fams[f], gen_enumerate(g, fams[f], k ? &step : &p, &dev, &c1, &n1), FAT_OK);
            for (int i = 0; i < n1; i++) valid += c1[i].ok;
            for (int i = 0; i < n1; i++) if (!c1[i].ok) CHECK("a pruned choice says why", c1[i].reason && *c1[i].reason);
            gen_choices_free(c1, n1);
        }
        CHECK(fams[f], valid > 0);
    }
    /* a KV-cache problem (a paged cache of 16-key pages, per-sequence lengths): decode, flash_v2
     * and flash_hopper read one (serves_kv_cache); decode has the decoding step's default, flash_v2
     * and flash_hopper a 512-row chunk's; none of the two appends; every other family refuses
     * every variant by name, and has none */
    const fat_problem paged = { FAT_BF16, 128, 0, FAT_FEAT_PAGED | FAT_FEAT_CACHE | (16u << FAT_FEAT_PAGE_SHIFT),
                                4, 32, 8, 1, 4096 };
    for (int f = 0; f < nf; f++) {
        int pvalid = 0, reads = strcmp(fams[f], "decode") == 0 || strcmp(fams[f], "flash_hopper") == 0 ||
                                strcmp(fams[f], "flash_v2") == 0;
        CHECK_INT(fams[f], gen_enumerate(g, fams[f], &paged, &dev, &c1, &n1), FAT_OK);
        for (int i = 0; i < n1; i++) pvalid += c1[i].ok;
        char dp[256];
        if (reads && strcmp(fams[f], "decode") == 0) {
            CHECK(  "a paged KV cache: decode has valid variants", pvalid > 0);
            CHECK_INT("a paged KV cache: decode has a default", gen_default(g, fams[f], &paged, &dev, dp, sizeof dp), FAT_OK);
        } else if (reads && strcmp(fams[f], "flash_v2") == 0) {
            fat_problem chunk = paged;
            chunk.seqlen_q = 512;
            CHECK(  "a paged KV cache: flash_v2 has valid variants", pvalid > 0);
            CHECK_INT("  and a default for a chunk of 512 rows", gen_default(g, fams[f], &chunk, &dev, dp, sizeof dp), FAT_OK);
            append_refused(fams[f], &chunk, "append: flash_v2 reads a cache");
        } else if (reads) {
            fat_problem chunk = paged;
            chunk.seqlen_q = 512;
            CHECK(  "a paged KV cache: flash_hopper has valid variants", pvalid > 0);
            CHECK_INT("  but no default for a decoding step (decode's)", gen_default(g, fams[f], &paged, &dev, dp, sizeof dp),
                      FAT_ERR_NOT_FOUND);
            CHECK_INT("  and one for a chunk of 512 rows", gen_default(g, fams[f], &chunk, &dev, dp, sizeof dp), FAT_OK);
            append_refused(fams[f], &chunk, "append: flash_hopper reads the cache");
        } else {
            CHECK_INT("a paged KV cache: no variant is valid", pvalid, 0);
            CHECK_STR_HAS("a paged KV cache: the reason names it", n1 ? c1[0].reason : "", "does not read a KV cache");
            CHECK_INT("a paged KV cache: no default", gen_default(g, fams[f], &paged, &dev, dp, sizeof dp), FAT_ERR_NOT_FOUND);
        }
        gen_choices_free(c1, n1);
    }
    /* the built-in default of a paged decoding step is decode's, whose source compiles the page size in */
    {
        const char *fam = "";
        char dp[256];
        CHECK_INT("a paged decoding step: a built-in default", gen_builtin_default(g, &paged, &dev, &fam, dp, sizeof dp), FAT_OK);
        CHECK(  "  decode's", strcmp(fam, "decode") == 0);
        gen_variant v;
        memset(&v, 0, sizeof v);
        CHECK_INT("  emitted", gen_emit(g, "decode", dp, &paged, &dev, &v), FAT_OK);
        CHECK_STR_HAS("  with the page size compiled in", v.source ? v.source : "", "#define FAT_PAGE_SIZE 16");
        CHECK_STR_HAS("  and the cache's lengths", v.source ? v.source : "", "#define FAT_CACHE 1");
        CHECK_STR_HAS("  16-key pages: 16-key tiles, one table entry each", dp, "block_n=16");
        gen_variant_free(&v);
        fat_problem p256 = paged;
        p256.features = FAT_FEAT_PAGED | FAT_FEAT_CACHE | (256u << FAT_FEAT_PAGE_SHIFT);
        CHECK_INT("256-key pages: a default", gen_builtin_default(g, &p256, &dev, &fam, dp, sizeof dp), FAT_OK);
        CHECK_STR_HAS("  the contiguous cache's 32-key tiles", dp, "block_n=32");
    }
    /* a prefill chunk against a paged cache on sm_90a: flash_hopper copies K and V in runs inside
     * one page, gcd(page size, block_n) rows each; 256-key pages hold whole 128-key blocks (one
     * rank-5 copy of both slabs), 16-key pages take runs of 16 rows, a copy per slab for K (rank 4)
     * and one of both slabs for V (stored run by run), 24-key pages runs of 8 (rank 4 both) */
    if (has_sm90a(&dev)) {
        const struct { unsigned page; const char *k_map, *v_map, *chunk; } runs[] = {
            { 256, "tma k 64x128 x2", "tma v 64x128 x2", "#define KV_CHUNK      128" },
            { 16, "tma k 64x16 swizzle", "tma v 64x16 x2 swizzle", "#define KV_CHUNK      16" },
            { 24, "tma k 64x8 swizzle", "tma v 64x8 swizzle", "#define KV_CHUNK      8" },
        };
        for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
            fat_problem chunk = { FAT_BF16, 128, 1, FAT_FEAT_PAGED | FAT_FEAT_CACHE | (runs[i].page << FAT_FEAT_PAGE_SHIFT),
                                  2, 32, 8, 512, 8704 };
            gen_variant v;
            memset(&v, 0, sizeof v);
            char how[1024] = "", what[96];
            snprintf(what, sizeof what, "flash_hopper, %u-key pages: emitted (block_n=128)", runs[i].page);
            CHECK_INT(what, gen_emit(g, "flash_hopper", "block_m=128,block_n=128,o_separate=1,overlap=1,persistent=2,"
                                     "pingpong=0,q_stages=2,stages=2,tma_store=1", &chunk, &dev, &v), FAT_OK);
            gen_launch_describe(&v.launch, how, sizeof how);
            CHECK_STR_HAS("  K's map: boxes of a run's rows", how, runs[i].k_map);
            CHECK_STR_HAS("  V's map alike", how, runs[i].v_map);
            CHECK_STR_HAS("  the kernel's run length", v.source ? v.source : "", runs[i].chunk);
            gen_variant_free(&v);
        }
        /* copy_warps: the runs' copies over 2 or 3 producer warps, for pages that do not hold whole
         * key blocks, on the static schedule, with K's slabs split only where there are two */
        fat_problem chunk = { FAT_BF16, 128, 1, FAT_FEAT_PAGED | FAT_FEAT_CACHE | (16u << FAT_FEAT_PAGE_SHIFT),
                              2, 32, 8, 512, 8704 };
        const char *form = "block_m=128,block_n=128,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=3,"
                           "tma_store=0,copy_warps=";
        char params[256];
        gen_variant v;
        memset(&v, 0, sizeof v);
        snprintf(params, sizeof params, "%s3", form);
        CHECK_INT("copy_warps=3 at 16-key pages: emitted", gen_emit(g, "flash_hopper", params, &chunk, &dev, &v), FAT_OK);
        CHECK_STR_HAS("  with its warps compiled in", v.source ? v.source : "", "#define COPY_WARPS_P  3");
        gen_variant_free(&v);
        fat_problem whole = chunk;
        whole.features = FAT_FEAT_PAGED | FAT_FEAT_CACHE | (256u << FAT_FEAT_PAGE_SHIFT);
        snprintf(params, sizeof params, "%s2", form);
        CHECK_INT("copy_warps=2 at 256-key pages (whole blocks): refused", gen_emit(g, "flash_hopper", params, &whole, &dev, &v),
                  FAT_ERR_TEMPLATE);
        CHECK_STR_HAS("  naming why", gen_errmsg(g), "hold whole 128-key blocks");
        CHECK_INT("copy_warps=2 with persistent=2: emitted",
                  gen_emit(g, "flash_hopper", "block_m=128,block_n=128,o_separate=1,overlap=1,persistent=2,pingpong=0,"
                           "q_stages=2,stages=2,tma_store=1,copy_warps=2", &chunk, &dev, &v), FAT_OK);
        CHECK("  warp 0 publishes each claimed tile, the other copy warp takes it from the ring",
              strstr(v.source ? v.source : "", "#define COPY_WARPS_P  2") != NULL &&
              strstr(v.source ? v.source : "", "fat_mbar_init(TS_EMPTY(i), 128 * CONSUMERS + 32 * (COPY_WARPS - 1))") != NULL &&
              strstr(v.source ? v.source : "", ": (void)(pm_ = take_tile(s_ts, ts_, ph_, pb_))") != NULL);
        gen_variant_free(&v);
        memset(&v, 0, sizeof v);
        fat_problem d64 = chunk;
        d64.head_dim = 64;
        snprintf(params, sizeof params, "%s3", form);
        CHECK_INT("copy_warps=3 at head_dim 64: refused", gen_emit(g, "flash_hopper", params, &d64, &dev, &v), FAT_ERR_TEMPLATE);
        CHECK_STR_HAS("  naming why", gen_errmsg(g), "head_dim 64 has one");
        /* the built-in default above head_dim 128: pages of 64 keys and more hold whole 64-key
         * blocks (one copy each, walked forward), 16-key pages keep the base block in runs */
        const struct { unsigned hd, page; const char *want; } defs[] = {
            { 256, 256, "block_m=128,block_n=64,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,"
                        "q_stages=1,stages=2,tma_store=0,walk_forward=1" },
            { 192, 64, "block_m=128,block_n=64,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,"
                       "q_stages=1,stages=3,tma_store=0,walk_forward=1" },
            { 256, 16, "block_m=128,block_n=80,copy_warps=3," },
            { 128, 256, "block_m=128,block_n=128,copy_warps=1," },
        };
        for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
            fat_problem c = { FAT_BF16, (int)defs[i].hd, 1, FAT_FEAT_PAGED | FAT_FEAT_CACHE | (defs[i].page << FAT_FEAT_PAGE_SHIFT),
                              4, 32, 8, 512, 8704 };
            char dp[512], what[128];
            snprintf(what, sizeof what, "flash_hopper's default, d%u chunk over %u-key pages", defs[i].hd, defs[i].page);
            CHECK_INT(what, gen_default(g, "flash_hopper", &c, &dev, dp, sizeof dp), FAT_OK);
            CHECK_STR_HAS("  the measured form", dp, defs[i].want);
        }
    }
    /* decode's evict_first: every K and V copy under the L2 policy (contiguous tiles, and a paged
     * cache read row by row: 24-key pages, 32-key tiles), none without it */
    {
        const struct { unsigned feat; const char *what; } kinds[] = {
            { 0, "contiguous" },
            { FAT_FEAT_PAGED | FAT_FEAT_CACHE | (24u << FAT_FEAT_PAGE_SHIFT), "24-key pages, row by row" },
        };
        for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
            fat_problem dstep = { FAT_BF16, 128, 0, kinds[i].feat, 16, 32, 8, 1, 4096 };
            for (int ef = 0; ef <= 1; ef++) {
                char params[128], what[160];
                gen_variant v;
                memset(&v, 0, sizeof v);
                snprintf(params, sizeof params, "block_n=32,splits=1,stages=2,warps=4,evict_first=%d", ef);
                snprintf(what, sizeof what, "decode, %s, evict_first=%d: emitted", kinds[i].what, ef);
                CHECK_INT(what, gen_emit(g, "decode", params, &dstep, &dev, &v), FAT_OK);
                const char *src = v.source ? v.source : "";
                char def[64];
                snprintf(def, sizeof def, "#define EVICT_FIRST   %d ", ef);
                CHECK(ef ? "  its copies under the L2 policy" : "  plain copies, no policy",
                      strstr(src, def) != NULL && (strstr(src, "createpolicy.fractional.L2::evict_first") != NULL) == ef);
                CHECK("  K and V copied through KV_COPY16",
                      strstr(src, kinds[i].feat ? "KV_COPY16(s_k + so" : "KV_COPY16(s + i * LD_RS") != NULL);
                gen_variant_free(&v);
            }
        }
    }
    /* ops.kv_append, the copy the runtime launches before an attention kernel that does not append:
     * not a family; emitted by name for an append, refused without one */
    {
        int nf2;
        const char *const *f2 = gen_families(&nf2);
        int listed = 0;
        for (int i = 0; i < nf2; i++) listed |= strcmp(f2[i], GEN_KV_APPEND) == 0;
        CHECK("ops.kv_append is not a family", !listed && gen_is_op(GEN_KV_APPEND) && !gen_is_op("ops.nosuch") &&
              !gen_is_op("decode"));
        gen_variant av;
        fat_problem app = paged;
        app.features |= FAT_FEAT_APPEND;
        app.seqlen_q = 500;
        app.batch = 3;
        app.heads_kv = 4;
        CHECK_INT("ops.kv_append emits for a paged append", gen_emit(g, GEN_KV_APPEND, "", &app, &dev, &av), FAT_OK);
        CHECK_STR_HAS("  its entry", av.launch.entry, "fat_kv_append");
        CHECK_STR_HAS("  the page size compiled in", av.source ? av.source : "", "#define FAT_PAGE_SIZE 16");
        CHECK("  a CTA per KV head and sequence, 500 rows of 16 pieces over 256 threads along x",
              av.launch.grid[0] == 32 && av.launch.grid[1] == 4 && av.launch.grid[2] == 3 && av.launch.block[0] == 256);
        gen_variant_free(&av);
        CHECK_INT("  refused without an append", gen_emit(g, GEN_KV_APPEND, "", &paged, &dev, &av), FAT_ERR_TEMPLATE);
        CHECK_STR_HAS("  saying so", gen_errmsg(g), "the problem has no append");
    }
    /* flash_v2 reads a paged cache a tile per table entry where a page holds whole key tiles, else
     * row by row */
    {
        const struct { unsigned page; const char *path; } v2[] = { { 256, "page_tile(p, base" }, { 16, "load_rows_paged<BLOCK_N>(" } };
        for (size_t i = 0; i < sizeof v2 / sizeof v2[0]; i++) {
            fat_problem chunk = { FAT_BF16, 128, 1, FAT_FEAT_PAGED | FAT_FEAT_CACHE | (v2[i].page << FAT_FEAT_PAGE_SHIFT),
                                  2, 32, 8, 512, 8704 };
            gen_variant v;
            memset(&v, 0, sizeof v);
            char what[96];
            snprintf(what, sizeof what, "flash_v2, %u-key pages: emitted (block_n=64)", v2[i].page);
            CHECK_INT(what, gen_emit(g, "flash_v2", "block_m=64,block_n=64,q_in_regs=0,stages=2,warps=4", &chunk, &dev, &v),
                      FAT_OK);
            CHECK_STR_HAS("  its loads of K and V", v.source ? v.source : "", v2[i].path);
            gen_variant_free(&v);
        }
    }
    char pname[128];
    gen_problem_name(&paged, pname, sizeof pname);
    CHECK_STR_HAS("a paged problem's name gives the page size and the cache", pname, " paged16 cache");

    CHECK_INT("decode: no variant for 400 query rows per KV head", gen_enumerate(g, "decode", &p, &dev, &c1, &n1), FAT_OK);
    int dvalid = 0;
    for (int i = 0; i < n1; i++) dvalid += c1[i].ok;
    CHECK_INT("decode: no variant for 400 query rows per KV head (valid)", dvalid, 0);
    CHECK_STR_HAS("decode: the reason names the rows", n1 ? c1[0].reason : "", "400 query rows per KV head");
    gen_choices_free(c1, n1);

    gen_variant v, w;
    CHECK_INT("naive emits", gen_emit(g, "naive", "threads=128", &p, &dev, &v), FAT_OK);
    CHECK_STR_HAS("the banner names the template", v.source, "template naive v1");
    CHECK_STR_HAS("the banner names the params", v.source, "threads=128");
    CHECK_STR_HAS("entry", v.launch.entry, "fat_naive");
    CHECK_INT("grid.x covers seqlen_q", v.launch.grid[0], 100);
    CHECK_INT("grid.y heads", v.launch.grid[1], 8);
    CHECK_INT("grid.z batch", v.launch.grid[2], 2);
    CHECK_INT("block", v.launch.block[0], 128);
    CHECK_INT("workspace holds S", v.launch.workspace, 2 * 8 * 100 * 130 * 4);
    CHECK_INT("same inputs, same source", gen_emit(g, "naive", "threads=128", &p, &dev, &w), FAT_OK);
    CHECK("emission is deterministic", strcmp(v.source, w.source) == 0);
    gen_variant_free(&v);
    gen_variant_free(&w);
    CHECK_INT("an unknown parameter is refused", gen_emit(g, "naive", "thread=128", &p, &dev, &v), FAT_ERR_TEMPLATE);
    CHECK_STR_HAS("and named", gen_errmsg(g), "no parameter 'thread'");
    CHECK_INT("an unknown template is refused", gen_emit(g, "nosuch", "", &p, &dev, &v), FAT_ERR_TEMPLATE);
    CHECK_STR_HAS("and named", gen_errmsg(g), "module 'nosuch' not found");
    CHECK_INT("an invalid choice is refused", gen_emit(g, "naive", "threads=4096", &p, &dev, &v), FAT_ERR_TEMPLATE);
    CHECK_STR_HAS("with the reason", gen_errmsg(g), "not valid here");
}

/* A template directory of the test's own: escapes must fail inside templates too, and the launch
 * contract (P.launch and its arguments) refuses what it does not know, at the template's line. */
#define GOOD_HEAD "local P = require('prelude')\nreturn { name='naive', version=1, params={a={1}}, valid=function() return true end,\n"
#define GOOD_EMIT " emit=function(p, s, d) local e = P.launch(d, { entry='e', grid={1,1,1}, block={32,1,1} }) e.source='x' return e end,\n"
static void test_sandbox_templates(void) {
    char dir[] = "/tmp/fatune-gen-XXXXXX";
    if (!mkdtemp(dir)) { SKIP("template sandbox", "mkdtemp failed"); return; }
    static const struct { const char *body, *want; int launch; } cases[] = {
        { GOOD_HEAD " launch=function() return {} end,\n emit=function() return { source = io.read('a') } end }", "global 'io'", 0 },
        { "x = 1 return {}", "assignment to global 'x'", 0 },
        { "local d = debug.getinfo(1) return {}", "global 'debug'", 0 },
        { "return { name='naive', version=1, params={a={1}}, valid=function() while true do end end, launch=1, emit=1 }",
          "instruction limit", 0 },
        { "return { name='naive', version=1, params={a={1}}, valid=function() while true do pcall(function() while true do end end) end end, launch=1, emit=1 }",
          "instruction limit", 0 },
        { "return { name='naive', version=1, params={a={1}}, valid=function() local t = {} while true do pcall(function() "
          "for i = 1, 1e9 do t[#t + 1] = ('x'):rep(1e5) .. i end end) end end, launch=1, emit=1 }", "memory limit", 0 },
        { "return { name='other', version=1, params={}, valid=function() return true end, launch=1, emit=function() end }",
          "names itself 'other'", 0 },
        { "return { name='naive', version=1, params={a={1}}, valid=function() return true end, emit=function() end }",
          "template lacks field 'launch'", 0 },
        { GOOD_HEAD " launch=function(p, s, d) return { entry='e', grid={1,1,1}, block={1,1,1} } end,\n" GOOD_EMIT "}",
          "launch() must return P.launch(dev, { ... })", 1 },
        { GOOD_HEAD " launch=function(p, s, d)\n return P.launch(d, { entry='e', grid={0,1,1}, block={1,1,1} }) end,\n" GOOD_EMIT "}",
          "naive.lua:3: P.launch: grid[1] must be a positive integer", 1 },
        { GOOD_HEAD " launch=function(p, s, d)\n return P.launch(d, { entry='e', grid={1,1,1}, block={32,1,1}, smem_bytes=4 }) end,\n" GOOD_EMIT "}",
          "naive.lua:3: P.launch: unknown field 'smem_bytes'", 1 },
        { GOOD_HEAD " launch=function(p, s, d)\n return P.launch(d, { entry='e', grid={1,1,1}, block={32,1,1}, smem='lots' }) end,\n" GOOD_EMIT "}",
          "naive.lua:3: P.launch: smem must be a non-negative integer", 1 },
        { GOOD_HEAD " launch=function(p, s, d)\n return P.launch(d, { entry='e', grid={1,1,1}, block={32,1,1}, target='sm_100a' }) end,\n" GOOD_EMIT "}",
          "naive.lua:3: P.launch: target sm_100a does not run on nominal sm_90", 1 },
        { GOOD_HEAD " launch=function(p, s, d)\n return P.launch(d, { entry='e', grid={3,1,1}, block={32,1,1}, cluster={2,1,1} }) end,\n" GOOD_EMIT "}",
          "naive.lua:3: P.launch: grid[1] = 3 is not a multiple of cluster[1] = 2", 1 },
        { GOOD_HEAD " launch=function(p, s, d)\n return P.launch(d, { entry='e', grid={16,1,1}, block={32,1,1}, cluster={16,1,1} }) end,\n" GOOD_EMIT "}",
          "naive.lua:3: P.launch: a cluster of 16 CTAs is above the 8 nominal sm_90 allows (portably)", 1 },
        { GOOD_HEAD " launch=function(p, s, d)\n return P.launch(d, { entry='e', grid={1,1,1}, block={32,1,1},\n args={ P.params(), P.tma{ tensor='x', box={64,64} } } }) end,\n" GOOD_EMIT "}",
          "naive.lua:5: P.tma{}: tensor must be \"q\", \"k\", \"v\" or \"o\"", 1 },
        { GOOD_HEAD " launch=function(p, s, d)\n return P.launch(d, { entry='e', grid={1,1,1}, block={32,1,1},\n args={ P.tma{ tensor='k', box={128,64}, swizzle='128B' } } }) end,\n" GOOD_EMIT "}",
          "naive.lua:5: P.tma{}: a box row of 256 bytes is wider than the 128B swizzle", 1 },
        { GOOD_HEAD " launch=function(p, s, d)\n return P.launch(d, { entry='e', grid={1,1,1}, block={32,1,1},\n args={ P.scratch{ bytes=4, zeroed=true } } }) end,\n" GOOD_EMIT "}",
          "naive.lua:5: P.scratch{}: unknown field 'zeroed'", 1 },
        { GOOD_HEAD " launch=function(p, s, d)\n return P.launch(d, { entry='e', grid={1,1,1}, block={32,1,1}, args={ {kind='params'} } }) end,\n" GOOD_EMIT "}",
          "naive.lua:3: P.launch: args[1] must be made by P.params(), P.tma{} or P.scratch{}", 1 },
        { GOOD_HEAD " launch=function(p, s, d)\n local e = P.launch(d, { entry='e', grid={1,1,1}, block={32,1,1} }) e.shmem = 1 return e end,\n" GOOD_EMIT "}",
          "naive: launch() returned a launch table with an unknown field 'shmem'", 1 },
        { GOOD_HEAD " launch=function() return 1 end,\n emit=function() error('boom') end }", "naive.lua:4: boom", 0 },
    };
    char path[256];
    snprintf(path, sizeof path, "%s/naive.lua", dir);
    setenv("FATUNE_TEMPLATES", dir, 1);
    fat_problem p = { FAT_BF16, 64, 0, 0, 1, 1, 1, 16, 16 };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = fopen(path, "w");
        fputs(cases[i].body, f);
        fclose(f);
        gen *t;
        gen_open(&t);                      /* a fresh state: modules are cached per state */
        gen_variant v;
        fat_status st = cases[i].launch ? gen_launch_only(t, "naive", "", &p, &dev, &v) : gen_emit(t, "naive", "", &p, &dev, &v);
        char what[200];
        snprintf(what, sizeof what, "a template that breaks the rules fails (case %zu)", i);
        CHECK(what, st == FAT_ERR_TEMPLATE);
        CHECK_STR_HAS("with a message naming the rule", gen_errmsg(t), cases[i].want);
        if (st == FAT_OK) gen_variant_free(&v);
        gen_close(t);
    }
    /* a well-formed launch comes back by name: target, cluster, every kind of argument */
    FILE *f = fopen(path, "w");
    fputs(GOOD_HEAD " launch=function(p, s, d)\n return P.launch(d, { entry='e', target='sm_90a', grid={4,2,1}, block={128,1,1},\n"
          " cluster={2,1,1}, smem=100000, workspace=96, args={ P.params(), P.tma{ tensor='k', box={64,128}, slabs=2, swizzle='128B' },\n"
          " P.scratch{ bytes=4, zero=true } } }) end,\n" GOOD_EMIT "}", f);
    fclose(f);
    gen *t;
    gen_open(&t);
    gen_variant v;
    fat_status st = gen_launch_only(t, "naive", "", &p, &dev, &v);
    CHECK_INT("a launch with a target, a cluster, a tensor map and scratch", st, FAT_OK);
    if (st == FAT_OK) {
        const gen_launch *l = &v.launch;
        CHECK("  its entry, target, grid, block and cluster", !strcmp(l->entry, "e") && !strcmp(l->target, "sm_90a") &&
              l->grid[0] == 4 && l->grid[1] == 2 && l->block[0] == 128 && l->cluster[0] == 2 && l->cluster[1] == 1);
        CHECK("  its shared memory and workspace", l->smem == 100000 && l->workspace == 96);
        CHECK("  its three arguments in order", l->nargs == 3 && l->args[0].kind == GEN_ARG_PARAMS &&
              l->args[1].kind == GEN_ARG_TMA && l->args[2].kind == GEN_ARG_SCRATCH);
        CHECK("  the tensor map as declared", l->args[1].tma.tensor == 'k' && l->args[1].tma.box_cols == 64 &&
              l->args[1].tma.box_rows == 128 && l->args[1].tma.slabs == 2 && l->args[1].tma.swizzle == 3 &&
              l->args[1].tma.l2 == 2);
        CHECK("  the scratch, zeroed", l->args[2].bytes == 4 && l->args[2].zero);
        CHECK_INT("  scratch of one launch: workspace and argument, 256 bytes each", (int)gen_launch_scratch(l), 512);
        char how[512];
        gen_launch_describe(l, how, sizeof how);
        CHECK_STR_HAS("  described in words", how, "target sm_90a, grid (4,2,1), block (128,1,1), cluster (2,1,1)");
        CHECK_STR_HAS("  with its arguments", how, "args: params, tma k 64x128 x2 swizzle 128B, scratch 4 bytes zeroed");
        gen_variant_free(&v);
    }
    gen_device d80;
    gen_device_for_arch("sm_80", &d80);
    CHECK_INT("the same launch on sm_80 is a template error", gen_launch_only(t, "naive", "", &p, &d80, &v), FAT_ERR_TEMPLATE);
    CHECK_STR_HAS("  naming the target and the device's", gen_errmsg(t), "target sm_90a does not run on nominal sm_80 (sm_80; its targets: sm_80)");
    gen_close(t);
    unsetenv("FATUNE_TEMPLATES");
    remove(path);
    rmdir(dir);
}

/* What the device description tells the templates, and which cubins run where. */
static void test_device(void) {
    gen_device d;
    gen_device_for_arch("sm_90", &d);
    CHECK("sm_90: the plain target first, then sm_90a", d.ntargets == 2 && !strcmp(d.targets[0], "sm_90") &&
          !strcmp(d.targets[1], "sm_90a") && !strcmp(d.arch, "sm_90"));
    CHECK("sm_90: clusters of 8 CTAs, 16 non-portable", d.max_cluster == 8 && d.max_cluster_np == 16);
    d.nvrtc_version = 11080;
    gen_device_targets(&d);
    CHECK("an NVRTC before 12.0 has no sm_90a", d.ntargets == 1);
    gen_device_for_arch("sm_86", &d);
    CHECK("sm_86: sm_86 then sm_80, no clusters", d.ntargets == 2 && !strcmp(d.targets[1], "sm_80") && d.max_cluster == 1);
    CHECK("gen_device_for_arch(sm_90a) is the sm_90 GPU", gen_device_for_arch("sm_90a", &d) == FAT_OK && d.cc == 90 &&
          !strcmp(d.arch, "sm_90"));
    CHECK("an sm_90a cubin runs on 9.0 only", gen_target_runs_on("sm_90a", 90) && !gen_target_runs_on("sm_90a", 89));
    CHECK("an sm_80 cubin runs on 8.0, 8.6, 8.9", gen_target_runs_on("sm_80", 80) && gen_target_runs_on("sm_80", 86) &&
          gen_target_runs_on("sm_80", 89));
    CHECK("...but not on 9.0 (no SASS across majors)", !gen_target_runs_on("sm_80", 90));
    CHECK("an sm_86 cubin does not run on 8.0", !gen_target_runs_on("sm_86", 80));
    CHECK("junk is no target", !gen_target_runs_on("sm_52x", 52) && !gen_target_runs_on("", 90) && !gen_target_runs_on("compute_90", 90));

    /* what the families say of themselves */
    gen_family info;
    CHECK("naive is not tuned by default", gen_family_info(g, "naive", &info) == FAT_OK && !info.tuned && !info.default_rank);
    CHECK("flash_v2 offers the default of prefill", gen_family_info(g, "flash_v2", &info) == FAT_OK && info.tuned &&
          info.default_rank > 0 && !info.decoding_rows);
    CHECK("decode serves the decoding regime of 16 rows", gen_family_info(g, "decode", &info) == FAT_OK &&
          info.decoding_rows == 16 && info.default_rank > 0);
    int rows = 0;
    CHECK("the build's decoding regime is decode's", gen_decoding_rows(g, &rows) == FAT_OK && rows == 16);
    const char *order[GEN_MAX_FAMILIES];
    int nd = 0;
    CHECK("the default families: decode, then flash_v2", gen_default_families(g, order, &nd) == FAT_OK && nd >= 2 &&
          !strcmp(order[0], "decode") && !strcmp(order[nd - 1], "flash_v2"));
    CHECK_INT("an unknown family has no info", gen_family_info(g, "nosuch", &info), FAT_ERR_TEMPLATE);
}

/* Shapes files that try to outlive the limits, or are no files at all. */
static void test_limits(void) {
    BAD_SHAPES("an endless loop caught by pcall", "while true do pcall(function() while true do end end) end",
               "shapes.lua:1: instruction limit exceeded");
    BAD_SHAPES("an endless loop caught by xpcall", "while true do xpcall(function() while true do end end, function(e) return e end) end",
               "instruction limit exceeded");
    BAD_SHAPES("the memory limit caught by pcall",
               "local t = {}\nwhile true do pcall(function() for i = 1, 1e9 do t[#t + 1] = ('x'):rep(1e5) .. i end end) end",
               "shapes.lua:2: memory limit exceeded");
    BAD_SHAPES("an error object that loops in __tostring... is just an error",
               "return { shape{batch=1, heads_q=8, seqlen=128, head_dim=64, dtype='bf16', oops=1} }", "unknown field 'oops'");
    BAD_SHAPES("a sweep of a million problems",
               "return {\n sweep{batch={1,2,3,4,5,6,7,8,9,10}, heads_q={1,2,3,4,5,6,7,8,9,10}, seqlen={1,2,3,4,5,6,7,8,9,10},\n"
               " head_dim={8,16,24,32,40,48,56,64,72,80}, dtype='bf16', heads_kv={1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1}} }",
               "shapes.lua:2: too many problems: this sweep makes");
    int n;
    const char *m;
    CHECK_INT("pcall still catches ordinary errors", shapes("local ok = pcall(error, 'x')\nassert(not ok)\n"
              "return { shape{batch=1, heads_q=8, seqlen=128, head_dim=64, dtype='bf16'} }", &n, &m), FAT_OK);
    CHECK_INT("xpcall still calls its handler", shapes("local ok, v = xpcall(error, function(e) return 'h:' .. e end, 'x')\n"
              "assert(not ok and v == 'h:x')\nreturn { shape{batch=1, heads_q=8, seqlen=128, head_dim=64, dtype='bf16'} }", &n, &m), FAT_OK);
    fat_problem *p = NULL;
    CHECK_INT("/dev/zero is refused quickly", gen_shapes_file(g, "/dev/zero", &p, &n), FAT_ERR_IO);
    CHECK_STR_HAS("  as too large", gen_errmsg(g), "/dev/zero: larger than 16 MiB: not a shapes file");
    CHECK_INT("a directory is refused", gen_shapes_file(g, "/tmp", &p, &n), FAT_ERR_IO);
    CHECK_STR_HAS("  as a directory", gen_errmsg(g), "/tmp: cannot read: Is a directory");
}

/* The built-in default of every default-suite problem, on sm_80 and sm_90, is one of the valid
 * variants its family enumerates: the tuner measures it first and the runtime launches it. */
static void test_defaults(void) {
    fat_problem *p;
    int n = 0;
    if (gen_shapes_file(g, NULL, &p, &n) != FAT_OK) { CHECK("the default suite loads", 0); return; }
    const char *archs[] = { "sm_80", "sm_90" };
    for (int a = 0; a < 2; a++) {
        gen_device d;
        gen_device_for_arch(archs[a], &d);
        int found = 0;
        for (int i = 0; i < n; i++) {
            char params[256], what[512];
            gen_choice *ch;
            int nch, hit = 0;
            const char *fam;
            if (gen_builtin_default(g, &p[i], &d, &fam, params, sizeof params) != FAT_OK) continue;
            if (gen_enumerate(g, fam, &p[i], &d, &ch, &nch) != FAT_OK) continue;
            for (int c = 0; c < nch; c++) hit |= ch[c].ok && strcmp(ch[c].canon, params) == 0;
            gen_choices_free(ch, nch);
            found += hit;
            if (!hit) {
                char name[160];
                gen_problem_name(&p[i], name, sizeof name);
                snprintf(what, sizeof what, "%s %s: the default %s is a valid enumerated variant", archs[a], name, params);
                CHECK(what, 0);
            }
        }
        char what[96];
        snprintf(what, sizeof what, "%s: every problem of the default suite has its default (%d of %d)", archs[a], found, n);
        CHECK_INT(what, found, n);
    }
    free(p);
}

/* The built-in default of a decoding step is decode's, spread over the SMs on sm_90 when the batch
 * is small (clusters of up to 8 CTAs per KV head), one CTA per KV head on sm_80 (no clusters) and
 * for a large batch; on sm_90 K and V are read under L2 evict_first when they are at most 4x the
 * L2 (200 MiB at 50 MiB: 16 x 3k keys yes, 16 x 4k no); a prefill problem's is flash_hopper's on sm_90a (head_dim 64 to 256, varlen too), flash_v2's elsewhere. */
static void test_builtin_default(void) {
    static const struct { fat_problem p; const char *arch, *family, *has; } cases[] = {
        { { FAT_BF16, 128, 0, 0, 1, 32, 8, 1, 32768 }, "sm_90", "decode", "splits=8,stages=3" },
        { { FAT_BF16, 128, 0, 0, 4, 32, 8, 1, 32768 }, "sm_90", "decode", "splits=2,stages=3" },
        { { FAT_BF16, 128, 0, 0, 16, 32, 8, 1, 4096 }, "sm_90", "decode", "block_n=32,evict_first=0,splits=1,stages=2,warps=4" },
        { { FAT_BF16, 128, 0, 0, 16, 32, 8, 1, 3072 }, "sm_90", "decode", "block_n=32,evict_first=1,splits=1,stages=2,warps=4" },
        { { FAT_BF16, 128, 0, 0, 16, 32, 8, 1, 1024 }, "sm_90", "decode", "evict_first=1" },
        { { FAT_BF16, 128, 0, 0, 4, 32, 8, 1, 32768 }, "sm_90", "decode", "evict_first=0" },
        { { FAT_BF16, 128, 0, 0, 16, 32, 8, 1, 1024 }, "sm_80", "decode", "evict_first=0" },   /* measured on sm_90 only */
        /* one CTA per sequence-head with SMs to spare, and 16-key pages: eight warps, three stages */
        { { FAT_BF16, 128, 0, 0, 8, 32, 8, 1, 16384 }, "sm_90", "decode", "block_n=16,evict_first=0,splits=1,stages=3,warps=8" },
        { { FAT_BF16, 128, 0, FAT_FEAT_PAGED | FAT_FEAT_CACHE | (16u << FAT_FEAT_PAGE_SHIFT), 2, 32, 8, 1, 65536 }, "sm_90",
          "decode", "block_n=16,evict_first=0,splits=4,stages=3,warps=8" },
        { { FAT_BF16, 128, 0, FAT_FEAT_PAGED | FAT_FEAT_CACHE | (16u << FAT_FEAT_PAGE_SHIFT), 16, 32, 8, 1, 4096 }, "sm_90",
          "decode", "block_n=16,evict_first=0,splits=1,stages=3,warps=8" },
        { { FAT_BF16, 128, 0, FAT_FEAT_PAGED | FAT_FEAT_CACHE | (16u << FAT_FEAT_PAGE_SHIFT), 16, 32, 8, 1, 2048 }, "sm_90",
          "decode", "block_n=16,evict_first=1,splits=1,stages=3,warps=8" },
        { { FAT_BF16, 128, 0, 0, 8, 32, 8, 1, 16384 }, "sm_80", "decode", "block_n=32,evict_first=0,splits=1,stages=2,warps=4" },
        { { FAT_BF16, 128, 0, 0, 1, 32, 8, 1, 32768 }, "sm_80", "decode", "splits=1" },
        { { FAT_FP16, 64, 1, 0, 1, 8, 8, 1, 200 }, "sm_90", "decode", "splits=1" },       /* 7 tiles: 1 split */
        { { FAT_BF16, 128, 1, 0, 1, 32, 8, 4, 4096 }, "sm_90", "decode", "warps=4" },     /* 16 rows */
        { { FAT_BF16, 256, 0, 0, 1, 8, 1, 1, 32768 }, "sm_90", "decode", "block_n=16,evict_first=1,splits=8,stages=3" },
        { { FAT_BF16, 128, 1, 0, 1, 32, 8, 5, 4096 }, "sm_90", "flash_hopper", "block_m=128" },   /* 20 rows */
        { { FAT_BF16, 128, 1, 0, 2, 16, 16, 2048, 2048 }, "sm_90", "flash_hopper", "block_m=128,block_n=128" },
        { { FAT_BF16, 128, 1, 0, 16, 16, 16, 1024, 1024 }, "sm_90", "flash_hopper", "persistent=2,pingpong=0,q_stages=2" },
        { { FAT_BF16, 64, 1, 0, 32, 32, 32, 512, 512 }, "sm_90", "flash_hopper", "block_m=128,block_n=128,copy_warps=1,o_separate=1,overlap=1,persistent=2,pingpong=0,q_stages=2,stages=3,tma_store=1" },
        { { FAT_BF16, 64, 1, 0, 4, 32, 32, 4096, 4096 }, "sm_90", "flash_hopper", "block_m=192,block_n=128,copy_warps=1,o_separate=1,overlap=1,persistent=1,pingpong=1" },
        { { FAT_BF16, 128, 0, FAT_FEAT_WINDOW, 2, 16, 16, 2048, 2048 }, "sm_90", "flash_hopper", "persistent=1,pingpong=1" },
        { { FAT_BF16, 128, 1, 0, 16, 16, 16, 1024, 1024 }, "sm_90", "flash_hopper", "block_m=128,block_n=128" },
        { { FAT_BF16, 64, 0, 0, 4, 32, 32, 4096, 4096 }, "sm_90", "flash_hopper", "block_m=192" },
        { { FAT_BF16, 128, 1, 0, 2, 16, 16, 2048, 2048 }, "sm_80", "flash_v2", "block_m" },   /* no sm_90a */
        { { FAT_BF16, 96, 0, 0, 2, 16, 16, 2048, 2048 }, "sm_90", "flash_hopper", "block_m=128,block_n=128" },
        { { FAT_BF16, 96, 0, 0, 1, 16, 16, 8192, 8192 }, "sm_90", "flash_hopper", "block_m=128,block_n=176" },
        { { FAT_BF16, 192, 1, 0, 2, 16, 16, 2048, 2048 }, "sm_90", "flash_hopper", "block_m=128,block_n=112" },
        { { FAT_FP16, 256, 0, 0, 2, 8, 8, 4096, 4096 }, "sm_90", "flash_hopper", "block_m=128,block_n=80" },
        { { FAT_BF16, 40, 0, 0, 2, 16, 16, 2048, 2048 }, "sm_90", "flash_v2", "block_m" },    /* d40: not served */
        { { FAT_BF16, 128, 0, FAT_FEAT_VARLEN, 2, 16, 16, 2048, 2048 }, "sm_90", "flash_hopper", "block_m=128" },
        /* a causal chunk against a history 4x its length or more takes the non-causal choice (plain:
         * 128x176 persistent with ping-pong; a square causal shape keeps the dynamic schedule), a KV
         * cache's with 128-key blocks; a paged cache whose pages do not hold whole key blocks
         * spreads the runs' copies over three producer warps (two at one 64-column slab) in the
         * form measured at 16-key pages; pages that hold whole blocks take one warp */
        { { FAT_BF16, 128, 1, 0, 1, 32, 8, 512, 8704 }, "sm_90", "flash_hopper",
          "block_m=128,block_n=176,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1" },
        { { FAT_BF16, 128, 1, FAT_FEAT_CACHE, 1, 32, 8, 512, 8704 }, "sm_90", "flash_hopper",
          "block_m=128,block_n=128,copy_warps=1,o_separate=1,overlap=1,persistent=1,pingpong=1" },
        { { FAT_BF16, 128, 1, 0, 1, 32, 8, 2048, 4096 }, "sm_90", "flash_hopper", "persistent=2,pingpong=0" },
        { { FAT_BF16, 128, 1, FAT_FEAT_PAGED | FAT_FEAT_CACHE | (16u << FAT_FEAT_PAGE_SHIFT), 4, 32, 8, 512, 8704 }, "sm_90",
          "flash_hopper", "block_m=128,block_n=128,copy_warps=3,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=3" },
        { { FAT_BF16, 128, 1, FAT_FEAT_PAGED | FAT_FEAT_CACHE | (256u << FAT_FEAT_PAGE_SHIFT), 4, 32, 8, 512, 8704 }, "sm_90",
          "flash_hopper", "block_m=128,block_n=128,copy_warps=1,o_separate=1,overlap=1,persistent=1,pingpong=1" },
        { { FAT_FP16, 64, 0, FAT_FEAT_PAGED | FAT_FEAT_CACHE | (8u << FAT_FEAT_PAGE_SHIFT), 3, 4, 4, 200, 640 }, "sm_90",
          "flash_hopper", "block_m=128,block_n=128,copy_warps=2,o_separate=1,overlap=1,persistent=1,pingpong=1" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gen_device d;
        char params[256], name[160], what[1024];
        const char *fam = "";
        gen_device_for_arch(cases[i].arch, &d);
        gen_problem_name(&cases[i].p, name, sizeof name);
        fat_status st = gen_builtin_default(g, &cases[i].p, &d, &fam, params, sizeof params);
        snprintf(what, sizeof what, "%s %s: the built-in default is %s's (%s)", cases[i].arch, name, cases[i].family,
                 st == FAT_OK ? params : gen_errmsg(g));
        CHECK(what, st == FAT_OK && strcmp(fam, cases[i].family) == 0 && strstr(params, cases[i].has));
    }
}

/* launch() agrees with emit() field for field, for every valid variant of every family on shapes
 * that move every size-dependent rule (short and long sequences, Sq != Sk, GQA, varlen, d 40 to
 * 256): the runtime takes a loaded kernel's launch for a new shape from gen_launch alone. */
/* What a family's launch must be, from its documented geometry (grid.x of flash_v1 is its split
 * count, which depends on the device: not checked here). 1 when v agrees. */
static int geometry_ok(const char *fam, const char *canon, const fat_problem *p, const gen_variant *v) {
    unsigned b = (unsigned)p->batch, h = (unsigned)p->heads_q;
    if (!strcmp(fam, "naive"))
        return v->launch.grid[0] == (unsigned)p->seqlen_q && v->launch.grid[1] == h && v->launch.grid[2] == b &&
               v->launch.block[0] == (unsigned)test_param(canon, "threads");
    int bm = test_param(canon, "block_m"), warps = test_param(canon, "warps");
    if (!strcmp(fam, "flash_v2"))
        return v->launch.grid[0] == (unsigned)((p->seqlen_q + bm - 1) / bm) && v->launch.grid[1] == h && v->launch.grid[2] == b &&
               v->launch.block[0] == 32u * (unsigned)warps && v->launch.smem > 0 && v->launch.workspace == 0;
    if (!strcmp(fam, "decode") && test_param(canon, "balance") > 0) {
        /* `balance` CTAs per SM; two partials per CTA in the workspace (16 rows of dpad floats, m
         * and l); a zeroed counter per sequence-head */
        uint64_t dpad = ((uint64_t)p->head_dim + 15) / 16 * 16, part = (16 * dpad + 32) * 4;
        unsigned ctas = (unsigned)test_param(canon, "balance") * (unsigned)dev.sms;
        return v->launch.grid[0] == ctas && v->launch.grid[1] == 1 && v->launch.grid[2] == 1 &&
               v->launch.block[0] == 32u * (unsigned)warps && v->launch.smem > 0 &&
               v->launch.workspace == 2 * (uint64_t)ctas * part && v->launch.nargs == 2 &&
               v->launch.args[1].kind == GEN_ARG_SCRATCH && v->launch.args[1].zero &&
               v->launch.args[1].bytes == 4ull * b * (unsigned)p->heads_kv;
    }
    if (!strcmp(fam, "decode"))
        return v->launch.grid[0] == (unsigned)test_param(canon, "splits") && v->launch.grid[1] == (unsigned)p->heads_kv &&
               v->launch.grid[2] == b && v->launch.block[0] == 32u * (unsigned)warps && v->launch.smem > 0 && v->launch.workspace == 0;
    if (!strcmp(fam, "flash_v1"))
        return v->launch.grid[1] == h && v->launch.grid[2] == b && v->launch.block[0] == 32u * (unsigned)warps && v->launch.workspace > 0;
    return 1;
}

static void test_launch(void) {
    static const fat_problem probs[] = {
        { FAT_BF16, 128, 1, 0, 2, 16, 4, 4096, 4096 },
        { FAT_FP16, 64, 0, 0, 3, 8, 8, 17, 1000 },
        { FAT_BF16, 40, 1, FAT_FEAT_WINDOW | FAT_FEAT_SOFTCAP, 1, 8, 1, 129, 77 },
        { FAT_FP16, 256, 0, FAT_FEAT_VARLEN, 5, 4, 2, 300, 700 },
        { FAT_BF16, 96, 1, 0, 1, 32, 8, 1, 5000 },
        { FAT_FP16, 128, 0, FAT_FEAT_VARLEN | FAT_FEAT_WINDOW | FAT_FEAT_SOFTCAP, 3, 8, 2, 2, 900 },
    };
    int nfam;
    const char *const *fams = gen_families(&nfam);
    for (int f = 0; f < nfam; f++) {
        int variants = 0, bad = 0, nosrc = 1, geom = 0, same_src = 0, compared = 0;
        for (size_t i = 0; i < sizeof probs / sizeof probs[0]; i++) {
            gen_choice *ch;
            int nch;
            if (gen_enumerate(g, fams[f], &probs[i], &dev, &ch, &nch) != FAT_OK) { bad++; continue; }
            for (int c = 0; c < nch; c++) {
                gen_variant e, l;
                if (!ch[c].ok) continue;
                variants++;
                if (gen_emit(g, fams[f], ch[c].canon, &probs[i], &dev, &e) != FAT_OK) { bad++; continue; }
                if (gen_launch_only(g, fams[f], ch[c].canon, &probs[i], &dev, &l) != FAT_OK) { bad++; gen_variant_free(&e); continue; }
                nosrc &= l.source == NULL;
                geom += geometry_ok(fams[f], ch[c].canon, &probs[i], &l);
                /* the contract the runtime's reuse rests on: other sizes, the same source */
                fat_problem q = probs[i];
                q.batch += 1;
                q.heads_q *= 2;
                q.heads_kv *= 2;
                q.seqlen_q = 3 * q.seqlen_q + 5;
                q.seqlen_k = 2 * q.seqlen_k + 7;
                gen_variant o;
                /* decode takes at most 16 query rows per KV head: other sizes within that */
                fat_problem q2 = probs[i];
                q2.batch += 2;
                q2.heads_q *= 3;
                q2.heads_kv *= 3;
                q2.seqlen_k = 3 * q2.seqlen_k + 1;
                if (gen_emit(g, fams[f], ch[c].canon, &q, &dev, &o) == FAT_OK ||
                    gen_emit(g, fams[f], ch[c].canon, &q2, &dev, &o) == FAT_OK) {
                    compared++;
                    same_src += strcmp(o.source, e.source) == 0;
                    gen_variant_free(&o);
                }
                if (strcmp(e.canon, l.canon) || memcmp(&e.launch, &l.launch, sizeof e.launch) || e.version != l.version) {
                    bad++;
                    if (bad < 4) fprintf(stderr, "  %s %s: launch() differs from emit()\n", fams[f], ch[c].canon);
                }
                gen_variant_free(&e);
                gen_variant_free(&l);
            }
            gen_choices_free(ch, nch);
        }
        char what[160];
        snprintf(what, sizeof what, "%s: launch() and emit() agree on every valid variant (%d)", fams[f], variants);
        CHECK(what, variants > 0 && bad == 0);
        snprintf(what, sizeof what, "%s: gen_launch gives no source", fams[f]);
        CHECK(what, nosrc);
        snprintf(what, sizeof what, "%s: launch() gives the family's geometry (%d variants)", fams[f], variants);
        CHECK_INT(what, geom, variants);
        snprintf(what, sizeof what, "%s: a variant's source is the same at other sizes (%d compared)", fams[f], compared);
        CHECK(what, compared > 0 && same_src == compared);
    }
    fat_problem p = probs[0];
    gen_variant v;
    CHECK_INT("gen_launch refuses an invalid choice as gen_emit does",
              gen_launch_only(g, "naive", "threads=4096", &p, &dev, &v), FAT_ERR_TEMPLATE);
    CHECK_STR_HAS("...naming it", gen_errmsg(g), "not valid");
}

int main(int argc, char **argv) {
    test_verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    gen_device_for_arch("sm_90", &dev);
    if (gen_open(&g) != FAT_OK) { fprintf(stderr, "cannot open the generator: %s\n", gen_errmsg(g)); return 1; }
    test_shapes();
    test_templates();
    test_sandbox_templates();
    test_device();
    test_limits();
    test_defaults();
    test_builtin_default();
    test_launch();
    gen_close(g);
    return test_done("gen");
}
