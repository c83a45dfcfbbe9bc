-- prelude.lua: the building blocks every kernel family shares.
--
-- A template is a module returning a table:
--   name, version                  identify the family; a new version invalidates tuned rows
--   params                         name -> list of candidate values
--   valid(p, shape, dev)           true, or false and a reason
--   emit(p, shape, dev)            { source, entry, grid = {x,y,z}, block = {x,y,z}, smem, workspace }
--   launch(p, shape, dev)          optional: emit()'s table without the source, cheaply (the runtime
--                                  asks it when a loaded kernel meets a new shape); must agree with
--                                  emit() field for field (tests/test_gen.c checks every variant)
--   default(shape, dev)            optional: the built-in choice (a params table), nil to have the
--                                  first valid choice searched, false when the family serves no
--                                  variant of this shape (nothing is searched)
-- shape: dtype ("fp16"|"bf16"), head_dim, causal, window, softcap, varlen (booleans), batch,
--        heads_q, heads_kv, seqlen_q, seqlen_k.  dev: name, cc (e.g. 90), arch ("sm_90"), sms,
--        smem_optin (bytes one block may use), smem_per_sm, regs_per_sm, l2, max_threads.
-- Kernels are specialised on dtype, head_dim, causal and the feature flags; sizes, strides and the
-- mask bounds arrive at run time in the parameter block below, so a kernel runs any seqlen.
-- The emitted CUDA includes no header: it compiles with NVRTC alone on any machine.
local P = {}

-- The kernel parameter block. It must match runtime/kparams.h field for field; the static_assert
-- catches a size mismatch when the kernel compiles.
P.KPARAMS_SIZE = 224
P.kparams_struct = [[
struct fat_kparams {
    const void *q, *k, *v;
    void *o;
    float *lse;
    void *ws;
    const int *cu_seqlens_q, *cu_seqlens_k;
    long long q_sb, q_ss, q_sh;
    long long k_sb, k_ss, k_sh;
    long long v_sb, v_ss, v_sh;
    long long o_sb, o_ss, o_sh;
    int batch, heads_q, heads_kv, seqlen_q, seqlen_k, head_dim;
    int window_left, window_right;
    float scale, scale_log2, softcap;
    int total_q;
    long long reserved[2];
};
static_assert(sizeof(fat_kparams) == 224, "fat_kparams must match runtime/kparams.h");
]]

-- 16-bit element types and conversions, through PTX so that no CUDA header is needed.
P.dtype_helpers = [[
typedef unsigned short fat_h16;   /* raw bits of one fp16 or bf16 value */
#define FAT_INF __int_as_float(0x7f800000)

static __device__ __forceinline__ float fp16_to_f32(fat_h16 h) {
    float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;
}
static __device__ __forceinline__ fat_h16 f32_to_fp16(float f) {
    fat_h16 h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
static __device__ __forceinline__ float bf16_to_f32(fat_h16 h) {
    return __int_as_float(((unsigned)h) << 16);
}
static __device__ __forceinline__ fat_h16 f32_to_bf16(float f) {
    fat_h16 h; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
/* Two floats packed into one 32-bit register of 16-bit values (lo in the low half), as mma wants. */
static __device__ __forceinline__ unsigned pack_fp16(float lo, float hi) {
    unsigned r; asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}
static __device__ __forceinline__ unsigned pack_bf16(float lo, float hi) {
    unsigned r; asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}
]]

-- CUDA text that defines to_f32 / from_f32 / pack2 for the shape's dtype.
function P.dtype_defs(dtype)
  if dtype == "fp16" then
    return "#define to_f32 fp16_to_f32\n#define from_f32 f32_to_fp16\n#define pack2 pack_fp16\n#define MMA_TYPE \"f16\"\n"
  elseif dtype == "bf16" then
    return "#define to_f32 bf16_to_f32\n#define from_f32 f32_to_bf16\n#define pack2 pack_bf16\n#define MMA_TYPE \"bf16\"\n"
  end
  error("unknown dtype " .. tostring(dtype), 2)
end

-- The visibility rule, shared by every family: key j is visible to query i when it lies inside
-- [lo, hi] with lo = i + sk - sq - left and hi = i + sk - sq + right (a bound of -1 is absent;
-- causal forces right = 0). Emitted as CUDA; specialised on causal and window.
function P.mask_defs(shape)
  local s = {}
  s[#s + 1] = "#define FAT_CAUSAL " .. (shape.causal and 1 or 0)
  s[#s + 1] = "#define FAT_WINDOW " .. (shape.window and 1 or 0)
  s[#s + 1] = "#define FAT_SOFTCAP " .. (shape.softcap and 1 or 0)
  s[#s + 1] = "#define FAT_VARLEN " .. (shape.varlen and 1 or 0)
  s[#s + 1] = [[
/* Keys [*lo, *hi] are visible to query row i (0-based within its sequence). */
static __device__ __forceinline__ void visible_keys(const fat_kparams &p, int i, int sq, int sk,
                                                   int *lo, int *hi) {
    int diag = i + sk - sq;
    *lo = 0; *hi = sk - 1;
#if FAT_CAUSAL
    *hi = min(*hi, diag);
#endif
#if FAT_WINDOW
    if (p.window_right >= 0) *hi = min(*hi, diag + p.window_right);
    if (p.window_left >= 0) *lo = max(*lo, diag - p.window_left);
#endif
}
/* Softcap applied to a scaled score: softcap * tanh(s / softcap). */
static __device__ __forceinline__ float apply_softcap(const fat_kparams &p, float s) {
#if FAT_SOFTCAP
    return p.softcap * tanhf(s / p.softcap);
#else
    return s;
#endif
}
/* Sequence b's start rows and lengths, for fixed and variable-length batches. */
static __device__ __forceinline__ void seq_bounds(const fat_kparams &p, int b, long long *q0,
                                                  long long *k0, int *sq, int *sk) {
#if FAT_VARLEN
    *q0 = p.cu_seqlens_q[b]; *k0 = p.cu_seqlens_k[b];
    *sq = p.cu_seqlens_q[b + 1] - p.cu_seqlens_q[b];
    *sk = p.cu_seqlens_k[b + 1] - p.cu_seqlens_k[b];
#else
    *q0 = 0; *k0 = 0; *sq = p.seqlen_q; *sk = p.seqlen_k;
#endif
}
/* Element offsets of row r of sequence b, head h: the batch stride is unused with varlen. */
#if FAT_VARLEN
#define ROW_OFF(sb, ss, sh, b, row, h) ((long long)(row) * (ss) + (long long)(h) * (sh))
#define LSE_OFF(p, b, h, q0, i) ((long long)(h) * (p).total_q + (q0) + (i))
#else
#define ROW_OFF(sb, ss, sh, b, row, h) ((long long)(b) * (sb) + (long long)(row) * (ss) + (long long)(h) * (sh))
#define LSE_OFF(p, b, h, q0, i) (((long long)(b) * (p).heads_q + (h)) * (p).seqlen_q + (i))
#endif
]]
  return table.concat(s, "\n") .. "\n"
end

-- Sorted parameter names, so every listing and canonical text repeats exactly.
function P.sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

-- "block_m=64,warps=4": the canonical text of a parameter choice (sorted by name).
function P.canon(p)
  local out = {}
  for _, k in ipairs(P.sorted_keys(p)) do out[#out + 1] = k .. "=" .. tostring(p[k]) end
  return table.concat(out, ",")
end

function P.ceil_div(a, b) return (a + b - 1) // b end

-- One line of a family's generated constants: "#define NAME value", with the note as a comment
-- when given, aligned so that a kernel's constants read as a table.
function P.define(name, value, note)
  local line = string.format("#define %-13s %s", name, tostring(value))
  if note then line = string.format("%-28s /* %s */", line, note) end
  return line
end

-- The header comment of an emitted kernel, so a stored kernel explains itself.
function P.banner(t, p, shape)
  return string.format("/* fatune kernel: template %s v%d\n * params: %s\n * specialised for: %s, head_dim %d, causal %s, window %s, softcap %s, varlen %s\n */\n",
    t.name, t.version, P.canon(p), shape.dtype, shape.head_dim, tostring(shape.causal),
    tostring(shape.window), tostring(shape.softcap), tostring(shape.varlen))
end

-- The common head of every kernel source: banner, parameter block, dtype and mask helpers.
function P.common(t, p, shape)
  return P.banner(t, p, shape) .. P.kparams_struct .. P.dtype_helpers .. P.dtype_defs(shape.dtype)
      .. P.mask_defs(shape)
end

return P
