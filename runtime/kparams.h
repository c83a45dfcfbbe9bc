/*
 * kparams.h: the one parameter block every generated kernel takes, by value.
 *
 * Its CUDA twin is emitted by templates/prelude.lua (prelude.kparams_struct); both sides assert
 * the same size (FAT_KPARAMS_SIZE), so a change here that is not made there fails at compile time.
 * Private to fatune.
 */
#ifndef FAT_KPARAMS_H
#define FAT_KPARAMS_H

#include <stdint.h>

#define FAT_KPARAMS_SIZE 312

typedef struct fat_kparams {
    const void *q, *k, *v;
    void *o;
    float *lse;                        /* NULL: not written */
    void *ws;                          /* workspace of emit().workspace bytes, or NULL */
    const int32_t *cu_seqlens_q, *cu_seqlens_k;   /* NULL unless varlen */
    int64_t q_sb, q_ss, q_sh;          /* strides in elements: batch, sequence, head */
    int64_t k_sb, k_ss, k_sh;
    int64_t v_sb, v_ss, v_sh;
    int64_t o_sb, o_ss, o_sh;
    int32_t batch, heads_q, heads_kv, seqlen_q, seqlen_k, head_dim;
    int32_t window_left, window_right; /* -1: unbounded; causal kernels use right = 0 */
    float scale;                       /* softmax scale */
    float scale_log2;                  /* scale * log2(e), for exp2 */
    float softcap;                     /* 0: off */
    int32_t total_q;                   /* varlen: cu_seqlens_q[batch]; else batch * seqlen_q */
    /* a KV cache (fatune.h, fat_attn_args): k and v are the cache, seqlen_k its keys per sequence */
    int32_t page_size;                 /* paged: keys per page (the kernel's is compiled in) */
    const int32_t *cache_seqlens;      /* NULL: seqlen_k keys in every sequence */
    const int32_t *block_table;        /* NULL: k and v contiguous; else k_sb, v_sb are page strides */
    const void *k_new, *v_new;         /* NULL: no append */
    int64_t kn_sb, kn_ss, kn_sh;       /* strides of k_new and v_new */
    int64_t vn_sb, vn_ss, vn_sh;
    int32_t block_table_stride, num_pages, seqlen_new;
    int32_t reserved;
} fat_kparams;

_Static_assert(sizeof(fat_kparams) == FAT_KPARAMS_SIZE, "fat_kparams size");

#endif
