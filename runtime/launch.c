/*
 * launch.c: the one launcher (launch.h): loading a kernel function, the parameter block, tensor
 * maps encoded on the host and cached per launch, scratch memory per stream, cuLaunchKernelEx.
 *
 * The hot path of a launch that was seen before allocates nothing and waits for nothing: the
 * parameter block is filled on the stack, cached tensor maps are compared with the call's
 * pointers and strides (an address that moved is patched in place), scratch comes from the
 * stream's buffer found without a lock, and one cuLaunchKernelEx goes out.
 */
#include "launch.h"
#include "status.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Functions. */

fat_status launch_load(const void *cubin, const char *entry, launch_fn *f) {
    fat_status st = FAT_OK;
    memset(f, 0, sizeof *f);
    CU_CHECK(ModuleLoadData(&f->mod, cubin));
    CU_CHECK(ModuleGetFunction(&f->fn, f->mod, entry));
    CU_CHECK(FuncGetAttribute(&f->registers, CU_FUNC_ATTRIBUTE_NUM_REGS, f->fn));
    CU_CHECK(FuncGetAttribute(&f->local_bytes, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, f->fn));
out:
    if (st != FAT_OK) launch_unload(f);
    return st;
}

void launch_unload(launch_fn *f) {
    if (f->mod) cu.ModuleUnload(f->mod);
    memset(f, 0, sizeof *f);
}

fat_status launch_prepare(launch_fn *f, const gen_launch *l) {
    fat_status st = FAT_OK;
    if (l->smem > 48 * 1024 && l->smem > f->smem_allowed) {
        CU_CHECK(FuncSetAttribute(f->fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)l->smem));
        f->smem_allowed = (unsigned)l->smem;
    }
    if (l->nonportable_cluster && !f->nonportable) {
        CU_CHECK(FuncSetAttribute(f->fn, CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED, 1));
        f->nonportable = 1;
    }
out:
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * The parameter block. */

void launch_params(const fat_attn_args *a, void *ws, fat_kparams *kp) {
    /* every field is set (the block has no padding), so no memset on the hot path */
    kp->reserved = 0;
    kp->q = a->q; kp->k = a->k; kp->v = a->v; kp->o = a->o; kp->lse = a->lse;
    kp->ws = ws;
    kp->cu_seqlens_q = a->cu_seqlens_q;
    kp->cu_seqlens_k = a->cu_seqlens_k;
    kp->q_sb = a->q_stride[0]; kp->q_ss = a->q_stride[1]; kp->q_sh = a->q_stride[2];
    kp->k_sb = a->k_stride[0]; kp->k_ss = a->k_stride[1]; kp->k_sh = a->k_stride[2];
    kp->v_sb = a->v_stride[0]; kp->v_ss = a->v_stride[1]; kp->v_sh = a->v_stride[2];
    kp->o_sb = a->o_stride[0]; kp->o_ss = a->o_stride[1]; kp->o_sh = a->o_stride[2];
    kp->batch = a->batch; kp->heads_q = a->heads_q; kp->heads_kv = a->heads_kv;
    kp->seqlen_q = a->seqlen_q; kp->seqlen_k = a->seqlen_k; kp->head_dim = a->head_dim;
    kp->window_left = a->window_left;
    kp->window_right = a->causal ? 0 : a->window_right;
    if (a->causal && a->window_right >= 0 && a->window_right < kp->window_right) kp->window_right = a->window_right;
    /* A bound past seqlen_q + seqlen_k already reaches every key of every row; clamped to that, the
     * kernels' int arithmetic on it (query + seqlen_k - seqlen_q + right) cannot overflow. */
    const long long span = (long long)a->seqlen_q + a->seqlen_k;
    if (kp->window_left > span) kp->window_left = (int)span;
    if (kp->window_right > span) kp->window_right = (int)span;
    kp->scale = a->scale != 0.f ? a->scale : 1.f / sqrtf((float)a->head_dim);
    kp->scale_log2 = kp->scale * 1.4426950408889634f;
    kp->softcap = a->softcap;
    kp->total_q = a->cu_seqlens_q ? a->total_q : a->batch * a->seqlen_q;
    kp->page_size = a->block_table ? a->page_size : 0;
    kp->cache_seqlens = a->cache_seqlens;
    kp->block_table = a->block_table;
    kp->block_table_stride = a->block_table ? a->block_table_stride : 0;
    kp->num_pages = a->block_table ? a->num_pages : 0;
    kp->k_new = a->k_new;
    kp->v_new = a->k_new ? a->v_new : NULL;
    kp->seqlen_new = a->k_new ? a->seqlen_new : 0;
    kp->kn_sb = a->k_new_stride[0]; kp->kn_ss = a->k_new_stride[1]; kp->kn_sh = a->k_new_stride[2];
    kp->vn_sb = a->v_new_stride[0]; kp->vn_ss = a->v_new_stride[1]; kp->vn_sh = a->v_new_stride[2];
}

/* ---------------------------------------------------------------------------------------------
 * Scratch memory per stream. A table of slots, one per stream, found by hashing the stream handle
 * and probing; a slot points to its stream's current buffer. Readers load slot and buffer with
 * acquire and never lock; a writer (a new stream, a larger buffer) takes the mutex and publishes
 * with release. Nothing is freed before launch_arena_free: a reader may still hold it. */

typedef struct arena_buf { CUdeviceptr ptr; uint64_t size; struct arena_buf *prev; } arena_buf;
typedef struct arena_slot { CUstream stream; _Atomic(arena_buf *) buf; } arena_slot;
typedef struct arena_table { size_t mask; _Atomic(arena_slot *) slot[]; } arena_table;

struct launch_arena {
    pthread_mutex_t lock;
    _Atomic(arena_table *) tab;
    arena_table **old;              /* tables replaced by a larger one */
    int nold;
    arena_slot **slots;             /* every slot, for the growth and the free */
    size_t nslots;
};

static arena_table *table_new(size_t n) {
    arena_table *t = calloc(1, sizeof *t + n * sizeof t->slot[0]);
    if (!t) return NULL;
    t->mask = n - 1;
    for (size_t i = 0; i < n; i++) atomic_init(&t->slot[i], NULL);
    return t;
}

fat_status launch_arena_new(launch_arena **out) {
    launch_arena *a = calloc(1, sizeof *a);
    arena_table *t = table_new(16);
    if (!a || !t) { free(a); free(t); fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
    pthread_mutex_init(&a->lock, NULL);
    atomic_init(&a->tab, t);
    *out = a;
    return FAT_OK;
}

void launch_arena_free(launch_arena *a) {
    if (!a) return;
    for (size_t i = 0; i < a->nslots; i++) {
        arena_buf *b = atomic_load(&a->slots[i]->buf);
        while (b) {
            arena_buf *prev = b->prev;
            if (b->ptr) cu.MemFree(b->ptr);
            free(b);
            b = prev;
        }
        free(a->slots[i]);
    }
    for (int i = 0; i < a->nold; i++) free(a->old[i]);
    free(a->old);
    free(a->slots);
    free(atomic_load(&a->tab));
    pthread_mutex_destroy(&a->lock);
    free(a);
}

static size_t stream_hash(CUstream s) {
    return (size_t)XXH3_64bits(&s, sizeof s);
}

static arena_slot *slot_find(arena_table *t, CUstream s) {
    size_t h = stream_hash(s);
    for (size_t i = 0; i <= t->mask; i++) {
        arena_slot *x = atomic_load_explicit(&t->slot[(h + i) & t->mask], memory_order_acquire);
        if (!x || x->stream == s) return x;
    }
    return NULL;
}

static void slot_place(arena_table *t, arena_slot *x) {
    size_t h = stream_hash(x->stream);
    for (size_t i = 0;; i++) {
        size_t k = (h + i) & t->mask;
        if (!atomic_load_explicit(&t->slot[k], memory_order_relaxed)) {
            atomic_store_explicit(&t->slot[k], x, memory_order_release);
            return;
        }
    }
}

/* Under the lock: the slot of stream s, added (the table doubled first at half full) when new. */
static fat_status slot_add(launch_arena *a, CUstream s, arena_slot **out) {
    arena_table *t = atomic_load_explicit(&a->tab, memory_order_relaxed);
    if ((*out = slot_find(t, s)) != NULL) return FAT_OK;
    arena_slot **all = realloc(a->slots, (a->nslots + 1) * sizeof *all);
    arena_slot *x = calloc(1, sizeof *x);
    if (all) a->slots = all;
    if (!all || !x) { free(x); fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
    x->stream = s;
    atomic_init(&x->buf, NULL);
    if (2 * (a->nslots + 1) > t->mask + 1) {
        arena_table *bigger = table_new(2 * (t->mask + 1));
        arena_table **old = realloc(a->old, (size_t)(a->nold + 1) * sizeof *old);
        if (old) a->old = old;
        if (!bigger || !old) { free(bigger); free(x); fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
        for (size_t i = 0; i < a->nslots; i++) slot_place(bigger, a->slots[i]);
        a->old[a->nold++] = t;
        atomic_store_explicit(&a->tab, bigger, memory_order_release);
        t = bigger;
    }
    a->slots[a->nslots++] = x;
    slot_place(t, x);
    *out = x;
    return FAT_OK;
}

/* Device memory of at least `bytes` for launches on stream s: the stream's buffer, grown (to at
 * least twice its size) when too small. */
static fat_status arena_get(launch_arena *a, CUstream s, uint64_t bytes, CUdeviceptr *out) {
    fat_status st = FAT_OK;
    arena_slot *x = slot_find(atomic_load_explicit(&a->tab, memory_order_acquire), s);
    arena_buf *b = x ? atomic_load_explicit(&x->buf, memory_order_acquire) : NULL;
    if (b && b->size >= bytes) { *out = b->ptr; return FAT_OK; }
    pthread_mutex_lock(&a->lock);
    if ((st = slot_add(a, s, &x)) != FAT_OK) goto out;
    b = atomic_load_explicit(&x->buf, memory_order_relaxed);
    if (!b || b->size < bytes) {
        uint64_t size = b && 2 * b->size > bytes ? 2 * b->size : bytes;
        arena_buf *nb = calloc(1, sizeof *nb);
        if (!nb) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto out; }
        CUresult r = cu.MemAlloc(&nb->ptr, size);
        if (r != CUDA_SUCCESS) {
            free(nb);
            cu_record(r, "MemAlloc", __FILE__, __LINE__);
            fat_set_error("cannot allocate %llu bytes of scratch memory on the GPU: %s", (unsigned long long)size,
                          fat_last_error());
            st = FAT_ERR_CUDA;
            goto out;
        }
        nb->size = size;
        nb->prev = b;               /* kept: a launch already queued on s may still use it */
        atomic_store_explicit(&x->buf, nb, memory_order_release);
        b = nb;
    }
    *out = b->ptr;
out:
    pthread_mutex_unlock(&a->lock);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Tensor maps. */

/* The dims, strides and box of the map of t for call a; FAT_ERR_INVALID or FAT_ERR_UNSUPPORTED
 * with the message set when the tensor cannot be described. key receives what the map depends on
 * besides the address. */
static fat_status tma_geometry(const gen_tma *t, const fat_attn_args *a, const void **ptr, cuuint32_t *rank,
                               cuuint64_t dims[5], cuuint64_t strides[4], cuuint32_t box[5], int64_t key[8]) {
    const int64_t *sd;
    int64_t rows;
    int heads;
    int varlen = a->cu_seqlens_q != NULL;
    switch (t->tensor) {
    case 'q': *ptr = a->q; sd = a->q_stride; rows = varlen ? a->total_q : a->seqlen_q; heads = a->heads_q; break;
    case 'o': *ptr = a->o; sd = a->o_stride; rows = varlen ? a->total_q : a->seqlen_q; heads = a->heads_q; break;
    case 'k': *ptr = a->k; sd = a->k_stride; rows = varlen ? a->total_k : a->seqlen_k; heads = a->heads_kv; break;
    case 'v': *ptr = a->v; sd = a->v_stride; rows = varlen ? a->total_k : a->seqlen_k; heads = a->heads_kv; break;
    default:
        fat_set_error("tensor map: no tensor '%c'", t->tensor);
        return FAT_ERR_INVALID;
    }
    if (rows <= 0) {
        /* The rows of a packed batch are cu_seqlens[batch], which lives on the GPU: the caller says. */
        fat_set_error("%s: a variable-length call whose kernel reads %c through a tensor map must give %s = "
                      "cu_seqlens_%c[batch] (> 0), the rows of %c", t->tensor == 'q' || t->tensor == 'o' ? "total_q"
                      : "total_k", t->tensor, t->tensor == 'q' || t->tensor == 'o' ? "total_q" : "total_k",
                      t->tensor == 'q' || t->tensor == 'o' ? 'q' : 'k', t->tensor);
        return FAT_ERR_INVALID;
    }
    int64_t d = a->head_dim, batch = varlen ? 1 : a->batch;
    int64_t sb = varlen ? rows * sd[1] : sd[0];          /* one packed sequence: any valid stride */
    if (a->block_table && (t->tensor == 'k' || t->tensor == 'v')) {
        rows = a->page_size;                             /* a paged cache: a page's rows, the pages */
        batch = a->num_pages;
    }
    if ((uintptr_t)*ptr % 16 != 0 || (sd[1] * 2) % 16 != 0 || (sd[2] * 2) % 16 != 0 || (sb * 2) % 16 != 0 ||
        sd[1] <= 0 || sd[2] < 0 || sb < 0) {
        fat_set_error("tensor map of %c: the pointer and the strides (%lld, %lld, %lld elements) must be "
                      "non-negative multiples of 16 bytes", t->tensor, (long long)sb, (long long)sd[1], (long long)sd[2]);
        return FAT_ERR_INVALID;
    }
    if (t->slabs > 1 && d % t->box_cols != 0) {
        fat_set_error("tensor map of %c: slabs of %u columns need a head_dim that is a multiple (%lld)", t->tensor,
                      t->box_cols, (long long)d);
        return FAT_ERR_INVALID;
    }
    if (t->slabs == 1) {
        *rank = 4;
        dims[0] = (cuuint64_t)d; dims[1] = (cuuint64_t)rows; dims[2] = (cuuint64_t)heads; dims[3] = (cuuint64_t)batch;
        strides[0] = (cuuint64_t)sd[1] * 2; strides[1] = (cuuint64_t)sd[2] * 2; strides[2] = (cuuint64_t)sb * 2;
        box[0] = t->box_cols; box[1] = t->box_rows; box[2] = 1; box[3] = 1;
    } else {
        *rank = 5;
        dims[0] = t->box_cols; dims[1] = (cuuint64_t)rows; dims[2] = (cuuint64_t)(d / t->box_cols);
        dims[3] = (cuuint64_t)heads; dims[4] = (cuuint64_t)batch;
        strides[0] = (cuuint64_t)sd[1] * 2; strides[1] = (cuuint64_t)t->box_cols * 2;
        strides[2] = (cuuint64_t)sd[2] * 2; strides[3] = (cuuint64_t)sb * 2;
        box[0] = t->box_cols; box[1] = t->box_rows; box[2] = t->slabs; box[3] = 1; box[4] = 1;
    }
    key[0] = rows; key[1] = sd[1]; key[2] = sd[2]; key[3] = sb; key[4] = batch;
    key[5] = ((int64_t)t->tensor << 48) | ((int64_t)t->box_cols << 36) | ((int64_t)t->box_rows << 24) |
             ((int64_t)t->slabs << 12) | (t->swizzle << 4) | t->l2;
    key[6] = a->dtype;
    key[7] = d;
    return FAT_OK;
}

static fat_status tma_encode(const gen_tma *t, const fat_attn_args *a, CUtensorMap *m, const void **ptr,
                             int64_t key[8]) {
    cuuint32_t rank, box[5], estr[5] = { 1, 1, 1, 1, 1 };
    cuuint64_t dims[5], strides[4];
    fat_status st = tma_geometry(t, a, ptr, &rank, dims, strides, box, key);
    if (st != FAT_OK) return st;
    CUresult r = cu.TensorMapEncodeTiled(m, a->dtype == FAT_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                                 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
                                         rank, (void *)*ptr, dims, strides, box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                         (CUtensorMapSwizzle)t->swizzle, (CUtensorMapL2promotion)t->l2,
                                         CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        const char *name = "?";
        cu.GetErrorName(r, &name);
        fat_set_error("tensor map of %c: cuTensorMapEncodeTiled refused it (%s): rank %u, dims %llu %llu %llu %llu, "
                      "box %u %u %u", t->tensor, name, rank, (unsigned long long)dims[0], (unsigned long long)dims[1],
                      (unsigned long long)dims[2], (unsigned long long)dims[3], box[0], box[1], box[2]);
        return FAT_ERR_INVALID;
    }
    return FAT_OK;
}

/* The maps of l for call a into m; with the cache c (m is c->map), only what changed is encoded
 * again, and only the address when only it moved. */
static fat_status tma_fill(const gen_launch *l, const fat_attn_args *a, CUtensorMap *m, launch_maps *c) {
    for (int i = 0; i < l->nargs; i++) {
        if (l->args[i].kind != GEN_ARG_TMA) continue;
        const void *ptr;
        int64_t key[8];
        if (c) {
            cuuint32_t rank, box[5];
            cuuint64_t dims[5], strides[4];
            fat_status st = tma_geometry(&l->args[i].tma, a, &ptr, &rank, dims, strides, box, key);
            if (st != FAT_OK) return st;
            if (memcmp(key, c->key[i], sizeof key) == 0) {
                if (ptr == c->ptr[i]) continue;
                if (cu.TensorMapReplaceAddress && cu.TensorMapReplaceAddress(&m[i], (void *)ptr) == CUDA_SUCCESS) {
                    c->ptr[i] = ptr;
                    continue;
                }
            }
        }
        fat_status st = tma_encode(&l->args[i].tma, a, &m[i], &ptr, key);
        if (c) {
            if (st != FAT_OK) memset(c->key[i], 0, sizeof c->key[i]);
            else { c->ptr[i] = ptr; memcpy(c->key[i], key, sizeof key); }
        }
        if (st != FAT_OK) return st;
    }
    return FAT_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The launch. */

fat_status launch_run(const launch_fn *f, const gen_launch *l, const fat_attn_args *a, fat_kparams *kp,
                      launch_maps *maps, launch_arena *arena, CUstream s) {
    fat_status st = FAT_OK;
    void *params[GEN_MAX_ARGS];
    CUdeviceptr scratch[GEN_MAX_ARGS];
    CUtensorMap local[GEN_MAX_ARGS];
    CUtensorMap *m = NULL;
    int have_tma = 0, locked = 0;
    uint64_t need = gen_launch_scratch(l);
    if (need) {
        CUdeviceptr base;
        if (!arena) { fat_set_error("%s needs scratch memory and no arena was given", l->entry); return FAT_ERR_INVALID; }
        if ((st = arena_get(arena, s, need, &base)) != FAT_OK) return st;
        uint64_t off = (l->workspace + 255) & ~(uint64_t)255;
        if (l->workspace) kp->ws = (void *)base;
        for (int i = 0; i < l->nargs; i++) {
            if (l->args[i].kind != GEN_ARG_SCRATCH) continue;
            scratch[i] = base + off;
            off += (l->args[i].bytes + 255) & ~(uint64_t)255;
            if (l->args[i].zero) CU_CHECK(MemsetD8Async(scratch[i], 0, l->args[i].bytes, s));
        }
    }
    for (int i = 0; i < l->nargs; i++) have_tma |= l->args[i].kind == GEN_ARG_TMA;
    if (have_tma) {
        if (!cu.TensorMapEncodeTiled) {
            fat_set_error("%s takes tensor maps, which this CUDA driver cannot encode (it needs 12.0 or later)", l->entry);
            return FAT_ERR_UNSUPPORTED;
        }
        /* the cache, unless another call holds it: then maps of our own, on the stack */
        locked = maps && !atomic_flag_test_and_set_explicit(&maps->busy, memory_order_acquire);
        m = locked ? maps->map : local;
        if ((st = tma_fill(l, a, m, locked ? maps : NULL)) != FAT_OK) goto out;
    }
    for (int i = 0; i < l->nargs; i++) {
        switch (l->args[i].kind) {
        case GEN_ARG_PARAMS: params[i] = kp; break;
        case GEN_ARG_TMA: params[i] = &m[i]; break;
        case GEN_ARG_SCRATCH: params[i] = &scratch[i]; break;
        }
    }
    int cluster = l->cluster[0] * l->cluster[1] * l->cluster[2] > 1;
    if (cu.LaunchKernelEx) {
        CUlaunchAttribute attr[1];
        CUlaunchConfig cfg = { l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1], l->block[2],
                               (unsigned)l->smem, s, attr, 0 };
        if (cluster) {
            attr[0].id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
            attr[0].value.clusterDim.x = l->cluster[0];
            attr[0].value.clusterDim.y = l->cluster[1];
            attr[0].value.clusterDim.z = l->cluster[2];
            cfg.numAttrs = 1;
        }
        CU_CHECK(LaunchKernelEx(&cfg, f->fn, params, NULL));
    } else if (cluster) {
        fat_set_error("%s is launched in clusters, which this CUDA driver cannot do (it needs 12.0 or later)", l->entry);
        st = FAT_ERR_UNSUPPORTED;
    } else {
        CU_CHECK(LaunchKernel(f->fn, l->grid[0], l->grid[1], l->grid[2], l->block[0], l->block[1], l->block[2],
                              (unsigned)l->smem, s, params, NULL));
    }
out:
    if (locked) atomic_flag_clear_explicit(&maps->busy, memory_order_release);
    return st;
}
