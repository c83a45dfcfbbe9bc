// How many thread-block clusters of 2-16 CTAs of a given shared memory size the GPU holds at once
// (cudaOccupancyMaxActiveClusters), and which SMs one wave of 16-CTA clusters lands on.
#include <cstdio>
#include <cuda_runtime.h>
__global__ void k(int *sm) {
    unsigned s; asm volatile("mov.u32 %0, %%smid;" : "=r"(s));
    if (threadIdx.x == 0) sm[blockIdx.x] = s;
}
int main() {
    cudaFuncSetAttribute(k, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    int smems[] = {0, 100 * 1024, 200 * 1024};
    for (int si = 0; si < 3; si++) {
        cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smems[si]);
        for (int c = 1; c <= 16; c *= 2) {
            cudaLaunchConfig_t cfg = {};
            cfg.gridDim = dim3(c * 16, 1, 1); cfg.blockDim = dim3(128, 1, 1); cfg.dynamicSmemBytes = smems[si];
            cudaLaunchAttribute a[1]; a[0].id = cudaLaunchAttributeClusterDimension;
            a[0].val.clusterDim.x = c; a[0].val.clusterDim.y = 1; a[0].val.clusterDim.z = 1;
            cfg.attrs = a; cfg.numAttrs = 1;
            int n = -1; cudaError_t e = cudaOccupancyMaxActiveClusters(&n, k, &cfg);
            printf("smem %6d B, cluster %2d: %3d clusters at once (%3d CTAs) %s\n", smems[si], c, n, n * c, e ? cudaGetErrorString(e) : "");
        }
    }
    int *d; cudaMalloc(&d, 4096 * 4); int h[4096];
    for (int c = 8; c <= 16; c *= 2) {
        cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
        cudaLaunchConfig_t cfg = {}; cfg.gridDim = dim3(128, 1, 1); cfg.blockDim = dim3(128, 1, 1); cfg.dynamicSmemBytes = 200 * 1024;
        cudaLaunchAttribute a[1]; a[0].id = cudaLaunchAttributeClusterDimension;
        a[0].val.clusterDim.x = c; a[0].val.clusterDim.y = 1; a[0].val.clusterDim.z = 1; cfg.attrs = a; cfg.numAttrs = 1;
        cudaError_t e = cudaLaunchKernelEx(&cfg, k, d); cudaDeviceSynchronize();
        cudaMemcpy(h, d, 128 * 4, cudaMemcpyDeviceToHost);
        printf("128 CTAs in clusters of %d (%s): SMs", c, cudaGetErrorString(e));
        for (int i = 0; i < 128; i++) printf("%s%d", i % c ? "," : " | ", h[i]);
        printf("\n");
    }
    return 0;
}
