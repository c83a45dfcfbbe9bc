-- lib/wgmma.lua: Hopper's warpgroup MMA (sm_90a) and what goes with it, as CUDA text with inline PTX.
--
-- M.defs: 64-bit and 32-bit typedefs, the wgmma ordering (fence, commit, wait), register pins, the
-- shared-memory matrix descriptors of 128-byte swizzled tiles, setmaxnreg, named barriers, the
-- async-proxy fence and elect.sync. M.ops{ ss = {N...}, rs = {N...} }: the wgmma.mma_async wrappers
-- of the N a variant uses, and only those (each is a long asm statement of N/2 operands).
--
-- A warpgroup is 4 consecutive warps starting at a warp index divisible by 4; every wrapper here is
-- executed by all 128 of its threads (the .sync.aligned forms). The usual batch:
--   fat_pin(acc); fat_wgmma_fence(); fat_wgmma_ss_N(acc, da, db, k > 0) ...; fat_wgmma_commit(); fat_pin(acc);
--   ... later: fat_wgmma_wait<0>(); fat_pin(acc);
-- The pins (empty asm statements that read and write every accumulator register) keep the compiler
-- from moving an ordinary access of those registers into the asynchronous window; without them ptxas
-- serialises the wgmmas (warning C7515) or runs out of registers (C7511).
--
-- Accumulator layout of m64nNk16 (f32): register r of thread t (warp w = t/32 of the warpgroup,
-- lane l) holds row 16w + l/4 + 8*((r >> 1) & 1), column 8*(r >> 2) + 2*(l & 3) + (r & 1). The A
-- fragment of an RS wgmma (m64k16, 16-bit) has the same shape: for k-slice kk, registers
-- 8kk .. 8kk+7 of an accumulator, packed in pairs, are a0..a3 of that slice.
--
-- Requires MMA_TYPE ("bf16" or "f16", from P.dtype_defs) before M.ops's text.
local M = {}

M.defs = [[
/* ---- lib/wgmma: warpgroup MMA, descriptors, setmaxnreg, named barriers (sm_90a) ---- */
typedef unsigned long long fat_u64;
typedef unsigned int fat_u32;

/* wgmma ordering: a fence before the first wgmma of a batch (and whenever its accumulator or A
 * registers were written by ordinary instructions), a commit closing the batch into one group,
 * a wait until at most N groups of this warpgroup are still in flight. */
static __device__ __forceinline__ void fat_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
static __device__ __forceinline__ void fat_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N> static __device__ __forceinline__ void fat_wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;" :: "n"(N) : "memory");
}
/* Pin registers around the asynchronous window so the compiler moves no access into it. */
template <int N> static __device__ __forceinline__ void fat_pin(float (&a)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+f"(a[i]) :: "memory");
}
template <int N> static __device__ __forceinline__ void fat_pin(fat_u32 (&a)[N]) {
#pragma unroll
    for (int i = 0; i < N; ++i) asm volatile("" : "+r"(a[i]) :: "memory");
}
/* Shared-memory matrix descriptors of a 128-byte swizzled tile (layout type 1 in bits 62-63),
 * stored as [slab of 64 16-bit columns][rows][64], 1024-byte aligned: start address >> 4 in bits
 * 0-13, leading byte offset >> 4 in 16-29, stride byte offset >> 4 in 32-45. SBO = 1024 B, the
 * distance between groups of 8 rows of 128 B.
 * K-major (the contraction runs along the 64-column rows: Q and K of S = Q K^T): LBO unused (1);
 * a k16 step is +32 B, the next slab +rows*128 B.
 * MN-major (the contraction runs along the rows: V as B of O = P V, row-major [key][d]):
 * LBO = bytes between 64-column slabs (rows*128); a k16 step is +16 rows = +2048 B. */
static __device__ __forceinline__ fat_u64 fat_desc_kmajor_sw128(fat_u32 saddr) {
    return (fat_u64)((saddr & 0x3FFFF) >> 4) | ((fat_u64)1 << 16) | ((fat_u64)(1024 >> 4) << 32) | ((fat_u64)1 << 62);
}
static __device__ __forceinline__ fat_u64 fat_desc_mnmajor_sw128(fat_u32 saddr, fat_u32 lbo) {
    return (fat_u64)((saddr & 0x3FFFF) >> 4) | ((fat_u64)(lbo >> 4) << 16) | ((fat_u64)(1024 >> 4) << 32) | ((fat_u64)1 << 62);
}
/* Register reallocation between warpgroups: every warp of a warpgroup executes the same one. It
 * takes effect only when the kernel has a register count at entry (__launch_bounds__(threads, 1));
 * else ptxas ignores it with warning C7508. .inc waits until the CTA's pool has the registers. */
template <int R> static __device__ __forceinline__ void fat_setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" :: "n"(R));
}
template <int R> static __device__ __forceinline__ void fat_setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" :: "n"(R));
}
/* Named barriers 1..15 (0 is __syncthreads): n threads, a multiple of 32, take part; arrive does
 * not wait. */
static __device__ __forceinline__ void fat_bar_sync(int id, int n) {
    asm volatile("bar.sync %0, %1;" :: "r"(id), "r"(n) : "memory");
}
static __device__ __forceinline__ void fat_bar_arrive(int id, int n) {
    asm volatile("bar.arrive %0, %1;" :: "r"(id), "r"(n) : "memory");
}
/* bar.sync that also ORs a value over its n threads: every thread gets whether any passed x != 0. */
static __device__ __forceinline__ fat_u32 fat_bar_or(int id, int n, fat_u32 x) {
    fat_u32 r;
    asm volatile("{ .reg .pred p, q; setp.ne.u32 p, %1, 0; barrier.red.or.pred q, %2, %3, p; selp.u32 %0, 1, 0, q; }"
                 : "=r"(r) : "r"(x), "r"(id), "r"(n) : "memory");
    return r;
}
/* Orders this thread's generic-proxy shared-memory accesses before later async-proxy ones (a TMA
 * copy or a wgmma operand read of the same bytes); a barrier after it extends that to the CTA. */
static __device__ __forceinline__ void fat_fence_proxy_async() {
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}
/* One lane of the (fully active) warp is elected: true there, false on the other 31. */
static __device__ __forceinline__ bool fat_elect_one() {
    fat_u32 e;
    asm volatile("{ .reg .pred P1; elect.sync _|P1, 0xffffffff; selp.u32 %0, 1, 0, P1; }" : "=r"(e));
    return e != 0;
}
]]

-- The wgmma wrapper of one N, as text. SS: D (+)= A(desc) * B(desc), A and B K-major (transpose
-- immediates 0, 0). RS: D (+)= A(registers a0..a3) * B(desc), B MN-major (transpose-B 1). acc = 0
-- overwrites D (the scale-d predicate), 1 accumulates.
local function wrapper(form, n)
  assert(math.type(n) == "integer" and n >= 8 and n <= 256 and n % 8 == 0,
         "lib.wgmma: N must be a multiple of 8 from 8 to 256, got " .. tostring(n))
  local k = n // 2
  local dl, dc = {}, {}
  for i = 0, k - 1 do
    dl[#dl + 1] = "%" .. i
    dc[#dc + 1] = string.format('"+f"(d[%d])', i)
  end
  local out = {}
  if form == "ss" then
    out[#out + 1] = string.format("static __device__ __forceinline__ void fat_wgmma_ss_%d(float (&d)[%d], fat_u64 da, fat_u64 db, int acc) {", n, k)
    out[#out + 1] = string.format('    asm volatile("{\\n.reg .pred p;\\nsetp.ne.b32 p, %%%d, 0;\\n"', k + 2)
    out[#out + 1] = string.format('        "wgmma.mma_async.sync.aligned.m64n%dk16.f32." MMA_TYPE "." MMA_TYPE " {%s}, %%%d, %%%d, p, 1, 1, 0, 0;\\n}\\n"',
                                  n, table.concat(dl, ","), k, k + 1)
    out[#out + 1] = "        : " .. table.concat(dc, ", ")
    out[#out + 1] = '        : "l"(da), "l"(db), "r"(acc));'
  else
    out[#out + 1] = string.format("static __device__ __forceinline__ void fat_wgmma_rs_%d(float (&d)[%d], fat_u32 a0, fat_u32 a1, fat_u32 a2, fat_u32 a3, fat_u64 db, int acc) {", n, k)
    out[#out + 1] = string.format('    asm volatile("{\\n.reg .pred p;\\nsetp.ne.b32 p, %%%d, 0;\\n"', k + 5)
    out[#out + 1] = string.format('        "wgmma.mma_async.sync.aligned.m64n%dk16.f32." MMA_TYPE "." MMA_TYPE " {%s}, {%%%d, %%%d, %%%d, %%%d}, %%%d, p, 1, 1, 1;\\n}\\n"',
                                  n, table.concat(dl, ","), k, k + 1, k + 2, k + 3, k + 4)
    out[#out + 1] = "        : " .. table.concat(dc, ", ")
    out[#out + 1] = '        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "l"(db), "r"(acc));'
  end
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

-- The wrappers a kernel uses: M.ops{ ss = { 128 }, rs = { 64 } } gives fat_wgmma_ss_128 and
-- fat_wgmma_rs_64 (d: the N/2 f32 accumulators of this thread, in the layout above).
function M.ops(t)
  local out = { "/* ---- lib/wgmma: m64nNk16 wrappers (d: N/2 f32 accumulators per thread) ---- */\n" }
  for _, form in ipairs({ "ss", "rs" }) do
    local seen = {}
    for _, n in ipairs(t[form] or {}) do
      if not seen[n] then
        seen[n] = true
        out[#out + 1] = wrapper(form, n)
      end
    end
  end
  return table.concat(out)
end

return M
