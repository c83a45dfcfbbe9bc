-- lib/tile.lua: the tile scheme of the mma.sync families (flash_v1, flash_v2), in Lua and CUDA text.
--
-- Q, K and V tiles are rows of 16-bit values in shared memory, head_dim padded to DPAD (a multiple
-- of 16) and cut into 16-byte chunks, XOR-swizzled (lib/swizzle), filled by cp.async and read by
-- ldmatrix into mma.sync m16n8k16 fragments (lib/ptx). A CTA of `warps` warps owns block_m query
-- rows, each warp whole 16-row mma tiles of them. What is the same in every family that works this
-- way lives here:
--   Lua    M.geometry        sizes derived from the parameters and the head_dim
--          M.check_shape, M.check_budget, M.prune_oversized      rules of valid()
--          M.acc_regs        the accumulators of a register estimate
--          M.source          the order of the emitted source
--   CUDA   M.defs            the derived #defines
--          M.load_tile       global -> shared tile copy (cp.async)
--          M.gemm_pv(note)   O += P V on the fragments
-- The CUDA functions carry no doc comment of their own: each family writes its explanation, in its
-- own notation (the paper's line numbers, the steps of its docs), in front of the piece, so the
-- emitted kernel reads as one commented text.
--
--   local tile = require("lib.tile")
--   local g = tile.geometry(p, shape)          -- then the family's own g.smem, ...
--   KERNEL = [[ ...banner... ]] .. tile.defs .. [[ ...doc comment... ]] .. tile.load_tile .. ...
--   source = tile.source(P.common(t, p, shape), g, defs, KERNEL)
local P = require("prelude")
local ptx = require("lib.ptx")
local swizzle = require("lib.swizzle")
local softmax = require("lib.softmax")

local M = {}

-- The sizes a kernel's shape depends on, from the parameters (block_m, block_n, warps) and the
-- head_dim of the shape. Returns a new table the family may extend (shared-memory total, ...):
--   threads, warp_m (rows per warp), m_tiles (16-row mma tiles per warp), dpad (head_dim rounded
--   up to 16: mma k and ldmatrix.x4 work in 16s), chunks (16-byte chunks per shared-memory row),
--   valid_chunks (chunks holding head_dim columns), sw (lib/swizzle), row_bytes, smem_q and
--   smem_kv (bytes of one Q and one K or V tile), and the copy geometry of M.load_tile: ld_cw lanes
--   (a power of two, at most 16 and at most threads / 8) walk the chunks of one row, so a lane's
--   rows are ld_rs = threads / ld_cw apart, a multiple of 8: they share one swizzle, and since
--   ld_cw >= 2^bits of the swizzle the XOR never carries between a lane's chunks; ld_nj chunks per
--   lane per row.
function M.geometry(p, shape)
  local g = {}
  g.threads = 32 * p.warps
  g.warp_m = p.block_m // p.warps
  g.m_tiles = g.warp_m // 16
  g.dpad = (shape.head_dim + 15) // 16 * 16
  g.chunks = g.dpad // 8
  g.valid_chunks = shape.head_dim // 8
  g.sw = swizzle.new(g.chunks)
  g.row_bytes = g.chunks * 16
  g.smem_q = p.block_m * g.row_bytes
  g.smem_kv = p.block_n * g.row_bytes
  local cw = 1
  while cw * 2 <= g.chunks and cw < 16 and cw * 2 <= g.threads // 8 do cw = cw * 2 end
  g.ld_cw = cw
  g.ld_rs = g.threads // cw
  g.ld_nj = (g.chunks + cw - 1) // cw
  return g
end

-- The rules of valid() that the tile scheme itself sets: a 16-bit dtype (mma.sync f16/bf16), a
-- head_dim that is whole 16-byte chunks up to 256, and block_m a multiple of 16 * warps (each warp
-- owns whole 16-row mma tiles). Returns true, or false and the reason (with the numbers).
function M.check_shape(p, shape)
  if shape.dtype ~= "fp16" and shape.dtype ~= "bf16" then
    return false, "dtype " .. tostring(shape.dtype) .. ": fp16 or bf16 only"
  end
  local d = shape.head_dim
  if math.type(d) ~= "integer" or d < 8 or d > 256 or d % 8 ~= 0 then
    return false, "head_dim " .. tostring(d) .. ": a multiple of 8 up to 256"
  end
  if p.block_m % (16 * p.warps) ~= 0 then
    return false, string.format("block_m=%d is not a multiple of 16*warps=%d (each warp owns whole 16-row mma tiles)",
                                p.block_m, 16 * p.warps)
  end
  return true
end

-- Pruning by shape: a tile at least twice the sequence (rounded up to 16) only adds masked rows or
-- keys, and the next smaller tile covers the same sequence. block_m up to min_m and block_n up to
-- min_n are always kept, so that a short sequence keeps its variants. A shape without seqlen_q or
-- seqlen_k prunes nothing. Returns true, or false and the reason.
function M.prune_oversized(p, shape, min_m, min_n)
  local sq, sk = shape.seqlen_q or 0, shape.seqlen_k or 0
  if sq > 0 and p.block_m > min_m and p.block_m >= 2 * ((sq + 15) // 16 * 16) then
    return false, string.format("block_m=%d >= 2 x seqlen_q=%d: a smaller block_m covers it", p.block_m, sq)
  end
  if sk > 0 and p.block_n > min_n and p.block_n >= 2 * ((sk + 15) // 16 * 16) then
    return false, string.format("block_n=%d >= 2 x seqlen_k=%d: a smaller block_n covers it", p.block_n, sk)
  end
  return true
end

-- The resource rules of valid(): the family's shared memory per CTA (g.smem) within what one block
-- may opt in to, and its register estimate `regs` per thread within max_regs (beyond it the
-- variant would spill). smem_parts() and regs_parts() return the text of the totals' parts for the
-- reasons; each is called only when its reason is given (valid() runs for every variant and every
-- new shape the runtime meets, so it formats nothing on success). Returns true, or false and the
-- reason.
function M.check_budget(g, dev, regs, max_regs, smem_parts, regs_parts)
  if g.smem > dev.smem_optin then
    return false, string.format("shared memory %d B (%s) > smem_optin %d B", g.smem, smem_parts(), dev.smem_optin)
  end
  if regs > max_regs then
    return false, string.format("estimated %d registers/thread > %d (%s): would spill", regs, max_regs, regs_parts())
  end
  return true
end

-- Registers per thread of the two f32 accumulator tiles of a warp's rows, the first terms of a
-- family's register estimate: O (m_tiles x dpad/8 tiles of 4) and S (m_tiles x block_n/8 tiles
-- of 4). Returns o, s.
function M.acc_regs(p, g)
  return g.m_tiles * (g.dpad // 8) * 4, g.m_tiles * (p.block_n // 8) * 4
end

-- The constants of M.geometry every family of the scheme defines, as lines of P.define form: the
-- head_dim and its padding, the row's chunks, the swizzle, and the copy geometry (g.ld_cw, ld_rs,
-- ld_nj: M.geometry's for a whole CTA, or a family's own).
function M.geometry_defs(g, shape)
  local def = P.define
  return {
    def("HEAD_DIM", shape.head_dim),
    def("DPAD", g.dpad, "head_dim rounded up to 16; columns past HEAD_DIM are zero"),
    def("CHUNKS", g.chunks, "16-byte chunks per shared-memory row"),
    def("VALID_CHUNKS", g.valid_chunks, "chunks holding head_dim columns"),
    def("SW_BITS", g.sw.bits, "swizzled low chunk bits (lib/swizzle)"),
    def("SW_VARIANTS", g.sw.variants, "ldmatrix offsets kept per lane"),
    def("LD_CW", g.ld_cw, "copy lanes per row"),
    def("LD_RS", g.ld_rs, "rows between a lane's copies"),
    def("LD_NJ", g.ld_nj, "chunks per lane per row"),
  }
end

-- The source of a family: the prelude's text (`common`, from P.common), the PTX wrappers, the
-- swizzle function fat_swz for g's rows, the softmax pieces, the family's constants (`defs`, a
-- list of lines: BLOCK_M, ..., the values of M.geometry) and its kernel text.
function M.source(common, g, defs, kernel)
  return table.concat({
    common,
    ptx.defs,
    swizzle.cuda_fn(g.sw, "fat_swz"),
    softmax.defs,
    table.concat(defs, "\n"), "\n",
    kernel,
  })
end

-- CUDA: the sizes derived from the family's constants (BLOCK_M, BLOCK_N, WARPS, DPAD, CHUNKS,
-- SW_BITS, SW_VARIANTS), and PAIR_OFF for the ldmatrix addresses. A lane keeps one address per
-- swizzle variant and reaches chunk pair k at addr[k % SW_VARIANTS] + PAIR_OFF(k) (lib/swizzle,
-- pair_offset).
M.defs = [[
#define ROW_BYTES (CHUNKS * 16)
#define SMEM_Q (BLOCK_M * ROW_BYTES)
#define SMEM_KV (BLOCK_N * ROW_BYTES)
#define WARP_M (BLOCK_M / WARPS)
#define M_TILES (WARP_M / 16)
#define N_TILES (BLOCK_N / 8)      /* 8-key column tiles of S */
#define D_TILES (DPAD / 8)         /* 8-wide column tiles of O */
#define K_STEPS (DPAD / 16)        /* 16-deep steps of Q Kᵀ */
/* ldmatrix.x4 reads chunks 2k and 2k + 1: a lane keeps SW_VARIANTS addresses, one per value of the
 * swizzled low bits, and reaches pair k at addr[k % SW_VARIANTS] + PAIR_OFF(k) (lib/swizzle). */
#define PAIR_OFF(k) (((k) / SW_VARIANTS) * (16 << SW_BITS))
]]

-- CUDA: load_tile<ROWS>(s_tile, g_tile, ss, rows_valid) issues the cp.async copies of one
-- ROWS x DPAD tile, global -> shared (swizzled), without committing a group. s_tile: shared address
-- of the tile; g_tile: global address of its row 0, column 0; ss: row stride in elements;
-- rows_valid: rows of the tile inside the sequence. Thread t copies chunks c + j*LD_CW of rows
-- r + i*LD_RS (r = t / LD_CW, c = t % LD_CW), so a row of lanes reads one contiguous stretch of a
-- row (coalesced). Rows past the sequence and columns past head_dim are zero-filled (src-size 0,
-- nothing read). The addresses come from a fresh threadIdx (fat_tid_fresh) at every call: a few
-- integer ops per tile instead of registers held across the KV loop. Needs LD_CW, LD_RS, LD_NJ,
-- CHUNKS, VALID_CHUNKS (M.geometry) and fat_swz.
-- The loader's text for a group of threads: fn, its name; rows, the name of its row-count template
-- parameter; lanes, the expression giving the copying thread's index (from fat_tid_fresh);
-- per_copy_swizzle: when a thread's rows are not all 8 apart (a warp copying alone: LD_RS < 8),
-- the swizzle is worked out at every copy instead of once per thread; copy, the 16-byte copy's
-- function or macro (fat_cp_async16 when not given).
function M.loader(fn, rows, lanes, per_copy_swizzle, copy)
  local s_first = per_copy_swizzle and "s_tile + r * ROW_BYTES" or "s_tile + r * ROW_BYTES + (fat_swz(r, c) << 4)"
  local s_copy = per_copy_swizzle and "s + i * LD_RS * ROW_BYTES + (fat_swz(r + i * LD_RS, cj) << 4),\n                          "
                                   or "s + i * LD_RS * ROW_BYTES + j * LD_CW * 16,"
  local text = [[
template <int ROWS>
static __device__ __forceinline__ void FN(unsigned s_tile, const char *g_tile, long long ss, int rows_valid) {
    const int t = LANES;
    const int r = t / LD_CW, c = t % LD_CW;
    const unsigned s = S_FIRST;
    const char *g = g_tile + 2 * (r * ss) + c * 16;
    const int rows_left = rows_valid - r;
#pragma unroll
    for (int i = 0; i < (ROWS + LD_RS - 1) / LD_RS; ++i) {
        if (ROWS % LD_RS != 0 && r + i * LD_RS >= ROWS) break;
        const bool row_ok = i * LD_RS < rows_left;
#pragma unroll
        for (int j = 0; j < LD_NJ; ++j) {
            const int cj = c + j * LD_CW;
            if (CHUNKS % LD_CW != 0 && cj >= CHUNKS) break;
            const bool ok = row_ok && (VALID_CHUNKS == CHUNKS || cj < VALID_CHUNKS);
            COPY(S_COPY g + 2 * (i * LD_RS) * ss + j * LD_CW * 16,
                           ok ? 16 : 0);
        }
    }
}
]]
  text = text:gsub("ROWS", rows):gsub("FN", fn):gsub("LANES", lanes):gsub("COPY%(", (copy or "fat_cp_async16") .. "(")
  return (text:gsub("S_FIRST", s_first):gsub("S_COPY", s_copy))
end

M.load_tile = M.loader("load_tile", "ROWS", "fat_tid_fresh()", false)

-- CUDA: gemm_pv(acc, pk, off, v_base), O += P V for one key tile on the fragments. P stays in
-- registers: pk holds the f32 C fragments of S turned into p and packed to 16 bits in pairs (lib/
-- softmax), and those of two adjacent 8-key tiles are exactly the A fragment of one 16-deep step
-- (c0c1 -> a0, c2c3 -> a1 from the first tile; a2, a3 from the second). V is row-major [key][d] in
-- shared memory at v_base, so one ldmatrix.x4.trans per 16 keys and 16 columns gives the B
-- fragments of two 8-wide d tiles: b0, b1 of d tile 2dp, then of 2dp + 1. off: this lane's
-- ldmatrix offsets, one per swizzle variant (lane l gives row l%16, chunk 2k + l/16).
-- `note`, when given, is a comment for the declaration of those B fragments.
function M.gemm_pv(note)
  local vb = "unsigned vb[4];"
  if note then vb = vb .. "   /* " .. note .. " */" end
  return [[
static __device__ __forceinline__ void gemm_pv(float (&acc)[M_TILES][D_TILES][4],
                                               const unsigned (&pk)[M_TILES][N_TILES][2],
                                               const unsigned (&off)[SW_VARIANTS], unsigned v_base) {
#pragma unroll
    for (int kk = 0; kk < BLOCK_N / 16; ++kk) {
        unsigned pa[M_TILES][4];
#pragma unroll
        for (int mt = 0; mt < M_TILES; ++mt) {
            pa[mt][0] = pk[mt][2 * kk][0];
            pa[mt][1] = pk[mt][2 * kk][1];
            pa[mt][2] = pk[mt][2 * kk + 1][0];
            pa[mt][3] = pk[mt][2 * kk + 1][1];
        }
#pragma unroll
        for (int dp = 0; dp < DPAD / 16; ++dp) {
            ]] .. vb .. [[

            fat_ldsm_x4_trans(vb, v_base + off[dp % SW_VARIANTS] + PAIR_OFF(dp) + kk * 16 * ROW_BYTES);
#pragma unroll
            for (int mt = 0; mt < M_TILES; ++mt) {
                fat_mma16816(acc[mt][2 * dp], pa[mt], vb[0], vb[1]);
                fat_mma16816(acc[mt][2 * dp + 1], pa[mt], vb[2], vb[3]);
            }
        }
    }
}
]]
end

return M
