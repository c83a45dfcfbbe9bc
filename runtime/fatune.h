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
    float scale;                      /* 0: 1 / sqrt(head_dim) */
    int causal;
    int window_left, window_right;    /* -1: unbounded */
    float softcap;                    /* 0: off */
    const int32_t *cu_seqlens_q, *cu_seqlens_k;  /* both NULL unless varlen */
} fat_attn_args;

/* Fills *a with the sizes, BSHD-contiguous strides, no mask, default scale, NULL pointers. */
void fat_attn_args_init(fat_attn_args *a, fat_dtype dt, int batch, int heads_q, int heads_kv,
                        int seqlen_q, int seqlen_k, int head_dim);

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

#ifdef __cplusplus
}
#endif
#endif
