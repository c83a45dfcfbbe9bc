-- flash_hopper.lua: the FlashAttention-3-class forward kernel for sm_90a (H100, H200).
--
-- Warp specialisation: a producer warpgroup whose one thread issues every TMA copy (Q once per
-- tile, K and V through an mbarrier ring of `stages` buffers; a paged cache's runs inside its pages
-- from one to three warps, `copy_warps`) and 2 or 3 consumer warpgroups of 64
-- query rows each, with the registers moved to them by setmaxnreg. S = Q Kᵀ on wgmma with both
-- operands in shared memory (SS), O += P V with P from registers (RS); the softmax of key block j+1
-- runs under the P V of block j (`overlap`) and the consumer warpgroups take turns issuing their
-- GEMMs (`pingpong`). A persistent grid (`persistent`) walks the tiles with a static schedule, or
-- claims them one by one from a counter (`persistent = 2`), and double-buffers Q (`q_stages`) and
-- the O staging tile (`o_separate`). No CUTLASS, no CuTe: every
-- instruction is inline PTX from lib/wgmma.lua and lib/tma.lua. docs/flash_hopper.md explains the
-- steps, the barriers and the parameter space, and records the prototype's measurements.
local P = require("prelude")
local ptx = require("lib.ptx")
local tma = require("lib.tma")
local wgmma = require("lib.wgmma")
local softmax = require("lib.softmax")

local t = {
  name = "flash_hopper",
  version = 1,
  default_rank = 20,                  -- the built-in default of prefill on sm_90a (decode 10, flash_v2 30)
  serves_kv_cache = true,             -- a paged or contiguous KV cache with cache_seqlens (no append)
  params = {
    block_m = { 128, 192 },           -- query rows per tile: 64 per consumer warpgroup (2 or 3)
    block_n = { 64, 80, 96, 112, 128, 160, 176 },  -- keys per K/V block (the N of S = Q Kᵀ)
    stages = { 2, 3 },                -- K/V shared-memory buffers of the ring
    persistent = { 0, 1, 2 },         -- 1: min(#tiles, #SMs) CTAs walk the tiles (static schedule);
                                      -- 2: they claim tiles from a counter (causal, window, varlen)
    pingpong = { 0, 1 },              -- 1: consumer warpgroups take turns issuing GEMMs
    overlap = { 0, 1 },               -- 1: softmax of block j+1 under the P V of block j
    q_stages = { 1, 2 },              -- Q buffers: 2 loads the next tile's Q during this tile
    o_separate = { 0, 1 },            -- 1: O staged in its own tile (the next Q may land meanwhile)
    tma_store = { 0, 1 },             -- 1: each warpgroup's O rows leave shared memory by one TMA store
                                      -- (fixed lengths); 0: 16-byte stores by every thread
    walk_forward = { 0, 1 },          -- causal: 1 visits a tile's key blocks first to last (the
                                      -- diagonal ones last), 0 last to first (the diagonal ones first)
    copy_warps = { 1, 2, 3 },         -- a paged cache read in runs inside a page: producer warps that
                                      -- issue the copies (1 all; 2: K, V; 3: K's even slabs, V, K's odd)
  },
}

-- Registers per thread (setmaxnreg) by consumer warpgroups: producer, consumers. 128 producer
-- threads + 128 per consumer warpgroup, within the SM's 65536 (FA3's split).
local REGS = { [2] = { 24, 240 }, [3] = { 32, 160 } }
-- What ptxas needs in a consumer beyond O, S and P (addresses, loop and mask state, softmax
-- temporaries), calibrated with `ptxas -v` (NVRTC 13.0) at the 160 registers of 3 consumers, where
-- it binds: d64 192x128 (O 32 + S 64 + P 32 + 28 = 156) compiles without a spill, also with a
-- causal or window mask (+4); with softcap (+8: tanhf's temporaries) it spilled 12-80 B in 6 of its
-- 8 forms; d128 192x96 (136 + 28 = 164) spills 48 B. With 240 registers (2 consumers) every block_n
-- up to 176 fits. docs/flash_hopper.md has the table.
local REG_OVERHEAD = 28
local REG_SOFTCAP = 8
local REG_MASK = 4
-- Dynamic shared memory beyond the tiles and barriers: the slack that lets the kernel align its base
-- to 1 KiB (the atom of the 128-byte swizzle, so that the descriptors' base offset stays 0).
local SMEM_SLACK = 1024

local function has_target(dev, x)
  for _, y in ipairs(dev.targets or {}) do if y == x then return true end end
  return false
end

-- Columns of a row in shared memory: head_dim padded to whole 64-column slabs of the 128-byte
-- swizzle (the TMA fills the columns past head_dim with zeros).
local function padded(d) return (d + 63) // 64 * 64 end

-- Tile slots of the dynamic schedule (persistent = 2): the producer hands claimed tiles to the
-- consumers through a ring of this many (the tile's m-block, head and batch, and a full/empty
-- mbarrier pair each: 32 bytes).
local TILE_SLOTS = 4

-- A KV cache (issue 14): a paged cache or per-sequence key counts (cache_seqlens).
local function kv_cache(shape) return shape.page_size ~= nil or shape.kv_cache == true end

local function gcd(a, b) while b ~= 0 do a, b = b, a % b end return a end

-- Rows of one K or V copy: a paged cache's key block is copied in runs that each lie inside one page
-- (gcd(page size, block_n): a multiple of 8), other caches whole.
local function kv_chunk(p, shape)
  return shape.page_size and gcd(shape.page_size, p.block_n) or p.block_n
end

-- V of a paged cache read in runs of a multiple of 16 rows, at a head_dim of whole slabs (several):
-- laid out run by run ([run][slab][rows][64]), one rank-5 copy per run (V_RUNS in the kernel).
local function v_runs(p, shape)
  local c, d = kv_chunk(p, shape), shape.head_dim
  return shape.page_size ~= nil and c < p.block_n and c % 16 == 0 and d % 64 == 0 and d > 64
end

-- The dynamic schedule's producer reading a KV cache (a sequence length per claimed tile) spilled
-- 16-52 B at 24 registers: with 2 consumers it gets 40 (the consumers 232); so do several producer
-- warps copying a paged cache's runs (copy_warps > 1: 24-32 B of spill at 24).
local REGS_CACHE = { 40, 232 }
local function regs_split(p, shape)
  local consumers = p.block_m // 64
  if consumers == 2 and ((p.persistent == 2 and kv_cache(shape)) or (p.copy_warps or 1) > 1) then return REGS_CACHE end
  return REGS[consumers]
end

-- Shared memory of a variant: Q buffers, the O staging tile, K and V rings, the mbarriers
-- (Q full/empty per Q buffer; K and V full/empty per stage; with a KV cache a poison word per
-- stage), the dynamic schedule's tile slots, the alignment slack.
local function smem_bytes(p, shape)
  local dp = padded(shape.head_dim)
  local q = p.block_m * dp * 2
  return q * (p.q_stages + p.o_separate) + 2 * p.stages * p.block_n * dp * 2
      + 8 * (2 * p.q_stages + 4 * p.stages) + (kv_cache(shape) and 8 * p.stages or 0)
      + (p.persistent == 2 and 32 * TILE_SLOTS or 0) + SMEM_SLACK
end

-- Consumer registers the variant certainly needs: the O accumulator (head_dim/2 f32), S (block_n/2
-- f32) and P (block_n/4 packed pairs; with overlap S of block j+1 and P of block j are live at once,
-- without it P replaces S), plus the overhead.
local function regs_estimate(p, shape)
  local o, s, pr = shape.head_dim // 2, p.block_n // 2, p.block_n // 4
  local sc = shape.softcap and REG_SOFTCAP or 0
  local mask = (shape.causal or shape.window) and REG_MASK or 0
  local total = o + s + (p.overlap == 1 and pr or 0) + REG_OVERHEAD + sc + mask
  return total, function()
    return string.format("O %d + S %d + P %d + overhead %d%s%s", o, s, p.overlap == 1 and pr or 0, REG_OVERHEAD,
                         sc > 0 and (" + softcap " .. sc) or "", mask > 0 and (" + mask " .. mask) or "")
  end
end

-- The reasons a shape is not served at all (every variant refuses it alike), or nil.
local function unserved(shape, dev)
  if (dev.cc or 0) ~= 90 or not has_target(dev, "sm_90a") then
    return "needs sm_90a (wgmma, setmaxnreg, TMA): this is " .. tostring(dev.arch) .. " (flash_v2 serves it)"
  end
  if shape.dtype ~= "fp16" and shape.dtype ~= "bf16" then
    return "dtype " .. tostring(shape.dtype) .. ": fp16 or bf16 only"
  end
  local d = shape.head_dim
  if math.type(d) ~= "integer" or d < 64 or d > 256 or d % 8 ~= 0 then
    return string.format("head_dim %s: served are the multiples of 8 from 64 to 256 (below 64 a 64-column slab of the "
                         .. "128-byte swizzle would be mostly padding; flash_v2 serves them)", tostring(d))
  end
  return nil
end

function t.valid(p, shape, dev)
  local why = unserved(shape, dev)
  if why then return false, why end
  local d = shape.head_dim
  local consumers = p.block_m // 64
  -- Structure: knobs that do nothing, or were never measured, in the company of others.
  if p.persistent == 0 and (p.q_stages == 2 or p.o_separate == 1) then
    return false, "q_stages=2 and o_separate=1 stage the next tile's Q: a CTA of one tile (persistent=0) has none"
  end
  if p.walk_forward == 1 and not shape.causal then
    return false, "walk_forward=1 moves a causal tile's diagonal key blocks out of its first, unhidden softmax: "
                  .. "without a causal mask the masked blocks (a window's edges, a tail past seqlen_k) lie at both ends"
  end
  if p.pingpong == 1 and p.overlap == 0 then
    return false, "pingpong=1 needs overlap=1 (FA3 couples them; the pair apart was never measured)"
  end
  if p.overlap == 0 and (p.persistent ~= 0 or p.stages ~= 2) then
    return false, "overlap=0 is the unpipelined baseline, kept as measured: one tile per CTA, 2 stages "
                  .. "(2-12% slower than overlap=1 from 1k keys)"
  end
  if p.stages == 3 and p.persistent == 0 then
    return false, "stages=3 needs persistent=1: a third buffer measured the same as two (d64, calls 2-3); it is kept "
                  .. "only where the ring runs on across tiles"
  end
  if shape.append then
    return false, "append: flash_hopper reads the cache through tensor maps, and rows appended by the same launch "
                  .. "are not in it when other CTAs read them (the decode family appends, at most 16 query rows per "
                  .. "KV head; a longer chunk's call gets ops.kv_append first, then this family without the append)"
  end
  if p.persistent == 2 and not (shape.causal or shape.window or shape.varlen or kv_cache(shape)) then
    return false, "persistent=2 claims tiles one by one for tiles of unequal cost (causal, window, varlen, a KV cache): here every "
                  .. "tile costs the same and the static schedule (persistent=1) balances them without a counter"
  end
  if (p.copy_warps or 1) ~= 1 then
    if not (shape.page_size and kv_chunk(p, shape) < p.block_n) then
      return false, string.format("copy_warps=%d spreads the copies of a key block read in runs inside its pages over "
                                  .. "several warps: here %s", p.copy_warps, shape.page_size
                                  and string.format("pages of %d hold whole %d-key blocks (one copy each)",
                                                    shape.page_size, p.block_n) or "K and V are not paged")
    end
    if p.copy_warps == 3 and padded(d) < 128 then
      return false, "copy_warps=3 splits K's 64-column slabs over two warps: head_dim " .. d .. " has one"
    end
  end
  if p.tma_store == 1 and shape.varlen then
    return false, "tma_store=1: a varlen tile's rows past its sequence belong to the next one, which a TMA store "
                  .. "(bounded by the packed tensor only) would overwrite; 16-byte stores serve varlen"
  end
  if p.block_n < 96 and d <= 160 then
    return false, string.format("block_n=%d at head_dim %d: key blocks below 96 are for head_dims above 160, where "
                                .. "two stages of larger K and V blocks do not fit in shared memory", p.block_n, d)
  end
  if p.block_n == 112 and d <= 128 then
    return false, string.format("block_n=112 at head_dim %d: kept for head_dims above 128, where 128 does not fit "
                                .. "two stages beside Q", d)
  end
  if d == 64 and p.block_n > 128 then
    return false, string.format("block_n=%d at head_dim 64: m128n192 measured 0.72-0.99x cuDNN against m192n128's "
                                .. "0.85-1.13x; key blocks above 128 pay only at head_dim 128", p.block_n)
  end
  -- Resources.
  local smem = smem_bytes(p, shape)
  if smem > dev.smem_optin then
    return false, string.format("shared memory %d B (%d Q/O tiles of %d + %d stages of K and V, %d each) > smem_optin %d B",
                                smem, p.q_stages + p.o_separate, p.block_m * padded(d) * 2, p.stages,
                                p.block_n * padded(d) * 2, dev.smem_optin)
  end
  local regs, parts = regs_estimate(p, shape)
  local budget = regs_split(p, shape)[2]
  if regs > budget then
    return false, string.format("estimated %d consumer registers/thread > %d with %d consumer warpgroups (%s): would spill",
                                regs, budget, consumers, parts())
  end
  -- Staging: an unused Q or O tile of shared memory buys nothing at one CTA per SM, and each one
  -- measured equal or faster where it fits (O separate: 626 vs 520 TF at d128 4k; the Q double
  -- buffer: +3.5% at 512 keys). A persistent variant takes as many as fit beside its ring.
  if p.persistent ~= 0 then
    for _, more in ipairs({ { 1, 0 }, { 0, 1 } }) do
      local q, o = p.q_stages + more[1], p.o_separate + more[2]
      if q <= 2 and o <= 1 and smem_bytes({ block_m = p.block_m, block_n = p.block_n, stages = p.stages,
                                            persistent = p.persistent, q_stages = q, o_separate = o }, shape)
                               <= dev.smem_optin then
        return false, string.format("q_stages=%d, o_separate=%d leave room for q_stages=%d, o_separate=%d in shared "
                                    .. "memory: a variant with more staging is never slower", p.q_stages,
                                    p.o_separate, q, o)
      end
    end
  end
  -- Pruning by shape: tiles far larger than the sequences only add masked rows and keys (block_m
  -- 128 and block_n 96 are always kept), and a third buffer that is never filled.
  local sq, sk = shape.seqlen_q or 0, shape.seqlen_k or 0
  if sq > 0 and p.block_m > 128 and p.block_m >= 2 * ((sq + 15) // 16 * 16) then
    return false, string.format("block_m=%d >= 2 x seqlen_q=%d: block_m=128 covers it", p.block_m, sq)
  end
  if sk > 0 and p.block_n > 96 and p.block_n >= 2 * ((sk + 15) // 16 * 16) then
    return false, string.format("block_n=%d >= 2 x seqlen_k=%d: a smaller block_n covers it", p.block_n, sk)
  end
  local blocks = sk > 0 and (sk + p.block_n - 1) // p.block_n or math.huge
  if p.stages > 2 and p.stages > blocks then
    return false, string.format("stages=%d > %d key blocks of seqlen_k=%d: a buffer never filled", p.stages, blocks, sk)
  end
  return true
end

-- The built-in default: the prototype's measured best per head_dim and causal (H200, 2026-12-02,
-- docs/flash_hopper.md): d128 non-causal 128x128 with Q double buffer and O separate up to 2k keys,
-- 128x176 beyond; d128 causal 128x128; d64 non-causal 192x128 (3 consumers); d64 causal 128x128
-- (2 consumers) below 2k keys, 192x128 from 2k. All persistent, 2 stages, overlap and ping-pong,
-- but the causal 128x128 ones: tiles claimed from a counter (persistent = 2), no ping-pong (the
-- third session's suite, with the causal tiles in L2 sections: d128 causal at every length and d64
-- causal below 2k keys chose it; docs/performance.md).
-- Other head_dims up to 128 take d128's choice; above 128, 128 rows and the largest key block that
-- fits two stages beside Q (FA3's choice: 112 at d192, 80 at d256). Then smaller key blocks, 2
-- consumers and less staging until one is valid. false where the family serves no variant: other
-- GPUs, head_dims and dtypes it refuses, and decoding steps (at most 16 query rows per KV head:
-- the decode family's).
local DECODE_ROWS = 16
local CHUNK_RATIO = 4
local BLOCK_NS = { 176, 160, 128, 112, 96, 80, 64 }

local function base_default(shape, dev)
  if unserved(shape, dev) then return false end
  local group = (shape.heads_q or 1) // math.max(shape.heads_kv or 1, 1)
  if group * (shape.seqlen_q or 1) <= DECODE_ROWS then return false end
  local sk = shape.seqlen_k or 0
  -- A causal chunk against a history at least 4 times its length (chunked prefill: 512 rows against
  -- 8704 keys) takes the non-causal choice: every tile sees nearly all the keys, so the tiles cost
  -- alike and are long, where the causal choice below was measured on square shapes (its dynamic
  -- schedule without ping-pong measured 547 TFLOPS at 1 x 512 x 8704 d128 against the tuned 679,
  -- one tile per CTA with ping-pong; 2026-12-04, call 56)
  local causal = shape.causal and sk < CHUNK_RATIO * (shape.seqlen_q or 0)
  local bm, bn = 128, 128
  if shape.head_dim > 128 then
    bn = 176
  elseif shape.head_dim > 64 then
    if not causal and sk > 2048 then bn = 176 end
  else
    if not causal or sk >= 2048 then bm = 192 end
  end
  -- A KV cache's chunk keeps 128-key blocks: 256-key pages hold them whole (one copy a block); with
  -- 176-key blocks the contiguous cache measured 541 TFLOPS at 1 x 512 x 8704, 323 at 1 x 512 x 2560
  -- (call 59, when the ragged block's zeroing still stalled the producer)
  if kv_cache(shape) and bn > 128 then bn = 128 end
  -- causal 128x128 (head_dims up to 128; at 64 below 2048 keys): the dynamic schedule without
  -- ping-pong, Q double-buffered, O separate (the suite tuned on the H200, 2026-12-02, third
  -- session: chosen at d128 causal 512-16k and d64 causal 512-1024)
  -- O by TMA store where it is valid (fixed lengths: 2-4% faster at d64 and d128 causal 512-1024)
  -- and, at d64, a third K/V stage (2-5% there): 2026-12-03, an exhaustive tune, tuner's events;
  -- at d64 the key blocks walked forward, so that the diagonal's masked block is not the tile's
  -- first, unhidden softmax (+2.5-4% paired at 512 and 1024 keys, 2026-12-03 call 45; a tie at d128)
  if causal and shape.head_dim <= 128 and bm == 128 and bn == 128 then
    for _, v in ipairs({ { 3, 1 }, { 3, 0 }, { 2, 1 }, { 2, 0 } }) do
      local p = { block_m = 128, block_n = 128, stages = v[1], persistent = 2, pingpong = 0, overlap = 1, q_stages = 2,
                  o_separate = 1, tma_store = v[2], walk_forward = shape.head_dim <= 64 and 1 or 0 }
      if (v[1] == 2 or shape.head_dim <= 64) and t.valid(p, shape, dev) then return p end
    end
  end
  for _, m in ipairs(bm == 192 and { 192, 128 } or { 128 }) do
    for _, n in ipairs(BLOCK_NS) do
      if n <= bn then
        for _, qo in ipairs({ { 2, 1 }, { 2, 0 }, { 1, 1 }, { 1, 0 } }) do
          local p = { block_m = m, block_n = n, stages = 2, persistent = 1, pingpong = 1, overlap = 1,
                      q_stages = qo[1], o_separate = qo[2], tma_store = 0 }
          if t.valid(p, shape, dev) then return p end
        end
      end
    end
  end
  return nil
end

-- A copy of params p with the fields of changes set.
local function with(p, changes)
  local c = {}
  for k, v in pairs(p) do c[k] = v end
  for k, v in pairs(changes) do c[k] = v end
  return c
end

-- A paged cache whose pages do not hold whole key blocks (read in runs inside a page): the copies
-- spread over three producer warps (two where head_dim is one 64-column slab), on a static schedule
-- (as measured; the dynamic one takes copy_warps too, the tuner's to choose). Paired beside our contiguous prefill at 512 new rows
-- against 8704 keys in 16-key pages (H200, 2026-12-04, call 55): 128x128, 3 stages, persistent,
-- ping-pong, copy_warps 3 0.976x, 2 0.966x, 1 0.873x (the issue of 24 copies a block by one warp
-- bound it). Where that form does not fit, the base default's tile on the static schedule.
local function paged_runs_default(p, shape, dev)
  local measured = { block_m = 128, block_n = 128, stages = 3, persistent = 1, pingpong = 1, overlap = 1, q_stages = 1,
                     o_separate = 0, tma_store = 0, walk_forward = shape.causal and 1 or 0 }
  local static = with(p, { persistent = p.persistent == 2 and 1 or p.persistent })
  for _, cw in ipairs({ 3, 2 }) do
    for _, base in ipairs({ measured, static }) do
      for _, qo in ipairs({ { base.q_stages, base.o_separate }, { 2, 1 }, { 2, 0 }, { 1, 1 }, { 1, 0 } }) do
        local c = with(base, { copy_warps = cw, q_stages = qo[1], o_separate = qo[2] })
        if t.valid(c, shape, dev) then return c end
      end
    end
  end
  return p
end

-- Above head_dim 128 the base default's key block (112 at d192, 80 at d256) straddles pages of 64
-- keys and more; 64-key blocks, which such pages hold whole (one copy a block, no copy warps),
-- walked forward. Paired beside our contiguous prefill at 512 new rows against 8704 and 4608 keys
-- in 256-key pages (H200, 2026-12-04, call 79): d256 1.001-1.013x against 0.982-0.998x for 80-key
-- blocks in runs; d192 1.007x against 0.996x. With 16-key pages 64-key blocks lose (0.95x at
-- d256: four runs a block either way), so runs keep the base block there.
local function whole_page_default(p, shape, dev)
  if shape.head_dim <= 128 or shape.page_size % 64 ~= 0 then return nil end
  for _, st in ipairs({ p.stages, 3, 2 }) do
    local c = with(p, { block_n = 64, copy_warps = 1, stages = st, walk_forward = shape.causal and 1 or 0 })
    if t.valid(c, shape, dev) then return c end
  end
  return nil
end

function t.default(shape, dev)
  local p = base_default(shape, dev)
  if p and shape.page_size and kv_chunk(p, shape) < p.block_n then
    return whole_page_default(p, shape, dev) or paged_runs_default(p, shape, dev)
  end
  return p
end

-- The kernel text after the generated constants, specialised by them and by the prelude's
-- FAT_CAUSAL / FAT_WINDOW / FAT_SOFTCAP.
local KERNEL = [[
/* ======================================================================================
 * FlashAttention-3-class forward for sm_90a.
 *
 * CTA = 1 producer warpgroup (WG0; thread 0 issues every TMA, the other threads exit; a paged
 * cache read in runs: PRODUCER_LANES, COPY_WARPS warps) + CONSUMERS
 * consumer warpgroups of 64 query rows each (BLOCK_M = 64 * CONSUMERS). A tile is (Q block of
 * BLOCK_M rows, query head, sequence): one per CTA, or, PERSISTENT, a static schedule of them per
 * CTA. Shared memory (all tiles 1024-B aligned, 128B-swizzled, [slab of 64 cols][rows][64]):
 *   [Q: Q_STAGES x BLOCK_M x D][K: STAGES x BLOCK_N x D][V: STAGES x BLOCK_N x D]
 *   [O: BLOCK_M x D if O_SEPARATE][mbarriers]
 * mbarriers: Q full/empty per Q buffer; K full/empty and V full/empty per stage (full: 1 arrival +
 * tx bytes; empty: one arrival per consumer warpgroup). Phases run on across the tiles of a
 * persistent CTA. Consumers: S = Q K^T (wgmma SS, K-major both), softcap, mask, online softmax
 * (exp2, scale folded; after a tile's first key block the exponentials first, against the kept
 * max, the max pass only where a row sum says it moved), P packed to 16 bits in registers,
 * O += P V (wgmma RS, V MN-major = row-major [key][d]). Key blocks are visited from the last to
 * the first (a causal tile's diagonal blocks first), or WALK_FORWARD from the first to the last
 * (the diagonal ones last, so that the tile's first softmax, which no GEMM hides, takes no mask
 * where its first rows see the whole first block).
 * ====================================================================================== */
#define SLABS (HEAD_DIM_PAD / 64)      /* 64-column slabs of a row; columns past HEAD_DIM are zeros */
#define TMA_RANK5 (HEAD_DIM % 64 == 0 && SLABS > 1)   /* the tensor maps: rank 5 (one copy per tile) when
                                                          the slabs are whole and several */
#define K_STEPS ((HEAD_DIM + 15) / 16)  /* k16 steps of S = Q K^T (a last half step reads zeros) */
#define THREADS (128 * (CONSUMERS + 1))
#define SLAB_Q (BLOCK_M * 128)          /* bytes of one 64-column slab of the Q tile */
#define SLAB_KV (BLOCK_N * 128)
#define Q_BYTES (BLOCK_M * HEAD_DIM_PAD * 2)
#define KV_BYTES (BLOCK_N * HEAD_DIM_PAD * 2)
#define OFF_K (Q_STAGES * Q_BYTES)
#define OFF_V (OFF_K + STAGES * KV_BYTES)
#define OFF_O (OFF_V + STAGES * KV_BYTES)
#define OFF_BAR (OFF_O + O_SEPARATE * Q_BYTES)
#if PERSISTENT == 2
#define TILE_SLOTS 4                    /* the dynamic schedule's ring of claimed tiles */
#else
#define TILE_SLOTS 0
#endif
#define KV_CACHE (FAT_CACHE || FAT_PAGED)   /* a KV cache: per-sequence keys, rows past them unread */
#define KV_CHUNKS (BLOCK_N / KV_CHUNK)      /* K or V copies per key block (and slab, unless KV_RANK5) */
#define KV_RANK5 (TMA_RANK5 && KV_CHUNKS == 1)
/* V of a paged cache read in runs of a multiple of 16 rows, with whole slabs (several): stored run
 * by run, [run][slab][KV_CHUNK rows][64], so that one rank-5 copy fills a run's slabs (half the
 * copies of [slab][row][64] at d128). The P V descriptor's slabs are then KV_CHUNK rows apart
 * (V_LBO) and key step kk starts in run 16kk / KV_CHUNK (V_ROW_OFF(16kk)). K keeps [slab][row][64]: its
 * N = BLOCK_N rows must be evenly strided for S = Q K^T. */
#define V_RUNS (FAT_PAGED && KV_CHUNKS > 1 && KV_CHUNK % 16 == 0 && TMA_RANK5)
#if V_RUNS
#define V_RUN_BYTES (SLABS * KV_CHUNK * 128)
#define V_LBO (KV_CHUNK * 128)
#define V_ROW_OFF(r) (((r) / KV_CHUNK) * V_RUN_BYTES + ((r) % KV_CHUNK) * 128)
#else
#define V_LBO SLAB_KV
#define V_ROW_OFF(r) ((r) * 128)
#endif
#if KV_CACHE
#define CACHE_BYTES (8 * STAGES)           /* a poison word per stage */
#else
#define CACHE_BYTES 0
#endif
#define OFF_TS (OFF_BAR + 8 * (2 * Q_STAGES + 4 * STAGES) + CACHE_BYTES)  /* tile slots: full, empty mbarriers, tiles */
#define SMEM_BYTES (OFF_TS + 32 * TILE_SLOTS + 1024)   /* + slack to align the base to 1 KiB */
#define S_REGS (BLOCK_N / 2)
#define O_REGS (HEAD_DIM / 2)
#define P_REGS (BLOCK_N / 4)
#define FAT_CAT_(a, b) a##b
#define FAT_CAT(a, b) FAT_CAT_(a, b)
#define WGMMA_QK FAT_CAT(fat_wgmma_ss_, BLOCK_N)
#define WGMMA_PV FAT_CAT(fat_wgmma_rs_, HEAD_DIM)

static_assert(BLOCK_M == 64 * CONSUMERS, "each consumer warpgroup owns 64 rows");
static_assert(HEAD_DIM % 8 == 0 && HEAD_DIM >= 64 && HEAD_DIM <= 256, "head_dim: a multiple of 8 from 64 to 256");
static_assert(HEAD_DIM_PAD == (HEAD_DIM + 63) / 64 * 64, "rows padded to whole slabs");
static_assert(BLOCK_N % 16 == 0 && BLOCK_N <= 256, "BLOCK_N: multiple of 16, at most 256");
static_assert(BLOCK_N % KV_CHUNK == 0 && KV_CHUNK % 8 == 0, "K/V copies: whole 8-row swizzle atoms of the block");
static_assert(!FAT_APPEND, "an append is the decode family's");
static_assert(SMEM_BYTES == SMEM_LAUNCH, "the kernel's shared memory is what launch() asks for");
static_assert(!(TMA_STORE && FAT_VARLEN), "a TMA store of O would cross into the next sequence of a packed batch");
static_assert(SMEM_BYTES <= 232448, "shared memory over 227 KiB");
static_assert(128 * PRODUCER_REGS + 128 * CONSUMERS * CONSUMER_REGS <= 65536, "setmaxnreg over the SM's registers");

static __device__ __forceinline__ float fat_lg2(float x) {
    float y; asm("lg2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x)); return y;
}

/* TMA: one tile of `rows` rows starting at `row` of (head, batch), all D columns, into
 * [slab][rows][64] at dst. Rank 5: one copy (coordinates col=0, row, slab=0, head, batch);
 * rank 4: one copy per 64-column slab (col, row, head, batch), the columns past HEAD_DIM of the
 * last one filled with zeros (they count in the transaction bytes). Completes on `bar`. */
template <bool RANK5>
static __device__ __forceinline__ void tma_copy(fat_u32 dst, const fat_tmap *map, fat_u32 bar, int row,
                                                int head, int batch, int slab_bytes) {
    if (RANK5) {
        fat_tma_load_5d(dst, map, bar, 0, row, 0, head, batch);
    } else {
#pragma unroll
        for (int sl = 0; sl < SLABS; ++sl)
            fat_tma_load_4d(dst + sl * slab_bytes, map, bar, sl * 64, row, head, batch);
    }
}
#define tma_load tma_copy<TMA_RANK5>

/* ---------------- a KV cache (issue 14) ----------------
 * Sequence b's keys are cache_seqlens[b] (FAT_CACHE; out of [0, seqlen_k]: none are read and its
 * rows are NaN), else seqlen_k. Paged, key j is row j % FAT_PAGE_SIZE of page block_table[b][j /
 * FAT_PAGE_SIZE]: the producer copies a key block in KV_CHUNKS runs of KV_CHUNK rows, each inside one
 * page (the map's batch is the page). A run past the sequence, or whose table entry is outside [0,
 * num_pages), is read from page num_pages, out of the map's bounds: zeros, nothing read; a bad
 * entry also sets the stage's poison word, and the consumers make the tile's rows NaN. Rows past
 * the sequence inside a run it reads (the cache's, not the sequence's) may hold anything, NaN
 * included: K's are masked like any key past the sequence, but 0 x NaN in P V is NaN. A contiguous
 * cache reads the block that holds the sequence's end as the BLOCK_N keys that end there
 * (SHIFT_RAGGED, below) when the sequence has that many; otherwise each consumer warpgroup zeroes
 * V's rows past the end of that block (ragged) before its P V reads them (RAGGED_ZERO). */
static __device__ __forceinline__ bool cache_keys(const fat_kparams &p, int b, int &sk) {
#if FAT_CACHE
    int have;
    return cache_bad(p, b, &have, &sk);
#else
    (void)b;
    sk = p.seqlen_k;
    return false;
#endif
}
/* The producer: one thread issues every copy, or, for a paged cache read in several runs per key
 * block, whole warps run the loop alike and lane c copies run c (PRODUCER_LANES 32 per warp): the
 * table entries are read together, one per lane, and the copies go out one lane after another
 * instead of 2 x KV_CHUNKS x SLABS from one thread (which bound the producer: 0.80-0.89x the
 * contiguous cache at pages of 16, 2026-12-03). Lane 0 (lead) alone arrives for K, sets its
 * transaction counts, claims and publishes tiles, and copies Q. */
#if FAT_PAGED && KV_CHUNKS > 1
/* The copies of a block's runs spread over COPY_WARPS producer warps (copy_warps): 2, warp 0 issues
 * K's and warp 1 V's; 3, warps 0 and 2 K's even and odd 64-column slabs, warp 1 V's. One warp
 * issuing all 24 copies of a key block (d128, pages of 16) bound the chunk at 0.87x the contiguous
 * prefill, three 0.976x (2026-12-04, paired). Each warp reads the block's table entries itself; V's
 * lead (V_LEAD) sets V's transaction counts. */
#define COPY_WARPS COPY_WARPS_P
#else
#define COPY_WARPS 1
#endif
#define PRODUCER_LANES ((FAT_PAGED && KV_CHUNKS > 1) ? 32 * COPY_WARPS : 1)
static __device__ __forceinline__ bool producer_lead() { return PRODUCER_LANES == 1 || threadIdx.x == 0; }
#define K_WARP (COPY_WARPS == 1 || (tid >> 5) != 1)       /* this warp copies K (slabs K_SLAB0, +K_SLAB_STEP) */
#define V_WARP (COPY_WARPS == 1 || (tid >> 5) == 1)       /* this warp copies V */
#define Q_WARP (PRODUCER_LANES == 1 || tid < 32)          /* this warp copies Q (its lead) */
#define V_LEAD (PRODUCER_LANES == 1 || tid == (COPY_WARPS == 1 ? 0 : 32))   /* V's transaction counts and arrivals */
#define K_SLAB0 (COPY_WARPS == 3 ? (int)(threadIdx.x >> 6) : 0)
#define K_SLAB_STEP (COPY_WARPS == 3 ? 2 : 1)
#if FAT_PAGED && KV_CHUNKS > 1
/* This lane's run of key block n0 of sequence b: its page (num_pages for a lane past the runs, a
 * run past sk, or a bad entry: out of the map's bounds, zeros, nothing read); *bad for a bad entry
 * the sequence reads. */
static __device__ __forceinline__ int run_page(const fat_kparams &p, int b, int n0, int sk, bool &bad) {
    const int c = threadIdx.x & 31, j = n0 + c * KV_CHUNK;
    const bool mine = c < KV_CHUNKS && j < sk;
    const int e = mine ? page_of(p, b, j) : p.num_pages;
    const bool ok = page_ok(p, e);
    bad = mine && !ok;
    return ok ? e : p.num_pages;
}
static __device__ __forceinline__ void copy_run(fat_u32 dst, const fat_tmap *map, fat_u32 bar, int n0, int kvh, int pg,
                                                int sl0, int step) {
    const int c = threadIdx.x & 31;
    if (c < KV_CHUNKS)
#pragma unroll
        for (int sl = sl0; sl < SLABS; sl += step)
            fat_tma_load_4d(dst + sl * SLAB_KV + c * KV_CHUNK * 128, map, bar, sl * 64, (n0 + c * KV_CHUNK) % FAT_PAGE_SIZE,
                            kvh, pg);
}
#if V_RUNS
/* V's run c: one rank-5 copy of all its slabs, at run c of the [run][slab][row][64] layout */
static __device__ __forceinline__ void copy_v_run(fat_u32 dst, const fat_tmap *map, fat_u32 bar, int n0, int kvh, int pg) {
    const int c = threadIdx.x & 31;
    if (c < KV_CHUNKS)
        tma_copy<true>(dst + c * V_RUN_BYTES, map, bar, (n0 + c * KV_CHUNK) % FAT_PAGE_SIZE, kvh, pg, 0);
}
#define LOAD_V(dst, map, bar, n0) (copy_v_run(dst, map, bar, n0, kvh, pg_), pbad_)
#endif
#define BLOCK_PAGES(n0) bool lbad_; const int pg_ = run_page(p, b, n0, sk, lbad_); \
                        const bool pbad_ = __any_sync(0xffffffffu, lbad_)
#define LOAD_KV(dst, map, bar, n0) (copy_run(dst, map, bar, n0, kvh, pg_, K_SLAB0, K_SLAB_STEP), pbad_)
#if !V_RUNS
#define LOAD_V(dst, map, bar, n0) (copy_run(dst, map, bar, n0, kvh, pg_, 0, 1), pbad_)
#endif
#elif FAT_PAGED
/* one run a block (a page holds whole key blocks): its entry, then one copy like a contiguous cache's */
static __device__ __forceinline__ bool load_page(fat_u32 dst, const fat_tmap *map, fat_u32 bar, const fat_kparams &p,
                                                 int b, int n0, int sk, int kvh) {
    const int e = n0 < sk ? page_of(p, b, n0) : p.num_pages;
    const bool ok = page_ok(p, e);
    tma_copy<KV_RANK5>(dst, map, bar, n0 % FAT_PAGE_SIZE, kvh, ok ? e : p.num_pages, SLAB_KV);
    return n0 < sk && !ok;
}
#define BLOCK_PAGES(n0) do {} while (0)
#define LOAD_KV(dst, map, bar, n0) load_page(dst, map, bar, p, b, n0, sk, kvh)
#else
#define BLOCK_PAGES(n0) do {} while (0)
#define LOAD_KV(dst, map, bar, n0) (tma_copy<KV_RANK5>(dst, map, bar, kr + (n0), kvh, tb, SLAB_KV), false)
#endif
#ifndef LOAD_V
#define LOAD_V LOAD_KV
#endif
/* A contiguous KV cache (SHIFT_RAGGED): the key block that holds a sequence's end inside it, when
 * the sequence has a whole block of keys, is read as the BLOCK_N keys that end there, its first
 * rows the previous block's again (the consumers mask them). Every row read is then a key of the
 * sequence, so V needs no zeroing pass: the producer issues the block like any other instead of
 * waiting for V to land (RAGGED), and a length inside a key block costs no stall. KEY0(n0): the
 * first key a block's copies read; sk in scope. */
#define SHIFT_RAGGED (FAT_CACHE && !FAT_PAGED)
#if SHIFT_RAGGED
#define KEY0(n0) ((n0) + BLOCK_N > sk && sk >= BLOCK_N ? sk - BLOCK_N : (n0))
#else
#define KEY0(n0) (n0)
#endif
#if KV_CACHE
/* The ragged block: V's rows past the sequence inside the last run a key block reads (the cache's
 * rows, which may hold NaN) to zeros, by each consumer warpgroup before its P V of the block
 * (RAGGED_ZERO); valid = the block's rows inside the sequence. Whole 128-byte rows of every slab
 * (the swizzle only permutes 16-byte chunks inside a row; V_RUNS: in its run layout), 16 bytes a
 * store over the warpgroup's 128 threads, then the async proxy fence and the warpgroup's barrier
 * before any of its wgmma reads them. Both warpgroups write the same zeros to the same rows, each
 * before its own read, and the stage is refilled only after both have released it. Done by the
 * producer before (it waited for V to land, then zeroed, then made the stage full), it stalled every
 * tile's pipeline: a contiguous cache of 8512 keys at 0.87-0.90x the contiguous prefill (calls 52,
 * 56), pages of 256 0.90x (call 70). */
static __device__ __forceinline__ bool ragged_block(int valid) {
    return valid < BLOCK_N && valid % KV_CHUNK != 0;
}
static __device__ __forceinline__ void zero_rows(fat_u32 dst, int valid, int wtid, int cw) {
    const int r0 = valid, r1 = min(BLOCK_N, (valid / KV_CHUNK + 1) * KV_CHUNK);
    /* [r0, r1) lies inside one run (the last one read): rows of it are 128 B apart in either layout */
    const fat_u32 base = dst + V_ROW_OFF(r0) - r0 * 128;
#pragma unroll
    for (int sl = 0; sl < SLABS; ++sl)
#pragma unroll 1
        for (int i = r0 * 8 + wtid; i < r1 * 8; i += 128)     /* chunk i: row i / 8, column chunk i % 8 */
            asm volatile("st.shared.v4.b32 [%0], {%1, %1, %1, %1};" :: "r"(base + sl * V_LBO + i * 16), "r"(0) : "memory");
    fat_fence_proxy_async();
    fat_bar_sync(4 + cw, 128);
}
#endif

/* ---------------- GEMMs (issue only: fence, wgmmas, commit) ---------------- */
/* S = Q K^T over HEAD_DIM: k16 step kk is +32 B inside a slab, slab kk/4 is +rows*128 B. */
static __device__ __forceinline__ void issue_qk(float (&s)[S_REGS], fat_u64 dq, fat_u64 dk) {
    fat_pin(s);
    fat_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < K_STEPS; ++kk)
        WGMMA_QK(s, dq + (((kk % 4) * 32 + (kk / 4) * SLAB_Q) >> 4),
                 dk + (((kk % 4) * 32 + (kk / 4) * SLAB_KV) >> 4), kk > 0 ? 1 : 0);
    fat_wgmma_commit();
    fat_pin(s);
}
/* O += P V over BLOCK_N keys: k16 step kk starts at row 16kk (V_ROW_OFF: +2048 B of every slab, or
 * in V_RUNS's layout the run holding it). N = HEAD_DIM: the B operand spans the slabs (V_LBO
 * apart), the last one in part. */
static __device__ __forceinline__ void issue_pv(float (&o)[O_REGS], fat_u32 (&pr)[P_REGS], fat_u64 dv) {
    fat_pin(o);
    fat_pin(pr);
    fat_wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BLOCK_N / 16; ++kk)
        WGMMA_PV(o, pr[4 * kk], pr[4 * kk + 1], pr[4 * kk + 2], pr[4 * kk + 3], dv + (V_ROW_OFF(kk * 16) >> 4), 1);
    fat_wgmma_commit();
    fat_pin(o);
    fat_pin(pr);
}

/* ---------------- softmax pieces (accumulator layout: register r of a thread holds row
 * 16*warp + lane/4 + 8*((r>>1)&1), column 8*(r>>2) + 2*(lane&3) + (r&1)) ---------------- */
#if FAT_SOFTCAP
/* Softcap in the log2 domain: s <- tanh(s * in) * out with in = scale / softcap and out = softcap *
 * log2(e), i.e. apply_softcap(p, scale * s) * log2(e): the cap comes first, and the scores leave
 * already scaled for exp2 (sl2 = 1). */
static __device__ __forceinline__ void softcap_scores(float (&s)[S_REGS], float in, float out) {
#pragma unroll
    for (int r = 0; r < S_REGS; ++r) s[r] = tanhf(s[r] * in) * out;
}
#endif
/* Keys outside [lo, hi] of their row (visible_keys: causal, window, seqlen_k) become -inf. */
static __device__ __forceinline__ void mask_scores(float (&s)[S_REGS], int n0, int lane, int lo0, int hi0,
                                                   int lo1, int hi1) {
#pragma unroll
    for (int r = 0; r < S_REGS; ++r) {
        const int col = n0 + 8 * (r >> 2) + 2 * (lane & 3) + (r & 1);
        const bool second = (r >> 1) & 1;
        const int lo = second ? lo1 : lo0, hi = second ? hi1 : hi0;
        if (col < lo || col > hi) s[r] = -FAT_INF;
    }
}
/* New row max, exponentials in place (s becomes P in f32), alpha = rescale factor of O and l;
 * returns whether O needs the rescale. A row's max is lazy: it moves only when the block's exceeds
 * it by more than RESCALE_SLACK in exp2's units, so P stays <= 2^RESCALE_SLACK (exact in f32 and
 * fp16/bf16 alike) and O and l, both relative to the kept max, stay consistent. Most blocks then
 * move no max of the warp's rows and skip O's rescale, by one vote, so the warp branches as one
 * (1-4% on the H200: fewer instructions per score under its power cap; docs/flash_hopper.md).
 * slack: RESCALE_SLACK, or 0 after softmax_try failed (the max then moves to the block's). It runs
 * on a tile's first key block and where softmax_try sends a block back. */
#define RESCALE_SLACK 8.f
/* s <- 2^(s*sl2 - base) in place (one FFMA and one MUFU a score), the thread's part of each row's sum */
static __device__ __forceinline__ void exp_rows(float (&s)[S_REGS], float b0, float b1, float sl2, float &sum0,
                                                float &sum1) {
    sum0 = 0.f;
    sum1 = 0.f;
#pragma unroll
    for (int r = 0; r < S_REGS; r += 4) {
        s[r] = fat_exp2(fmaf(s[r], sl2, -b0));
        s[r + 1] = fat_exp2(fmaf(s[r + 1], sl2, -b0));
        s[r + 2] = fat_exp2(fmaf(s[r + 2], sl2, -b1));
        s[r + 3] = fat_exp2(fmaf(s[r + 3], sl2, -b1));
        sum0 += s[r] + s[r + 1];
        sum1 += s[r + 2] + s[r + 3];
    }
}
static __device__ __forceinline__ bool softmax_step(float (&s)[S_REGS], float &m0, float &m1, float &l0,
                                                    float &l1, float &a0, float &a1, float sl2, float slack) {
    float x0 = -FAT_INF, x1 = -FAT_INF;
#pragma unroll
    for (int r = 0; r < S_REGS; r += 4) {
        x0 = fmaxf(x0, fmaxf(s[r], s[r + 1]));
        x1 = fmaxf(x1, fmaxf(s[r + 2], s[r + 3]));
    }
    x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 1));
    x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 1));
    x0 = fmaxf(x0, __shfl_xor_sync(0xffffffffu, x0, 2));
    x1 = fmaxf(x1, __shfl_xor_sync(0xffffffffu, x1, 2));
    /* a first visible key moves the max (finite - -inf = +inf); none yet keeps -inf (-inf - -inf is NaN) */
    const bool up0 = (x0 - m0) * sl2 > slack, up1 = (x1 - m1) * sl2 > slack;
    const float mn0 = up0 ? x0 : m0, mn1 = up1 ? x1 : m1;
    /* a row with no visible key so far keeps base 0: 2^(-inf) = 0, never NaN */
    const float b0 = mn0 == -FAT_INF ? 0.f : mn0 * sl2, b1 = mn1 == -FAT_INF ? 0.f : mn1 * sl2;
    a0 = up0 ? fat_exp2(m0 * sl2 - b0) : 1.f;
    a1 = up1 ? fat_exp2(m1 * sl2 - b1) : 1.f;
    m0 = mn0;
    m1 = mn1;
    float sum0, sum1;
    exp_rows(s, b0, b1, sl2, sum0, sum1);
    l0 = l0 * a0 + sum0;
    l1 = l1 * a1 + sum1;
    return __any_sync(0xffffffffu, up0 || up1);
}
/* The exponentials first, against the kept max, without the max pass: s becomes P
 * and sum0/sum1 this thread's part of the block's row sums; returns whether the block needs the
 * max pass after all. P <= sum, so a part <= 2^RESCALE_SLACK bounds every P of it as
 * softmax_step's slack does, and a key above the kept max by 2^128 or more (P = inf) is caught the
 * same way. A row that has seen no key yet has no base: if it sees one in this block (see0/see1,
 * from its visible bounds: not from P, which ex2.approx.ftz flushes to 0 for keys below 2^-126 of
 * base 0) it needs the max pass; its masked keys give P = 0 against base 0. The caller decides for
 * the whole warpgroup (the max pass recomputes S by a wgmma) and adds the sums to l only when no
 * thread needs it. */
static __device__ __forceinline__ bool softmax_try(float (&s)[S_REGS], float m0, float m1, float &sum0,
                                                   float &sum1, float sl2, bool see0, bool see1) {
    exp_rows(s, m0 == -FAT_INF ? 0.f : m0 * sl2, m1 == -FAT_INF ? 0.f : m1 * sl2, sl2, sum0, sum1);
    /* !(sum <= bound): also true for NaN, which only a NaN score gives (the max pass keeps it) */
    return !(sum0 <= (1 << (int)RESCALE_SLACK)) || !(sum1 <= (1 << (int)RESCALE_SLACK))
        || (m0 == -FAT_INF && see0) || (m1 == -FAT_INF && see1);
}
/* P for P V: the m64k16 A fragment of key step kk is the accumulator registers 8kk .. 8kk+7 in
 * pairs: (R0, c), (R1, c), (R0, c+8), (R1, c+8). */
static __device__ __forceinline__ void pack_p(fat_u32 (&pr)[P_REGS], const float (&s)[S_REGS]) {
#pragma unroll
    for (int i = 0; i < P_REGS; ++i) pr[i] = pack2(s[2 * i], s[2 * i + 1]);
}
static __device__ __forceinline__ void rescale_o(float (&o)[O_REGS], float a0, float a1) {
#pragma unroll
    for (int r = 0; r < O_REGS; ++r) o[r] *= ((r >> 1) & 1) ? a1 : a0;
}

/* ---------------- tiles ---------------- */
/* Tile t of the launch: m-block, query head, batch. Persistent, non-causal: m-block fastest, so the
 * CTAs of one wave share the K/V of one (head, batch) in L2. Persistent, causal: longest tiles first
 * within sections of (head, batch) pairs whose K and V fit in L2_SECTION_BYTES together (the last
 * section may hold fewer): a section's tiles run one after another, so each head's K and V come
 * from HBM about once; longest first across all heads read them once per m-block (an L2 hit rate
 * of 11% and HBM at 53% of its peak at d64 causal 1024, ncu, 2026-12-02). Non-persistent: the 3D
 * grid, m-block fastest. */
#define L2_SECTION_KIB (32u << 10)
static __device__ __forceinline__ void decode_tile(const fat_kparams &p, int t, int num_m, int &m_block, int &h, int &b) {
#if PERSISTENT
#if FAT_CAUSAL
    const int hb = p.heads_q * p.batch;
    /* KiB of K and V per query head (keys rounded up to 256; a GQA group shares them), in 32-bit
     * integers: the producer and the consumers must agree exactly */
    const unsigned kib = ((unsigned)p.seqlen_k + 255u) / 256u * HEAD_DIM / (unsigned)(p.heads_q / p.heads_kv);
    const int sec = (int)min((unsigned)hb, max(1u, L2_SECTION_KIB / max(1u, kib)));
    const int s = t / (sec * num_m), r = t - s * sec * num_m;
    const int nh = min(sec, hb - s * sec);                 /* pairs in this section */
    const int i = s * sec + r % nh;
    m_block = num_m - 1 - r / nh;
    h = i % p.heads_q;
    b = i / p.heads_q;
#else
    m_block = t % num_m;
    h = (t / num_m) % p.heads_q;
    b = (t / num_m) / p.heads_q;
#endif
#else
#if FAT_CAUSAL
    m_block = gridDim.x - 1 - blockIdx.x;                  /* longest rows first */
#else
    m_block = blockIdx.x;
#endif
    h = blockIdx.y;
    b = blockIdx.z;
#endif
}
/* Key blocks [n_begin, n_end) hold every key some row of the tile sees (visible_keys: both bounds
 * grow with the row, so the first row's lo and the last row's hi; a window skips blocks at both
 * ends, causal those past the diagonal); keys in [lo_last, hi_first] are seen by every row (those
 * blocks skip the elementwise mask). */
struct TileKeys { int n_begin, n_end, lo_last, hi_first; };
static __device__ __forceinline__ TileKeys tile_keys(const fat_kparams &p, int m0, int sq, int sk) {
    int lo_first, hi_first, lo_last, hi_last;
    visible_keys(p, m0, sq, sk, &lo_first, &hi_first);
    visible_keys(p, min(m0 + BLOCK_M, sq) - 1, sq, sk, &lo_last, &hi_last);
    TileKeys k;
    k.n_begin = lo_first / BLOCK_N;
    k.n_end = hi_last < 0 ? 0 : hi_last / BLOCK_N + 1;
    if (k.n_end < k.n_begin) k.n_end = k.n_begin;
    k.lo_last = lo_last;
    k.hi_first = hi_first;
    return k;
}
/* the it-th key block a tile visits (producer and consumers alike) */
#if WALK_FORWARD
#define NTH_BLOCK(tk, it) ((tk).n_begin + (it))
#else
#define NTH_BLOCK(tk, it) ((tk).n_end - 1 - (it))
#endif
/* position in a ring of STAGES buffers: stage and the parity of its current use */
struct Ring { int st; fat_u32 ph; };
static __device__ __forceinline__ void advance(Ring &r) {
    if (++r.st == STAGES) { r.st = 0; r.ph ^= 1; }
}

/* ---------------- the epilogue ---------------- */
/* Where a tile's O and LSE go: sequence, query head, first row, the sequence's length and first
 * row (varlen), and the tile's Q use (its Q buffer stages O when !O_SEPARATE). */
struct TileOut { int b, h, m0, sq; long long q0; fat_u32 q_use; };

/* A tile with no visible key: zeros for this warp's 16 rows < seqlen_q, straight to global memory
 * (no shared memory: the staging tile may be in use), and LSE -inf; NaN and NaN for a sequence
 * whose cache length is out of range (poison). */
static __device__ __forceinline__ void store_zero_rows(const fat_kparams &p, const TileOut &id, int cw, int warp,
                                                       int lane, bool poison) {
    constexpr int CH = HEAD_DIM / 8;                                             /* 16-byte chunks per row */
    const fat_u32 fill = poison ? 0x7fff7fffu : 0u;                              /* NaN in fp16 and bf16 */
    char *g_o = (char *)p.o + 2 * ROW_OFF(p.o_sb, p.o_ss, p.o_sh, id.b, id.q0, id.h);
#pragma unroll
    for (int idx = lane; idx < 16 * CH; idx += 32) {
        const int rr = idx / CH, c = idx % CH, grow = id.m0 + 64 * cw + 16 * warp + rr;
        if (grow < id.sq)
            asm volatile("st.global.v4.b32 [%0], {%1, %1, %1, %1};" :: "l"(g_o + 2LL * grow * p.o_ss + c * 16), "r"(fill) : "memory");
    }
    if (p.lse != nullptr && lane < 16) {
        const int row = id.m0 + 64 * cw + 16 * warp + lane;
        if (row < id.sq) p.lse[LSE_OFF(p, id.b, id.h, id.q0, row)] = poison ? __int_as_float(0x7fffffff) : -FAT_INF;
    }
}

/* O / l, the LSE (natural log; -inf for a row that sees no key), then O to the dtype into this
 * warp's own 16 rows of the staging tile (swizzled slab layout like Q) and out: 16-byte stores of
 * the rows < seqlen_q by every thread, or (TMA_STORE) one TMA store per 64-column slab of the
 * warpgroup's 64 rows by one thread, which the map clips at seqlen_q. q_release: the Q_EMPTY
 * barrier to arrive on once O left the Q tile it was staged in (0 when O has its own tile). */
static __device__ __forceinline__ void finish_tile(const fat_kparams &p, float (&o)[O_REGS], float m_0, float m_1,
                                                   float l_0, float l_1, float sl2, const TileOut &id, fat_u32 s_o,
                                                   fat_u32 q_release, int cw, int warp, int wtid, const fat_tmap *tm_o) {
    (void)tm_o;
    l_0 += __shfl_xor_sync(0xffffffffu, l_0, 1);
    l_1 += __shfl_xor_sync(0xffffffffu, l_1, 1);
    l_0 += __shfl_xor_sync(0xffffffffu, l_0, 2);
    l_1 += __shfl_xor_sync(0xffffffffu, l_1, 2);
#if KV_CACHE
    /* a poisoned tile's l is NaN: so are its O and LSE */
    const float inv0 = l_0 > 0.f ? 1.f / l_0 : l_0 * 0.f, inv1 = l_1 > 0.f ? 1.f / l_1 : l_1 * 0.f;
#else
    const float inv0 = l_0 > 0.f ? 1.f / l_0 : 0.f, inv1 = l_1 > 0.f ? 1.f / l_1 : 0.f;
#endif
    rescale_o(o, inv0, inv1);
#if CONSUMERS == 3 || FAT_SOFTCAP || HEAD_DIM > 128
    /* where the registers bind (160 with 3 consumers; softcap's tanhf; O of more than 64
     * registers): the lane read afresh, so that the staging addresses below are recomputed per
     * tile instead of hoisted out of the tile loop and held across the key loop (without: 8 B of
     * spill at d64 192x128 causal, 44 B at d128 128x176 window+softcap, 104-152 B at d192
     * persistent). Elsewhere they are held, as measured. */
    const int lane = fat_tid_fresh() & 31;
#else
    const int lane = wtid & 31;
#endif
    if (p.lse != nullptr && (lane & 3) == 0) {
        const float ln2 = 0.69314718055994531f;
        const int row0 = id.m0 + 64 * cw + 16 * warp + (lane >> 2), row1 = row0 + 8;
#if KV_CACHE
        const float none0 = l_0 == l_0 ? -FAT_INF : l_0, none1 = l_1 == l_1 ? -FAT_INF : l_1;
#else
        const float none0 = -FAT_INF, none1 = -FAT_INF;
#endif
        if (row0 < id.sq) p.lse[LSE_OFF(p, id.b, id.h, id.q0, row0)] = l_0 > 0.f ? (m_0 * sl2 + fat_lg2(l_0)) * ln2 : none0;
        if (row1 < id.sq) p.lse[LSE_OFF(p, id.b, id.h, id.q0, row1)] = l_1 > 0.f ? (m_1 * sl2 + fat_lg2(l_1)) * ln2 : none1;
    }
    constexpr int CH = HEAD_DIM / 8;                                             /* 16-byte chunks per row */
#if TMA_STORE && O_SEPARATE
    if (wtid == 0) fat_bulk_wait_read<0>();     /* the previous tile's store has read the staging rows */
    fat_bar_sync(4 + cw, 128);
#elif !O_SEPARATE
    fat_bar_sync(4 + cw, 128);                  /* every warp of the warpgroup is past its last read of Q */
#endif
    {
        const int ra = 64 * cw + 16 * warp + (lane >> 2), rb = ra + 8;         /* rows within the tile */
#pragma unroll
        for (int c = 0; c < CH; ++c) {                                          /* 8-column chunk c */
            const fat_u32 sa = s_o + (c / 8) * SLAB_Q + ra * 128 + (((c % 8) ^ (ra & 7)) << 4) + (lane & 3) * 4;
            const fat_u32 sb = s_o + (c / 8) * SLAB_Q + rb * 128 + (((c % 8) ^ (rb & 7)) << 4) + (lane & 3) * 4;
            asm volatile("st.shared.b32 [%0], %1;" :: "r"(sa), "r"(pack2(o[4 * c], o[4 * c + 1])) : "memory");
            asm volatile("st.shared.b32 [%0], %1;" :: "r"(sb), "r"(pack2(o[4 * c + 2], o[4 * c + 3])) : "memory");
        }
    }
#if TMA_STORE
    /* the generic writes above before the async proxy's reads; every warp's rows in place */
    fat_fence_proxy_async();
    fat_bar_sync(4 + cw, 128);
    if (wtid == 0) {
#pragma unroll
        for (int sl = 0; sl < SLABS; ++sl)
            fat_tma_store_4d(tm_o, s_o + sl * SLAB_Q + cw * 64 * 128, sl * 64, id.m0 + 64 * cw, id.h, id.b);
        fat_bulk_commit();
#if !O_SEPARATE
        fat_bulk_wait_read<0>();                /* the store has read Q's buffer: the next Q may land */
        fat_mbar_arrive(q_release);
#endif
    }
    (void)q_release;
#else
    char *g_o = (char *)p.o + 2 * ROW_OFF(p.o_sb, p.o_ss, p.o_sh, id.b, id.q0, id.h);
    __syncwarp();
#pragma unroll
    for (int idx = lane; idx < 16 * CH; idx += 32) {
        const int rr = idx / CH, c = idx % CH;
        const int R = 64 * cw + 16 * warp + rr, grow = id.m0 + R;
        if (grow < id.sq) {
            const fat_u32 sa = s_o + (c / 8) * SLAB_Q + R * 128 + (((c % 8) ^ (R & 7)) << 4);
            fat_u32 v0, v1, v2, v3;
            asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];" : "=r"(v0), "=r"(v1), "=r"(v2), "=r"(v3) : "r"(sa) : "memory");
            asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" :: "l"(g_o + 2LL * grow * p.o_ss + c * 16), "r"(v0), "r"(v1), "r"(v2), "r"(v3) : "memory");
        }
    }
#if O_SEPARATE
    (void)q_release;
    __syncwarp();                               /* this warp's reads of its O rows precede its next writes */
#else
    /* generic-proxy accesses of the Q tile before the next TMA write into it */
    fat_fence_proxy_async();
    fat_bar_sync(4 + cw, 128);
    if (wtid == 0) fat_mbar_arrive(q_release);
#endif
#endif
}

/* ---------------- the dynamic schedule (PERSISTENT == 2) ---------------- */
/* The producer claims tiles from a counter zeroed before the launch (the first tile of CTA i is i,
 * each later one atomicAdd(counter, 1) + gridDim.x, claimed while the tile before is loading) and
 * hands each one, decoded (m-block, head, batch; m-block -1 past the last tile, which ends the
 * consumers' loop), to the consumers through a ring of TILE_SLOTS slots: full (1 arrival: the
 * producer, after its stores) and empty (one arrival per consumer thread, after its own reads: a
 * lane-0 arrive after __syncwarp is as correct by the memory model, but compute-sanitizer's
 * racecheck reports it). The mbarrier arrive releases, the wait acquires. Decoding in the producer
 * keeps the schedule's arithmetic out of the consumers' registers (40-56 B of spill at d128
 * 128x176 otherwise). Both sides count their tiles (ts) to find slot and parity. */
#define TS_FULL(i) (s_ts + 8u * (i))
#define TS_EMPTY(i) (s_ts + 8u * (TILE_SLOTS + (i)))
#define TS_TILE(i) (s_ts + 16u * TILE_SLOTS + 16u * (i))
static __device__ __forceinline__ int publish_tile(const fat_kparams &p, fat_u32 s_ts, int t, int num_m, int num_tiles,
                                                   fat_u32 &ts, int &m_block, int &h, int &b) {
    const fat_u32 i = ts % TILE_SLOTS, ph = (ts / TILE_SLOTS) & 1;
    m_block = -1;
    h = b = 0;
    if (t < num_tiles) decode_tile(p, t, num_m, m_block, h, b);
    fat_mbar_wait(TS_EMPTY(i), ph ^ 1);                     /* fresh barrier: passes at once */
    if (producer_lead()) {
        asm volatile("st.shared.b32 [%0], %1;" :: "r"(TS_TILE(i)), "r"(m_block) : "memory");
        asm volatile("st.shared.b32 [%0], %1;" :: "r"(TS_TILE(i) + 4), "r"(h) : "memory");
        asm volatile("st.shared.b32 [%0], %1;" :: "r"(TS_TILE(i) + 8), "r"(b) : "memory");
        fat_mbar_arrive(TS_FULL(i));
    }
    ++ts;
    return t;
}
static __device__ __forceinline__ int take_tile(fat_u32 s_ts, fat_u32 &ts, int &h, int &b) {
    const fat_u32 i = ts % TILE_SLOTS, ph = (ts / TILE_SLOTS) & 1;
    int m_block;
    fat_mbar_wait(TS_FULL(i), ph);
    asm volatile("ld.shared.b32 %0, [%1];" : "=r"(m_block) : "r"(TS_TILE(i)) : "memory");
    asm volatile("ld.shared.b32 %0, [%1];" : "=r"(h) : "r"(TS_TILE(i) + 4) : "memory");
    asm volatile("ld.shared.b32 %0, [%1];" : "=r"(b) : "r"(TS_TILE(i) + 8) : "memory");
    fat_mbar_arrive(TS_EMPTY(i));
    ++ts;
    return m_block;
}

/* ---------------- the kernel ---------------- */
extern "C" __global__ void __launch_bounds__(THREADS, 1)
fat_flash_hopper(const fat_kparams p, const __grid_constant__ fat_tmap tm_q, const __grid_constant__ fat_tmap tm_k,
                 const __grid_constant__ fat_tmap tm_v
#if TMA_STORE
                 , const __grid_constant__ fat_tmap tm_o
#endif
#if PERSISTENT == 2
                 , unsigned *tile_counter
#endif
                 )
{
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const fat_u32 sbase = (fat_shared_addr(smem_raw) + 1023u) & ~1023u;
    const fat_u32 s_q = sbase, s_k = sbase + OFF_K, s_v = sbase + OFF_V, s_bar = sbase + OFF_BAR;
#if PERSISTENT == 2
    const fat_u32 s_ts = sbase + OFF_TS;
#endif
#if O_SEPARATE
    const fat_u32 s_o = sbase + OFF_O;
#endif
#define Q_FULL(qb) (s_bar + 8u * (qb))
#define Q_EMPTY(qb) (s_bar + 8u * (Q_STAGES + (qb)))
#define FULL_K(st) (s_bar + 8u * (2u * Q_STAGES + (st)))
#define FULL_V(st) (s_bar + 8u * (2u * Q_STAGES + STAGES + (st)))
#define EMPTY_K(st) (s_bar + 8u * (2u * Q_STAGES + 2u * STAGES + (st)))
#define EMPTY_V(st) (s_bar + 8u * (2u * Q_STAGES + 3u * STAGES + (st)))
#define POISON(st) (s_bar + 8u * (2u * Q_STAGES + 4u * STAGES + (st)))   /* KV_CACHE: the stage's block read a bad entry */
#if TMA_STORE
#define TM_O (&tm_o)
#else
#define TM_O nullptr
#endif
/* Q buffer of the u-th Q use and the parity of that buffer's phase */
#define Q_BUF(u) ((u) % Q_STAGES)
#define Q_PH(u) (((u) / Q_STAGES) & 1)
/* where the u-th Q use's O is staged, and the barrier that frees its Q buffer after (0: none) */
#if O_SEPARATE
#define STAGING(u) s_o
#define Q_RELEASE(u) 0u
#else
#define STAGING(u) (s_q + Q_BUF(u) * Q_BYTES)
#define Q_RELEASE(u) Q_EMPTY(Q_BUF(u))
#endif

    const int tid = threadIdx.x;
    const int wg = __shfl_sync(0xffffffffu, tid / 128, 0);   /* warp-uniform role */
    /* Tiles cover the longest sequence (varlen: seqlen_q is the maximum); a tile past its own
     * sequence's end is skipped by every role alike. Fixed lengths: one sequence geometry for all
     * (the per-tile form costs the consumers registers: 32 B of spill at d64 192x128 causal). */
    const int num_m = (p.seqlen_q + BLOCK_M - 1) / BLOCK_M;
#if FAT_VARLEN
#define SEQ_OF_TILE(b) long long q0, k0; int sq, sk; seq_bounds(p, b, &q0, &k0, &sq, &sk); const bool bad = false
#elif KV_CACHE
    const int sq = p.seqlen_q;
    const long long q0 = 0, k0 = 0;
#define SEQ_OF_TILE(b) int sk; const bool bad = cache_keys(p, b, sk)
#else
    const int sq = p.seqlen_q, sk = p.seqlen_k;
    const long long q0 = 0, k0 = 0;
    const bool bad = false;
#define SEQ_OF_TILE(b) do {} while (0)
#endif
#if PERSISTENT
    const int num_tiles = num_m * p.heads_q * p.batch;
#if FAT_CAUSAL
    /* round k: CTA i takes tile k*G + i (k even) or k*G + G-1-i (k odd): with the longest tiles first,
     * a CTA that took a longer tile in one round takes a shorter one in the next */
#define TILE_LOOP for (int k_ = 0, t = blockIdx.x; t < num_tiles; \
                       ++k_, t = k_ * (int)gridDim.x + ((k_ & 1) ? (int)gridDim.x - 1 - (int)blockIdx.x : (int)blockIdx.x))
#else
#define TILE_LOOP for (int t = blockIdx.x; t < num_tiles; t += gridDim.x)
#endif
#else
#define TILE_LOOP for (int t = 0; t < 1; ++t)
#endif
#if PERSISTENT == 2
/* tiles as claimed (the dynamic schedule above); CLAIM_NEXT at the top of the producer's body */
#if COPY_WARPS > 1
/* warp 0 claims and publishes each tile; the other copy warps take it from the ring as the
 * consumers do (TS_EMPTY counts their threads too); all of them stop at m-block -1 */
#define NEXT_TILE(t) (tid < 32 ? (void)publish_tile(p, s_ts, (t), num_m, num_tiles, ts_, pm_, ph_, pb_) \
                               : (void)(pm_ = take_tile(s_ts, ts_, ph_, pb_)))
#define PRODUCER_TILE_LOOP int pm_ = 0, ph_ = 0, pb_ = 0, t_next_ = 0; \
                           for (NEXT_TILE((int)blockIdx.x); pm_ >= 0; NEXT_TILE(t_next_))
#else
#define PRODUCER_TILE_LOOP int pm_ = 0, ph_ = 0, pb_ = 0; \
                           for (int t = publish_tile(p, s_ts, blockIdx.x, num_m, num_tiles, ts_, pm_, ph_, pb_), t_next_ = 0; \
                                t < num_tiles; t = publish_tile(p, s_ts, t_next_, num_m, num_tiles, ts_, pm_, ph_, pb_))
#endif
#define PRODUCER_TILE(m, hh, bb) ((m) = pm_, (hh) = ph_, (bb) = pb_)
#if PRODUCER_LANES > 1
#define CLAIM_NEXT() (t_next_ = __shfl_sync(0xffffffffu, lead ? (int)atomicAdd(tile_counter, 1u) : 0, 0) + (int)gridDim.x)
#else
#define CLAIM_NEXT() (t_next_ = (int)atomicAdd(tile_counter, 1u) + (int)gridDim.x)
#endif
#define CONSUMER_TILE_LOOP int th_ = 0, tb_ = 0; \
                           for (int tm_ = take_tile(s_ts, ts_, th_, tb_); tm_ >= 0; tm_ = take_tile(s_ts, ts_, th_, tb_))
#define CONSUMER_TILE(m, hh, bb) ((m) = tm_, (hh) = th_, (bb) = tb_)
#else
#define PRODUCER_TILE_LOOP TILE_LOOP
#define PRODUCER_TILE(m, hh, bb) decode_tile(p, t, num_m, m, hh, bb)
#define CLAIM_NEXT() do {} while (0)
#define CONSUMER_TILE_LOOP TILE_LOOP
#define CONSUMER_TILE(m, hh, bb) decode_tile(p, t, num_m, m, hh, bb)
#endif

    if (tid == 0) {
#pragma unroll
        for (int qb = 0; qb < Q_STAGES; ++qb) {
            fat_mbar_init(Q_FULL(qb), 1);
            fat_mbar_init(Q_EMPTY(qb), CONSUMERS);
        }
#pragma unroll
        for (int st = 0; st < STAGES; ++st) {
            fat_mbar_init(FULL_K(st), 1);
            fat_mbar_init(FULL_V(st), 1);
            fat_mbar_init(EMPTY_K(st), CONSUMERS);
            fat_mbar_init(EMPTY_V(st), CONSUMERS);
        }
#if PERSISTENT == 2
#pragma unroll
        for (int i = 0; i < TILE_SLOTS; ++i) {
            fat_mbar_init(TS_FULL(i), 1);
            fat_mbar_init(TS_EMPTY(i), 128 * CONSUMERS + 32 * (COPY_WARPS - 1));   /* every consumer thread, the other copy warps' */
        }
#endif
        fat_mbar_fence_init();
    }
    __syncthreads();

    if (wg == 0) {
        /* ======================= producer (one thread, or one warp: PRODUCER_LANES) ======================= */
        fat_setmaxnreg_dec<PRODUCER_REGS>();
        if (tid < PRODUCER_LANES) {
            const bool lead = producer_lead();
            if (lead) {
                fat_tma_prefetch(&tm_q);
                fat_tma_prefetch(&tm_k);
                fat_tma_prefetch(&tm_v);
            }
            Ring w = {0, 0};
            fat_u32 q_uses = 0, ts_ = 0;
            (void)ts_;
            PRODUCER_TILE_LOOP {
                CLAIM_NEXT();
                int m_block, h, b;
                PRODUCER_TILE(m_block, h, b);
                const int m0 = m_block * BLOCK_M;
                SEQ_OF_TILE(b);
                (void)bad;
                if (FAT_VARLEN && m0 >= sq) continue;            /* varlen: past this sequence */
                const TileKeys tk = tile_keys(p, m0, sq, sk);
                if (tk.n_end == tk.n_begin) continue;            /* no key: no load, no Q use */
                const int kvh = h / (p.heads_q / p.heads_kv);
                /* rows of a packed batch: the sequence's start row, one batch in the maps */
                const int qr = (int)q0 + m0, kr = (int)k0, tb = FAT_VARLEN ? 0 : b;
                const int qb = Q_BUF(q_uses);
#if Q_STAGES > 1
                /* Q first: its buffer was freed a whole tile ago */
                if (Q_WARP) {
                    fat_mbar_wait(Q_EMPTY(qb), Q_PH(q_uses) ^ 1);
                    if (lead) {
                        fat_mbar_expect_tx(Q_FULL(qb), Q_BYTES);
                        tma_load(s_q + qb * Q_BYTES, &tm_q, Q_FULL(qb), qr, h, tb, SLAB_Q);
                    }
                }
#endif
                for (int it = 0; it < tk.n_end - tk.n_begin; ++it) {
                    const int n0 = NTH_BLOCK(tk, it) * BLOCK_N;
                    BLOCK_PAGES(n0);
                    if (K_WARP) {
                        fat_mbar_wait(EMPTY_K(w.st), w.ph ^ 1);      /* fresh barrier: passes at once */
#if KV_CACHE
                        /* the copies first (the phase also waits for the lead's arrival, and a
                         * transaction count may go below zero meanwhile), then the poison word that
                         * the arrival releases */
                        const bool pbad = LOAD_KV(s_k + w.st * KV_BYTES, &tm_k, FULL_K(w.st), KEY0(n0));
                        if (lead) {
                            fat_st_shared_b32(POISON(w.st), pbad ? 1u : 0u);
                            fat_mbar_expect_tx(FULL_K(w.st), KV_BYTES);
                        }
#else
                        if (lead) fat_mbar_expect_tx(FULL_K(w.st), KV_BYTES);
                        LOAD_KV(s_k + w.st * KV_BYTES, &tm_k, FULL_K(w.st), n0);
#endif
                    }
#if Q_STAGES == 1
                    if (it == 0 && Q_WARP) {                     /* Q after the first K: K may prefetch */
                        fat_mbar_wait(Q_EMPTY(qb), Q_PH(q_uses) ^ 1); /* the previous tile is done with Q */
                        if (lead) {
                            fat_mbar_expect_tx(Q_FULL(qb), Q_BYTES);
                            tma_load(s_q + qb * Q_BYTES, &tm_q, Q_FULL(qb), qr, h, tb, SLAB_Q);
                        }
                    }
#endif
                    if (V_WARP) {
                        fat_mbar_wait(EMPTY_V(w.st), w.ph ^ 1);
                        if (V_LEAD) fat_mbar_expect_tx(FULL_V(w.st), KV_BYTES);
                        LOAD_V(s_v + w.st * KV_BYTES, &tm_v, FULL_V(w.st), KEY0(n0));
                    }
                    advance(w);
                }
                ++q_uses;
            }
        }
        return;
    }

    /* ======================= consumers ======================= */
    fat_setmaxnreg_inc<CONSUMER_REGS>();
    const int cw = wg - 1;                      /* consumer index: rows 64*cw .. 64*cw+63 of the tile */
    const int wtid = tid & 127, warp = wtid >> 5, lane = tid & 31;
    /* Scores to the log2 domain: exp(scale*s - max) = 2^(s*sl2 - max*sl2), one FFMA per score.
     * Softcap first maps s to softcap*tanh(scale*s/softcap)*log2(e), already in the log2 domain. */
]] .. softmax.log2_scale .. [[
#if PINGPONG
#define PP_SYNC() fat_bar_sync(1 + cw, 256)
#define PP_ARRIVE() fat_bar_arrive(1 + (cw + 1) % CONSUMERS, 256)
    if (cw == 0) fat_bar_arrive(1, 256);        /* warpgroup 0 issues first; the cycle runs on across tiles */
#else
#define PP_SYNC() do {} while (0)
#define PP_ARRIVE() do {} while (0)
#endif
#if FAT_SOFTCAP
#define SOFTCAP(s) softcap_scores(s, cap_in, cap_out)
#else
#define SOFTCAP(s) do {} while (0)
#endif
    Ring r = {0, 0};
    fat_u32 q_uses = 0, ts_ = 0;
    (void)ts_;
    float o[O_REGS];                            /* O, m, l and P of the tile in hand */
    float m_0, m_1, l_0, l_1;
    fat_u32 pr[P_REGS];

    CONSUMER_TILE_LOOP {
        int m_block, h, b;
        CONSUMER_TILE(m_block, h, b);
        const int m0 = m_block * BLOCK_M;
        SEQ_OF_TILE(b);
        (void)k0;
        if (FAT_VARLEN && m0 >= sq) continue;   /* varlen: past this sequence (no Q use, nothing written) */
        const TileKeys tk = tile_keys(p, m0, sq, sk);
        const int n_iters = tk.n_end - tk.n_begin;
        const TileOut here = {b, h, m0, sq, q0, q_uses};
        if (n_iters == 0) {                     /* no key: zeros, straight to global memory */
            store_zero_rows(p, here, cw, warp, lane, bad);
            continue;
        }
#if KV_CACHE
        fat_u32 poison = 0;                     /* a key block read a bad table entry: the rows become NaN */
/* read by the thread that releases the stage (wtid 0), so its read comes before the arrival that
 * lets the producer write the word again, in that thread's order; shared with the warpgroup once, at
 * the tile's end (fat_bar_or) */
#define TAKE_POISON(st) do { if (wtid == 0) { fat_u32 x_; asm volatile("ld.shared.b32 %0, [%1];" : "=r"(x_) : "r"(POISON(st)) : "memory"); poison |= x_; } } while (0)
/* before the warpgroup's P V of the key block at n0 (stage st): V's rows past the sequence zeroed
 * where the block is ragged (a block read from KEY0 != n0 holds only keys of the sequence) */
#define RAGGED_ZERO(n0, st) do { if (KEY0(n0) == (n0) && ragged_block(sk - (n0))) \
            zero_rows(s_v + (st) * KV_BYTES, sk - (n0), wtid, cw); } while (0)
#else
#define TAKE_POISON(st) do {} while (0)
#define RAGGED_ZERO(n0, st) do {} while (0)
#endif
        const int row0 = m0 + 64 * cw + 16 * warp + (lane >> 2), row1 = row0 + 8;
        int lo0, hi0, lo1, hi1;
        visible_keys(p, row0, sq, sk, &lo0, &hi0);
        visible_keys(p, row1, sq, sk, &lo1, &hi1);
/* a key block needs the elementwise mask unless every row of the tile sees all of it; a block
 * read from KEY0 (SHIFT_RAGGED) also hides its keys before n0, the previous block's */
#define NEEDS_MASK(n0) ((n0) < tk.lo_last || (n0) + BLOCK_N - 1 > tk.hi_first)
#if SHIFT_RAGGED
#define MASK_BLOCK(n0) do { if (NEEDS_MASK(n0)) \
            mask_scores(s, KEY0(n0), lane, max(lo0, (n0)), hi0, max(lo1, (n0)), hi1); } while (0)
#else
#define MASK_BLOCK(n0) do { if (NEEDS_MASK(n0)) mask_scores(s, n0, lane, lo0, hi0, lo1, hi1); } while (0)
#endif
/* S of the key block at ring slot r, alone (nothing else in flight): issued, waited for, its K
 * slot released unless the softmax may need it again (keep), softcap and the mask applied */
#define S_BLOCK(first_key, keep) do { \
            fat_mbar_wait(FULL_K(r.st), r.ph); \
            TAKE_POISON(r.st); \
            PP_SYNC(); \
            issue_qk(s, dq, fat_desc_kmajor_sw128(s_k + r.st * KV_BYTES)); \
            PP_ARRIVE(); \
            fat_wgmma_wait<0>(); \
            fat_pin(s); \
            if (!(keep) && wtid == 0) fat_mbar_arrive(EMPTY_K(r.st)); \
            const int nb_ = (first_key); \
            SOFTCAP(s); \
            MASK_BLOCK(nb_); \
        } while (0)
/* The softmax of a key block after the tile's first (its K still in slot r): the exponentials
 * against the kept max; where a thread of the warpgroup finds a sum over the bound, S again from
 * slot r (every warp of the warpgroup issues the wgmma) and the max pass without slack, so that
 * the max moves to the block's and later blocks pass. Then K's slot is released. */
#define SOFTMAX_NEXT(n0, resc) do { \
            float t0_, t1_; \
            const int n1_ = (n0) + BLOCK_N - 1; \
            if (fat_bar_or(4 + cw, 128, softmax_try(s, m_0, m_1, t0_, t1_, sl2, max(lo0, (n0)) <= min(hi0, n1_), \
                                                    max(lo1, (n0)) <= min(hi1, n1_)))) { \
                issue_qk(s, dq, fat_desc_kmajor_sw128(s_k + r.st * KV_BYTES)); \
                fat_wgmma_wait<0>(); \
                fat_pin(s); \
                SOFTCAP(s); \
                MASK_BLOCK(n0); \
                resc = softmax_step(s, m_0, m_1, l_0, l_1, a0, a1, sl2, 0.f); \
            } else { \
                l_0 += t0_; \
                l_1 += t1_; \
                resc = false; \
            } \
            if (wtid == 0) fat_mbar_arrive(EMPTY_K(r.st)); \
        } while (0)

        float s[S_REGS];
        float a0, a1;
        const int qb = Q_BUF(q_uses);
        const fat_u64 dq = fat_desc_kmajor_sw128(s_q + qb * Q_BYTES + cw * 64 * 128);
        fat_mbar_wait(Q_FULL(qb), Q_PH(q_uses));
#if OVERLAP
        /* ---- first block (NTH_BLOCK 0): S, softmax, P ---- */
        S_BLOCK(NTH_BLOCK(tk, 0) * BLOCK_N, false);
        m_0 = -FAT_INF; m_1 = -FAT_INF; l_0 = 0.f; l_1 = 0.f;   /* the tile's running max and sum start */
        softmax_step(s, m_0, m_1, l_0, l_1, a0, a1, sl2, RESCALE_SLACK);
#pragma unroll
        for (int i = 0; i < O_REGS; ++i) o[i] = 0.f;
        pack_p(pr, s);
        Ring prev = r;
        advance(r);
        for (int it = 1; it < n_iters; ++it) {
            fat_mbar_wait(FULL_K(r.st), r.ph);
            TAKE_POISON(r.st);
            PP_SYNC();
            issue_qk(s, dq, fat_desc_kmajor_sw128(s_k + r.st * KV_BYTES));                     /* S(j+1) */
            fat_mbar_wait(FULL_V(prev.st), prev.ph);
            RAGGED_ZERO(NTH_BLOCK(tk, it - 1) * BLOCK_N, prev.st);
            issue_pv(o, pr, fat_desc_mnmajor_sw128(s_v + prev.st * KV_BYTES, V_LBO));        /* O += P(j) V(j) */
            PP_ARRIVE();
            fat_wgmma_wait<1>();                                                               /* S(j+1) ready */
            fat_pin(s);
            const int n0 = NTH_BLOCK(tk, it) * BLOCK_N;
            SOFTCAP(s);
            MASK_BLOCK(n0);
            bool resc;
            SOFTMAX_NEXT(n0, resc);
            fat_wgmma_wait<0>();                                                               /* P V done */
            fat_pin(o);
            fat_pin(pr);
            if (wtid == 0) fat_mbar_arrive(EMPTY_V(prev.st));
            if (resc) rescale_o(o, a0, a1);
            pack_p(pr, s);
            prev = r;
            advance(r);
        }
        fat_mbar_wait(FULL_V(prev.st), prev.ph);
        RAGGED_ZERO(NTH_BLOCK(tk, n_iters - 1) * BLOCK_N, prev.st);
        PP_SYNC();
        issue_pv(o, pr, fat_desc_mnmajor_sw128(s_v + prev.st * KV_BYTES, V_LBO));
        PP_ARRIVE();
        fat_wgmma_wait<0>();
        fat_pin(o);
        if (wtid == 0) fat_mbar_arrive(EMPTY_V(prev.st));
#else
#pragma unroll
        for (int i = 0; i < O_REGS; ++i) o[i] = 0.f;
        m_0 = -FAT_INF; m_1 = -FAT_INF; l_0 = 0.f; l_1 = 0.f;
        for (int it = 0; it < n_iters; ++it) {
            const int n0 = NTH_BLOCK(tk, it) * BLOCK_N;
            S_BLOCK(n0, it > 0);               /* K kept for SOFTMAX_NEXT after the first */
            bool resc;
            if (it == 0) resc = softmax_step(s, m_0, m_1, l_0, l_1, a0, a1, sl2, RESCALE_SLACK);
            else SOFTMAX_NEXT(n0, resc);
            if (resc) rescale_o(o, a0, a1);
            pack_p(pr, s);
            fat_mbar_wait(FULL_V(r.st), r.ph);
            RAGGED_ZERO(n0, r.st);
            PP_SYNC();
            issue_pv(o, pr, fat_desc_mnmajor_sw128(s_v + r.st * KV_BYTES, V_LBO));
            PP_ARRIVE();
            fat_wgmma_wait<0>();
            fat_pin(o);
            fat_pin(pr);
            if (wtid == 0) fat_mbar_arrive(EMPTY_V(r.st));
            advance(r);
        }
#endif
#if O_SEPARATE
        if (wtid == 0) fat_mbar_arrive(Q_EMPTY(qb));        /* Q no longer read: a later tile's Q may land */
#endif
#if KV_CACHE
        poison = fat_bar_or(4 + cw, 128, poison);   /* the warpgroup's own named barrier, as the epilogue's */
        if (poison) l_0 = l_1 = __int_as_float(0x7fffffff);
#endif
        finish_tile(p, o, m_0, m_1, l_0, l_1, sl2, here, STAGING(q_uses), Q_RELEASE(q_uses), cw, warp, wtid, TM_O);
        ++q_uses;
    }
#if TMA_STORE
    if (wtid == 0) fat_bulk_wait<0>();          /* this warpgroup's stores are done before the CTA ends */
#endif
}
]]

-- Where the kernel runs for a shape, without its source: what the runtime asks for when a kernel it
-- has loaded meets a new shape (gen_launch), and what emit() returns beside the source. Persistent:
-- min(#tiles, #SMs) CTAs on a static schedule (no scratch); else one CTA per tile.
function t.launch(p, shape, dev)
  local d = shape.head_dim
  -- whole slabs: one rank-5 copy of all of them; else one rank-4 copy per slab, zeros past d
  local slabs = d % 64 == 0 and d // 64 or 1
  local grid
  local num_m = P.ceil_div(shape.seqlen_q, p.block_m)
  if p.persistent ~= 0 then
    grid = { math.max(1, math.min(num_m * shape.heads_q * shape.batch, dev.sms)), 1, 1 }
  else
    grid = { num_m, shape.heads_q, shape.batch }
  end
  local args = {
    P.params(),
    P.tma{ tensor = "q", box = { 64, p.block_m }, slabs = slabs, swizzle = "128B" },
    -- K and V: a paged cache's in runs of kv_chunk rows inside one page (rank 4 then: one copy per
    -- slab and run)
    P.tma{ tensor = "k", box = { 64, kv_chunk(p, shape) }, slabs = kv_chunk(p, shape) == p.block_n and slabs or 1,
           swizzle = "128B" },
    P.tma{ tensor = "v", box = { 64, kv_chunk(p, shape) },
           slabs = (kv_chunk(p, shape) == p.block_n or v_runs(p, shape)) and slabs or 1, swizzle = "128B" },
  }
  -- O: one warpgroup's 64 rows of one 64-column slab per store (rank 4: the staging tile's slabs
  -- are block_m rows apart)
  if p.tma_store == 1 then args[#args + 1] = P.tma{ tensor = "o", box = { 64, 64 }, slabs = 1, swizzle = "128B" } end
  -- the dynamic schedule's tile counter, zeroed before every launch
  if p.persistent == 2 then args[#args + 1] = P.scratch{ bytes = 4, zero = true } end
  return P.launch(dev, {
    entry = "fat_flash_hopper",
    target = "sm_90a",
    grid = grid,
    block = { 128 * (p.block_m // 64 + 1), 1, 1 },
    smem = smem_bytes(p, shape),
    args = args,
  })
end

function t.emit(p, shape, dev)
  local ok, why = t.valid(p, shape, dev)
  assert(ok, why)
  local consumers = p.block_m // 64
  local def = P.define
  local defs = table.concat({
    string.format("/* ---- flash_hopper constants: tile %dx%d, %d consumer warpgroups, %d stages, %s, %s, %s,"
                  .. " %d Q buffer(s), O staged in %s%s ---- */",
                  p.block_m, p.block_n, consumers, p.stages, ({ [0] = "one tile per CTA", "persistent", "persistent, tiles claimed" })[p.persistent],
                  p.overlap == 1 and "intra-warpgroup overlap" or "no overlap",
                  p.pingpong == 1 and "ping-pong" or "no ping-pong", p.q_stages,
                  p.o_separate == 1 and "its own tile" or "the Q tile", p.tma_store == 1 and ", stored by TMA" or ""),
    def("HEAD_DIM", shape.head_dim),
    def("HEAD_DIM_PAD", padded(shape.head_dim), "columns of a row in shared memory: whole 64-column slabs"),
    def("BLOCK_M", p.block_m, "query rows per tile"),
    def("BLOCK_N", p.block_n, "keys per K/V block"),
    def("CONSUMERS", consumers, "consumer warpgroups of 64 rows"),
    def("STAGES", p.stages, "K/V ring buffers"),
    def("PERSISTENT", p.persistent),
    def("OVERLAP", p.overlap, "softmax of block j+1 under P V of block j"),
    def("PINGPONG", p.pingpong, "warpgroups take turns issuing GEMMs"),
    def("Q_STAGES", p.q_stages),
    def("O_SEPARATE", p.o_separate),
    def("TMA_STORE", p.tma_store, "O leaves shared memory by TMA stores"),
    def("WALK_FORWARD", p.walk_forward, "key blocks first to last (1) or last to first (0)"),
    def("PRODUCER_REGS", regs_split(p, shape)[1], "setmaxnreg of the producer warpgroup"),
    def("CONSUMER_REGS", regs_split(p, shape)[2], "setmaxnreg of a consumer warpgroup"),
    def("KV_CHUNK", kv_chunk(p, shape), "rows of one K or V copy (a run inside one page of a paged cache)"),
    def("COPY_WARPS_P", p.copy_warps, "producer warps issuing a paged cache's runs (1: all; 2: K, V; 3: K even slabs, V, K odd)"),
    def("SMEM_LAUNCH", smem_bytes(p, shape), "dynamic shared memory of launch()"),
  }, "\n") .. "\n"
  local e = t.launch(p, shape, dev)
  e.source = P.common(t, p, shape) .. ptx.misc .. tma.defs .. wgmma.defs
      .. wgmma.ops{ ss = { p.block_n }, rs = { shape.head_dim } } .. defs .. KERNEL
  return e
end

return t
