-- lib/tma.lua: mbarriers and the tensor memory accelerator (sm_90), as CUDA text with inline PTX.
--
-- A kernel that takes tensor maps (P.tma{} in its launch) declares them as
--   const __grid_constant__ fat_tmap tm
-- parameters and loads tiles with fat_tma_load_4d / _5d into shared memory, completing on an
-- mbarrier that was told how many bytes to expect:
--   thread 0:     fat_mbar_expect_tx(bar, bytes); fat_tma_load_4d(dst, &tm, bar, col, row, head, batch);
--   every thread: fat_mbar_wait(bar, phase); ... read the tile ...; phase ^= 1
-- A ring of buffers adds an "empty" mbarrier per buffer, on which the readers fat_mbar_arrive when
-- they are done and the loading thread waits (parity inverted, so a fresh barrier passes at once)
-- before it refills the buffer.
-- The coordinates are the map's (prelude.lua, P.tma): (col, row, head, batch) for rank 4, (0, row,
-- slab, head, batch) for rank 5; out-of-bounds elements arrive as zeros. The destination must be
-- 128-byte aligned (1024 with the 128B swizzle), the mbarrier 8-byte aligned.
local M = {}

M.defs = [[
/* ---- lib/tma: mbarriers and tensor-map copies (sm_90) ---- */
/* The driver's CUtensorMap (128 bytes, 64-byte aligned), declared without cuda.h. */
struct alignas(64) fat_tmap { unsigned long long opaque[16]; };

/* 32-bit shared-window address of a pointer into shared memory. */
static __device__ __forceinline__ unsigned fat_shared_addr(const void *ptr) {
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(ptr));
    return a;
}
/* An mbarrier expecting `count` arrivals per phase. One thread initialises; then
 * fat_mbar_fence_init and a CTA barrier before anyone (or the copy engine) uses it. */
static __device__ __forceinline__ void fat_mbar_init(unsigned bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" :: "r"(bar), "r"(count) : "memory");
}
static __device__ __forceinline__ void fat_mbar_fence_init() {
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
/* Arrives on bar and adds `bytes` to the transaction count the phase waits for. */
static __device__ __forceinline__ void fat_mbar_expect_tx(unsigned bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" :: "r"(bar), "r"(bytes) : "memory");
}
/* Arrives on bar (one of the `count` arrivals its phase waits for), e.g. a consumer releasing a
 * buffer back to the thread that refills it. */
static __device__ __forceinline__ void fat_mbar_arrive(unsigned bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" :: "r"(bar) : "memory");
}
/* Waits until the phase of parity `parity` has completed (every arrival and every byte). */
static __device__ __forceinline__ void fat_mbar_wait(unsigned bar, unsigned parity) {
    unsigned done;
    do {
        asm volatile("{ .reg .pred p;\n"
                     "  mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     "  selp.u32 %0, 1, 0, p; }\n" : "=r"(done) : "r"(bar), "r"(parity) : "memory");
    } while (!done);
}
/* Copies one box of the map into shared memory at dst; completes on bar. */
static __device__ __forceinline__ void fat_tma_load_4d(unsigned dst, const fat_tmap *map, unsigned bar,
                                                       int c0, int c1, int c2, int c3) {
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%3, %4, %5, %6}], [%2];\n"
                 :: "r"(dst), "l"(map), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3) : "memory");
}
static __device__ __forceinline__ void fat_tma_load_5d(unsigned dst, const fat_tmap *map, unsigned bar,
                                                       int c0, int c1, int c2, int c3, int c4) {
    asm volatile("cp.async.bulk.tensor.5d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%3, %4, %5, %6, %7}], [%2];\n"
                 :: "r"(dst), "l"(map), "r"(bar), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4) : "memory");
}
/* The other way: one box of shared memory at src (laid out as a load of the map would write it)
 * to the tensor at the coordinates; elements out of bounds are not written. The copies of a thread
 * form bulk groups (fat_bulk_commit); fat_bulk_wait_read<n> returns when at most n of its groups
 * still read shared memory (src may then be written again), fat_bulk_wait<n> when at most n have
 * not finished writing global memory. Generic writes to src need fat_fence_proxy_async (lib/wgmma)
 * and a barrier before the copy is issued. */
static __device__ __forceinline__ void fat_tma_store_4d(const fat_tmap *map, unsigned src, int c0, int c1, int c2,
                                                        int c3) {
    asm volatile("cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n"
                 :: "l"(map), "r"(src), "r"(c0), "r"(c1), "r"(c2), "r"(c3) : "memory");
}
static __device__ __forceinline__ void fat_bulk_commit() {
    asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
}
template <int N>
static __device__ __forceinline__ void fat_bulk_wait_read() {
    asm volatile("cp.async.bulk.wait_group.read %0;\n" :: "n"(N) : "memory");
}
template <int N>
static __device__ __forceinline__ void fat_bulk_wait() {
    asm volatile("cp.async.bulk.wait_group %0;\n" :: "n"(N) : "memory");
}
/* Brings the map into the descriptor cache before its first use. */
static __device__ __forceinline__ void fat_tma_prefetch(const fat_tmap *map) {
    asm volatile("prefetch.tensormap [%0];\n" :: "l"(map) : "memory");
}
]]

return M
