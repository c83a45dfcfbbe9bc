/*
 * args.c: defaults for fat_attn_args and the check every entry point runs before it touches memory.
 *
 * Each rule names the field it is about, so that "head_dim: 100 is not a multiple of 8" tells the
 * user what to change. The checks read only the struct, never the memory it points at (it may be
 * on a GPU); the CPU attention checks the cu_seqlens contents itself.
 */
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fatune.h"
#include "status.h"

#define GPU_ALIGN        16   /* bytes: the kernels load 128 bits at a time (cp.async, ldmatrix) */
#define GPU_STRIDE_MULT  8    /* elements: 16 bytes of fp16/bf16, so every row stays aligned */
#define GPU_MAX_HEAD_DIM 256

/* Strides of a contiguous [batch, seq, heads, head_dim] tensor. Unsigned arithmetic so that absurd
 * sizes wrap (and fail the offset check later) instead of overflowing a signed int. */
static void bshd_strides(int64_t st[3], int seqlen, int heads, int head_dim)
{
    uint64_t row = (uint64_t)heads * (uint64_t)head_dim;

    st[2] = head_dim;
    st[1] = (int64_t)row;
    st[0] = (int64_t)(row * (uint64_t)seqlen);
}

/* Sizes, BSHD-contiguous strides, no mask, scale 0 (1/sqrt(head_dim)), NULL pointers. Does
 * nothing when a is NULL. */
void fat_attn_args_init(fat_attn_args *a, fat_dtype dt, int batch, int heads_q, int heads_kv,
                        int seqlen_q, int seqlen_k, int head_dim)
{
    if (!a)
        return;
    memset(a, 0, sizeof *a);
    a->dtype = dt;
    a->batch = batch;
    a->heads_q = heads_q;
    a->heads_kv = heads_kv;
    a->seqlen_q = seqlen_q;
    a->seqlen_k = seqlen_k;
    a->head_dim = head_dim;
    bshd_strides(a->q_stride, seqlen_q, heads_q, head_dim);
    bshd_strides(a->o_stride, seqlen_q, heads_q, head_dim);
    bshd_strides(a->k_stride, seqlen_k, heads_kv, head_dim);
    bshd_strides(a->v_stride, seqlen_k, heads_kv, head_dim);
    a->scale = 0.0f;            /* 1 / sqrt(head_dim), resolved at call time */
    a->window_left = -1;
    a->window_right = -1;
}

size_t fat_attn_args_size(void)
{
    return sizeof(fat_attn_args);
}

static size_t elem_size(fat_dtype dt)
{
    return dt == FAT_FP32 ? 4 : 2;
}

/* The largest element offset that a pointer of this element size can still address. */
static int64_t addressable(size_t esize)
{
    int64_t max = PTRDIFF_MAX < INT64_MAX ? (int64_t)PTRDIFF_MAX : INT64_MAX;

    return max / (int64_t)esize - 1;
}

/* *acc += n * stride for non-negative operands; -1 (and *acc unchanged) when it would pass limit. */
static int add_product(int64_t *acc, int64_t n, int64_t stride, int64_t limit)
{
    if (n != 0 && stride > (limit - *acc) / n)
        return -1;
    *acc += n * stride;
    return 0;
}

static fat_status check_dtype(const fat_attn_args *a, int gpu)
{
    if (a->dtype != FAT_FP16 && a->dtype != FAT_BF16 && a->dtype != FAT_FP32) {
        fat_set_error("dtype: %d is not fp16, bf16 or fp32", (int)a->dtype);
        return FAT_ERR_INVALID;
    }
    if (gpu && a->dtype == FAT_FP32) {
        fat_set_error("dtype: fp32 is CPU-only; the GPU kernels take fp16 or bf16");
        return FAT_ERR_INVALID;
    }
    return FAT_OK;
}

static fat_status check_positive(const char *name, int value)
{
    if (value <= 0) {
        fat_set_error("%s: must be positive (got %d)", name, value);
        return FAT_ERR_INVALID;
    }
    return FAT_OK;
}

static fat_status check_sizes(const fat_attn_args *a, int gpu)
{
    fat_status st;

    if ((st = check_positive("batch", a->batch)) ||
        (st = check_positive("heads_q", a->heads_q)) ||
        (st = check_positive("heads_kv", a->heads_kv)) ||
        (st = check_positive("seqlen_q", a->seqlen_q)) ||
        (st = check_positive("seqlen_k", a->seqlen_k)) ||
        (st = check_positive("head_dim", a->head_dim)))
        return st;
    if (a->heads_q % a->heads_kv != 0) {
        fat_set_error("heads_q: %d is not a multiple of heads_kv %d", a->heads_q, a->heads_kv);
        return FAT_ERR_INVALID;
    }
    if (!gpu)
        return FAT_OK;
    if (a->head_dim % 8 != 0) {
        fat_set_error("head_dim: %d is not a multiple of 8", a->head_dim);
        return FAT_ERR_INVALID;
    }
    if (a->head_dim > GPU_MAX_HEAD_DIM) {
        fat_set_error("head_dim: %d is above %d, the largest the GPU kernels support",
                      a->head_dim, GPU_MAX_HEAD_DIM);
        return FAT_ERR_INVALID;
    }
    /* the kernels count query rows (total_q, the lse index) in int32 */
    if ((int64_t)a->batch * a->seqlen_q > INT32_MAX) {
        fat_set_error("seqlen_q: batch * seqlen_q = %" PRId64 " rows, above the GPU kernels' "
                      "int32 limit", (int64_t)a->batch * a->seqlen_q);
        return FAT_ERR_INVALID;
    }
    return FAT_OK;
}

static fat_status check_pointer(const char *name, const void *p, size_t align)
{
    if ((uintptr_t)p % align != 0) {
        fat_set_error("%s: pointer %p is not %zu-byte aligned", name, p, align);
        return FAT_ERR_INVALID;
    }
    return FAT_OK;
}

static fat_status check_pointers(const fat_attn_args *a, int gpu)
{
    const char *names[4] = { "q", "k", "v", "o" };
    const void *ptrs[4] = { a->q, a->k, a->v, a->o };
    size_t align = gpu ? GPU_ALIGN : elem_size(a->dtype);
    fat_status st;

    for (int i = 0; i < 4; i++) {
        if (!ptrs[i]) {
            fat_set_error("%s: NULL pointer", names[i]);
            return FAT_ERR_INVALID;
        }
        if ((st = check_pointer(names[i], ptrs[i], align)))
            return st;
    }
    if (!a->cu_seqlens_q != !a->cu_seqlens_k) {
        fat_set_error("cu_seqlens_q and cu_seqlens_k must both be set or both NULL");
        return FAT_ERR_INVALID;
    }
    if (a->cu_seqlens_q && (a->total_q < 0 || a->total_k < 0)) {
        fat_set_error("%s: %d is negative (cu_seqlens_%c[batch], the rows of %c, or 0)", a->total_q < 0 ? "total_q"
                      : "total_k", a->total_q < 0 ? a->total_q : a->total_k, a->total_q < 0 ? 'q' : 'k',
                      a->total_q < 0 ? 'q' : 'k');
        return FAT_ERR_INVALID;
    }
    if ((st = check_pointer("lse", a->lse, sizeof(float))) ||
        (st = check_pointer("cu_seqlens_q", a->cu_seqlens_q, sizeof(int32_t))) ||
        (st = check_pointer("cu_seqlens_k", a->cu_seqlens_k, sizeof(int32_t))))
        return st;
    return FAT_OK;
}

static fat_status check_window(const char *name, int bound)
{
    if (bound < -1) {
        fat_set_error("%s: %d is below -1", name, bound);
        return FAT_ERR_INVALID;
    }
    return FAT_OK;
}

static fat_status check_mask(const fat_attn_args *a)
{
    fat_status st;

    if (!isfinite(a->scale)) {
        fat_set_error("scale: must be finite (got %g)", (double)a->scale);
        return FAT_ERR_INVALID;
    }
    /* every kernel takes a row's max of the unscaled scores, which a negative scale turns into
       the min: refused rather than overflowing */
    if (a->scale < 0) {
        fat_set_error("scale: %g is negative (0 means 1/sqrt(head_dim); the kernels take a row's max before "
                      "scaling)", (double)a->scale);
        return FAT_ERR_INVALID;
    }
    if (a->causal != 0 && a->causal != 1) {
        fat_set_error("causal: %d, must be 0 or 1", a->causal);
        return FAT_ERR_INVALID;
    }
    if ((st = check_window("window_left", a->window_left)) ||
        (st = check_window("window_right", a->window_right)))
        return st;
    /* written so that NaN fails too */
    if (!(a->softcap >= 0.0f)) {
        fat_set_error("softcap: must be >= 0 (got %g)", (double)a->softcap);
        return FAT_ERR_INVALID;
    }
    if (isinf(a->softcap)) {
        fat_set_error("softcap: must be finite (0 turns it off)");
        return FAT_ERR_INVALID;
    }
    return FAT_OK;
}

/*
 * The strides of one tensor of `outer` x `seqlen` x `heads` rows: non-negative (GPU: multiples of 8
 * elements; a tensor the call writes: no zero stride along a dimension longer than one), and the
 * offset of its last element representable as a pointer offset. With varlen the batch stride is
 * ignored and the sequence dimension holds at most batch * seqlen rows. A paged cache's outer
 * dimension is its pages, of page_size rows.
 */
static fat_status check_tensor(const fat_attn_args *a, const char *name, const int64_t st[3], int64_t outer,
                               int seqlen, int heads, int written, int gpu)
{
    const char *dims[3] = { outer == a->batch ? "batch" : "page", "sequence", "head" };
    int varlen = a->cu_seqlens_q != NULL;
    int64_t count[3], last = a->head_dim - 1;
    int64_t limit = addressable(elem_size(a->dtype));

    count[0] = varlen ? 1 : outer;
    count[1] = varlen ? (int64_t)a->batch * seqlen : seqlen;
    count[2] = heads;
    for (int i = varlen ? 1 : 0; i < 3; i++) {
        if (st[i] < 0) {
            fat_set_error("%s_stride[%d]: %" PRId64 " is negative (%s stride)", name, i, st[i], dims[i]);
            return FAT_ERR_INVALID;
        }
        /* a zero stride broadcasts an input, but would make rows of the output (or of a cache the
         * call appends to) overwrite each other (and race between threads) */
        if (st[i] == 0 && count[i] > 1 && written) {
            fat_set_error("%s_stride[%d]: 0, but %s has %" PRId64 " entries along the %s dimension "
                          "that would overwrite each other", name, i, name, count[i], dims[i]);
            return FAT_ERR_INVALID;
        }
        if (gpu && st[i] % GPU_STRIDE_MULT != 0) {
            fat_set_error("%s_stride[%d]: %" PRId64 " is not a multiple of %d elements (%s stride)",
                          name, i, st[i], GPU_STRIDE_MULT, dims[i]);
            return FAT_ERR_INVALID;
        }
        if (last > limit || add_product(&last, count[i] - 1, st[i], limit)) {
            fat_set_error("%s_stride: the offset of the last element of %s overflows "
                          "(batch %d, seqlen %d, heads %d, head_dim %d)",
                          name, name, a->batch, seqlen, heads, a->head_dim);
            return FAT_ERR_INVALID;
        }
    }
    return FAT_OK;
}

static fat_status check_lse_size(const fat_attn_args *a)
{
    int64_t rows = 0, total = 0, limit = addressable(sizeof(float));

    if (!a->lse)
        return FAT_OK;
    if (add_product(&rows, a->batch, a->heads_q, limit) ||
        add_product(&total, rows, a->seqlen_q, limit)) {
        fat_set_error("lse: batch * heads_q * seqlen_q floats overflow a pointer offset");
        return FAT_ERR_INVALID;
    }
    return FAT_OK;
}

/* The alignment of the KV cache's own pointers (those set). */
static fat_status check_cache_pointers(const fat_attn_args *a, int gpu)
{
    size_t align = gpu ? GPU_ALIGN : elem_size(a->dtype);
    fat_status st;

    if ((st = check_pointer("cache_seqlens", a->cache_seqlens, sizeof(int32_t))) ||
        (st = check_pointer("block_table", a->block_table, sizeof(int32_t))) ||
        (st = check_pointer("k_new", a->k_new, align)) || (st = check_pointer("v_new", a->v_new, align)))
        return st;
    return FAT_OK;
}

/* The KV cache fields: what the struct alone tells (the values of cache_seqlens and block_table
 * live with the tensors, on the GPU for the runtime; fat_attn_cpu checks them on the host). */
static fat_status check_cache(const fat_attn_args *a, int gpu)
{
    fat_status st;

    if (!a->cache_seqlens && !a->block_table && !a->k_new && !a->v_new)
        return FAT_OK;
    if (a->cu_seqlens_q) {
        fat_set_error("%s: not with cu_seqlens (varlen): a KV cache gives each sequence its length "
                      "through cache_seqlens", a->block_table ? "block_table" : a->cache_seqlens ? "cache_seqlens"
                      : "k_new");
        return FAT_ERR_INVALID;
    }
    if ((st = check_cache_pointers(a, gpu)))
        return st;
    if (a->block_table) {
        if (!FAT_PAGE_SIZE_OK(a->page_size)) {
            fat_set_error("page_size: %d, want a multiple of 8 from 8 to 256 (keys per page)", a->page_size);
            return FAT_ERR_INVALID;
        }
        if ((st = check_positive("num_pages", a->num_pages)) ||
            (st = check_positive("block_table_stride", a->block_table_stride)))
            return st;
        if ((int64_t)a->seqlen_k > (int64_t)a->block_table_stride * a->page_size) {
            fat_set_error("seqlen_k: %d keys per sequence, but block_table_stride %d x page_size %d holds %" PRId64,
                          a->seqlen_k, a->block_table_stride, a->page_size,
                          (int64_t)a->block_table_stride * a->page_size);
            return FAT_ERR_INVALID;
        }
    }
    if (!a->k_new != !a->v_new) {
        fat_set_error("k_new and v_new must both be set or both NULL");
        return FAT_ERR_INVALID;
    }
    if (!a->k_new)
        return FAT_OK;
    if (!a->cache_seqlens) {
        fat_set_error("k_new: needs cache_seqlens, the keys already in each sequence's cache (where to append)");
        return FAT_ERR_INVALID;
    }
    if ((st = check_positive("seqlen_new", a->seqlen_new)))
        return st;
    if (a->seqlen_new > a->seqlen_k) {
        fat_set_error("seqlen_new: %d rows do not fit a cache of seqlen_k %d keys per sequence", a->seqlen_new,
                      a->seqlen_k);
        return FAT_ERR_INVALID;
    }
    if ((st = check_tensor(a, "k_new", a->k_new_stride, a->batch, a->seqlen_new, a->heads_kv, 0, gpu)) ||
        (st = check_tensor(a, "v_new", a->v_new_stride, a->batch, a->seqlen_new, a->heads_kv, 0, gpu)))
        return st;
    return FAT_OK;
}

/* FAT_OK, or FAT_ERR_INVALID with fat_last_error() naming the first bad field, checked in this
 * order: dtype, sizes, pointers, mask, the KV cache fields, strides of q, k, v, o, lse size. */
fat_status fat_attn_check(const fat_attn_args *a, int gpu)
{
    fat_status st;

    if (!a) {
        fat_set_error("args: NULL pointer");
        return FAT_ERR_INVALID;
    }
    if ((st = check_dtype(a, gpu)) ||
        (st = check_sizes(a, gpu)) ||
        (st = check_pointers(a, gpu)) ||
        (st = check_mask(a)) ||
        (st = check_cache(a, gpu)))
        return st;
    int paged = a->block_table != NULL, append = a->k_new != NULL;
    int64_t kv_outer = paged ? a->num_pages : a->batch;
    int kv_rows = paged ? a->page_size : a->seqlen_k;
    if ((st = check_tensor(a, "q", a->q_stride, a->batch, a->seqlen_q, a->heads_q, 0, gpu)) ||
        (st = check_tensor(a, "k", a->k_stride, kv_outer, kv_rows, a->heads_kv, append, gpu)) ||
        (st = check_tensor(a, "v", a->v_stride, kv_outer, kv_rows, a->heads_kv, append, gpu)) ||
        (st = check_tensor(a, "o", a->o_stride, a->batch, a->seqlen_q, a->heads_q, 1, gpu)) ||
        (st = check_lse_size(a)))
        return st;
    return FAT_OK;
}

/* The calls of a loop repeat their sizes, strides and mask and change only their pointers: the
 * thread remembers the last call that passed the whole check, with its pointers masked (each kept
 * as set or NULL, which changes the rules), and a call equal to it checks its pointers alone. */
static _Thread_local fat_attn_args last_ok;
static _Thread_local int have_last_ok;

static void mask_pointers(const fat_attn_args *a, fat_attn_args *m)
{
    *m = *a;
    m->q = m->k = m->v = NULL;
    m->o = NULL;
    m->lse = a->lse ? (float *)(uintptr_t)16 : NULL;
    m->cu_seqlens_q = a->cu_seqlens_q ? (const int32_t *)(uintptr_t)16 : NULL;
    m->cu_seqlens_k = a->cu_seqlens_k ? (const int32_t *)(uintptr_t)16 : NULL;
    m->cache_seqlens = a->cache_seqlens ? (const int32_t *)(uintptr_t)16 : NULL;
    m->block_table = a->block_table ? (const int32_t *)(uintptr_t)16 : NULL;
    m->k_new = a->k_new ? (const void *)(uintptr_t)16 : NULL;
    m->v_new = a->v_new ? (const void *)(uintptr_t)16 : NULL;
}

/* fat_attn_check(a, 1), with the shortcut above. Same codes and messages. */
fat_status args_check_gpu(const fat_attn_args *a)
{
    fat_attn_args m;

    if (!a)
        return fat_attn_check(a, 1);
    mask_pointers(a, &m);
    if (have_last_ok && memcmp(&m, &last_ok, sizeof m) == 0)
        return check_pointers(a, 1) ? FAT_ERR_INVALID : check_cache_pointers(a, 1);
    fat_status st = fat_attn_check(a, 1);
    if (st == FAT_OK) {
        last_ok = m;
        have_last_ok = 1;
    }
    return st;
}
