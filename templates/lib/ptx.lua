-- lib/ptx.lua: tensor-core, ldmatrix and async-copy primitives for sm_80 and later, as CUDA text.
--
-- Every helper is inline PTX, so a kernel needs no CUDA header and compiles with NVRTC alone.
-- The text needs the prelude first (P.common): MMA_TYPE names the 16-bit type of the shape.
--
--   local ptx = require("lib.ptx")
--   src = P.common(t, p, shape) .. ptx.defs .. ...
--   ptx.cp_async_wait(n)   -- CUDA statement text, for code generated statement by statement
--
-- Fragment layouts of mma.sync m16n8k16 (lane = 4*g + q, g = lane / 4, q = lane % 4); each register
-- holds two 16-bit values, the lower column in the low half:
--   A (16x16, row-major)  a0 = (row g,   cols 2q, 2q+1)   a1 = (row g+8, cols 2q, 2q+1)
--                         a2 = (row g,   cols 2q+8, +9)   a3 = (row g+8, cols 2q+8, +9)
--   B (16x8, "col")       b0 = (k 2q, 2q+1;   col g)      b1 = (k 2q+8, 2q+9; col g)
--   C/D (16x8, f32)       c0, c1 = (row g, cols 2q, 2q+1)  c2, c3 = (row g+8, cols 2q, 2q+1)
-- ldmatrix .x4: lanes 8i..8i+7 give the row addresses of 8x8 matrix i; register i of every lane
-- receives (row g, cols 2q, 2q+1) of matrix i, or with .trans (rows 2q, 2q+1; col g).
local M = {}

-- Shared-memory addresses, 16-bit matrix multiply-accumulate and ldmatrix.
M.mma = [[
/* ---- lib/ptx: tensor cores (mma.sync m16n8k16) and ldmatrix ---- */
/* 32-bit shared-window address of a pointer into shared memory. */
static __device__ __forceinline__ unsigned fat_smem_u32(const void *ptr) {
    unsigned a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(ptr));
    return a;
}
/* d += A * B on one m16n8k16 tile: A 16x16 (4 registers), B 16x8 (b0, b1), d 16x8 in f32. */
static __device__ __forceinline__ void fat_mma16816(float (&d)[4], const unsigned (&a)[4],
                                                    unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32." MMA_TYPE "." MMA_TYPE ".f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
/* Four 8x8 matrices of 16-bit values from shared memory; lane l gives a row address of matrix l/8. */
static __device__ __forceinline__ void fat_ldsm_x4(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
/* The same, each matrix transposed on the way (B operand from a row-major [k][n] tile). */
static __device__ __forceinline__ void fat_ldsm_x4_trans(unsigned (&r)[4], unsigned addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
]]

-- Asynchronous global -> shared copies (cp.async, sm_80) and their completion groups.
M.cp_async = [[
/* ---- lib/ptx: cp.async, 16 bytes, L2 only; src_bytes 0 writes 16 zero bytes and reads nothing ---- */
static __device__ __forceinline__ void fat_cp_async16(unsigned dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
                 :: "r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
/* Closes the group of copies issued by this thread since the last commit. */
static __device__ __forceinline__ void fat_cp_async_commit() {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
/* Waits until at most N of this thread's groups are still in flight. Other threads' copies are
 * visible only after a barrier that follows their own wait. */
template <int N>
static __device__ __forceinline__ void fat_cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory");
}
]]

-- The same copy under an L2 cache policy (sm_80): a family that reads bytes once includes this text.
M.cp_async_policy = [[
/* ---- lib/ptx: cp.async under an L2 cache policy ---- */
/* A policy under which the lines a load brings into L2 are the first their set evicts: bytes read
 * once replace each other instead of the lines other kernels left there (dirty ones cost a write
 * to memory when evicted). Not volatile: the compiler makes it once per kernel. */
static __device__ __forceinline__ unsigned long long fat_l2_evict_first() {
    unsigned long long pol;
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(pol));
    return pol;
}
/* fat_cp_async16 with the L2 policy `pol`. */
static __device__ __forceinline__ void fat_cp_async16_policy(unsigned dst, const void *src, int src_bytes,
                                                             unsigned long long pol) {
    asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2, %3;\n"
                 :: "r"(dst), "l"(src), "r"(src_bytes), "l"(pol) : "memory");
}
]]

-- Fast math and plain vector moves.
M.misc = [[
/* ---- lib/ptx: exp2 on the SFU, 16-byte moves ---- */
/* 2^x, flush-to-zero; 2^-inf = +0. */
static __device__ __forceinline__ float fat_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
/* threadIdx.x read afresh (volatile): values derived from it are recomputed where used instead
 * of being hoisted out of a loop and held in registers for its whole length. */
static __device__ __forceinline__ int fat_tid_fresh() {
    int t;
    asm volatile("mov.u32 %0, %%tid.x;" : "=r"(t));
    return t;
}
static __device__ __forceinline__ void fat_st_shared_b32(unsigned addr, unsigned v) {
    asm volatile("st.shared.b32 [%0], %1;\n" :: "r"(addr), "r"(v) : "memory");
}
static __device__ __forceinline__ void fat_ld_shared_v4(unsigned (&v)[4], unsigned addr) {
    asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v[0]), "=r"(v[1]), "=r"(v[2]), "=r"(v[3]) : "r"(addr) : "memory");
}
static __device__ __forceinline__ void fat_ld_global_v4(unsigned (&v)[4], const void *ptr) {
    asm volatile("ld.global.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v[0]), "=r"(v[1]), "=r"(v[2]), "=r"(v[3]) : "l"(ptr) : "memory");
}
static __device__ __forceinline__ void fat_st_global_v4(void *ptr, const unsigned (&v)[4]) {
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};\n"
                 :: "l"(ptr), "r"(v[0]), "r"(v[1]), "r"(v[2]), "r"(v[3]) : "memory");
}
]]

-- Thread-block clusters (sm_90): a barrier over every thread of every CTA of the cluster, and
-- loads from another CTA's shared memory (distributed shared memory). Not part of M.defs: a family
-- includes it only in kernels that run as clusters (the PTX does not assemble for sm_80).
M.cluster = [[
/* ---- lib/ptx: thread-block clusters (sm_90): barrier, distributed shared memory ---- */
/* Every thread of every CTA of the cluster arrives, then waits for all the others: the release and
 * acquire make each CTA's shared-memory writes before the barrier visible to every CTA's loads
 * after it. */
static __device__ __forceinline__ void fat_cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\n"
                 "barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}
/* The shared::cluster address of shared-memory address addr (this CTA's view) in CTA `rank`. */
static __device__ __forceinline__ unsigned fat_cluster_map(unsigned addr, unsigned rank) {
    unsigned r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(addr), "r"(rank));
    return r;
}
static __device__ __forceinline__ float fat_ld_cluster_f32(unsigned addr) {
    float v;
    asm volatile("ld.shared::cluster.f32 %0, [%1];\n" : "=f"(v) : "r"(addr) : "memory");
    return v;
}
static __device__ __forceinline__ void fat_ld_cluster_v4f(float (&v)[4], unsigned addr) {
    asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];\n"
                 : "=f"(v[0]), "=f"(v[1]), "=f"(v[2]), "=f"(v[3]) : "r"(addr) : "memory");
}
]]

-- All of the above but the clusters, in dependency order.
M.defs = M.mma .. M.cp_async .. M.misc

-- Statement text for code generated from Lua: wait until at most n groups are in flight.
function M.cp_async_wait(n)
  assert(math.type(n) == "integer" and n >= 0, "cp_async_wait: n must be a non-negative integer")
  return string.format('asm volatile("cp.async.wait_group %d;\\n" ::: "memory");', n)
end

return M
