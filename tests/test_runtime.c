/*
 * test_runtime.c: the runtime library without a GPU. The lookup order as a pure function (each
 * level chosen when it should be, log-space distance, the device's most frequent winner, the
 * default); the whole lookup through a tuned database in a context opened offline (rows of other
 * GPUs ignored, cubins of another architecture refused, neighbours' configurations that do not
 * apply, workspace families launched, flash_v2's built-in defaults); fat_open on a machine without
 * a GPU; opening refused for an unknown architecture or an unreadable database; the argument checks
 * a caller sees, with nothing resolved or launched.
 */
#define _POSIX_C_SOURCE 200809L

#include "ctx.h"
#include "db.h"
#include "dispatch.h"
#include "gen.h"
#include "launch.h"
#include "status.h"
#include "rtc.h"
#include "cu.h"
#include "test.h"
#include "tuned_db.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define A_CFG "block_m=128,block_n=64,q_in_regs=0,stages=2,warps=4"
#define B_CFG "block_m=64,block_n=64,q_in_regs=0,stages=2,warps=4"
#define C_CFG "block_m=128,block_n=128,q_in_regs=0,stages=2,warps=8"

static fat_problem prob(fat_dtype dt, int d, int causal, unsigned feat, int b, int hq, int hk, int sq, int sk) {
    fat_problem p = { dt, d, causal, feat, b, hq, hk, sq, sk };
    return p;
}

static dispatch_row row(fat_problem p, const char *family, const char *params) {
    dispatch_row r;
    memset(&r, 0, sizeof r);
    r.prob = p;
    snprintf(r.family, sizeof r.family, "%s", family);
    snprintf(r.params, sizeof r.params, "%s", params);
    r.median_ms = 1.0;
    return r;
}

static int not_v1(const dispatch_row *r, void *ud) {
    (void)ud;
    return strcmp(r->family, "flash_v1") != 0;
}

/* ---------------------------------------------------------------------------------------------
 * The lookup order as a pure function. */

static void test_dispatch(void) {
    dispatch_row rows[] = {
        row(prob(FAT_BF16, 128, 1, 0, 1, 16, 16, 1024, 1024), "flash_v2", "A"),    /* 0 */
        row(prob(FAT_BF16, 128, 1, 0, 8, 32, 32, 2000, 2000), "flash_v2", "B"),    /* 1: same bucket as 0 */
        row(prob(FAT_BF16, 128, 0, 0, 1, 16, 16, 1000, 1000), "flash_v2", "C"),    /* 2 */
        row(prob(FAT_BF16, 128, 0, 0, 1, 16, 16, 3000, 3000), "flash_v2", "D"),    /* 3 */
        row(prob(FAT_BF16, 128, 0, 0, 2, 16, 16, 300, 300), "flash_v2", "C"),      /* 4 */
        row(prob(FAT_FP16, 64, 0, 0, 1, 8, 8, 512, 512), "flash_v1", "V1"),        /* 5: not deployable */
        row(prob(FAT_FP16, 64, 1, 0, 1, 8, 8, 512, 512), "flash_v2", "E"),         /* 6 */
    };
    int n = (int)(sizeof rows / sizeof rows[0]), r = -2;
    fat_problem p;

    p = rows[0].prob;
    CHECK_INT("a tuned problem is found exactly", dispatch_choose(rows, n, &p, 16, not_v1, NULL, &r), FAT_LEVEL_EXACT);
    CHECK_INT("  and its row", r, 0);

    p = prob(FAT_BF16, 128, 1, 0, 2, 16, 16, 1500, 1500);
    CHECK_INT("seqlens in the same powers of two: bucket", dispatch_choose(rows, n, &p, 16, not_v1, NULL, &r), FAT_LEVEL_BUCKET);
    CHECK_INT("  the nearer of the bucket's rows (batch x heads 32 vs 256)", r, 0);
    p = prob(FAT_BF16, 128, 1, 0, 8, 32, 32, 1900, 1900);
    dispatch_choose(rows, n, &p, 16, not_v1, NULL, &r);
    CHECK_INT("  another problem of the bucket takes the other row", r, 1);

    /* 1800 lies in neither row's bucket; linearly it is nearer 1000 (800 vs 1200), in log space
     * nearer 3000 (ln 1.8 = 0.59 vs ln 1.67 = 0.51). */
    p = prob(FAT_BF16, 128, 0, 0, 1, 16, 16, 1800, 1800);
    CHECK_INT("no row in the bucket: nearest", dispatch_choose(rows, n, &p, 16, not_v1, NULL, &r), FAT_LEVEL_NEAREST);
    CHECK_INT("  nearest in log space, not linearly", r, 3);
    p = prob(FAT_BF16, 128, 0, 0, 1, 16, 16, 200, 200);
    dispatch_choose(rows, n, &p, 16, not_v1, NULL, &r);
    CHECK_INT("  a short problem takes the short row", r, 4);

    /* Another kind (window) at bf16 d128: the configuration that won most often there is C (twice). */
    p = prob(FAT_BF16, 128, 0, FAT_FEAT_WINDOW, 1, 16, 16, 1024, 1024);
    CHECK_INT("no row of the kind: the device's most frequent winner", dispatch_choose(rows, n, &p, 16, not_v1, NULL, &r), FAT_LEVEL_DEVICE);
    CHECK(  "  is C", r >= 0 && strcmp(rows[r].params, "C") == 0);

    p = prob(FAT_FP16, 256, 0, 0, 1, 8, 8, 512, 512);
    CHECK_INT("nothing at this dtype and head_dim: the default", dispatch_choose(rows, n, &p, 16, not_v1, NULL, &r), FAT_LEVEL_DEFAULT);
    CHECK_INT("  and no row", r, -1);

    p = rows[5].prob;
    CHECK_INT("a row the filter refuses is never chosen, even exactly", dispatch_choose(rows, n, &p, 16, not_v1, NULL, &r), FAT_LEVEL_DEVICE);
    CHECK(  "  the deployable row of that dtype and head_dim instead", r == 6);
    CHECK_INT("without a filter it is exact", dispatch_choose(rows, n, &p, 16, NULL, NULL, &r), FAT_LEVEL_EXACT);
    CHECK_INT("no rows at all: the default", dispatch_choose(NULL, 0, &p, 16, NULL, NULL, &r), FAT_LEVEL_DEFAULT);

    /* The decoding regime (at most 16 query rows per KV head) is never crossed: by distance alone
     * the 16-row step below is nearer the 17-row prefill row (2.8) than the decode row (5.6). */
    const dispatch_row regime[] = {
        row(prob(FAT_BF16, 128, 0, 0, 1, 16, 16, 17, 1000), "flash_v2", "P"),
        row(prob(FAT_BF16, 128, 0, 0, 4, 32, 8, 1, 65536), "decode", "D"),
    };
    p = prob(FAT_BF16, 128, 0, 0, 4, 32, 8, 4, 1000);
    CHECK_INT("a decoding step (16 rows per KV head) takes the nearest decoding row", dispatch_choose(regime, 2, &p, 16, NULL, NULL, &r), FAT_LEVEL_NEAREST);
    CHECK_INT("  the decode row, not the nearer prefill row", r, 1);
    CHECK_INT("  with only prefill rows: the default, not a prefill row", dispatch_choose(regime, 1, &p, 16, NULL, NULL, &r), FAT_LEVEL_DEFAULT);
    p = prob(FAT_BF16, 128, 0, 0, 4, 32, 8, 5, 1000);
    CHECK_INT("20 rows per KV head is prefill: the prefill row", dispatch_choose(regime, 2, &p, 16, NULL, NULL, &r), FAT_LEVEL_NEAREST);
    CHECK_INT("  row", r, 0);
    CHECK_INT("  with only decoding rows: the default", dispatch_choose(regime + 1, 1, &p, 16, NULL, NULL, &r), FAT_LEVEL_DEFAULT);

    /* A decoding row fixes the split count of a grid of batch x heads_kv CTAs: another decoding step
     * takes it only at the same batch x heads_kv, and never as the device's winner. */
    const dispatch_row dec[] = {
        row(prob(FAT_BF16, 128, 0, 0, 16, 32, 8, 1, 65536), "decode", "S1"),
        row(prob(FAT_BF16, 128, 0, 0, 1, 32, 8, 1, 4096), "decode", "S8"),
    };
    p = prob(FAT_BF16, 128, 0, 0, 2, 32, 8, 1, 65536);
    CHECK_INT("a decoding step of 16 sequence-heads, rows of 128 and 8: the default", dispatch_choose(dec, 2, &p, 16, NULL, NULL, &r), FAT_LEVEL_DEFAULT);
    CHECK_INT("  and no row", r, -1);
    p = prob(FAT_BF16, 128, 0, 0, 16, 32, 8, 1, 100000);
    CHECK_INT("the same sequence-heads, seqlen_k in the row's power of two: bucket", dispatch_choose(dec, 2, &p, 16, NULL, NULL, &r), FAT_LEVEL_BUCKET);
    CHECK_INT("  row", r, 0);
    p = prob(FAT_BF16, 128, 0, 0, 1, 32, 8, 1, 1000);
    CHECK_INT("  another length: the nearest of the same sequence-heads", dispatch_choose(dec, 2, &p, 16, NULL, NULL, &r), FAT_LEVEL_NEAREST);
    CHECK_INT("  row", r, 1);
    p = prob(FAT_BF16, 128, 0, 0, 2, 64, 4, 1, 4096);
    CHECK_INT("  8 sequence-heads of another GQA group (16): the 8-sequence-head row", dispatch_choose(dec, 2, &p, 16, NULL, NULL, &r), FAT_LEVEL_BUCKET);
    CHECK_INT("  row", r, 1);
    p = prob(FAT_BF16, 128, 0, FAT_FEAT_CACHE | FAT_FEAT_PAGED | (16u << FAT_FEAT_PAGE_SHIFT), 16, 32, 8, 1, 65536);
    CHECK_INT("a paged decoding step with only contiguous rows: the default, not the device's winner", dispatch_choose(dec, 2, &p, 16, NULL, NULL, &r), FAT_LEVEL_DEFAULT);

    CHECK(  "level names", strcmp(fat_level_name(FAT_LEVEL_EXACT), "exact") == 0 &&
            strcmp(fat_level_name(FAT_LEVEL_NEAREST), "nearest") == 0 && strcmp(fat_level_name(FAT_LEVEL_DEFAULT), "default") == 0 &&
            strcmp(fat_level_name((fat_level)9), "?") == 0);
}

/* The runtime's check of a call skips what the thread's last good call already checked: only a
 * call equal to it in everything but its pointers; a bad pointer or any other change is caught. */
static void test_check_shortcut(void) {
    fat_attn_args a;
    fat_attn_args_init(&a, FAT_BF16, 2, 8, 2, 300, 1000, 64);
    a.q = (void *)0x10000; a.k = (void *)0x20000; a.v = (void *)0x30000; a.o = (void *)0x40000;
    CHECK_INT("a good call passes", args_check_gpu(&a), FAT_OK);
    a.q = (void *)0x50000;
    CHECK_INT("the same call on other tensors passes", args_check_gpu(&a), FAT_OK);
    a.k = (void *)0x20008;
    CHECK_INT("a misaligned pointer is caught after a good call", args_check_gpu(&a), FAT_ERR_INVALID);
    CHECK_STR_HAS("  naming it", fat_last_error(), "k: pointer");
    a.k = NULL;
    CHECK_INT("a NULL pointer too", args_check_gpu(&a), FAT_ERR_INVALID);
    a.k = (void *)0x20000;
    a.o_stride[1] = 0;
    CHECK_INT("a bad stride after a good call is caught", args_check_gpu(&a), FAT_ERR_INVALID);
    CHECK_STR_HAS("  naming it", fat_last_error(), "o_stride[1]");
    fat_attn_args_init(&a, FAT_BF16, 2, 8, 2, 300, 1000, 64);
    a.q = (void *)0x10000; a.k = (void *)0x20000; a.v = (void *)0x30000; a.o = (void *)0x40000;
    CHECK_INT("the good call again", args_check_gpu(&a), FAT_OK);
    a.lse = (float *)0x60000;
    a.batch = 1 << 30; a.seqlen_q = 1 << 30;
    CHECK_INT("an lse that appears with absurd sizes is checked in full", args_check_gpu(&a), FAT_ERR_INVALID);
}

static void test_call_problem(void) {
    fat_attn_args a;
    fat_problem p;
    static const int32_t offs[3] = { 0, 100, 300 };
    fat_attn_args_init(&a, FAT_BF16, 2, 8, 2, 300, 1, 64);
    dispatch_problem(&a, &p);
    CHECK("plain call: no features", p.features == 0 && p.seqlen_q == 300 && p.seqlen_k == 1 && p.heads_kv == 2);
    a.window_left = 5;
    dispatch_problem(&a, &p);
    CHECK("window_left switches the window kernel on", p.features == FAT_FEAT_WINDOW);
    a.window_left = -1; a.causal = 1; a.window_right = 3;
    dispatch_problem(&a, &p);
    CHECK("causal with only a right bound is the causal kernel", p.features == 0 && p.causal == 1);
    a.causal = 0;
    dispatch_problem(&a, &p);
    CHECK("a right bound without causal is a window", p.features == FAT_FEAT_WINDOW);
    a.window_right = -1; a.softcap = 30;
    dispatch_problem(&a, &p);
    CHECK("softcap", p.features == FAT_FEAT_SOFTCAP);
    a.softcap = 0; a.cu_seqlens_q = offs; a.cu_seqlens_k = offs;
    ctx_call_problem(&a, &p);
    CHECK("varlen: the bounds rounded up to powers of two (300 -> 512, 1 -> 1)",
          p.features == FAT_FEAT_VARLEN && p.seqlen_q == 512 && p.seqlen_k == 1 && p.batch == 2);
    /* a KV cache: a paged cache of 256-key pages keys by its page size, per-call key counts by
     * powers of two, an append by its own bit */
    {
        fat_attn_args c;
        static const int32_t lens[2] = { 700, 3000 }, table[2 * 16] = { 0 };
        fat_attn_args_init(&c, FAT_BF16, 2, 32, 8, 1, 3000, 128);
        c.cache_seqlens = lens; c.block_table = table; c.block_table_stride = 16; c.page_size = 256; c.num_pages = 32;
        ctx_call_problem(&c, &p);
        CHECK("a paged cache: paged, its page size, per-sequence lengths; 3000 keys -> 4096",
              p.features == (FAT_FEAT_PAGED | FAT_FEAT_CACHE | (256u << FAT_FEAT_PAGE_SHIFT)) &&
              FAT_FEAT_PAGE_SIZE(p.features) == 256 && p.seqlen_k == 4096 && p.seqlen_q == 1);
        c.page_size = 16;
        dispatch_problem(&c, &p);
        CHECK("  another page size is another problem", FAT_FEAT_PAGE_SIZE(p.features) == 16);
        c.block_table = NULL;
        c.k_new = c.v_new = (const void *)table;
        dispatch_problem(&c, &p);
        CHECK("a contiguous cache with an append", p.features == (FAT_FEAT_CACHE | FAT_FEAT_APPEND));
        c.seqlen_q = 3;
        ctx_call_problem(&c, &p);
        CHECK("  its query rows (the new tokens) key exactly: 3 stays 3", p.seqlen_q == 3 && p.seqlen_k == 4096);
    }
    /* a varlen decoding step (one new token per sequence, 4 query heads per KV head) stays one */
    fat_attn_args_init(&a, FAT_BF16, 3, 8, 2, 1, 5000, 128);
    a.cu_seqlens_q = offs; a.cu_seqlens_k = offs;
    ctx_call_problem(&a, &p);
    CHECK("varlen decoding step: seqlen_q 1 stays 1 (8192 keys)", p.seqlen_q == 1 && p.seqlen_k == 8192 && dispatch_decoding(&p, 16));
    a.seqlen_q = 3;
    ctx_call_problem(&a, &p);
    CHECK("  3 new tokens: 4, still a decoding step (16 rows)", p.seqlen_q == 4 && dispatch_decoding(&p, 16));

    /* window bounds past every key are clamped, so that the kernels' int arithmetic cannot wrap */
    fat_kparams kp;
    fat_attn_args_init(&a, FAT_BF16, 2, 8, 2, 300, 1000, 64);
    a.window_left = INT32_MAX; a.window_right = INT32_MAX;
    launch_params(&a, NULL, &kp);
    CHECK_INT("a huge window_left is clamped to seqlen_q + seqlen_k", kp.window_left, 1300);
    CHECK_INT("a huge window_right too", kp.window_right, 1300);
    a.window_left = 64; a.window_right = -1;
    launch_params(&a, NULL, &kp);
    CHECK("a window inside the span is kept, -1 stays -1", kp.window_left == 64 && kp.window_right == -1);
    a.causal = 1; a.window_right = INT32_MAX;
    launch_params(&a, NULL, &kp);
    CHECK_INT("causal keeps right = 0", kp.window_right, 0);
}

/* ---------------------------------------------------------------------------------------------
 * No GPU. */

static void test_no_gpu(void) {
    fat_ctx *ctx = (fat_ctx *)1;
    int n = 0;
    fat_status st;
    if (cu_device_count(&n) != FAT_OK || n == 0) {
        st = fat_open(NULL, 0, &ctx);
        CHECK_INT("fat_open without a GPU: FAT_ERR_NO_GPU", st, FAT_ERR_NO_GPU);
        CHECK(  "  and no context", ctx == NULL);
        CHECK_STR_HAS("  the message says so", fat_errmsg(NULL), "no GPU");
        CHECK_STR_HAS("  fat_strerror names the code", fat_strerror(st), "no GPU");
    } else {
        SKIP("fat_open without a GPU", "this machine has one");
        SKIP("  and no context", "this machine has a GPU");
        SKIP("  the message says so", "this machine has a GPU");
        SKIP("  fat_strerror", "this machine has a GPU");
    }
    ctx = (fat_ctx *)1;
    st = fat_open(NULL, 4242, &ctx);
    CHECK_INT("fat_open of GPU 4242: FAT_ERR_NO_GPU", st, FAT_ERR_NO_GPU);
    CHECK(  "  and no context", ctx == NULL);
    CHECK_STR_HAS("  the message says no GPU", fat_errmsg(NULL), "no GPU");
    CHECK_INT("fat_open with nowhere to put the context", fat_open(NULL, 0, NULL), FAT_ERR_INVALID);
    CHECK_STR_HAS("  names ctx", fat_errmsg(NULL), "ctx");
    fat_close(NULL);
    CHECK("fat_close(NULL) is fine", 1);
    fat_attn_args a;
    fat_attn_args_init(&a, FAT_BF16, 1, 1, 1, 1, 1, 64);
    CHECK_INT("fat_attn_fwd without a context", fat_attn_fwd(NULL, &a, NULL), FAT_ERR_INVALID);
    CHECK_STR_HAS("  names ctx", fat_errmsg(NULL), "ctx");
    fat_set_log(NULL, NULL, NULL);
    fat_stats s;
    CHECK_INT("fat_ctx_stats(NULL)", fat_ctx_stats(NULL, &s), FAT_ERR_INVALID);
}

/* ---------------------------------------------------------------------------------------------
 * A context over a tuned database, without a GPU. */

static char tmpdir[] = "/tmp/fatune-test-runtime-XXXXXX";
static char logbuf[1 << 16];

static void collect(void *user, const char *msg) {
    (void)user;
    size_t n = strlen(logbuf);
    snprintf(logbuf + n, sizeof logbuf - n, "%s\n", msg);
}

/* fat_query on a call of problem p (16-byte aligned fake pointers: nothing is read offline). */
/* A call of problem p (fake device pointers: offline contexts never touch them). */
static fat_attn_args args_of(const fat_problem *p) {
    static const int32_t offs[2] = { 0, 1 };
    fat_attn_args a;
    fat_attn_args_init(&a, p->dtype, p->batch, p->heads_q, p->heads_kv, p->seqlen_q, p->seqlen_k, p->head_dim);
    a.q = a.k = a.v = (void *)(uintptr_t)0x10000;
    a.o = (void *)(uintptr_t)0x20000;
    a.causal = p->causal;
    if (p->features & FAT_FEAT_WINDOW) a.window_left = 64;
    if (p->features & FAT_FEAT_SOFTCAP) a.softcap = 30;
    if (p->features & FAT_FEAT_VARLEN) { a.cu_seqlens_q = offs; a.cu_seqlens_k = offs; }
    return a;
}

static fat_status query(fat_ctx *ctx, const fat_problem *p, fat_choice *c) {
    fat_attn_args a = args_of(p);
    memset(c, 0, sizeof *c);
    return fat_query(ctx, &a, c);
}

static void test_tuned_db(void) {
    char path[512], hash[33], other_hash[33];
    db *d = NULL;
    gen *g = NULL;
    gen_device dev, dev80;
    char err[512];
    fat_choice c;
    fat_ctx *ctx = NULL;
    static const char fake_cubin[] = "not a cubin: an offline context never loads it";
    const db_device here = { "Test GPU", 90, 132, 50 << 20, 232448, 12080, 12080 };
    const db_device other = { "Other GPU", 80, 108, 40 << 20, 166912, 12080, 12080 };
    const db_device same_name_other_cc = { "Test GPU", 89, 128, 72 << 20, 101376, 12080, 12080 };

    snprintf(path, sizeof path, "%s/tuned.db", tmpdir);
    gen_device_for_arch("sm_90", &dev);
    snprintf(dev.name, sizeof dev.name, "Test GPU");
    gen_device_for_arch("sm_80", &dev80);
    snprintf(dev80.name, sizeof dev80.name, "Other GPU");
    if (gen_open(&g) != FAT_OK || db_open(path, DB_CREATE, &d, err, sizeof err) != FAT_OK) {
        CHECK("test database set up", 0);
        fprintf(stderr, "%s %s\n", gen_errmsg(g), err);
        gen_close(g);
        return;
    }
    fat_problem exact = prob(FAT_BF16, 128, 1, 0, 2, 16, 4, 4096, 4096);
    fat_problem near1 = prob(FAT_BF16, 128, 0, 0, 1, 16, 16, 1000, 1000);
    fat_problem near2 = prob(FAT_BF16, 128, 0, 0, 1, 16, 16, 3000, 3000);
    fat_problem win = prob(FAT_FP16, 64, 0, FAT_FEAT_WINDOW, 1, 8, 8, 2048, 2048);
    fat_problem stale = prob(FAT_FP16, 96, 1, 0, 1, 8, 8, 1024, 1024);
    fat_problem v1 = prob(FAT_FP16, 64, 1, 0, 1, 8, 8, 1024, 1024);
    fat_problem elsewhere = prob(FAT_FP16, 128, 0, 0, 4, 32, 8, 512, 512);
    fat_problem wrong_arch = prob(FAT_BF16, 40, 0, 0, 1, 8, 8, 512, 512);   /* d40: flash_v2's default */
    char v1_params[160] = "";
    int ok = 1;
    ok &= tdb_add(d, g, &dev, &here, &exact, "flash_v2", A_CFG, 0.5, fake_cubin, sizeof fake_cubin, "sm_90", 0, hash) == FAT_OK;
    ok &= tdb_add(d, g, &dev, &here, &near1, "flash_v2", B_CFG, 0.2, NULL, 0, NULL, 0, NULL) == FAT_OK;
    ok &= tdb_add(d, g, &dev, &here, &near2, "flash_v2", A_CFG, 1.1, NULL, 0, NULL, 0, NULL) == FAT_OK;
    ok &= tdb_add(d, g, &dev, &here, &win, "flash_v2", C_CFG, 0.3, NULL, 0, NULL, 0, NULL) == FAT_OK;
    ok &= tdb_add(d, g, &dev, &here, &stale, "flash_v2", B_CFG, 0.3, NULL, 0, NULL, 1, NULL) == FAT_OK;
    ok &= gen_default(g, "flash_v1", &v1, &dev, v1_params, sizeof v1_params) == FAT_OK;
    ok &= tdb_add(d, g, &dev, &here, &v1, "flash_v1", v1_params, 0.1, NULL, 0, NULL, 0, NULL) == FAT_OK;
    /* The same problem tuned on another GPU model, and on one with the same name but another cc. */
    ok &= tdb_add(d, g, &dev80, &other, &elsewhere, "flash_v2", C_CFG, 0.4, NULL, 0, NULL, 0, NULL) == FAT_OK;
    ok &= tdb_add(d, g, &dev80, &same_name_other_cc, &elsewhere, "flash_v2", B_CFG, 0.4, NULL, 0, NULL, 0, NULL) == FAT_OK;
    /* A cubin for sm_80 stored under the hash this device looks its default for wrong_arch up by:
     * only a broken file does that, and the runtime must still not take it. */
    ok &= tdb_add(d, g, &dev80, &other, &wrong_arch, "flash_v2", B_CFG, 0.4, fake_cubin, sizeof fake_cubin, "sm_80", 0, other_hash) == FAT_OK;
    CHECK("test database written", ok);
    {
        /* rewrite the sm_80 kernel under the sm_90 hash of the same source */
        gen_variant v;
        memset(&v, 0, sizeof v);
        char h90[33], def[160];
        if (gen_default(g, "flash_v2", &wrong_arch, &dev, def, sizeof def) == FAT_OK &&
            gen_emit(g, "flash_v2", def, &wrong_arch, &dev, &v) == FAT_OK) {
            rtc_kernel_hash(v.source, "sm_90", 12080, h90);
            db_kernel k = { .cubin = fake_cubin, .cubin_size = sizeof fake_cubin, .compile_ms = 1 };
            snprintf(k.hash, sizeof k.hash, "%s", h90);
            snprintf(k.arch, sizeof k.arch, "sm_80");
            CHECK_INT("a kernel of the wrong arch planted", db_kernel_put(d, &k), FAT_OK);
        }
        gen_variant_free(&v);
    }
    db_close(d);

    CHECK_INT("an offline context opens the database", ctx_open_offline(path, &dev, &ctx), FAT_OK);
    if (!ctx) { gen_close(g); return; }
    logbuf[0] = 0;
    fat_set_log(ctx, collect, NULL);
    CHECK_STR_HAS("setting a log sends the summary of the open", logbuf, "6 tuned problems");
    CHECK_STR_HAS("  and says some rows are of another template version", logbuf, "another version");
    fat_stats s;
    fat_ctx_stats(ctx, &s);
    CHECK_INT("this GPU's rows only (6 of 9)", s.tuned_rows, 6);

    CHECK_INT("query of a tuned problem", query(ctx, &exact, &c), FAT_OK);
    CHECK_INT("  exact", c.level, FAT_LEVEL_EXACT);
    CHECK(  "  with the tuned configuration", strcmp(c.family, "flash_v2") == 0 && strcmp(c.params, A_CFG) == 0);
    CHECK(  "  its tuned time and problem", c.tuned_ms == 0.5 && c.tuned.seqlen_q == 4096);
    CHECK(  "  and the cubin from the database", strcmp(c.cubin, "database") == 0);
    CHECK_STR_HAS("  the log says which level and cubin", logbuf, "exact -> flash_v2 " A_CFG ", cubin database");

    fat_problem p = exact;
    p.seqlen_q = p.seqlen_k = 5000;
    query(ctx, &p, &c);
    CHECK(  "same kind, seqlens in the bucket: bucket, the same configuration and cubin",
            c.level == FAT_LEVEL_BUCKET && strcmp(c.params, A_CFG) == 0 && strcmp(c.cubin, "database") == 0);

    p = prob(FAT_BF16, 128, 0, 0, 1, 16, 16, 1800, 1800);
    query(ctx, &p, &c);
    CHECK(  "between two tuned problems: nearest in log space", c.level == FAT_LEVEL_NEAREST && strcmp(c.params, A_CFG) == 0);
    CHECK(  "  a configuration without a stored cubin would be compiled", strcmp(c.cubin, "none") == 0);

    /* The nearest row (1000) has 2 stages, but 40 keys fill one 64-key tile. */
    p = prob(FAT_BF16, 128, 0, 0, 1, 16, 16, 40, 40);
    query(ctx, &p, &c);
    {
        char def[256];
        const char *fam = "";
        gen_builtin_default(g, &p, &dev, &fam, def, sizeof def);
        CHECK(  "a neighbour's configuration that does not apply here: the default",
                c.level == FAT_LEVEL_DEFAULT && strcmp(c.family, fam) == 0 && strcmp(c.params, def) == 0);
    }
    CHECK_STR_HAS("  the log says why", logbuf, "from the nearest row does not apply");

    p = prob(FAT_BF16, 128, 1, FAT_FEAT_SOFTCAP, 1, 16, 16, 1024, 1024);
    query(ctx, &p, &c);
    CHECK(  "a kind never tuned at bf16 d128: the device's most frequent winner",
            c.level == FAT_LEVEL_DEVICE && strcmp(c.params, A_CFG) == 0);

    query(ctx, &stale, &c);
    CHECK(  "a row of an older template version still gives its configuration",
            c.level == FAT_LEVEL_EXACT && strcmp(c.params, B_CFG) == 0);

    query(ctx, &v1, &c);
    CHECK(  "a tuned family that needs a workspace is launched too (scratch per stream)",
            strcmp(c.family, "flash_v1") == 0 && c.level == FAT_LEVEL_EXACT);

    query(ctx, &elsewhere, &c);
    CHECK(  "a problem tuned only on other GPU models: the default", c.level == FAT_LEVEL_DEFAULT);

    query(ctx, &wrong_arch, &c);
    CHECK(  "a cubin built for another arch is not used", strcmp(c.cubin, "none") == 0);
    CHECK_STR_HAS("  the log says so", logbuf, "is built for sm_80, which does not run on sm_90");

    p = prob(FAT_FP16, 256, 1, 0, 1, 8, 8, 4096, 4096);
    query(ctx, &p, &c);
    CHECK(  "nothing tuned at fp16 d256: the built-in default", c.level == FAT_LEVEL_DEFAULT && c.tuned_ms == 0);
    CHECK(  "  flash_hopper's on sm_90, 128x80 tiles", strcmp(c.family, "flash_hopper") == 0 &&
            strstr(c.params, "block_m=128,block_n=80") != NULL);

    fat_ctx_stats(ctx, &s);
    int shapes = s.shapes;
    CHECK_INT("every query shape resolved once", shapes, 10);
    query(ctx, &exact, &c);
    fat_ctx_stats(ctx, &s);
    CHECK_INT("  a shape seen before is not resolved again", s.shapes, shapes);
    CHECK(  "  nothing loaded or compiled offline", s.kernels == 0 && s.compiled == 0);

    fat_attn_args a;
    fat_attn_args_init(&a, FAT_BF16, 2, 16, 4, 4096, 4096, 128);
    a.q = a.k = a.v = a.o = (void *)(uintptr_t)0x10000;
    a.causal = 1;
    CHECK_INT("fat_attn_fwd on an offline context: FAT_ERR_NO_GPU", fat_attn_fwd(ctx, &a, NULL), FAT_ERR_NO_GPU);

    /* Argument checks: FAT_ERR_INVALID naming the field, nothing resolved. */
    struct { const char *descr, *want; int field; long long value; } bad[] = {
        { "NULL q", "q: NULL pointer", 0, 0 },
        { "misaligned k", "k: pointer", 1, 0x10008 },
        { "head_dim 100", "head_dim: 100 is not a multiple of 8", 2, 100 },
        { "head_dim 264", "head_dim: 264 is above 256", 2, 264 },
        { "heads 6 / 4", "heads_q: 6 is not a multiple of heads_kv 4", 3, 6 },
        { "a row stride that is not a multiple of 8", "q_stride[1]", 4, 132 },
        { "strides whose last element overflows", "k_stride: the offset of the last element of k overflows", 5, 1LL << 62 },
        { "batch 70000", "batch: 70000 is above 65535", 6, 70000 },
        { "NaN scale", "scale: must be finite", 7, 0 },
        { "window -2", "window_left: -2 is below -1", 8, -2 },
        { "varlen with lse and no total_q", "total_q", 9, 0 },
        { "fp32 on the GPU", "dtype: fp32 is CPU-only", 10, 0 },
        { "negative softcap", "softcap: must be >= 0", 11, 0 },
        { "zero output stride", "o_stride[1]: 0", 12, 0 },
        { "varlen with a negative total_k", "total_k: -3 is negative", 13, -3 },
        { "negative scale", "scale: -0.5 is negative", 14, 0 },
    };
    static const int32_t offs[3] = { 0, 5, 9 };
    static float lse[64];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fat_attn_args b = a;
        switch (bad[i].field) {
        case 0: b.q = NULL; break;
        case 1: b.k = (void *)(uintptr_t)bad[i].value; break;
        case 2: b.head_dim = (int)bad[i].value; break;
        case 3: b.heads_q = (int)bad[i].value; break;
        case 4: b.q_stride[1] = bad[i].value; break;
        case 5: b.k_stride[0] = bad[i].value; break;
        case 6: b.batch = (int)bad[i].value; b.q_stride[0] = b.k_stride[0] = b.v_stride[0] = b.o_stride[0] = 0;
                b.o_stride[0] = 8; break;
        case 7: b.scale = (float)NAN; break;
        case 8: b.window_left = (int)bad[i].value; break;
        case 9: b.cu_seqlens_q = offs; b.cu_seqlens_k = offs; b.lse = lse; b.total_q = 0; break;
        case 10: b.dtype = FAT_FP32; break;
        case 11: b.softcap = -1; break;
        case 12: b.o_stride[1] = 0; break;
        case 13: b.cu_seqlens_q = offs; b.cu_seqlens_k = offs; b.total_q = 9; b.total_k = (int)bad[i].value; break;
        case 14: b.scale = -0.5f; break;
        }
        CHECK_INT(bad[i].descr, fat_attn_fwd(ctx, &b, NULL), FAT_ERR_INVALID);
        CHECK_STR_HAS("  the message names the field", fat_errmsg(ctx), bad[i].want);
    }
    CHECK_INT("fat_query(args NULL)", fat_query(ctx, NULL, &c), FAT_ERR_INVALID);
    CHECK_STR_HAS("  names args", fat_errmsg(ctx), "args");
    fat_ctx_stats(ctx, &s);
    CHECK_INT("bad calls resolve nothing", s.shapes, shapes);
    /* A KV cache call resolves to the decode family for a decoding step (its append in the same
     * kernel), to flash_hopper (sm_90a) for a chunk of 64 rows per KV head; that chunk with an
     * append, which no family does itself, to ops.kv_append then flash_hopper. */
    {
        static const int32_t lens[2] = { 700, 3000 }, table[2 * 16] = { 0 };
        fat_attn_args kc;
        fat_attn_args_init(&kc, FAT_BF16, 2, 32, 8, 1, 3000, 128);
        kc.q = kc.k = kc.v = kc.o = (void *)(uintptr_t)0x10000;
        kc.cache_seqlens = lens; kc.block_table = table; kc.block_table_stride = 16; kc.page_size = 16 * 16;
        kc.num_pages = 32;
        CHECK_INT("a paged decoding step: resolved", fat_query(ctx, &kc, &c), FAT_OK);
        CHECK(  "  by decode, the family that reads a cache", strcmp(c.family, "decode") == 0);
        kc.k_new = kc.v_new = (void *)(uintptr_t)0x20000;
        kc.seqlen_new = 1;
        CHECK_INT("the decoding step appended: resolved", fat_query(ctx, &kc, &c), FAT_OK);
        CHECK(  "  by decode alone, which appends", strcmp(c.family, "decode") == 0 && c.append[0] == 0);
        kc.k_new = kc.v_new = NULL;
        kc.seqlen_new = 0;
        kc.seqlen_q = 64;
        CHECK_INT("a paged chunk of 64 rows per KV head: resolved", fat_query(ctx, &kc, &c), FAT_OK);
        CHECK(  "  by flash_hopper", strcmp(c.family, "flash_hopper") == 0 && c.append[0] == 0);
        char attn[160];
        snprintf(attn, sizeof attn, "%s", c.params);
        ctx_launch l0, l1;
        CHECK_INT("  its launch", ctx_launch_of(ctx, &kc, &l0), FAT_OK);
        kc.k_new = kc.v_new = (void *)(uintptr_t)0x20000;
        kc.seqlen_new = 64;
        CHECK_INT("the same chunk appended: resolved", fat_query(ctx, &kc, &c), FAT_OK);
        CHECK(  "  the append by ops.kv_append first", strcmp(c.append, "ops.kv_append") == 0);
        CHECK(  "  then the same flash_hopper kernel as without the append",
                strcmp(c.family, "flash_hopper") == 0 && strcmp(c.params, attn) == 0);
        CHECK(  "  (the same kernel, not another of the kind)",
                ctx_launch_of(ctx, &kc, &l1) == FAT_OK && l1.kernel == l0.kernel);
    }
    fat_close(ctx);

    /* A database that is not one, and one that is absent. */
    snprintf(path, sizeof path, "%s/not.db", tmpdir);
    FILE *f = fopen(path, "w");
    if (f) { fputs("hello, I am not a database, but I am long enough to look like a file at all\n", f); fclose(f); }
    ctx = (fat_ctx *)1;
    CHECK_INT("a file that is not a fatune database: FAT_ERR_DB", ctx_open_offline(path, &dev, &ctx), FAT_ERR_DB);
    CHECK(  "  and no context", ctx == NULL);
    CHECK_STR_HAS("  the message names the file", fat_errmsg(NULL), "not.db");
    snprintf(path, sizeof path, "%s/absent.db", tmpdir);
    CHECK_INT("an absent database: defaults", ctx_open_offline(path, &dev, &ctx), FAT_OK);
    if (ctx) {
        query(ctx, &exact, &c);
        char def[256];
        const char *fam = "";
        gen_builtin_default(g, &exact, &dev, &fam, def, sizeof def);
        CHECK(  "  the default for a tuned shape", c.level == FAT_LEVEL_DEFAULT && strcmp(c.family, fam) == 0 &&
                strcmp(c.params, def) == 0);
        fat_close(ctx);
    }
    CHECK("  and the file is not created", access(path, F_OK) != 0);
    CHECK_INT("NULL path: defaults", ctx_open_offline(NULL, &dev, &ctx), FAT_OK);
    fat_close(ctx);
    snprintf(path, sizeof path, "%s/cache.db", tmpdir);
    setenv("FATUNE_CACHE", path, 1);
    ctx = NULL;
    CHECK_INT("NULL path with $FATUNE_CACHE: opens", ctx_open_offline(NULL, &dev, &ctx), FAT_OK);
    CHECK(  "  and creates the cache database", access(path, F_OK) == 0);
    if (ctx) {
        logbuf[0] = 0;
        fat_set_log(ctx, collect, NULL);
        CHECK_STR_HAS("  the summary names it", logbuf, "kept in $FATUNE_CACHE");
    }
    fat_close(ctx);
    unsetenv("FATUNE_CACHE");
    gen_close(g);
}

/* Opening fails at once, saying why, where every call would otherwise fail or run untuned. */
/* A database the tuner of the previous schema wrote on the H200 (2026-11-30: the default suite,
 * 34 best rows, cubins stripped) opens after the migration and serves every tuned problem at its
 * tuned configuration, and a read-only copy serves without a migration. */
typedef struct real_rows { fat_problem p[64]; char params[64][160], family[64][32]; int n; } real_rows;

static fat_status real_row(void *ud, const db_best *b, const db_keys *k) {
    real_rows *r = ud;
    (void)b;
    if (r->n == 64) return FAT_OK;
    r->p[r->n] = k->problem;
    snprintf(r->params[r->n], sizeof r->params[0], "%s", k->params);
    snprintf(r->family[r->n], sizeof r->family[0], "%s", k->template_name);
    r->n++;
    return FAT_OK;
}

static void test_real_v1_db(void) {
    char path[600], ro[600], cmd[2048], err[512];
    snprintf(path, sizeof path, "%s/h200-v1.db", tmpdir);
    snprintf(ro, sizeof ro, "%s/h200-v1-readonly.db", tmpdir);
    snprintf(cmd, sizeof cmd, "cp tests/data/h200-2026-11-30-v1.db %s && cp tests/data/h200-2026-11-30-v1.db %s && chmod 444 %s",
             path, ro, ro);
    if (system(cmd) != 0) { CHECK("copy the H200 database of 2026-11-30", 0); return; }
    static real_rows rows;
    rows.n = 0;
    db *d = NULL;
    CHECK_INT("the real v1 database reads read-only", db_open(ro, DB_READONLY, &d, err, sizeof err), FAT_OK);
    if (d) db_best_each(d, NULL, real_row, &rows);
    db_close(d);
    CHECK_INT("  its 34 best rows", rows.n, 34);
    gen_device h200;
    gen_device_for_arch("sm_90", &h200);
    snprintf(h200.name, sizeof h200.name, "NVIDIA H200");
    const char *paths[] = { path, ro };
    for (int k = 0; k < 2; k++) {
        fat_ctx *ctx = NULL;
        CHECK_INT(k ? "a read-only copy opens as it is" : "the real v1 database opens (migrated)",
                  ctx_open_offline(paths[k], &h200, &ctx), FAT_OK);
        if (!ctx) { fprintf(stderr, "  %s\n", fat_errmsg(NULL)); continue; }
        int exact = 0;
        for (int i = 0; i < rows.n; i++) {
            fat_choice c;
            if (query(ctx, &rows.p[i], &c) == FAT_OK && c.level == FAT_LEVEL_EXACT && !strcmp(c.family, rows.family[i]) &&
                !strcmp(c.params, rows.params[i]))
                exact++;
        }
        CHECK_INT(k ? "  and serves every tuned problem at its configuration (read-only)"
                    : "  and serves every tuned problem at its configuration", exact, rows.n);
        fat_close(ctx);
    }
    CHECK("the writable copy is now the current schema", db_open(path, DB_READONLY, &d, err, sizeof err) == FAT_OK);
    int v = 0;
    if (d) db_schema_version(d, &v);
    db_close(d);
    CHECK_INT("  version", v, DB_SCHEMA_VERSION);
}

static void test_open_errors(void) {
    gen_device dev;
    fat_ctx *ctx;
    char path[512], want[600];
    static const struct { const char *arch; int cc; } unknown[] = { { "sm_87", 87 }, { "sm_100", 100 }, { "sm_120", 120 } };
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        gen_device_for_arch("sm_90", &dev);
        snprintf(dev.arch, sizeof dev.arch, "%s", unknown[i].arch);
        dev.cc = unknown[i].cc;
        ctx = (fat_ctx *)1;
        CHECK_INT("an architecture NVRTC is not told about: FAT_ERR_UNSUPPORTED at open",
                  ctx_open_offline(NULL, &dev, &ctx), FAT_ERR_UNSUPPORTED);
        CHECK(  "  and no context", ctx == NULL);
        snprintf(want, sizeof want, "does not support the architecture %s", unknown[i].arch);
        CHECK_STR_HAS("  the message names the arch", fat_errmsg(NULL), want);
    }
    gen_device_for_arch("sm_90", &dev);

    /* A database path that exists but cannot be read is an error, not "no database". */
    ctx = (fat_ctx *)1;
    CHECK_INT("a directory as the database: FAT_ERR_IO", ctx_open_offline(tmpdir, &dev, &ctx), FAT_ERR_IO);
    CHECK(  "  and no context", ctx == NULL);
    CHECK_STR_HAS("  the message names the file", fat_errmsg(NULL), tmpdir);
    CHECK_STR_HAS("  and the reason", fat_errmsg(NULL), strerror(EISDIR));
    snprintf(path, sizeof path, "%s/locked.db", tmpdir);
    FILE *f = fopen(path, "w");
    if (f) fclose(f);
    if (geteuid() != 0 && chmod(path, 0) == 0) {
        ctx = (fat_ctx *)1;
        CHECK_INT("an unreadable database: FAT_ERR_IO", ctx_open_offline(path, &dev, &ctx), FAT_ERR_IO);
        CHECK(  "  and no context", ctx == NULL);
        CHECK_STR_HAS("  the message says why", fat_errmsg(NULL), strerror(EACCES));
    } else {
        SKIP("an unreadable database: FAT_ERR_IO", "root reads every file");
        SKIP("  and no context", "root");
        SKIP("  the message says why", "root");
    }
    snprintf(path, sizeof path, "%s/no-such-dir/absent.db", tmpdir);
    ctx = NULL;
    CHECK_INT("an absent database (ENOENT) still opens with the defaults", ctx_open_offline(path, &dev, &ctx), FAT_OK);
    fat_close(ctx);
}

/* flash_v2's default(): valid on every architecture, head_dim and sequence length. */
static void test_defaults(void) {
    static const char *const arches[] = { "sm_80", "sm_86", "sm_89", "sm_90" };
    static const int dims[] = { 8, 32, 40, 64, 80, 96, 128, 160, 192, 256 };
    static const int lens[] = { 1, 17, 40, 100, 1000, 16384 };
    gen *g = NULL;
    if (gen_open(&g) != FAT_OK) { CHECK("generator", 0); gen_close(g); return; }
    int bad = 0, total = 0;
    char params[160];
    for (size_t a = 0; a < 4; a++) {
        gen_device dev;
        gen_device_for_arch(arches[a], &dev);
        for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
            for (size_t j = 0; j < sizeof lens / sizeof lens[0]; j++)
                for (int causal = 0; causal < 2; causal++) {
                    fat_problem p = prob(FAT_BF16, dims[i], causal, 0, 2, 8, 2, lens[j], lens[(j + 1) % 6]);
                    gen_variant v;
                    memset(&v, 0, sizeof v);
                    total++;
                    if (gen_default(g, "flash_v2", &p, &dev, params, sizeof params) != FAT_OK ||
                        gen_emit(g, "flash_v2", params, &p, &dev, &v) != FAT_OK) {
                        if (bad++ < 3) fprintf(stderr, "  %s d%d s%d/%d: %s\n", arches[a], dims[i], p.seqlen_q, p.seqlen_k, gen_errmsg(g));
                    }
                    gen_variant_free(&v);
                }
    }
    CHECK_INT("flash_v2's default is valid for every arch, head_dim and seqlen", bad, 0);
    gen_device dev;
    fat_problem p = prob(FAT_FP16, 128, 1, 0, 1, 8, 8, 4096, 4096);
    gen_device_for_arch("sm_80", &dev);
    gen_default(g, "flash_v2", &p, &dev, params, sizeof params);
    CHECK(  "d128 on sm_80: 128x64 tiles, 4 warps, 2 stages", strcmp(params, A_CFG) == 0);
    p.head_dim = 192;
    gen_device_for_arch("sm_86", &dev);
    gen_default(g, "flash_v2", &p, &dev, params, sizeof params);
    CHECK(  "d192 on sm_86 (99 KiB of shared memory): one stage", strcmp(params, "block_m=64,block_n=64,q_in_regs=0,stages=1,warps=4") == 0);
    p.head_dim = 64; p.seqlen_q = 1; p.seqlen_k = 20;
    gen_default(g, "flash_v2", &p, &dev, params, sizeof params);
    CHECK(  "decode-sized: the smallest tiles", strcmp(params, "block_m=64,block_n=32,q_in_regs=0,stages=1,warps=4") == 0);
    gen_close(g);
}

/* A new shape of a kernel the context holds takes its launch from gen_launch (the template's
 * launch()), not from a full emit: over a decode loop (one query, a growing key length) and mixed
 * prefill shapes, every launch must be the one a full emit of the chosen variant gives and the one
 * flash_v2's geometry says, most must come from a kernel built before, and two calls share a kernel
 * exactly when family, parameters and specialisation (dtype, head_dim, causal, features) agree. */
static void test_new_shapes(void) {
    static const int dims[] = { 64, 128, 256 };
    gen_device dev;
    gen_device_for_arch("sm_90", &dev);
    fat_ctx *ctx = NULL;
    gen *g = NULL;
    if (ctx_open_offline(NULL, &dev, &ctx) != FAT_OK || gen_open(&g) != FAT_OK) {
        CHECK("new shapes: open", 0);
        fat_close(ctx);
        gen_close(g);
        return;
    }
    int n = 0, bad = 0, geometry = 0, reused = 0;
    for (int i = 0; i < 700; i++) {
        fat_problem p = i < 400 ? prob(FAT_BF16, 128, 1, 0, 1, 32, 8, 1, 1 + i)
                                : prob(i % 2 ? FAT_FP16 : FAT_BF16, dims[i % 3], i % 5 == 0, i % 7 == 0 ? FAT_FEAT_WINDOW : 0,
                                       1 + i % 3, 16, 4, 50 + (i * 37) % 3000, 70 + (i * 53) % 5000);
        fat_attn_args a = args_of(&p);
        fat_choice c;
        ctx_launch l;
        gen_variant v;
        memset(&v, 0, sizeof v);
        if (fat_query(ctx, &a, &c) != FAT_OK || ctx_launch_of(ctx, &a, &l) != FAT_OK ||
            gen_emit(g, c.family, c.params, &p, &dev, &v) != FAT_OK) {
            if (bad++ < 3) fprintf(stderr, "  shape %d: %s / %s\n", i, fat_errmsg(ctx), gen_errmsg(g));
            continue;
        }
        n++;
        reused += l.launch_only;
        if (memcmp(&l.launch, &v.launch, sizeof v.launch) != 0) {
            char a1[512], a2[512];
            gen_launch_describe(&l.launch, a1, sizeof a1);
            gen_launch_describe(&v.launch, a2, sizeof a2);
            if (bad++ < 3) fprintf(stderr, "  shape %d (%s %s): %s, emit says %s\n", i, c.family, c.params, a1, a2);
        }
        int bm = test_param(c.params, "block_m"), warps = test_param(c.params, "warps");
        geometry += strcmp(c.family, "flash_v2") != 0 || bm <= 0 ||
                    (l.launch.grid[0] == (unsigned)((p.seqlen_q + bm - 1) / bm) && l.launch.grid[1] == (unsigned)p.heads_q &&
                     l.launch.grid[2] == (unsigned)p.batch && l.launch.block[0] == 32u * (unsigned)warps);
        gen_variant_free(&v);
    }
    CHECK_INT("every new shape launches as a full emit of its variant would (700 shapes)", n * 1000 + bad, 700 * 1000);
    CHECK_INT("...and as flash_v2's geometry says: ceil(seqlen_q / block_m) x heads x batch, 32 x warps threads",
              geometry, n);
    CHECK("most new shapes reuse a kernel built for an earlier one", reused >= 600 && reused < n);

    /* one kernel per (family, parameters, specialisation); sizes alone never make another */
    const fat_problem base = prob(FAT_BF16, 128, 0, 0, 2, 16, 4, 4096, 4096);
    fat_problem other[7];
    for (int k = 0; k < 7; k++) other[k] = base;
    other[0].dtype = FAT_FP16;
    other[1].head_dim = 96;
    other[2].causal = 1;
    other[3].features = FAT_FEAT_WINDOW;
    other[4].features = FAT_FEAT_SOFTCAP;
    other[5].features = FAT_FEAT_VARLEN;
    other[6].features = FAT_FEAT_WINDOW | FAT_FEAT_SOFTCAP;
    fat_attn_args ab = args_of(&base);
    ctx_launch lb, lo;
    fat_choice cb, co;
    int distinct = 0, same = 0;
    if (ctx_launch_of(ctx, &ab, &lb) == FAT_OK && fat_query(ctx, &ab, &cb) == FAT_OK) {
        for (int k = 0; k < 7; k++) {
            fat_attn_args ao = args_of(&other[k]);
            distinct += ctx_launch_of(ctx, &ao, &lo) == FAT_OK && lo.kernel >= 0 && lo.kernel != lb.kernel;
        }
        fat_problem sizes = base;
        sizes.batch = 3;
        sizes.heads_q = 8;
        sizes.heads_kv = 8;
        sizes.seqlen_q = 3000;
        sizes.seqlen_k = 5000;
        fat_attn_args as = args_of(&sizes);
        same = ctx_launch_of(ctx, &as, &lo) == FAT_OK && fat_query(ctx, &as, &co) == FAT_OK &&
               strcmp(co.params, cb.params) == 0 && lo.kernel == lb.kernel && lo.launch_only;
    }
    CHECK_INT("a call differing in dtype, head_dim, causal or a feature gets a kernel of its own", distinct, 7);
    CHECK("a call differing only in sizes (same parameters) reuses the kernel", same);
    fat_close(ctx);
    gen_close(g);

    /* What a new shape costs, printed (docs/runtime.md): a decode loop of 2000 steps on a fresh
     * context, then the same 2000 shapes again, all seen before. */
    if (ctx_open_offline(NULL, &dev, &ctx) != FAT_OK) { CHECK("new shapes: open", 0); return; }
    double t[2];
    int fails = 0;
    for (int pass = 0; pass < 2; pass++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < 2000; i++) {
            fat_problem p = prob(FAT_BF16, 128, 1, 0, 1, 32, 8, 1, 100 + i);
            fat_choice c;
            fails += query(ctx, &p, &c) != FAT_OK;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        t[pass] = ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3 / 2000;
    }
    CHECK_INT("a decode loop of 2000 new shapes resolves", fails, 0);
    printf("runtime: fat_query of a new shape %.1f us, of one seen before %.2f us (decode loop, 2000 steps, offline)\n",
           t[0], t[1]);
    fat_close(ctx);
}

/* ---------------------------------------------------------------------------------------------
 * Many threads on one context: new shapes published while others are looked up, the table grown
 * several times under the readers' feet; every answer must be the one a lone thread gets. */

#define THREADS 8
#define SHAPES 3000

typedef struct qthread {
    fat_ctx *ctx;
    int id, bad;
} qthread;

static fat_problem nth_shape(int i) {
    return prob(i % 2 ? FAT_BF16 : FAT_FP16, 64, i % 3 == 0, 0, 1 + i % 4, 8, 2, 100 + i, 100 + (i * 7) % 5000);
}

static void *query_thread(void *arg) {
    qthread *t = arg;
    fat_choice c;
    for (int k = 0; k < 2 * SHAPES; k++) {
        /* each thread walks the shapes in its own order, so they race on new ones */
        int i = (int)(((unsigned)k * 2654435761u + (unsigned)t->id * 977u) % SHAPES);
        fat_problem p = nth_shape(i);
        if (query(t->ctx, &p, &c) != FAT_OK || c.level != FAT_LEVEL_DEFAULT || strncmp(c.params, "block_m=", 8) != 0) t->bad++;
    }
    return NULL;
}

static void test_threads(void) {
    gen_device dev;
    fat_ctx *ctx = NULL, *solo = NULL;
    gen_device_for_arch("sm_90", &dev);
    if (ctx_open_offline(NULL, &dev, &ctx) != FAT_OK || ctx_open_offline(NULL, &dev, &solo) != FAT_OK) {
        CHECK("offline contexts", 0);
        fat_close(ctx);
        return;
    }
    pthread_t tid[THREADS];
    qthread qt[THREADS];
    for (int t = 0; t < THREADS; t++) {
        qt[t] = (qthread){ ctx, t, 0 };
        pthread_create(&tid[t], NULL, query_thread, &qt[t]);
    }
    int bad = 0;
    for (int t = 0; t < THREADS; t++) { pthread_join(tid[t], NULL); bad += qt[t].bad; }
    CHECK_INT("8 threads x 6000 queries over 3000 new shapes: every one answered", bad, 0);
    fat_stats s;
    fat_ctx_stats(ctx, &s);
    CHECK_INT("  each shape resolved once", s.shapes, SHAPES);
    int differ = 0;
    for (int i = 0; i < SHAPES; i++) {
        fat_choice a, b;
        fat_problem p = nth_shape(i);
        query(ctx, &p, &a);
        query(solo, &p, &b);
        differ += strcmp(a.params, b.params) != 0 || a.level != b.level;
    }
    CHECK_INT("  and answered as a lone thread answers", differ, 0);
    fat_close(ctx);
    fat_close(solo);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "-v") == 0) test_verbose = 1;
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    test_dispatch();
    test_check_shortcut();
    test_call_problem();
    test_no_gpu();
    test_tuned_db();
    test_real_v1_db();
    test_open_errors();
    test_defaults();
    test_new_shapes();
    test_threads();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chmod -R u+w %s; rm -rf %s", tmpdir, tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_done("runtime");
}
