/*
 * gpu_test.c: the GPU test tier. Every valid variant of every family, on fresh random inputs,
 * against the CPU attention: tails, Sq != Sk both ways, fully masked rows, GQA and MQA, BSHD and
 * BHSD with padded rows, odd head dims, windows, softcap, varlen, LSE; guard bytes around O and LSE
 * must stay untouched. Skips, with a count, where there is no GPU.
 *
 *   gpu_test [-v] [--only FAMILY] [--quick] [--case TEXT] [--variant TEXT]
 *
 * --quick: at most 2 variants per family and case; --case: only the cases whose name contains TEXT
 * (or one of the |-separated TEXTs);
 * --variant: only the variants whose parameters (canonical, "block_m=128,...") contain TEXT. The
 * last three make runs under compute-sanitizer short.
 */
#include "bench.h"
#include "cu.h"
#include "gen.h"
#include "pool.h"
#include "rtc.h"
#include "test.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct tcase {
    const char *name;
    fat_problem p;
    bench_layout lay;
} tcase;

static const int lens_q5[] = { 1, 130, 77, 0, 300 }, lens_k5[] = { 1, 200, 64, 50, 300 };
/* several query tiles per sequence, a sequence with no query row, keys beyond the queries */
static const int lens_ql[] = { 700, 1, 0, 513, 1200 }, lens_kl[] = { 700, 900, 5, 513, 1200 };
/* decoding steps: one or two new tokens per sequence (none in one), caches of 1 to 4097 tokens */
static const int lens_qd[] = { 1, 1, 2, 0, 1 }, lens_kd[] = { 1000, 17, 1, 300, 4097 };

/* KV caches (issue 14): keys already cached per sequence: none, one, a page boundary and one either
 * side, a page filled exactly by the append, and one across a boundary */
static const int cache_a[] = { 15, 0, 1, 511 }, cache_b[] = { 0, 8, 299 }, cache_c[] = { 63, 65 },
                 cache_d[] = { 255, 1000 }, cache_e[] = { 0, 497, 250 }, cache_f[] = { 22, 47 };
/* a server's ragged batch: empty, one key, short and long sequences side by side (decode's
 * balance = 1 cuts the long ones over many CTAs' shares) */
static const int cache_g[] = { 0, 1, 5000, 33, 12000, 700 };
/* prefill chunks against a cache that already holds them (flash_hopper): fewer keys than query
 * rows (the first rows see none), a page boundary +-1, a length that ends inside a key block, the
 * whole room */
static const int chunk_a[] = { 300, 1000, 129, 0 }, chunk_b[] = { 1, 257, 640 }, chunk_c[] = { 2000, 255, 1537 },
                 chunk_d[] = { 700, 333 }, chunk_e[] = { 1000, 517 }, chunk_f[] = { 777, 1000, 96 },
                 chunk_g[] = { 700, 333, 90 };
#define PAGED(n) (FAT_FEAT_PAGED | ((unsigned)(n) << FAT_FEAT_PAGE_SHIFT))
#define CACHE FAT_FEAT_CACHE
#define APPEND FAT_FEAT_APPEND

#define P(dt, d, c, f, b, hq, hk, sq, sk) { dt, d, c, f, b, hq, hk, sq, sk }
static const tcase cases[] = {
    { "seqlen 1", P(FAT_BF16, 64, 0, 0, 2, 4, 4, 1, 1), { .with_lse = 1 } },
    { "seqlen 17 causal", P(FAT_FP16, 64, 1, 0, 2, 4, 4, 17, 17), { .with_lse = 1 } },
    { "seqlen 127", P(FAT_BF16, 128, 0, 0, 1, 4, 2, 127, 127), { .with_lse = 1 } },
    { "seqlen 128 causal", P(FAT_BF16, 128, 1, 0, 1, 4, 4, 128, 128), { .with_lse = 1 } },
    { "seqlen 129 fp16", P(FAT_FP16, 128, 0, 0, 1, 4, 4, 129, 129), { 0 } },
    { "seqlen 1000 causal GQA 8:1", P(FAT_BF16, 128, 1, 0, 1, 16, 2, 1000, 1000), { .with_lse = 1 } },
    { "seqlen 4097 causal", P(FAT_BF16, 64, 1, 0, 1, 2, 1, 4097, 4097), { .with_lse = 1 } },
    { "Sq < Sk causal", P(FAT_FP16, 64, 1, 0, 2, 4, 4, 100, 333), { .with_lse = 1 } },
    { "Sq > Sk causal (masked rows)", P(FAT_BF16, 64, 1, 0, 2, 4, 4, 300, 129), { .with_lse = 1 } },
    { "Sq > Sk", P(FAT_FP16, 128, 0, 0, 1, 4, 4, 257, 65), { .with_lse = 1 } },
    { "MQA", P(FAT_BF16, 128, 0, 0, 2, 8, 1, 200, 200), { .with_lse = 1 } },
    { "BHSD", P(FAT_BF16, 64, 1, 0, 2, 4, 2, 190, 190), { .bhsd = 1, .with_lse = 1 } },
    { "BSHD padded rows", P(FAT_FP16, 64, 0, 0, 2, 4, 2, 150, 170), { .pad = 16 } },
    { "head_dim 40", P(FAT_BF16, 40, 1, 0, 1, 4, 4, 200, 200), { .with_lse = 1 } },
    { "head_dim 80", P(FAT_FP16, 80, 0, 0, 1, 4, 4, 200, 220), { .with_lse = 1 } },
    { "head_dim 96 BHSD", P(FAT_BF16, 96, 1, 0, 1, 4, 4, 300, 300), { .bhsd = 1 } },
    { "head_dim 256", P(FAT_BF16, 256, 1, 0, 1, 4, 2, 260, 260), { .with_lse = 1 } },
    { "head_dim 32", P(FAT_FP16, 32, 0, 0, 2, 4, 4, 99, 99), { .with_lse = 1 } },
    { "head_dim 160", P(FAT_BF16, 160, 0, 0, 1, 2, 2, 140, 140), { .with_lse = 1 } },
    { "head_dim 192", P(FAT_FP16, 192, 1, 0, 1, 2, 2, 140, 180), { .with_lse = 1 } },
    /* head_dims that are not whole 64-column slabs (flash_hopper pads them with zeros in shared
     * memory; 72 and 136 also end in half a k16 step), and 256 with more keys than queries */
    { "head_dim 72 GQA 2:1", P(FAT_BF16, 72, 0, 0, 1, 4, 2, 333, 333), { .with_lse = 1 } },
    { "head_dim 136 causal", P(FAT_BF16, 136, 1, 0, 1, 4, 4, 300, 300), { .with_lse = 1 } },
    { "head_dim 256 Sq < Sk", P(FAT_FP16, 256, 0, 0, 2, 4, 4, 130, 1000), { .with_lse = 1 } },
    { "window (64, 16)", P(FAT_BF16, 64, 0, FAT_FEAT_WINDOW, 1, 4, 4, 500, 500), { .window_left = 64, .window_right = 16, .with_lse = 1 } },
    { "window causal left 100", P(FAT_FP16, 128, 1, FAT_FEAT_WINDOW, 1, 4, 2, 400, 450), { .window_left = 100, .window_right = -1, .with_lse = 1 } },
    { "softcap 30", P(FAT_BF16, 128, 1, FAT_FEAT_SOFTCAP, 1, 4, 4, 300, 300), { .softcap = 30.f, .with_lse = 1 } },
    /* scores rising toward the first keys, which flash_hopper visits last (walk_forward=0): nearly
     * every key block raises a row's max, by about 3 in exp2's units, then by over 128 (2^128
     * overflows f32) */
    { "rising keys causal", P(FAT_BF16, 128, 1, 0, 1, 4, 2, 1000, 1000), { .key_ramp = 0.3f, .with_lse = 1 } },
    { "rising keys past 2^128", P(FAT_FP16, 64, 0, 0, 2, 4, 4, 300, 300), { .key_ramp = 20.f, .with_lse = 1 } },
    /* the same toward the last keys, for the kernels that visit the key blocks first to last
     * (flash_v1, flash_v2, decode, and flash_hopper with walk_forward=1, causal only) */
    { "rising keys toward the last causal", P(FAT_BF16, 128, 1, 0, 1, 4, 2, 1000, 1000),
      { .key_ramp = 0.3f, .ramp_toward_last = 1, .with_lse = 1 } },
    { "rising keys toward the last past 2^128 causal", P(FAT_FP16, 64, 1, 0, 2, 4, 4, 300, 300),
      { .key_ramp = 20.f, .ramp_toward_last = 1, .with_lse = 1 } },
    /* every score below 2^-126 of exp2's base 0 from the second group of keys on, and rows that see
     * no key in the first block visited (with walk_forward=0 the window's first rows): they must
     * not read as empty */
    { "falling keys window (64, 16)", P(FAT_BF16, 128, 0, FAT_FEAT_WINDOW, 1, 4, 2, 500, 500),
      { .key_ramp = -20.f, .window_left = 64, .window_right = 16, .with_lse = 1 } },
    { "varlen 5 sequences", P(FAT_BF16, 64, 1, FAT_FEAT_VARLEN, 5, 4, 2, 300, 300), { .lens_q = lens_q5, .lens_k = lens_k5, .with_lse = 1 } },
    { "varlen window softcap", P(FAT_FP16, 128, 0, FAT_FEAT_VARLEN | FAT_FEAT_WINDOW | FAT_FEAT_SOFTCAP, 5, 4, 4, 300, 300),
      { .lens_q = lens_q5, .lens_k = lens_k5, .window_left = 50, .window_right = 50, .softcap = 20.f, .with_lse = 1 } },
    { "varlen long sequences causal GQA 2:1", P(FAT_BF16, 128, 1, FAT_FEAT_VARLEN, 5, 8, 4, 1200, 1200),
      { .lens_q = lens_ql, .lens_k = lens_kl, .with_lse = 1 } },
    { "varlen head_dim 96", P(FAT_FP16, 96, 0, FAT_FEAT_VARLEN, 5, 4, 2, 1200, 1200), { .lens_q = lens_ql, .lens_k = lens_kl } },
    /* more tiles than SMs: a persistent schedule wraps around several times (512 and 432 tiles of 128
     * rows over 132 SMs), causal with LSE and non-causal in BHSD */
    { "persistent wrap causal GQA 4:1", P(FAT_FP16, 128, 1, 0, 2, 16, 4, 2000, 2000), { .with_lse = 1 } },
    { "persistent wrap BHSD d64", P(FAT_BF16, 64, 0, 0, 3, 16, 16, 1100, 1100), { .bhsd = 1, .with_lse = 1 } },
    /* 12 m-blocks of 128 rows (8 of 192) over 2 x 32 heads: a non-causal persistent schedule wraps
     * several times, GQA 4:1, a key tail that is no multiple of a key block or half of one (a
     * TMA-stored O clipped at the last tile) */
    { "persistent wrap d128 GQA 4:1 key tail", P(FAT_BF16, 128, 0, 0, 2, 32, 8, 1500, 1500), { .with_lse = 1 } },
    /* flash_hopper's persistent causal order in L2 sections: 2 MiB of K and V per head (2048 keys at
     * d256) makes sections of 16 heads, so the 20 heads take a full section and a last one of 4 */
    { "persistent causal L2 sections 16 + 4 d256", P(FAT_BF16, 256, 1, 0, 1, 20, 20, 2048, 2048), { .with_lse = 1 } },
    /* decoding shapes (the decode family's: at most 16 query rows per KV head; every family runs them) */
    { "decode GQA 4:1 Sk 4097", P(FAT_BF16, 128, 0, 0, 3, 16, 4, 1, 4097), { .with_lse = 1 } },
    { "decode causal Sq 3 GQA 4:1", P(FAT_FP16, 128, 1, 0, 2, 8, 2, 3, 1000), { .with_lse = 1 } },
    { "decode causal Sq > Sk (masked rows)", P(FAT_BF16, 64, 1, 0, 2, 4, 2, 5, 3), { .with_lse = 1 } },
    { "decode MQA window softcap", P(FAT_BF16, 64, 0, FAT_FEAT_WINDOW | FAT_FEAT_SOFTCAP, 2, 8, 1, 1, 777),
      { .window_left = 300, .window_right = -1, .softcap = 30.f, .with_lse = 1 } },
    { "decode BHSD head_dim 256", P(FAT_BF16, 256, 0, 0, 2, 4, 1, 1, 1500), { .bhsd = 1, .with_lse = 1 } },
    { "decode head_dim 40 padded rows", P(FAT_FP16, 40, 1, 0, 2, 8, 8, 2, 333), { .pad = 16 } },
    { "decode varlen 5 sequences", P(FAT_BF16, 128, 1, FAT_FEAT_VARLEN, 5, 8, 2, 2, 4097),
      { .lens_q = lens_qd, .lens_k = lens_kd, .with_lse = 1 } },
    { "decode 16 rows window (100, 0)", P(FAT_BF16, 128, 0, FAT_FEAT_WINDOW, 2, 16, 2, 2, 2000),
      { .window_left = 100, .window_right = 0, .with_lse = 1 } },
    { "decode causal window left 200, Sq 4", P(FAT_FP16, 64, 1, FAT_FEAT_WINDOW, 3, 8, 2, 4, 1500),
      { .window_left = 200, .window_right = -1, .with_lse = 1 } },
    /* KV caches: pages shuffled (with spare pages no entry names), the append checked byte for byte
     * against the CPU's (bench_fetch: the whole cache must equal it) */
    { "paged16 cache append 2 across page boundaries GQA 4:1", P(FAT_BF16, 128, 1, PAGED(16) | CACHE | APPEND, 4, 16, 4, 2, 1000),
      { .cache_lens = cache_a, .with_lse = 1 } },
    { "paged8 cache lengths 0, 8, 299", P(FAT_FP16, 64, 0, PAGED(8) | CACHE, 3, 8, 2, 1, 300), { .cache_lens = cache_b, .with_lse = 1 } },
    { "paged64 cache append window (100, 0)", P(FAT_BF16, 128, 0, PAGED(64) | CACHE | APPEND | FAT_FEAT_WINDOW, 2, 8, 8, 1, 600),
      { .cache_lens = cache_c, .window_left = 100, .window_right = 0, .with_lse = 1 } },
    { "paged256 cache append fills a page", P(FAT_FP16, 128, 1, PAGED(256) | CACHE | APPEND, 2, 32, 8, 1, 2048),
      { .cache_lens = cache_d, .with_lse = 1 } },
    { "contiguous cache append Sq 3 causal", P(FAT_BF16, 64, 1, CACHE | APPEND, 3, 4, 4, 3, 500), { .cache_lens = cache_e, .with_lse = 1 } },
    { "contiguous cache ragged 0 to 12000 GQA 4:1", P(FAT_BF16, 128, 0, CACHE, 6, 16, 4, 1, 12000),
      { .cache_lens = cache_g, .with_lse = 1 } },
    { "paged16 whole sequences MQA head_dim 96", P(FAT_FP16, 96, 0, PAGED(16), 2, 8, 1, 1, 320), { .with_lse = 1 } },
    { "paged24 cache append GQA 8:1 padded rows", P(FAT_BF16, 128, 1, PAGED(24) | CACHE | APPEND, 2, 16, 2, 2, 700),
      { .cache_lens = cache_f, .pad = 8, .with_lse = 1 } },
    { "paged16 cache append softcap head_dim 256", P(FAT_BF16, 256, 0, PAGED(16) | CACHE | APPEND | FAT_FEAT_SOFTCAP, 2, 4, 2, 1, 900),
      { .cache_lens = cache_c, .softcap = 30.f, .with_lse = 1 } },
    /* prefill chunks of 300 and 200 rows per sequence against a cache that holds them: paged (runs
     * of gcd(page, key block) rows, shuffled pages), contiguous with cache_seqlens; the rows past
     * each sequence hold NaN */
    { "paged16 cache chunk 300 causal GQA 4:1", P(FAT_BF16, 128, 1, PAGED(16) | CACHE, 4, 8, 2, 300, 1000),
      { .cache_lens = chunk_a, .with_lse = 1 } },
    { "paged8 cache chunk 200 fp16 head_dim 64", P(FAT_FP16, 64, 0, PAGED(8) | CACHE, 3, 4, 4, 200, 640),
      { .cache_lens = chunk_b, .with_lse = 1 } },
    { "paged256 cache chunk 300 causal", P(FAT_BF16, 128, 1, PAGED(256) | CACHE, 3, 4, 1, 300, 2048),
      { .cache_lens = chunk_c, .with_lse = 1 } },
    { "paged24 cache chunk 200 head_dim 72 window", P(FAT_BF16, 72, 0, PAGED(24) | CACHE | FAT_FEAT_WINDOW, 2, 4, 2, 200, 1000),
      { .cache_lens = chunk_d, .window_left = 150, .window_right = 0, .with_lse = 1 } },
    { "contiguous cache chunk 300 causal head_dim 256", P(FAT_FP16, 256, 1, CACHE, 4, 4, 2, 300, 1000),
      { .cache_lens = chunk_a, .with_lse = 1 } },
    /* lengths inside a key block after whole ones: flash_hopper reads that block as the keys that
     * end the sequence (SHIFT_RAGGED), its first rows masked as the previous block's */
    { "contiguous cache chunk 300 causal GQA 4:1 ragged", P(FAT_BF16, 128, 1, CACHE, 3, 8, 2, 300, 2048),
      { .cache_lens = chunk_c, .with_lse = 1 } },
    { "contiguous cache chunk 200 window ragged", P(FAT_BF16, 128, 0, CACHE | FAT_FEAT_WINDOW, 3, 4, 2, 200, 1000),
      { .cache_lens = chunk_g, .window_left = 150, .window_right = 0, .with_lse = 1 } },
    { "paged32 cache chunk 200 causal head_dim 256", P(FAT_BF16, 256, 1, PAGED(32) | CACHE, 2, 4, 2, 200, 1000),
      { .cache_lens = chunk_e, .with_lse = 1 } },
    { "paged48 cache chunk 200 head_dim 192", P(FAT_FP16, 192, 0, PAGED(48) | CACHE, 3, 4, 2, 200, 1000),
      { .cache_lens = chunk_f, .with_lse = 1 } },
    { "paged64 whole sequences 500 causal softcap head_dim 96", P(FAT_BF16, 96, 1, PAGED(64) | FAT_FEAT_SOFTCAP, 2, 4, 2, 500, 700),
      { .softcap = 30.f, .with_lse = 1 } },
};

/* Kernels compiled in this run, by source hash. */
typedef struct cached { XXH128_hash_t h; void *cubin; int ok; char *log; } cached;
static cached *cache;
static int ncache;

/* A compiled kernel is its source and its target. */
static XXH128_hash_t kernel_key(const gen_variant *v) {
    XXH3_state_t st;
    XXH3_INITSTATE(&st);
    XXH3_128bits_reset(&st);
    XXH3_128bits_update(&st, v->source, strlen(v->source));
    XXH3_128bits_update(&st, v->launch.target, strlen(v->launch.target));
    return XXH3_128bits_digest(&st);
}

static cached *lookup(XXH128_hash_t h) {
    for (int i = 0; i < ncache; i++) if (XXH128_isEqual(cache[i].h, h)) return &cache[i];
    return NULL;
}

/* Documented tolerances (relative L2 error of O against the CPU attention in fp32): the output is
 * rounded to the dtype (bf16 keeps 8 bits, fp16 11), and P is rounded to the dtype before P·V. */
static double tolerance(fat_dtype dt) { return dt == FAT_BF16 ? 1.6e-2 : 4e-3; }

/* 1 when name contains one of the |-separated parts of any */
static int name_has_one(const char *name, const char *any) {
    char part[128];
    for (const char *p = any; *p;) {
        size_t n = strcspn(p, "|");
        snprintf(part, sizeof part, "%.*s", (int)(n < sizeof part ? n : sizeof part - 1), p);
        if (n > 0 && strstr(name, part)) return 1;
        p += n + (p[n] == '|');
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *only = NULL;
    const char *case_has = NULL, *variant_has = NULL;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) test_verbose = 1;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc) case_has = argv[++i];
        else if (strcmp(argv[i], "--variant") == 0 && i + 1 < argc) variant_has = argv[++i];
        else {
            fprintf(stderr, "gpu_test: unknown argument '%s'\nusage: gpu_test [-v] [--only FAMILY] [--quick] [--case TEXT] "
                    "[--variant TEXT]\n", argv[i]);
            return 2;
        }
    }
    int ncases = (int)(sizeof cases / sizeof cases[0]);
    int ngpu = 0;
    if (cu_device_count(&ngpu) != FAT_OK || ngpu == 0) {
        /* One skip per case and family: the count says how much did not run. */
        int nf, sel = 0;
        const char *const *fams = gen_families(&nf);
        for (int f = 0; f < nf; f++) sel += gen_family_selected(only, fams[f]);
        for (int i = 0; i < ncases * sel; i++) SKIP("gpu case", "no GPU");
        printf("gpu: no GPU here (%s)\n", ngpu == 0 && cu_load() == FAT_OK ? "the driver reports none" : fat_last_error());
        return test_done("gpu");
    }
    if (rtc_load() != FAT_OK) { fprintf(stderr, "%s\n", fat_last_error()); return 1; }
    gen_device dev;
    CUdevice cudev;
    if (cu_device_info(0, &dev) != FAT_OK || cu_device_open(0, &cudev) != FAT_OK) { fprintf(stderr, "%s\n", fat_last_error()); return 1; }
    gen *g;
    if (gen_open(&g) != FAT_OK) { fprintf(stderr, "%s\n", gen_errmsg(g)); return 1; }
    printf("gpu: %s (%s), %d cases\n", dev.name, dev.arch, ncases);
    time_t t0 = time(NULL);
    int nf;
    const char *const *fams = gen_families(&nf);
    int variants_run = 0;
    /* per family: how many variants ran, and why the first case refused it (a skip when none ran) */
    int ran[GEN_MAX_FAMILIES] = { 0 };
    char why_not[GEN_MAX_FAMILIES][256];
    memset(why_not, 0, sizeof why_not);

    for (int ci = 0; ci < ncases; ci++) {
        const tcase *tc = &cases[ci];
        if (case_has && !name_has_one(tc->name, case_has)) continue;
        bench_case *c;
        if (bench_case_new(&tc->p, &tc->lay, 1000 + (uint64_t)ci * 7919 + (uint64_t)time(NULL), &c) != FAT_OK) {
            CHECK(tc->name, 0);
            fprintf(stderr, "  cannot set up: %s\n", fat_last_error());
            continue;
        }
        float *ref = malloc(c->o_elems * sizeof *ref), *lref = malloc(c->lse_elems * sizeof *lref);
        float *o = malloc(c->o_elems * sizeof *o), *lse = malloc(c->lse_elems * sizeof *lse);
        if (bench_cpu_reference(c, ref, lref) != FAT_OK) { CHECK(tc->name, 0); fprintf(stderr, "%s\n", fat_last_error()); }
        for (int f = 0; f < nf; f++) {
            if (!gen_family_selected(only, fams[f])) continue;
            gen_choice *ch;
            int nch;
            if (gen_enumerate(g, fams[f], &tc->p, &dev, &ch, &nch) != FAT_OK) {
                CHECK("enumerate", 0);
                fprintf(stderr, "  %s\n", gen_errmsg(g));
                continue;
            }
            /* Emit every valid variant, compile the new ones together. */
            gen_variant *vs = calloc((size_t)nch, sizeof *vs);
            pool_job *jobs = calloc((size_t)nch, sizeof *jobs);
            int nv = 0, nj = 0;
            for (int i = 0; i < nch; i++) {
                if (!ch[i].ok) {
                    if (!why_not[f][0] && ch[i].reason) snprintf(why_not[f], sizeof why_not[f], "%s", ch[i].reason);
                    continue;
                }
                if (variant_has && !strstr(ch[i].canon, variant_has)) continue;
                if (quick && nv >= 2) break;
                if (gen_emit(g, fams[f], ch[i].canon, &tc->p, &dev, &vs[nv]) != FAT_OK) {
                    CHECK("emit", 0);
                    fprintf(stderr, "  %s\n", gen_errmsg(g));
                    continue;
                }
                XXH128_hash_t h = kernel_key(&vs[nv]);
                int queued = 0;
                for (int j = 0; j < nj; j++)
                    queued |= strcmp(jobs[j].source, vs[nv].source) == 0 && strcmp(jobs[j].arch, vs[nv].launch.target) == 0;
                if (!lookup(h) && !queued) {
                    jobs[nj].source = vs[nv].source;
                    jobs[nj].name = vs[nv].tmpl;
                    jobs[nj].arch = vs[nv].launch.target;
                    nj++;
                }
                nv++;
            }
            pool_compile(jobs, nj, 0);
            cache = realloc(cache, (size_t)(ncache + nj) * sizeof *cache);
            for (int j = 0; j < nj; j++) {
                cached *k = &cache[ncache++];
                gen_variant jv = { .source = (char *)jobs[j].source };
                snprintf(jv.launch.target, sizeof jv.launch.target, "%s", jobs[j].arch);
                k->h = kernel_key(&jv);
                k->ok = jobs[j].st == FAT_OK;
                k->cubin = jobs[j].res.image;
                k->log = jobs[j].res.log;
                jobs[j].res.image = NULL;
                jobs[j].res.log = NULL;
            }
            for (int i = 0; i < nv; i++) {
                gen_variant *v = &vs[i];
                char descr[256];
                snprintf(descr, sizeof descr, "%s %s on %s", v->tmpl, v->canon, tc->name);
                cached *k = lookup(kernel_key(v));
                if (!k || !k->ok) {
                    CHECK(descr, 0);
                    fprintf(stderr, "  compile error:\n%.1500s\n", k ? k->log : "?");
                    continue;
                }
                launch_fn kern;
                if (launch_load(k->cubin, v->launch.entry, &kern) != FAT_OK || launch_prepare(&kern, &v->launch) != FAT_OK) {
                    CHECK(descr, 0);
                    fprintf(stderr, "  cannot load: %s\n", fat_last_error());
                    launch_unload(&kern);
                    continue;
                }
                int guards = 0;
                fat_status st = bench_poison(c);
                if (st == FAT_OK) st = bench_launch(c, &kern, &v->launch, NULL);
                if (st == FAT_OK) st = bench_fetch(c, o, lse, &guards);
                launch_unload(&kern);
                if (st != FAT_OK) {
                    CHECK(descr, 0);
                    fprintf(stderr, "  launch failed: %s (the context is lost; stopping)\n", fat_last_error());
                    goto done;
                }
                bench_err e;
                bench_compare(c, o, ref, tc->lay.with_lse ? lse : NULL, lref, &e);
                int ok = guards && e.nonfinite == 0 && e.lse_bad == 0 && e.rel_l2 <= tolerance(tc->p.dtype);
                variants_run++;
                ran[f]++;
                if (ok) { test_passed++; if (test_verbose) printf("ok   %s: rel %.2e\n", descr, e.rel_l2); }
                else {
                    test_failed++;
                    fprintf(stderr, "FAIL %s: rel L2 %.3g (tol %.3g), max abs %.3g, %ld non-finite, %ld bad LSE, guards %s\n",
                            descr, e.rel_l2, tolerance(tc->p.dtype), e.max_abs, e.nonfinite, e.lse_bad, guards ? "intact" : "CHANGED");
                }
            }
            for (int i = 0; i < nv; i++) gen_variant_free(&vs[i]);
            for (int j = 0; j < nj; j++) rtc_result_free(&jobs[j].res);
            free(vs);
            free(jobs);
            gen_choices_free(ch, nch);
        }
        free(ref); free(lref); free(o); free(lse);
        bench_case_free(c);
    }
    for (int f = 0; f < nf; f++) {
        if (!gen_family_selected(only, fams[f]) || ran[f]) continue;
        char what[256];
        snprintf(what, sizeof what, "%s on %s", fams[f], dev.name);
        SKIP(what, why_not[f][0] ? why_not[f] : "no valid variant for any case");
    }
done:
    printf("gpu: %d variant runs in %ld s\n", variants_run, (long)(time(NULL) - t0));
    gen_close(g);
    return test_done("gpu");
}
