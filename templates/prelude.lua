-- prelude.lua: the building blocks every kernel family shares.
--
-- A template is a module returning a table:
--   name, version                  identify the family; a new version invalidates tuned rows
--   params                         name -> list of candidate values
--   valid(p, shape, dev)           true, or false and a reason
--   launch(p, shape, dev)          how the variant runs for the shape: P.launch(dev, { ... }) below
--   emit(p, shape, dev)            launch()'s table with `source` set: the kernel's CUDA text
--   default(shape, dev)            optional: the built-in choice (a params table), nil to have the
--                                  first valid choice searched, false when the family serves no
--                                  variant of this shape (nothing is searched)
-- and, optionally, what the tool asks of a family as a whole:
--   tuned = false                  not tuned unless --only names it (naive: the reference)
--   default_rank = N               offers the built-in default; families are asked in rank order
--                                  (lowest first) and the first whose default() answers wins
--   decoding_rows = N              serves the decoding regime: at most N query rows per KV head
--                                  ((heads_q / heads_kv) x seqlen_q); lookups and the tuner's
--                                  guidance never cross between that regime and prefill
-- launch() must agree with emit() field for field (tests/test_gen.c checks every variant); the
-- runtime asks it alone when a loaded kernel meets a new shape, so it should be cheap.
-- shape: dtype ("fp16"|"bf16"), head_dim, causal, window, softcap, varlen (booleans), batch,
--        heads_q, heads_kv, seqlen_q, seqlen_k.  dev: name, cc (e.g. 90), arch ("sm_90"), targets
--        ({"sm_90", "sm_90a"}: what a kernel may be compiled for here), sms, max_threads,
--        smem_optin (bytes one block may use), smem_per_sm, regs_per_sm, l2, mem, max_cluster
--        (portable CTAs per cluster; 1: no clusters), max_cluster_np (with the non-portable size
--        allowed), driver and nvrtc (versions as major * 1000 + minor * 10; 0 when unknown).
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
    int page_size;
    const int *cache_seqlens;
    const int *block_table;
    const void *k_new, *v_new;
    long long kn_sb, kn_ss, kn_sh;
    long long vn_sb, vn_ss, vn_sh;
    int block_table_stride, num_pages, seqlen_new;
    int reserved;
};
static_assert(sizeof(fat_kparams) == 312, "fat_kparams must match runtime/kparams.h");
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
  -- a KV cache (only families with serves_kv_cache see one): paged with its page size compiled in,
  -- per-sequence key counts (cache_seqlens), an append of k_new/v_new
  s[#s + 1] = "#define FAT_PAGED " .. (shape.page_size and 1 or 0)
  s[#s + 1] = "#define FAT_PAGE_SIZE " .. (shape.page_size or 0)
  s[#s + 1] = "#define FAT_CACHE " .. (shape.kv_cache and 1 or 0)
  s[#s + 1] = "#define FAT_APPEND " .. (shape.append and 1 or 0)
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
#if FAT_PAGED
/* A paged KV cache: a table entry names a page of the cache, [0, num_pages); page_of is the entry of
 * the page holding key j of sequence b (j inside the sequence: its entry is in the table). */
static __device__ __forceinline__ bool page_ok(const fat_kparams &p, int e) { return e >= 0 && e < p.num_pages; }
static __device__ __forceinline__ int page_of(const fat_kparams &p, int b, int j) {
    return p.block_table[(long long)b * p.block_table_stride + j / FAT_PAGE_SIZE];
}
#endif
#if FAT_CACHE
/* A KV cache's sequence b: *have = cache_seqlens[b] keys already in it, *sk = have + seqlen_new keys
 * attended to; a length outside [0, seqlen_k - seqlen_new] gives *sk = 0 (nothing is read) and
 * returns true (the caller makes the sequence's rows NaN). */
static __device__ __forceinline__ bool cache_bad(const fat_kparams &p, int b, int *have, int *sk) {
    *have = p.cache_seqlens[b];
    const bool bad = *have < 0 || *have > p.seqlen_k - p.seqlen_new;
    *sk = bad ? 0 : *have + p.seqlen_new;
    return bad;
}
#endif
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

-- ---------------------------------------------------------------------------------------------
-- The launch description. launch() and emit() return P.launch(dev, { ... }), whose fields are:
--   entry     the kernel's extern "C" name (required)
--   grid      {x, y, z} CTAs (required)
--   block     {x, y, z} threads (required)
--   smem      dynamic shared memory in bytes (default 0); the launcher raises the function's limit
--   target    the compile target (default dev.arch); one of dev.targets: "sm_90a" for wgmma and
--             setmaxnreg. It is part of the kernel's identity (its hash, the database's kernel.arch)
--   cluster   {x, y, z} CTAs per thread-block cluster, set at launch (nil: none; a kernel may
--             instead fix its cluster with __cluster_dims__, as decode does); each grid dimension
--             a multiple of it, at most dev.max_cluster CTAs (dev.max_cluster_np with
--             nonportable_cluster = true)
--   workspace scratch bytes the kernel finds in fat_kparams.ws (not zeroed)
--   args      the kernel's parameters in order (default { P.params() }):
--               P.params()               the fat_kparams block, by value
--               P.tma{ tensor = "k", box = {cols, rows}, slabs = 1, swizzle = "128B", l2 = "128B" }
--                                        a CUtensorMap the host encodes for tensor q, k, v or o
--                                        (declare it in the kernel as const __grid_constant__
--                                        fat_tmap, lib/tma.lua): slabs = 1: rank 4 over
--                                        {head_dim, rows, heads, batch}, box {cols, rows, 1, 1};
--                                        slabs > 1: rank 5 over {cols, rows, head_dim / cols,
--                                        heads, batch}, box {cols, rows, slabs, 1, 1}, so shared
--                                        memory receives [slab][row][col]. rows are the sequence
--                                        (seqlen_q for q and o, seqlen_k for k and v; a paged
--                                        cache's k and v: {head_dim, page_size, heads, num_pages});
--                                        elements out of bounds read as zero
--               P.scratch{ bytes = n, zero = true }
--                                        a pointer to n bytes of scratch on the call's stream,
--                                        zeroed before every launch when zero is true (a tile
--                                        counter of a persistent grid)
-- A field it does not know, a value of the wrong type or a target the device cannot run is an
-- error at the line of the call. The runtime and the tuner launch the table as it is.

-- A check that fails raises a table; the public constructors raise its message again at the line
-- that called them, in the template (level 3: checked, the constructor, its caller; the
-- constructors keep their frame by not tail-calling).
local function fail(msg) error({ msg }, 0) end

local function checked(fn, ...)
  local ok, r = pcall(fn, ...)
  if ok then return r end
  if type(r) == "table" then error(r[1], 3) end
  error(r, 0)
end

local function dim3(v, what, lo)
  if type(v) ~= "table" then fail(what .. " must be a table {x, y, z}, got " .. type(v)) end
  for k in pairs(v) do
    if k ~= 1 and k ~= 2 and k ~= 3 then fail(what .. " has a field '" .. tostring(k) .. "' (want {x, y, z})") end
  end
  local r = {}
  for i = 1, 3 do
    local x = v[i] or 1
    if math.type(x) ~= "integer" or x < (lo or 1) then
      fail(what .. "[" .. i .. "] must be a positive integer, got " .. tostring(x))
    end
    r[i] = x
  end
  return r
end

local function check_keys(t, allowed, what)
  if type(t) ~= "table" then fail(what .. " takes a table, got " .. type(t)) end
  for k in pairs(t) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      fail(what .. ": unknown field '" .. tostring(k) .. "' (known: " .. table.concat(names, ", ") .. ")")
    end
  end
end

local ARG = {}                                   -- metatable marking what P.params/tma/scratch made
local LAUNCH = {}                                -- ... and what P.launch made

-- The fat_kparams block, by value.
function P.params()
  return setmetatable({ kind = "params" }, ARG)
end

local SWIZZLE = { none = 0, ["32B"] = 1, ["64B"] = 2, ["128B"] = 3 }
local SWIZZLE_SPAN = { [0] = math.huge, 32, 64, 128 }
local L2 = { none = 0, ["64B"] = 1, ["128B"] = 2, ["256B"] = 3 }

-- A tensor map of tensor q, k, v or o (see above).
local function make_tma(t)
  check_keys(t, { tensor = true, box = true, slabs = true, swizzle = true, l2 = true }, "P.tma{}")
  local tensor = t.tensor
  if tensor ~= "q" and tensor ~= "k" and tensor ~= "v" and tensor ~= "o" then
    fail("P.tma{}: tensor must be \"q\", \"k\", \"v\" or \"o\", got " .. tostring(tensor))
  end
  if type(t.box) ~= "table" or #t.box ~= 2 then fail("P.tma{}: box must be {cols, rows}") end
  local cols, rows = t.box[1], t.box[2]
  for _, x in ipairs({ cols, rows }) do
    if math.type(x) ~= "integer" or x < 1 or x > 256 then fail("P.tma{}: box sizes must be integers 1..256, got " .. tostring(x)) end
  end
  local slabs = t.slabs or 1
  if math.type(slabs) ~= "integer" or slabs < 1 or slabs > 256 then fail("P.tma{}: slabs must be an integer 1..256") end
  local sw = SWIZZLE[t.swizzle or "none"]
  if not sw then fail("P.tma{}: swizzle must be \"none\", \"32B\", \"64B\" or \"128B\", got " .. tostring(t.swizzle)) end
  if (cols * 2) % 16 ~= 0 then fail("P.tma{}: a box row of " .. cols .. " 16-bit values is not a multiple of 16 bytes") end
  if cols * 2 > SWIZZLE_SPAN[sw] then
    fail("P.tma{}: a box row of " .. (cols * 2) .. " bytes is wider than the " .. t.swizzle .. " swizzle")
  end
  local l2 = L2[t.l2 or "128B"]
  if not l2 then fail("P.tma{}: l2 must be \"none\", \"64B\", \"128B\" or \"256B\", got " .. tostring(t.l2)) end
  return setmetatable({ kind = "tma", tensor = tensor, box_cols = cols, box_rows = rows, slabs = slabs,
                        swizzle = sw, l2 = l2 }, ARG)
end
function P.tma(t) local r = checked(make_tma, t); return r end

-- n bytes of scratch memory on the call's stream, zeroed before every launch when zero is true.
local function make_scratch(t)
  check_keys(t, { bytes = true, zero = true }, "P.scratch{}")
  if math.type(t.bytes) ~= "integer" or t.bytes < 1 then fail("P.scratch{}: bytes must be a positive integer") end
  if t.zero ~= nil and type(t.zero) ~= "boolean" then fail("P.scratch{}: zero must be a boolean") end
  return setmetatable({ kind = "scratch", bytes = t.bytes, zero = t.zero or false }, ARG)
end
function P.scratch(t) local r = checked(make_scratch, t); return r end

local LAUNCH_KEYS = { entry = true, grid = true, block = true, smem = true, target = true, cluster = true,
                      nonportable_cluster = true, workspace = true, args = true }

-- The launch description of a variant on device dev (see above), checked.
local function make_launch(dev, t)
  check_keys(t, LAUNCH_KEYS, "P.launch")
  if type(t.entry) ~= "string" or not string.match(t.entry, "^[%a_][%w_]*$") or #t.entry > 63 then
    fail("P.launch: entry must be a C identifier of at most 63 characters, got " .. tostring(t.entry))
  end
  local grid, block = dim3(t.grid, "P.launch: grid"), dim3(t.block, "P.launch: block")
  if block[1] * block[2] * block[3] > dev.max_threads then
    fail(string.format("P.launch: block %dx%dx%d is above the device's %d threads", block[1], block[2], block[3], dev.max_threads))
  end
  local smem = t.smem or 0
  if math.type(smem) ~= "integer" or smem < 0 then fail("P.launch: smem must be a non-negative integer") end
  if smem > dev.smem_optin then
    fail(string.format("P.launch: smem %d is above the %d bytes a block may have on %s", smem, dev.smem_optin, dev.name))
  end
  local target = t.target or dev.arch
  local known = false
  for _, x in ipairs(dev.targets) do known = known or x == target end
  if not known then
    fail("P.launch: target " .. tostring(target) .. " does not run on " .. dev.name .. " (" .. dev.arch ..
         "; its targets: " .. table.concat(dev.targets, " ") .. ")")
  end
  local cluster = { 1, 1, 1 }
  local np = t.nonportable_cluster or false
  if type(np) ~= "boolean" then fail("P.launch: nonportable_cluster must be a boolean") end
  if t.cluster ~= nil then
    cluster = dim3(t.cluster, "P.launch: cluster")
    local n = cluster[1] * cluster[2] * cluster[3]
    local limit = np and dev.max_cluster_np or dev.max_cluster
    if n > 1 and n > limit then
      fail(string.format("P.launch: a cluster of %d CTAs is above the %d %s allows%s", n, limit, dev.name,
                         np and "" or " (portably)"))
    end
    for i = 1, 3 do
      if grid[i] % cluster[i] ~= 0 then
        fail(string.format("P.launch: grid[%d] = %d is not a multiple of cluster[%d] = %d", i, grid[i], i, cluster[i]))
      end
    end
  end
  local ws = t.workspace or 0
  if math.type(ws) ~= "integer" or ws < 0 then fail("P.launch: workspace must be a non-negative integer") end
  local args = t.args or { P.params() }
  if type(args) ~= "table" then fail("P.launch: args must be a list") end
  if #args > 8 then fail("P.launch: at most 8 args, got " .. #args) end
  for k, a in pairs(args) do
    if math.type(k) ~= "integer" or k < 1 or k > #args then fail("P.launch: args must be a list") end
    if getmetatable(a) ~= ARG then
      fail("P.launch: args[" .. k .. "] must be made by P.params(), P.tma{} or P.scratch{}")
    end
    if a.kind == "tma" and (dev.cc or 0) < 90 then fail("P.launch: tensor maps need sm_90 (" .. dev.arch .. " here)") end
  end
  return setmetatable({ entry = t.entry, grid = grid, block = block, smem = smem, target = target,
                        cluster = cluster, nonportable_cluster = np, workspace = ws, args = args }, LAUNCH)
end
function P.launch(dev, t) local r = checked(make_launch, dev, t); return r end

-- Whether t was made by P.launch.
function P.is_launch(t) return getmetatable(t) == LAUNCH end

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
