/*
 * decode_step.c: fatune in an inference server's decoding loop, from C. The KV cache is paged as
 * vLLM keeps it (one pool of pages of `page` keys, each sequence's pages named by its row of a block
 * table, in shuffled order), the sequences hold different numbers of keys, and each step brings one
 * new token per sequence: one fat_attn_fwd call appends its k and v to the cache at cache_seqlens
 * and attends to everything cached (flash_attn_with_kvcache's semantics). After each step the
 * output and the whole cache are compared with the CPU attention doing the same on host copies, and
 * the kernel that served the step is printed (fat_query; its .append says whether a separate copy
 * kernel ran first).
 *
 *   build/examples/decode_step [--db FILE] [--gpu N] [--steps N] [--page N]
 *
 * Build: cc decode_step.c $(pkg-config --cflags --libs fatune) -lcuda   (or `make examples`).
 */
#include "example.h"

#include <math.h>
#include <stdlib.h>

enum { B = 4, HQ = 32, HKV = 8, D = 128 };
static const int32_t start_len[B] = { 1, 100, 1000, 3000 };   /* keys already cached per sequence */

int main(int argc, char **argv) {
    const char *db = NULL;
    int gpu = 0, steps = 4, page = 16;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--db") && i + 1 < argc) db = argv[++i];
        else if (!strcmp(argv[i], "--gpu") && i + 1 < argc) gpu = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--page") && i + 1 < argc) page = atoi(argv[++i]);
        else { fprintf(stderr, "usage: decode_step [--db FILE] [--gpu N] [--steps N] [--page N]\n"); return 2; }
    }
    if (steps < 1 || page < 8 || page > 256 || page % 8) {
        fprintf(stderr, "decode_step: --steps >= 1, --page a multiple of 8 from 8 to 256\n");
        return 2;
    }
    const fat_dtype dt = FAT_BF16;

    /* The pool: enough pages for every sequence's last step, plus spare pages no entry names. */
    int max_len = 0;
    for (int b = 0; b < B; b++) max_len = start_len[b] + steps > max_len ? start_len[b] + steps : max_len;
    const int per_seq = (max_len + page - 1) / page, npages = B * per_seq + 3;
    const size_t row = (size_t)HKV * D, ncache = (size_t)npages * page * row;
    const size_t nq = (size_t)B * HQ * D, nnew = (size_t)B * row;
    uint16_t *kc = malloc(ncache * 2), *vc = malloc(ncache * 2), *kc_ref = malloc(ncache * 2), *vc_ref = malloc(ncache * 2);
    uint16_t *hq = malloc(nq * 2), *hk = malloc(nnew * 2), *hv = malloc(nnew * 2), *ho = malloc(nq * 2), *ref = malloc(nq * 2);
    int32_t *table = malloc((size_t)B * per_seq * 4), *perm = malloc((size_t)npages * 4), lens[B];
    if (!kc || !vc || !kc_ref || !vc_ref || !hq || !hk || !hv || !ho || !ref || !table || !perm) {
        fprintf(stderr, "decode_step: out of memory\n");
        return 1;
    }
    srand(14);
    for (int i = 0; i < npages; i++) perm[i] = i;
    for (int i = npages - 1; i > 0; i--) { int j = rand() % (i + 1), t = perm[i]; perm[i] = perm[j]; perm[j] = t; }
    for (int i = 0; i < B * per_seq; i++) table[i] = perm[i];
    for (size_t i = 0; i < ncache; i++) {
        kc[i] = to_half((float)rand() / RAND_MAX * 2 - 1, dt);
        vc[i] = to_half((float)rand() / RAND_MAX * 2 - 1, dt);
    }
    memcpy(kc_ref, kc, ncache * 2);
    memcpy(vc_ref, vc, ncache * 2);
    memcpy(lens, start_len, sizeof lens);

    fat_ctx *ctx;
    fat_status st = fat_open(db, gpu, &ctx);
    if (st != FAT_OK) { fprintf(stderr, "decode_step: %s: %s\n", fat_strerror(st), fat_errmsg(NULL)); return 1; }
    CUdevice dev;
    CUcontext cuctx;
    CUdeviceptr d_kc, d_vc, d_q, d_k, d_v, d_o, d_lens, d_table;
    if (!cuda_ok(cuInit(0), "cuInit") || !cuda_ok(cuDeviceGet(&dev, gpu), "cuDeviceGet") ||
        !cuda_ok(cuDevicePrimaryCtxRetain(&cuctx, dev), "cuDevicePrimaryCtxRetain") ||
        !cuda_ok(cuCtxSetCurrent(cuctx), "cuCtxSetCurrent") ||
        !cuda_ok(cuMemAlloc(&d_kc, ncache * 2), "cuMemAlloc") || !cuda_ok(cuMemAlloc(&d_vc, ncache * 2), "cuMemAlloc") ||
        !cuda_ok(cuMemAlloc(&d_q, nq * 2), "cuMemAlloc") || !cuda_ok(cuMemAlloc(&d_k, nnew * 2), "cuMemAlloc") ||
        !cuda_ok(cuMemAlloc(&d_v, nnew * 2), "cuMemAlloc") || !cuda_ok(cuMemAlloc(&d_o, nq * 2), "cuMemAlloc") ||
        !cuda_ok(cuMemAlloc(&d_lens, sizeof lens), "cuMemAlloc") ||
        !cuda_ok(cuMemAlloc(&d_table, (size_t)B * per_seq * 4), "cuMemAlloc") ||
        !cuda_ok(cuMemcpyHtoD(d_kc, kc, ncache * 2), "cuMemcpyHtoD") ||
        !cuda_ok(cuMemcpyHtoD(d_vc, vc, ncache * 2), "cuMemcpyHtoD") ||
        !cuda_ok(cuMemcpyHtoD(d_table, table, (size_t)B * per_seq * 4), "cuMemcpyHtoD"))
        return 1;

    /* One call's arguments: q [B, 1, HQ, D]; the paged cache [npages, page, HKV, D] with (page, row,
     * head) strides; the new rows k, v [B, 1, HKV, D]; seqlen_k is what the table can hold. */
    fat_attn_args a, h;
    fat_attn_args_init(&a, dt, B, HQ, HKV, 1, per_seq * page, D);
    a.causal = 1;
    a.q = (const void *)d_q; a.k = (const void *)d_kc; a.v = (const void *)d_vc; a.o = (void *)d_o;
    a.k_stride[0] = a.v_stride[0] = (int64_t)page * row;
    a.k_stride[1] = a.v_stride[1] = (int64_t)row;
    a.k_stride[2] = a.v_stride[2] = D;
    a.cache_seqlens = (const int32_t *)d_lens;
    a.block_table = (const int32_t *)d_table;
    a.block_table_stride = per_seq;
    a.page_size = page;
    a.num_pages = npages;
    a.k_new = (const void *)d_k; a.v_new = (const void *)d_v;
    a.seqlen_new = 1;
    a.k_new_stride[0] = a.v_new_stride[0] = (int64_t)row;   /* one new row per sequence */
    a.k_new_stride[1] = a.v_new_stride[1] = (int64_t)row;
    a.k_new_stride[2] = a.v_new_stride[2] = D;

    int bad = 0;
    for (int s = 0; s < steps && !bad; s++) {
        for (size_t i = 0; i < nq; i++) hq[i] = to_half((float)rand() / RAND_MAX * 2 - 1, dt);
        for (size_t i = 0; i < nnew; i++) {
            hk[i] = to_half((float)rand() / RAND_MAX * 2 - 1, dt);
            hv[i] = to_half((float)rand() / RAND_MAX * 2 - 1, dt);
        }
        if (!cuda_ok(cuMemcpyHtoD(d_q, hq, nq * 2), "cuMemcpyHtoD") || !cuda_ok(cuMemcpyHtoD(d_k, hk, nnew * 2), "cuMemcpyHtoD") ||
            !cuda_ok(cuMemcpyHtoD(d_v, hv, nnew * 2), "cuMemcpyHtoD") ||
            !cuda_ok(cuMemcpyHtoD(d_lens, lens, sizeof lens), "cuMemcpyHtoD"))
            return 1;

        /* The step: append and attend, asynchronous on the stream like any kernel. */
        double t0 = now_ms();
        if ((st = fat_attn_fwd(ctx, &a, NULL)) != FAT_OK) {
            fprintf(stderr, "decode_step: %s: %s\n", fat_strerror(st), fat_errmsg(ctx));
            return 1;
        }
        if (!cuda_ok(cuCtxSynchronize(), "the decoding step")) return 1;
        double gpu_ms = now_ms() - t0;

        /* The same step on the CPU, on host copies of everything. */
        h = a;
        h.q = hq; h.k = kc_ref; h.v = vc_ref; h.o = ref; h.k_new = hk; h.v_new = hv;
        h.cache_seqlens = lens; h.block_table = table;
        if ((st = fat_attn_cpu(&h, NULL)) != FAT_OK) { fprintf(stderr, "decode_step: %s\n", fat_last_error()); return 1; }
        if (!cuda_ok(cuMemcpyDtoH(ho, d_o, nq * 2), "cuMemcpyDtoH") || !cuda_ok(cuMemcpyDtoH(kc, d_kc, ncache * 2), "cuMemcpyDtoH") ||
            !cuda_ok(cuMemcpyDtoH(vc, d_vc, ncache * 2), "cuMemcpyDtoH"))
            return 1;
        double err = 0;
        for (size_t i = 0; i < nq; i++) err = fmax(err, fabs(from_half(ho[i], dt) - from_half(ref[i], dt)));
        int same_cache = !memcmp(kc, kc_ref, ncache * 2) && !memcmp(vc, vc_ref, ncache * 2);

        fat_choice c;
        fat_query(ctx, &a, &c);
        printf("step %d: lengths %d %d %d %d + 1, %s %s%s%s, %.3f ms (first: compiles), max |GPU - CPU| %.3g, cache %s\n",
               s, lens[0], lens[1], lens[2], lens[3], c.family, c.params, c.append[0] ? " after " : "", c.append,
               gpu_ms, err, same_cache ? "identical" : "DIFFERS");
        bad = err > 0.05 || !same_cache;
        for (int b = 0; b < B; b++) lens[b]++;   /* the appended token is now cached */
    }

    cuMemFree(d_kc); cuMemFree(d_vc); cuMemFree(d_q); cuMemFree(d_k); cuMemFree(d_v); cuMemFree(d_o);
    cuMemFree(d_lens); cuMemFree(d_table);
    fat_close(ctx);
    cuDevicePrimaryCtxRelease(dev);
    free(kc); free(vc); free(kc_ref); free(vc_ref); free(hq); free(hk); free(hv); free(ho); free(ref);
    free(table); free(perm);
    printf("%s\n", bad ? "MISMATCH" : "ok");
    return bad;
}
