/*
 * attention.c: fatune from C. Opens a GPU with a tuned database (or none: built-in defaults,
 * compiled on first use), runs one attention call on device memory, checks it against the CPU
 * attention, and prints which kernel served it and how it was found.
 *
 *   build/examples/attention [--db FILE] [--gpu N] [--fp16] [--causal] [B HQ HKV SQ SK D]
 *   build/examples/attention --db tuned.db --causal 2 32 8 2048 2048 128
 *
 * fatune uses the GPU's primary context, the one the CUDA runtime and PyTorch use, so device
 * memory from cudaMalloc or torch works as it is; this example uses the driver API directly.
 * Build: cc attention.c $(pkg-config --cflags --libs fatune) -lcuda   (or `make examples`).
 */
#include "example.h"

#include <math.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    const char *db = NULL;
    int gpu = 0, causal = 0, dims[6] = { 2, 16, 4, 1024, 1024, 128 }, nd = 0;
    fat_dtype dt = FAT_BF16;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--db") && i + 1 < argc) db = argv[++i];
        else if (!strcmp(argv[i], "--gpu") && i + 1 < argc) gpu = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--fp16")) dt = FAT_FP16;
        else if (!strcmp(argv[i], "--causal")) causal = 1;
        else if (nd < 6 && atoi(argv[i]) > 0) dims[nd++] = atoi(argv[i]);
        else { fprintf(stderr, "usage: attention [--db FILE] [--gpu N] [--fp16] [--causal] [B HQ HKV SQ SK D]\n"); return 2; }
    }
    int b = dims[0], hq = dims[1], hkv = dims[2], sq = dims[3], sk = dims[4], d = dims[5];

    /* 1. Open the GPU with the tuned database. */
    fat_ctx *ctx;
    double t0 = now_ms();
    fat_status st = fat_open(db, gpu, &ctx);
    if (st != FAT_OK) { fprintf(stderr, "attention: %s: %s\n", fat_strerror(st), fat_errmsg(NULL)); return 1; }
    printf("fat_open: %.1f ms\n", now_ms() - t0);

    /* 2. Inputs: random values on the host, copied to the device. */
    fat_attn_args a, h;
    fat_attn_args_init(&a, dt, b, hq, hkv, sq, sk, d);
    a.causal = causal;
    size_t nq = (size_t)b * sq * hq * d, nk = (size_t)b * sk * hkv * d, nl = (size_t)b * hq * sq;
    uint16_t *hq16 = malloc(nq * 2), *hk16 = malloc(nk * 2), *hv16 = malloc(nk * 2), *ho16 = malloc(nq * 2);
    uint16_t *ref16 = malloc(nq * 2);
    float *lse = malloc(nl * 4), *lse_ref = malloc(nl * 4);
    if (!hq16 || !hk16 || !hv16 || !ho16 || !ref16 || !lse || !lse_ref) { fprintf(stderr, "attention: out of memory\n"); return 1; }
    srand(1);
    for (size_t i = 0; i < nq; i++) hq16[i] = to_half((float)rand() / RAND_MAX * 2 - 1, dt);
    for (size_t i = 0; i < nk; i++) hk16[i] = to_half((float)rand() / RAND_MAX * 2 - 1, dt);
    for (size_t i = 0; i < nk; i++) hv16[i] = to_half((float)rand() / RAND_MAX * 2 - 1, dt);

    CUdevice dev;
    CUcontext cuctx;
    CUdeviceptr q, k, v, o, l;
    if (!cuda_ok(cuInit(0), "cuInit") || !cuda_ok(cuDeviceGet(&dev, gpu), "cuDeviceGet") ||
        !cuda_ok(cuDevicePrimaryCtxRetain(&cuctx, dev), "cuDevicePrimaryCtxRetain") ||
        !cuda_ok(cuCtxSetCurrent(cuctx), "cuCtxSetCurrent") ||
        !cuda_ok(cuMemAlloc(&q, nq * 2), "cuMemAlloc") || !cuda_ok(cuMemAlloc(&k, nk * 2), "cuMemAlloc") ||
        !cuda_ok(cuMemAlloc(&v, nk * 2), "cuMemAlloc") || !cuda_ok(cuMemAlloc(&o, nq * 2), "cuMemAlloc") ||
        !cuda_ok(cuMemAlloc(&l, nl * 4), "cuMemAlloc") || !cuda_ok(cuMemcpyHtoD(q, hq16, nq * 2), "cuMemcpyHtoD") ||
        !cuda_ok(cuMemcpyHtoD(k, hk16, nk * 2), "cuMemcpyHtoD") || !cuda_ok(cuMemcpyHtoD(v, hv16, nk * 2), "cuMemcpyHtoD"))
        return 1;
    a.q = (const void *)q; a.k = (const void *)k; a.v = (const void *)v; a.o = (void *)o; a.lse = (float *)l;

    /* 3. The call: asynchronous on the stream (NULL: the legacy default stream). */
    t0 = now_ms();
    st = fat_attn_fwd(ctx, &a, NULL);
    if (st != FAT_OK) { fprintf(stderr, "attention: %s: %s\n", fat_strerror(st), fat_errmsg(ctx)); return 1; }
    if (!cuda_ok(cuCtxSynchronize(), "the attention kernel")) return 1;
    printf("first call (choose, load or compile, run): %.1f ms\n", now_ms() - t0);
    t0 = now_ms();
    for (int i = 0; i < 10; i++) fat_attn_fwd(ctx, &a, NULL);
    cuCtxSynchronize();
    printf("next calls: %.3f ms each\n", (now_ms() - t0) / 10);

    /* 4. Which kernel, and how it was found. */
    fat_choice c;
    fat_query(ctx, &a, &c);
    printf("kernel: %s %s\nlookup level: %s", c.family, c.params, fat_level_name(c.level));
    if (c.level != FAT_LEVEL_DEFAULT)
        printf(" (tuned problem b%d h%d/%d s%d/%d d%d: %.3f ms)", c.tuned.batch, c.tuned.heads_q, c.tuned.heads_kv,
               c.tuned.seqlen_q, c.tuned.seqlen_k, c.tuned.head_dim, c.tuned_ms);
    printf("\ncubin: %s\n", c.cubin);

    /* 5. The same call on the CPU, and the largest difference. */
    if (!cuda_ok(cuMemcpyDtoH(ho16, o, nq * 2), "cuMemcpyDtoH") || !cuda_ok(cuMemcpyDtoH(lse, l, nl * 4), "cuMemcpyDtoH")) return 1;
    h = a;
    h.q = hq16; h.k = hk16; h.v = hv16; h.o = ref16; h.lse = lse_ref;
    t0 = now_ms();
    if ((st = fat_attn_cpu(&h, NULL)) != FAT_OK) { fprintf(stderr, "attention: %s\n", fat_last_error()); return 1; }
    double cpu_ms = now_ms() - t0, err = 0, lerr = 0;
    for (size_t i = 0; i < nq; i++) err = fmax(err, fabs(from_half(ho16[i], dt) - from_half(ref16[i], dt)));
    for (size_t i = 0; i < nl; i++) if (isfinite(lse_ref[i])) lerr = fmax(lerr, fabs(lse[i] - lse_ref[i]));
    printf("max |GPU - CPU| = %.3g (out), %.3g (lse); CPU attention took %.0f ms\n", err, lerr, cpu_ms);

    cuMemFree(q); cuMemFree(k); cuMemFree(v); cuMemFree(o); cuMemFree(l);
    fat_close(ctx);
    cuDevicePrimaryCtxRelease(dev);
    free(hq16); free(hk16); free(hv16); free(ho16); free(ref16); free(lse); free(lse_ref);
    int ok = err <= (dt == FAT_BF16 ? 0.05 : 0.01);
    printf("%s\n", ok ? "ok" : "MISMATCH");
    return ok ? 0 : 1;
}
