/*
 * fatune.h: the public interface of libfatune.
 *
 * fatune generates FlashAttention kernels from Lua templates, compiles them with NVRTC at run time,
 * tunes them per GPU and shape, and launches the best one. Everything not declared here is private.
 *
 * Conventions (SQLite's): every fallible function returns a fat_status; results come back through
 * out-parameters placed last; fat_strerror() names a code, fat_errmsg() gives the last detailed message.
 */
#ifndef FATUNE_H
#define FATUNE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FAT_VERSION "0.1.0"

typedef enum fat_status {
    FAT_OK = 0,
    FAT_ERR_INVALID,      /* bad argument or input: the message names the field */
    FAT_ERR_UNSUPPORTED,  /* valid but not supported by this build or device */
    FAT_ERR_NO_GPU,       /* no CUDA driver or no such GPU */
    FAT_ERR_CUDA,         /* a CUDA driver call failed */
    FAT_ERR_NVRTC,        /* NVRTC is missing or a compilation failed */
    FAT_ERR_TEMPLATE,     /* a Lua template or shapes file raised an error */
    FAT_ERR_DB,           /* SQLite error, or a file that is not a usable fatune database */
    FAT_ERR_NOMEM,        /* out of host memory */
    FAT_ERR_IO,           /* a file could not be read or written */
    FAT_ERR_NOT_FOUND     /* the thing looked up does not exist */
} fat_status;

/* A static string naming the code ("invalid argument"). Never NULL. */
const char *fat_strerror(fat_status code);

/* The detailed message of the last failed call made by this thread without a context, e.g.
 * "head_dim: 100 is not a multiple of 8". Valid until the next fatune call on this thread. */
const char *fat_last_error(void);

typedef enum fat_dtype {
    FAT_FP16 = 1,
    FAT_BF16 = 2,
    FAT_FP32 = 3          /* CPU attention only */
} fat_dtype;

/* "fp16", "bf16", "fp32", or "?" */
const char *fat_dtype_name(fat_dtype dt);

/* Feature bits of a problem: a kernel is specialised on them at compile time. */
#define FAT_FEAT_WINDOW  1u  /* sliding window (window_left / window_right) */
#define FAT_FEAT_SOFTCAP 2u  /* scores = softcap * tanh(scores / softcap) */
#define FAT_FEAT_VARLEN  4u  /* variable-length batch through cu_seqlens */
#define FAT_FEAT_PAGED   8u  /* K/V read through block_table (a paged KV cache), the page size below */
#define FAT_FEAT_CACHE  16u  /* each sequence's key count from cache_seqlens (a KV cache) */
#define FAT_FEAT_APPEND 32u  /* k_new / v_new written into the cache by the call */
/* A paged problem's page size (keys per page, 8 to 256) is part of its features: bits 16-24. */
#define FAT_FEAT_PAGE_SHIFT 16
#define FAT_FEAT_PAGE_SIZE(f) ((int)(((unsigned)(f) >> FAT_FEAT_PAGE_SHIFT) & 0x1ffu))
/* The page sizes a call may have: a multiple of 8 from 8 to 256 keys. */
#define FAT_PAGE_SIZE_OK(n) ((n) >= 8 && (n) <= 256 && (n) % 8 == 0)

/* A problem shape: what a kernel is tuned for. */
typedef struct fat_problem {
    fat_dtype dtype;
    int head_dim;
    int causal;
    unsigned features;
    int batch, heads_q, heads_kv, seqlen_q, seqlen_k;
} fat_problem;

/*
 * One attention call: O = softmax(scale * Q Kᵀ + mask) V, per batch and query head.
 *
 * Pointers are device pointers for the GPU entry points and host pointers for fat_attn_cpu().
 * Strides are in elements, for the batch, sequence and head dimensions in that order; the last
 * (head_dim) dimension is contiguous. fat_attn_args_init() fills BSHD-contiguous strides.
 * Query head h reads KV head h / (heads_q / heads_kv) (GQA; MQA when heads_kv == 1).
 * Masking: query i of a sequence sees key j when
 *   causal:  j <= i + seqlen_k - seqlen_q                       (aligned bottom-right)
 *   window:  i + sk - sq - window_left <= j <= i + sk - sq + window_right  (a bound of -1 is absent)
 * Rows that see no key give zeros and lse = -inf.
 * lse (optional) is fp32, natural log: lse[(b * heads_q + h) * seqlen_q + i]; with varlen
 * lse[h * total_q + cu_seqlens_q[b] + i].
 * Varlen: cu_seqlens_q/k hold batch + 1 offsets in tokens, cu[0] = 0; sequence b occupies rows
 * cu[b] .. cu[b+1]-1 of the sequence dimension and the batch stride is ignored; seqlen_q/k bound
 * every sequence's length (the maxima over the batch).
 * causal is 0 or 1; o may not alias itself (no zero stride along a dimension longer than 1).
 */
typedef struct fat_attn_args {
    fat_dtype dtype;
    int batch, heads_q, heads_kv, seqlen_q, seqlen_k, head_dim;
    const void *q, *k, *v;
    void *o;
    float *lse;                       /* may be NULL */
    int64_t q_stride[3], k_stride[3], v_stride[3], o_stride[3];
    float scale;                      /* 0: 1 / sqrt(head_dim); negative: FAT_ERR_INVALID */
    int causal;
    int window_left, window_right;    /* -1: unbounded */
    float softcap;                    /* 0: off */
    const int32_t *cu_seqlens_q, *cu_seqlens_k;  /* both NULL unless varlen */
    int total_q;                      /* varlen: must equal cu_seqlens_q[batch], the rows of q; it is the
                                         row stride of lse, so a wrong value writes lse out of place
                                         (it cannot be checked: cu_seqlens live on the GPU). May be 0
                                         when lse is NULL; ignored without varlen. */
    int total_k;                      /* varlen: cu_seqlens_k[batch], the rows of k and v. The kernels that
                                         read k and v through tensor maps (flash_hopper) need it to bound
                                         their copies; a call whose kernel needs it and gives 0 is
                                         FAT_ERR_INVALID naming total_k. Ignored without varlen. */

    /* A KV cache as an inference server keeps it (docs/runtime.md, "KV cache"). Not with varlen.
     * fat_attn_cpu serves every form; on the GPU the decode family does up to 16 query rows per KV
     * head, and flash_v2 (sm_80 on) and flash_hopper (sm_90a) longer chunks without an append (their
     * keys already in the cache; with k_new: FAT_ERR_UNSUPPORTED). The GPU cannot check
     * cache_seqlens and block_table on the host: a sequence whose length is out of range gets NaN in
     * o and lse, so do the rows whose reads name a page outside [0, num_pages) (a chunk's rows that
     * never read that page may be finite), and nothing out of range is read or written. */
    const int32_t *cache_seqlens;     /* [batch]: keys of sequence b already in k and v (before k_new).
                                         NULL: seqlen_k for every sequence (and no k_new). Sequence b
                                         attends to cache_seqlens[b] + seqlen_new keys, at most
                                         seqlen_k (checked where the values are readable: on the host
                                         by fat_attn_cpu). Causal and window are bottom-right aligned
                                         on each sequence's own length. */
    const int32_t *block_table;       /* [batch, block_table_stride]: paged k and v, [num_pages,
                                         page_size, heads_kv, head_dim] with k_stride and v_stride =
                                         (page, row, head) strides; key j of sequence b is row
                                         j % page_size of page block_table[b * block_table_stride +
                                         j / page_size]. Pages in any order, shared or not. NULL:
                                         k and v are [batch, seqlen_k, heads_kv, head_dim]. */
    int block_table_stride;           /* entries per sequence; seqlen_k <= block_table_stride * page_size */
    int page_size;                    /* keys per page: a multiple of 8 from 8 to 256 */
    int num_pages;                    /* pages in k and v: an entry the call reads must be in
                                         [0, num_pages) (FAT_ERR_INVALID naming block_table) */
    const void *k_new, *v_new;        /* [batch, seqlen_new, heads_kv, head_dim] (k_new_stride,
                                         v_new_stride): written into k and v at keys cache_seqlens[b]
                                         .. cache_seqlens[b] + seqlen_new - 1 before attending, so the
                                         caches are written (k and v must be writable memory, even
                                         though the fields are const). Needs cache_seqlens. NULL: no
                                         append. */
    int seqlen_new;                   /* rows of k_new and v_new per sequence (>= 1 with k_new) */
    int64_t k_new_stride[3], v_new_stride[3];
} fat_attn_args;

/* Fills *a with the sizes, BSHD-contiguous strides, no mask, default scale, NULL pointers. */
void fat_attn_args_init(fat_attn_args *a, fat_dtype dt, int batch, int heads_q, int heads_kv,
                        int seqlen_q, int seqlen_k, int head_dim);

/* sizeof(fat_attn_args) in this library: a binding that fills the struct itself (the Python
 * package) compares it with its own and refuses a library built from another version of the
 * struct instead of misreading its fields. */
size_t fat_attn_args_size(void);

/* Checks every field of *a without touching memory. FAT_OK or FAT_ERR_INVALID with a message
 * naming the field (fat_last_error()). gpu != 0 applies the GPU kernels' rules (fp16/bf16 only,
 * head_dim a multiple of 8 up to 256, 16-byte aligned pointers and strides). */
fat_status fat_attn_check(const fat_attn_args *a, int gpu);

/* CPU attention: the reference and the teaching baseline, in three loop orders. */
typedef enum fat_cpu_algo {
    FAT_CPU_NAIVE = 0,   /* S = QKᵀ materialised per row, softmax, then PV */
    FAT_CPU_FLASH_V1,    /* KV blocks outer, Q blocks inner, O/m/l in an fp32 scratch per head */
    FAT_CPU_FLASH_V2     /* Q blocks outer, KV loop inside, online softmax in registers */
} fat_cpu_algo;

typedef struct fat_cpu_opts {
    fat_cpu_algo algo;
    int block_m, block_n;   /* tile sizes of the flash loop orders, up to 4096; 0: 64 */
    int threads;            /* 0: all cores; capped at 1024 and at the work items */
} fat_cpu_opts;

/* Runs attention on the host, fp32 accumulation. opts may be NULL (flash_v2 order, all cores).
 * Returns FAT_OK, FAT_ERR_INVALID (fat_last_error() names the field) or FAT_ERR_NOMEM. */
fat_status fat_attn_cpu(const fat_attn_args *a, const fat_cpu_opts *opts);


/* ---------------------------------------------------------------------------------------------
 * The runtime: the tuned kernel for every call.
 *
 * fat_open() reads the device's tuned rows (best configurations and where their cubins are) from
 * the database once; each fat_attn_fwd() looks its problem up in memory and launches on the
 * caller's stream. The first call of a shape chooses a configuration, loads its cubin (from the
 * database, or compiled with NVRTC and kept) and remembers the kernel; every later call of that
 * shape costs a lock-free hash lookup and one cuLaunchKernel, with no allocation. A context is safe
 * to use from many threads and streams at once. docs/runtime.md has the whole story.
 */
typedef struct fat_ctx fat_ctx;

/* How a call found its kernel, from the most to the least specific. */
typedef enum fat_level {
    FAT_LEVEL_EXACT = 0,      /* the problem itself was tuned on this device */
    FAT_LEVEL_BUCKET,         /* a tuned problem of the same kind with seqlens in the same powers of 2 */
    FAT_LEVEL_NEAREST,        /* the nearest tuned problem of the same kind (log-space distance) */
    FAT_LEVEL_DEVICE,         /* the configuration that won most often on this device at this dtype
                                 and head_dim (never for a decoding step) */
    FAT_LEVEL_DEFAULT         /* the built-in default of the architecture and head_dim */
} fat_level;

/* "exact", "bucket", "nearest", "device", "default", or "?" */
const char *fat_level_name(fat_level level);

/* Opens GPU `gpu` (a CUDA device ordinal) with the tuned database at db_path. The database may be
 * read-only; db_path may be NULL or name a missing file: then every call uses the built-in defaults,
 * compiled with NVRTC on first use and kept in memory. Only rows tuned on this GPU model (same
 * name and compute capability) are used, and only cubins built for its architecture are loaded.
 * The device's primary context is retained (the one the CUDA runtime and PyTorch use) but not made
 * current on the calling thread. $FATUNE_LOG=1 logs to stderr until fat_set_log() says otherwise.
 * Returns FAT_OK, FAT_ERR_INVALID (ctx NULL), FAT_ERR_NO_GPU (no driver, no such GPU: the message
 * says which), FAT_ERR_UNSUPPORTED (a GPU older than sm_80, or an architecture this build cannot
 * compile for, such as sm_87, sm_100 or sm_120: the message names it), FAT_ERR_IO (db_path exists
 * but cannot be read: the message names the file and the reason), FAT_ERR_DB (not a fatune
 * database: the message says why), FAT_ERR_CUDA, FAT_ERR_NOMEM. On failure *ctx is NULL and
 * fat_errmsg(NULL) has the message. */
fat_status fat_open(const char *db_path, int gpu, fat_ctx **ctx);

/* Releases everything; accepts NULL. No call may be running on ctx. Before unloading its kernels
 * it synchronises the device's primary context (cuCtxSynchronize), so kernels still running are
 * waited for; that waits for all other work in the primary context too (PyTorch's, say). */
void fat_close(fat_ctx *ctx);

/* The last detailed error message of a fatune call made by this thread (messages are per thread,
 * so threads sharing ctx never read each other's). ctx may be NULL. Valid until this thread's
 * next fatune call. */
const char *fat_errmsg(const fat_ctx *ctx);

/* Runs attention on the GPU: device pointers in args, launched on `stream` (a CUstream or
 * cudaStream_t of this GPU; NULL for the legacy default stream), asynchronous like any kernel
 * launch. Works from any thread, whatever context is current there (it is restored). The kernel
 * runs in the device's primary context, the one the CUDA runtime and PyTorch use: the pointers
 * (q, k, v, o, lse, cu_seqlens) and the stream must belong to it (cudaMalloc, PyTorch, CuPy, or
 * cuMemAlloc/cuStreamCreate with the primary context current). Memory or a stream of a context
 * made with cuCtxCreate is not checked: the launch fails (FAT_ERR_CUDA) or the kernel faults.
 * Checks the arguments first: FAT_ERR_INVALID names the field, and nothing is launched.
 * FAT_ERR_NVRTC when a kernel had to be compiled and could not be; FAT_ERR_CUDA when loading or
 * launching failed. */
fat_status fat_attn_fwd(fat_ctx *ctx, const fat_attn_args *args, void *stream);

/* What a call of some shape uses: the family, its parameters, the lookup level, and where its cubin
 * came from. */
typedef struct fat_choice {
    char family[32];
    char params[160];
    fat_level level;
    fat_problem tuned;        /* the tuned problem the choice came from (zero for the default) */
    double tuned_ms;          /* that problem's tuned median in ms; 0 for the default */
    char cubin[16];           /* "database", "compiled" (NVRTC, in this process) or "none" */
    char append[32];          /* "" or "ops.kv_append": a call with k_new whose kernel does not append
                                 (family above) has them copied into the cache by that kernel first,
                                 on the same stream (two launches, one call) */
} fat_choice;

/* Says which kernel fat_attn_fwd would launch for args (resolving it, JIT included, if this is a new
 * shape), without launching. Same checks and codes as fat_attn_fwd. */
fat_status fat_query(fat_ctx *ctx, const fat_attn_args *args, fat_choice *out);

/* Counters of a context, for tests and monitoring. */
typedef struct fat_stats {
    int tuned_rows;           /* best rows of this device read from the database */
    int shapes;               /* distinct call shapes resolved so far */
    int kernels;              /* kernels loaded */
    int from_db;              /* ... whose cubin came from the database */
    int compiled;             /* ... compiled with NVRTC by this context */
    double compile_ms;        /* NVRTC time spent by this context */
} fat_stats;

/* Fills *out. FAT_OK, or FAT_ERR_INVALID when ctx or out is NULL. */
fat_status fat_ctx_stats(fat_ctx *ctx, fat_stats *out);

/* Log messages (the database read at open, which level and cubin each new shape used, JIT
 * compilations, rows that do not apply) go to fn, one line without a newline; NULL turns logging
 * off. Setting a function sends it the summary of fat_open first. fn is called with the context's
 * lock held: it must not call fatune with the same ctx. */
typedef void (*fat_log_fn)(void *user, const char *message);
void fat_set_log(fat_ctx *ctx, fat_log_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif
