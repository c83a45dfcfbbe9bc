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

#define FAT_KPARAMS_SIZE 224

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
    int64_t reserved[2];
} fat_kparams;

_Static_assert(sizeof(fat_kparams) == FAT_KPARAMS_SIZE, "fat_kparams size");

#endif
