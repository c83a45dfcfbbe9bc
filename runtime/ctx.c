/*
 * ctx.c: the runtime library's public face: fat_open, fat_close and the calls fat_attn_fwd and
 * fat_query. A call maps its arguments to a problem, finds its entry in the context's table
 * (table.c; a new shape is resolved there, resolve.c) and launches it through the launcher
 * (launch.c) on the caller's stream, with the device's primary context current. context.h lists
 * the other files of the runtime.
 */
#include "context.h"
#include "rtc.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Static names of the levels. See fatune.h. */
const char *fat_level_name(fat_level level) {
    static const char *const n[] = { "exact", "bucket", "nearest", "device", "default" };
    return (unsigned)level < 5 ? n[level] : "?";
}

/* A log line. See context.h. */
void ctx_say(fat_ctx *c, const char *fmt, ...) {
    if (!c->log) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    c->log(c->log_user, buf);
}

static void log_stderr(void *user, const char *message) {
    (void)user;
    fprintf(stderr, "%s\n", message);
}

/* Sets the log function under the lock and sends it the summary of the open. See fatune.h. */
void fat_set_log(fat_ctx *ctx, fat_log_fn fn, void *user) {
    if (!ctx) return;
    pthread_mutex_lock(&ctx->lock);
    ctx->log = fn;
    ctx->log_user = user;
    if (fn && ctx->summary[0]) fn(user, ctx->summary);
    pthread_mutex_unlock(&ctx->lock);
}

/* This thread's last message. See fatune.h. */
const char *fat_errmsg(const fat_ctx *ctx) {
    (void)ctx;                /* messages are per thread, so threads sharing ctx do not mix them */
    return fat_last_error();
}

/* A copy of the counters, taken under the lock. See fatune.h. */
fat_status fat_ctx_stats(fat_ctx *ctx, fat_stats *out) {
    if (!ctx || !out) { fat_set_error("%s: NULL", !ctx ? "ctx" : "out"); return FAT_ERR_INVALID; }
    pthread_mutex_lock(&ctx->lock);
    *out = ctx->stats;
    pthread_mutex_unlock(&ctx->lock);
    return FAT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Opening and closing. */

/* Refuses a GPU fatune cannot build kernels for: before sm_80, or an arch NVRTC is not told about
 * (then every call would fail; better to say so once, here). */
static fat_status check_device(const gen_device *d, int gpu) {
    if (d->cc < 80) {
        fat_set_error("GPU %d (%s, %s): fatune's kernels need sm_80 or later", gpu, d->name, d->arch);
        return FAT_ERR_UNSUPPORTED;
    }
    if (!rtc_arch_known(d->arch)) {
        fat_set_error("GPU %d (%s, %s): fatune does not support the architecture %s (known: sm_80 sm_86 sm_89 "
                      "sm_90 sm_90a)", gpu, d->name, d->arch, d->arch);
        return FAT_ERR_UNSUPPORTED;
    }
    return FAT_OK;
}

static fat_status new_ctx(fat_ctx **out) {
    fat_ctx *c = calloc(1, sizeof *c);
    table *t = table_new();
    if (!c || !t || launch_arena_new(&c->arena) != FAT_OK) {
        if (c) launch_arena_free(c->arena);
        free(c);
        free(t);
        fat_set_error("out of memory");
        return FAT_ERR_NOMEM;
    }
    atomic_init(&c->tab, t);
    pthread_mutex_init(&c->lock, NULL);
    const char *env = getenv("FATUNE_LOG");
    if (env && *env && strcmp(env, "0") != 0) c->log = log_stderr;
    *out = c;
    return FAT_OK;
}

/* Opens GPU gpu and reads its rows from db_path. See fatune.h. */
fat_status fat_open(const char *db_path, int gpu, fat_ctx **out) {
    if (!out) { fat_set_error("ctx: NULL (fat_open needs somewhere to put the context)"); return FAT_ERR_INVALID; }
    *out = NULL;
    fat_ctx *c;
    fat_status st = new_ctx(&c);
    if (st != FAT_OK) return st;
    c->gpu = gpu;
    if ((st = cu_device_info(gpu, &c->info)) != FAT_OK) goto out;
    if ((st = check_device(&c->info, gpu)) != FAT_OK) goto out;
    CU_CHECK(DeviceGet(&c->dev, gpu));
    CU_CHECK(DevicePrimaryCtxRetain(&c->cuctx, c->dev));
    if ((st = rows_open(c, db_path)) != FAT_OK) goto out;
    ctx_say(c, "%s", c->summary);
out:
    if (st != FAT_OK) { fat_close(c); return st; }
    *out = c;
    return FAT_OK;
}

/* A context without CUDA, for tests. See ctx.h. */
fat_status ctx_open_offline(const char *db_path, const gen_device *dev, fat_ctx **out) {
    if (!out || !dev) { fat_set_error("%s: NULL", !out ? "ctx" : "dev"); return FAT_ERR_INVALID; }
    *out = NULL;
    fat_ctx *c;
    fat_status st = new_ctx(&c);
    if (st != FAT_OK) return st;
    c->offline = 1;
    c->info = *dev;
    if (c->info.ntargets == 0) gen_device_targets(&c->info);
    if ((st = check_device(dev, 0)) != FAT_OK || (st = rows_open(c, db_path)) != FAT_OK) { fat_close(c); return st; }
    ctx_say(c, "%s", c->summary);
    *out = c;
    return FAT_OK;
}

/* Frees the entries and tables, waits for the context's work, unloads the modules and frees the
 * scratch with the context current, releases the primary context, closes the database and the
 * generator. See fatune.h. */
void fat_close(fat_ctx *c) {
    if (!c) return;
    table_free(c);
    if (c->cuctx) {
        CUcontext prev = NULL;
        cu.CtxGetCurrent(&prev);
        if (prev != c->cuctx) cu.CtxSetCurrent(c->cuctx);
        /* A kernel launched just before the close may still run: unloading its module or freeing
         * its scratch under it is undefined. A failure here (a sticky error from some earlier
         * kernel) changes nothing. */
        CUresult r = cu.CtxSynchronize();
        if (r != CUDA_SUCCESS) {
            const char *name = NULL;
            cu.GetErrorName(r, &name);
            ctx_say(c, "fatune: fat_close: cuCtxSynchronize failed (%s); unloading the kernels anyway", name ? name : "?");
        }
        modules_unload(c);
        launch_arena_free(c->arena);
        if (prev != c->cuctx) cu.CtxSetCurrent(prev);
        cu.DevicePrimaryCtxRelease(c->dev);
    } else {
        modules_unload(c);
        launch_arena_free(c->arena);
    }
    for (int i = 0; i < c->nbuilt; i++) free(c->built[i]);
    free(c->built);
    for (int i = 0; i < c->nfns; i++) free(c->fns[i]);
    free(c->fns);
    db_close(c->d);
    gen_close(c->g);
    free(c->rows);
    free(c->extra);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---------------------------------------------------------------------------------------------
 * The calls. */

/* From 1, not from a floor: a varlen decoding step's bound of 1 or 2 new tokens must stay a
 * decoding step (runtime/dispatch.h), where the decode family serves it. */
static unsigned round_pow2(int x) {
    unsigned r = 1;
    while (r < (unsigned)x && r < (1u << 30)) r <<= 1;
    return r < (unsigned)x ? (unsigned)x : r;
}

/* The cache and dispatch key of a call. See ctx.h. */
void ctx_call_problem(const fat_attn_args *a, fat_problem *p) {
    dispatch_problem(a, p);
    /* lengths that vary per sequence (varlen) or per call (a KV cache's keys) key by power of two;
       a cache call's query rows are its own (the new tokens), kept exact */
    if (p->features & FAT_FEAT_VARLEN) p->seqlen_q = (int)round_pow2(p->seqlen_q);
    if (p->features & (FAT_FEAT_VARLEN | FAT_FEAT_CACHE)) p->seqlen_k = (int)round_pow2(p->seqlen_k);
}

/* Checks the arguments and finds the entry of their problem. */
static fat_status prepare(fat_ctx *c, const fat_attn_args *a, fat_problem *p, entry **e) {
    if (!c) { fat_set_error("ctx: NULL (call fat_open first)"); return FAT_ERR_INVALID; }
    fat_status st = args_check_gpu(a);
    if (st != FAT_OK) return st;
    /* The kernels put the heads and the batch on the grid's y and z, at most 65535 each. */
    if (a->heads_q > 65535) { fat_set_error("heads_q: %d is above 65535, the most the GPU kernels launch", a->heads_q); return FAT_ERR_INVALID; }
    if (a->batch > 65535) { fat_set_error("batch: %d is above 65535, the most the GPU kernels launch", a->batch); return FAT_ERR_INVALID; }
    if (a->cu_seqlens_q && a->lse && a->total_q <= 0) {
        fat_set_error("total_q: must be cu_seqlens_q[batch] (> 0) for a variable-length call that writes lse");
        return FAT_ERR_INVALID;
    }
    ctx_call_problem(a, p);
    return table_lookup(c, p, e);
}

/* The choice of a call's shape, resolved if new. See fatune.h. */
fat_status fat_query(fat_ctx *c, const fat_attn_args *a, fat_choice *out) {
    entry *e;
    fat_problem p;
    if (!out) { fat_set_error("out: NULL"); return FAT_ERR_INVALID; }
    fat_status st = prepare(c, a, &p, &e);
    if (st == FAT_OK) *out = e->choice;
    return st;
}

/* The launch fat_attn_fwd would make for a. See ctx.h. */
fat_status ctx_launch_of(fat_ctx *c, const fat_attn_args *a, ctx_launch *out) {
    entry *e;
    fat_problem p;
    fat_status st = prepare(c, a, &p, &e);
    if (st != FAT_OK) return st;
    out->launch = e->launch;
    out->kernel = e->kernel;
    out->launch_only = e->launch_only;
    return FAT_OK;
}

/* Checks, looks up (resolving a new shape), launches on stream with the primary context current,
 * then restores the thread's context. See fatune.h. */
fat_status fat_attn_fwd(fat_ctx *c, const fat_attn_args *a, void *stream) {
    entry *e;
    fat_problem p;
    fat_status st = prepare(c, a, &p, &e);
    if (st != FAT_OK) return st;
    if (!e->fn) { fat_set_error("this context has no GPU (opened offline)"); return FAT_ERR_NO_GPU; }
    CUcontext prev = NULL;
    cu.CtxGetCurrent(&prev);
    if (prev != c->cuctx) CU_CHECK(CtxSetCurrent(c->cuctx));
    fat_kparams kp;
    launch_params(a, NULL, &kp);
    /* varlen: the key's rounded bounds, so that the grid and the parameters agree; a KV cache keeps
       its own seqlen_k, the capacity the kernel checks cache_seqlens + seqlen_new against */
    kp.seqlen_q = p.seqlen_q;
    if (!(p.features & FAT_FEAT_CACHE)) kp.seqlen_k = p.seqlen_k;
    /* an append split off (resolve.c): k_new and v_new into the cache first, on the same stream */
    if (e->append_fn) st = launch_run(e->append_fn, &e->append_launch, a, &kp, NULL, c->arena, (CUstream)stream);
    if (st == FAT_OK) st = launch_run(e->fn, &e->launch, a, &kp, &e->maps, c->arena, (CUstream)stream);
    if (prev != c->cuctx) cu.CtxSetCurrent(prev);
out:
    return st;
}
