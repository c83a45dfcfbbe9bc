/*
 * kernel.c: loading generated cubins and launching them with the shared parameter block.
 */
#include "kernel.h"

#include <math.h>
#include <string.h>

fat_status kernel_load(const void *cubin, const char *entry, size_t smem, kernel *k) {
    fat_status st = FAT_OK;
    memset(k, 0, sizeof *k);
    CU_CHECK(ModuleLoadData(&k->mod, cubin));
    CU_CHECK(ModuleGetFunction(&k->fn, k->mod, entry));
    CU_CHECK(FuncGetAttribute(&k->registers, CU_FUNC_ATTRIBUTE_NUM_REGS, k->fn));
    CU_CHECK(FuncGetAttribute(&k->local_bytes, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, k->fn));
    if (smem > 48 * 1024)
        CU_CHECK(FuncSetAttribute(k->fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)smem));
    k->smem = smem;
out:
    if (st != FAT_OK) kernel_unload(k);
    return st;
}

void kernel_unload(kernel *k) {
    if (k->mod) cu.ModuleUnload(k->mod);
    memset(k, 0, sizeof *k);
}

void kernel_params(const fat_attn_args *a, void *workspace, int total_q, fat_kparams *kp) {
    memset(kp, 0, sizeof *kp);
    kp->q = a->q; kp->k = a->k; kp->v = a->v; kp->o = a->o; kp->lse = a->lse;
    kp->ws = workspace;
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
    kp->total_q = a->cu_seqlens_q ? total_q : a->batch * a->seqlen_q;
}

fat_status kernel_launch(const kernel *k, const unsigned grid[3], const unsigned block[3],
                         const fat_kparams *kp, CUstream stream) {
    fat_status st = FAT_OK;
    void *args[] = { (void *)kp };
    CU_CHECK(LaunchKernel(k->fn, grid[0], grid[1], grid[2], block[0], block[1], block[2],
                          (unsigned)k->smem, stream, args, NULL));
out:
    return st;
}
