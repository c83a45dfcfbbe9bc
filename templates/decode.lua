-- decode.lua: attention for a few query rows against a long KV cache (a decoding step, speculative
-- decoding), with the keys split over warps and, on sm_90, over the CTAs of a cluster.
--
-- In a decoding step each sequence brings one new query token (or a few). flash_v2's grid, one CTA
-- per 64 or more query rows of one head, would leave 63 of every 64 mma rows empty and start only
-- batch x heads_q CTAs, each streaming its head's whole KV cache. Here one CTA takes every query row
-- of one KV head: the heads_q / heads_kv heads that share it, times seqlen_q, at most 16 rows (one
-- mma row tile), so each key and value is read once for the whole group. The keys are split among
-- `splits` x `warps` workers: each warp streams its own key tiles through its own cp.async pipeline
-- (no barrier inside the loop), and with splits > 1 the CTAs of a thread-block cluster share the
-- keys of the head. Each worker keeps an online softmax (O unnormalised, row max m, row sum l); at
-- the end the partials meet in shared memory, the CTAs read each other's through distributed shared
-- memory, and the rows are combined and written. No workspace, no second kernel. docs/decode.md
-- explains the steps and the parameter space.
local P = require("prelude")
local softmax = require("lib.softmax")
local tile = require("lib.tile")
local ptx = require("lib.ptx")

local ROWS = 16          -- query rows of one CTA: one mma row tile

local t = {
  name = "decode",
  version = 1,
  -- reads a KV cache: paged (any page size of the problem), per-sequence key counts, an append
  serves_kv_cache = true,
  -- The built-in default of a decoding step (asked before flash_v2's), and what a decoding step is:
  -- at most ROWS query rows per KV head, the query group one CTA takes.
  default_rank = 10,
  decoding_rows = ROWS,
  params = {
    splits = { 1, 2, 4, 8 },   -- CTAs of a cluster sharing one KV head's keys (> 1: sm_90 clusters)
    warps = { 2, 4, 8 },       -- warps per CTA, each a worker with its own key tiles
    block_n = { 16, 32, 64 },  -- keys per tile of one worker
    stages = { 2, 3, 4 },      -- K/V buffers per warp: stages - 1 tiles in flight while one is computed
    balance = { 0, 1, 2, 4 },  -- > 0: the batch's key tiles dealt evenly to a grid of `balance` CTAs per SM,
                               -- whatever each sequence's length (a ragged batch); splits must be 1
    evict_first = { 0, 1 },    -- 1: K and V copied under an L2 evict_first policy (read once, they replace
                               -- each other, not the lines earlier kernels left in L2)
  },
}

local MAX_REGS = 255
local MAX_BALANCED_BATCH = 4096  -- balance > 0 keeps the batch's tile counts in shared memory
local CTA_RESERVED_SMEM = 1024   -- shared memory the hardware keeps per resident CTA (sm_80, sm_90)
local REG_OVERHEAD = 40  -- as flash_v2: addresses, loop state, temporaries beyond the fragments
local RESCALE_SKIP = true

-- Sizes from the parameters and the head_dim: lib/tile's row geometry for 16 rows, then this
-- family's shared memory: the Q tile, and per warp `stages` K and V buffers, which at the end hold
-- the warp's partial result (O in f32 with rows of part_ld floats, then m and l of the 16 rows).
local function geometry(p, shape)
  local g = tile.geometry({ block_m = ROWS, block_n = p.block_n, warps = 1 }, shape)
  g.threads = 32 * p.warps
  local cw = 1                                 -- copy lanes per row (warp_load_tile): a power of two
  while cw * 2 <= g.chunks and cw < 32 do cw = cw * 2 end
  g.ld_cw, g.ld_rs, g.ld_nj = cw, 32 // cw, (g.chunks + cw - 1) // cw
  g.warp_smem = 2 * p.stages * g.smem_kv
  g.part_ld = g.dpad + 4                       -- floats per partial row: 16-byte aligned, staggered banks
  g.part = ROWS * g.part_ld * 4 + 2 * ROWS * 4
  g.smem = g.smem_q + p.warps * g.warp_smem
  assert(g.part <= g.warp_smem, "decode: a warp's partial must fit in its K/V buffers")
  if p.balance > 0 then
    -- the batch's prefix of tile counts (batch + 1 of them), after the warps' buffers
    -- (64-bit counts), then the scan's warp totals and the combiner's flag (no static shared memory:
    -- every byte the kernel uses is in the launch's dynamic size, which valid() checks)
    g.pref = ((shape.batch or 1) + 1) * 8
    g.smem = g.smem + (g.pref + 15) // 16 * 16 + 8 * p.warps + 8
    -- one CTA's partial in the workspace: O of the 16 rows (dpad floats each), then m and l
    g.ws_part = (ROWS * g.dpad + 2 * ROWS) * 4
  end
  return g
end

-- Registers per thread: O (16 x dpad f32 over the warp), S of one tile, P of one tile, Q fragments
-- when held, and the overhead. Q is held in registers when that fits (Q_IN_REGS), else re-read from
-- shared memory at every tile. Returns the total without Q, with Q, and a function giving the parts.
local function regs_estimate(p, g)
  local o = (g.dpad // 8) * 4
  local s = (p.block_n // 8) * 4
  local pf = (p.block_n // 8) * 2
  local q = (g.dpad // 16) * 4
  local base = o + s + pf + REG_OVERHEAD
  return base, base + q, function()
    return string.format("O %d + S %d + P %d + overhead %d", o, s, pf, REG_OVERHEAD)
  end
end

function t.valid(p, shape, dev)
  local cc = dev.cc or 0
  if cc < 80 then return false, "needs sm_80 (mma.sync bf16, cp.async)" end
  if p.splits > 1 and cc < 90 then
    return false, string.format("splits=%d needs sm_90 (thread-block clusters)", p.splits)
  end
  if p.balance > 0 and p.splits > 1 then
    return false, string.format("balance=%d deals the keys to a grid of its own: splits=%d must be 1", p.balance, p.splits)
  end
  if p.balance > 0 and not (shape.kv_cache or shape.page_size or shape.varlen) then
    return false, string.format("balance=%d: every sequence has seqlen_k keys (no cache_seqlens, no varlen): nothing to balance",
                                p.balance)
  end
  if p.balance > 0 and (shape.batch or 1) > MAX_BALANCED_BATCH then
    return false, string.format("balance=%d: batch %d > %d (the tile counts kept in shared memory)",
                                p.balance, shape.batch, MAX_BALANCED_BATCH)
  end
  local ok, why = tile.check_shape({ block_m = ROWS, warps = 1 }, shape)
  if not ok then return false, why end
  local hq, hkv, sq = shape.heads_q or 1, shape.heads_kv or 1, shape.seqlen_q or 1
  local group = hq // hkv
  if group * sq > ROWS then
    return false, string.format("%d query rows per KV head (heads_q/heads_kv %d x seqlen_q %d) > %d: one mma row tile (flash_v2's case)",
                                group * sq, group, sq, ROWS)
  end
  local g = geometry(p, shape)
  if p.balance > 1 then
    -- the CTAs of an SM must be resident together, or the grid is a second wave, not balance CTAs per SM
    local per_sm, need = dev.smem_per_sm or 0, p.balance * (g.smem + CTA_RESERVED_SMEM)
    if need > per_sm then
      return false, string.format("balance=%d: %d CTAs x (%d B + %d B reserved) of shared memory > %d B per SM",
                                  p.balance, p.balance, g.smem, CTA_RESERVED_SMEM, per_sm)
    end
    -- (threads: at most 4 x 256 = 1024 per SM, within every sm_80+ GPU's 1536 or 2048; registers:
    -- __launch_bounds__(THREADS, balance) makes ptxas fit 65536 / (balance x threads) per thread,
    -- spilling if it must, which `fatune check` reports: none over the bench files at sm_80 and sm_90)
  end
  local regs, _, regs_parts = regs_estimate(p, g)
  return tile.check_budget(g, dev, regs, MAX_REGS, function()
    return string.format("Q %d + %d warps x %d stages x (K %d + V %d)", g.smem_q, p.warps, p.stages, g.smem_kv, g.smem_kv)
  end, regs_parts)
end

-- The built-in default, from exhaustive tunes on the H200 on 2026-11-30 (docs/decode.md): 4 warps
-- and 32-key tiles; splits: on sm_90, the CTAs per KV head double (up to 8) while the doubled CTA
-- count, batch x heads_kv x splits x 2, stays within half the SMs and every worker still gets a
-- tile (the fastest there: 8 sequence-heads took 8 splits, 32 took 2, 128 took 1: about 64
-- CTAs of 200 KB, one per SM, beat two waves of clusters); three stages when the keys are split
-- over CTAs, two otherwise. Then smaller tiles and fewer stages until one fits (head_dim 256).
-- false for more than 16 query rows per KV head (no variant is valid: nothing to search).
local DEFAULTS = { { 4, 32 }, { 4, 16 }, { 2, 16 } }
-- A paged cache whose pages hold no whole 32-key tile (16, 48, 80, ... keys) takes 16-key tiles,
-- which a page then holds whole (one table entry per tile): 16x1024 and 16x4096 keys in 16-key
-- pages ran at 0.78x and 0.69x of the contiguous cache with 32-key tiles read row by row, and
-- their guided tunes chose 16-key tiles: 0.97x and 0.90x of the tuned contiguous (H200, 2026-12-03,
-- bench/paged_decode.py and bench/decode-paged.lua; docs/performance.md).
local PAGED_DEFAULTS = { { 4, 16 }, { 2, 16 } }
-- On sm_90 two cases want more bytes in flight per CTA, eight warps each with three 16-key buffers
-- (192 KB per CTA at head_dim 128), measured on the H200 on 2026-12-03 (docs/decode.md):
-- 16-key pages at every split count (bench/paged_decode.py, 16 x 1k and 4k, 8 x 16k: 0.98-0.99x
-- the contiguous cache, against 0.70-0.89x with four warps; the exhaustive tune of 2 x 64k chose it
-- with 4 splits: 0.144 ms against the contiguous cache's 0.137), and one CTA per sequence-head
-- with SMs to spare (batch x heads_kv x 2 <= SMs: 8 x 16k keys, 3.93 TB/s against 3.51, the
-- exhaustive tune's best). With every SM busy (16 x 64k) four warps of 32-key tiles stay (4.52 TB/s,
-- 2026-11-30).
local WIDE = { { 8, 16 } }
-- evict_first when K and V are at most EVICT_FIRST_L2S times the L2 (sm_90; for a KV cache the
-- problem's seqlen_k is the cache's room, so a half-empty cache is counted whole). The L2
-- a step meets is full of lines earlier kernels wrote (do_bench's clear, or the layer before);
-- read under evict_first, K and V replace each other instead of those, which would otherwise be
-- written back to memory as they leave. Measured on the H200 (50 MB of L2) against the same
-- default without it, the L2 zeroed before every call (2026-12-04, bench/ab_decode.py, calls
-- 61-62): 67-201 MB of K and V 1.03-1.13x (16 x 1k: 2.43 -> 2.74 TB/s), 16.8 MB 1.02x; from
-- 268 MB on 0.94-1.00x (the longer the read, the more it loses).
local EVICT_FIRST_L2S = 4

function t.default(shape, dev)
  local group = (shape.heads_q or 1) // (shape.heads_kv or 1)
  if group * (shape.seqlen_q or 1) > ROWS then return false end   -- not a decoding step: search nothing
  local splits = 1
  if (dev.cc or 0) >= 90 then
    local ctas, half = (shape.batch or 1) * (shape.heads_kv or 1), (dev.sms or 0) // 2
    local sk = shape.seqlen_k or 0
    while splits < 8 and ctas * splits * 2 <= half and 2 * splits * 4 * 32 <= sk do splits = splits * 2 end
  end
  local page = shape.page_size
  local tiles = (page and page % 32 ~= 0 and page % 16 == 0) and PAGED_DEFAULTS or DEFAULTS
  local function first(list, top)
    for _, c in ipairs(list) do
      for stages = top, 2, -1 do
        local p = { splits = splits, warps = c[1], block_n = c[2], stages = stages, balance = 0, evict_first = 0 }
        if t.valid(p, shape, dev) then return p end
      end
    end
  end
  local wide = (dev.cc or 0) >= 90 and (tiles == PAGED_DEFAULTS or
               (splits == 1 and (shape.batch or 1) * (shape.heads_kv or 1) * 2 <= (dev.sms or 0)))
  local p = (wide and first(WIDE, 3)) or first(tiles, splits > 1 and 3 or 2)
  local kv_bytes = 2 * (shape.batch or 1) * (shape.heads_kv or 1) * (shape.seqlen_k or 0) * (shape.head_dim or 0) * 2
  local cc = dev.cc or 0
  if p and cc >= 90 and cc < 100 and kv_bytes <= EVICT_FIRST_L2S * (dev.l2 or 0) then p.evict_first = 1 end
  return p
end

local KERNEL = [[
/* ======================================================================================
 * Split-KV decoding attention. CTA (rank, kvh, b) of a cluster of SPLITS along x: KV head kvh of
 * sequence b; rank picks its share of the keys. Its 16 rows: row r = j * seqlen_q + i (r < group *
 * seqlen_q) is query i of head kvh * group + j, group = heads_q / heads_kv; other rows are zero.
 * Worker w = rank * WARPS + warp takes key tiles n_begin + w, + WORKERS, ...
 * Per thread: rows lane/4 and lane/4 + 8 of the mma fragments, as in flash_v2.
 * ====================================================================================== */
#define ROWS 16
#define ROW_BYTES (CHUNKS * 16)
#define SMEM_Q (ROWS * ROW_BYTES)
#define SMEM_KV (BLOCK_N * ROW_BYTES)
#define WARP_SMEM (2 * STAGES * SMEM_KV)   /* one warp's K buffers, then its V buffers */
#define M_TILES 1
#define N_TILES (BLOCK_N / 8)              /* 8-key column tiles of S */
#define D_TILES (DPAD / 8)                 /* 8-wide column tiles of O */
#define K_STEPS (DPAD / 16)                /* 16-deep steps of Q Kᵀ */
#define PAIR_OFF(k) (((k) / SW_VARIANTS) * (16 << SW_BITS))
#define PART_M (ROWS * PART_LD * 4)        /* byte offsets in a partial: O rows, then m, then l */
#define PART_L (PART_M + ROWS * 4)

/* Step 1 (loads): one warp copies a TROWS x DPAD tile global -> shared with cp.async (16 bytes a
 * copy) into the swizzled layout. Lane l copies chunks c + j*LD_CW of rows r + i*LD_RS (r = l /
 * LD_CW, c = l % LD_CW): LD_CW lanes walk one row, so every instruction reads whole rows' stretches
 * (coalesced). Rows past the sequence and columns past head_dim are zero-filled (src-size 0,
 * nothing read). The lane comes from a fresh %tid at every call, so that its addresses are
 * recomputed per tile instead of held in registers across the key loop. Unlike lib/tile's
 * load_tile for a whole CTA, a lane's rows here are 1 to 16 apart, not a multiple of 8, so the
 * swizzle is worked out per copy. */
#if EVICT_FIRST
#define KV_COPY16(dst, src, bytes) fat_cp_async16_policy(dst, src, bytes, fat_l2_evict_first())
#else
#define KV_COPY16 fat_cp_async16
#endif
]] .. tile.loader("warp_load_tile", "TROWS", "fat_tid_fresh() & 31", true, "KV_COPY16") .. [[

/* Step 1b (a KV cache, issue 14): key j of sequence b is, paged, row j % FAT_PAGE_SIZE of page
 * block_table[b][j / FAT_PAGE_SIZE] ([page, row, head] strides k_sb, k_ss, k_sh), else row j of
 * sequence b; with an append, keys from `have` (cache_seqlens[b]) on are rows j - have of k_new and
 * v_new, read from there (the cache's copy is written by Step 0b of the same launch, which no CTA
 * waits for). A table entry outside [0, num_pages) is never followed: its rows are zero-filled and
 * `bad` is set, which poisons the sequence's output (Step 7). kv_load_rows reads the tile's table
 * entries once (a lane each) and gives each row its entry by a shuffle; the same lanes, rows and
 * swizzle as warp_load_tile. */
#define KV_CACHE (FAT_CACHE || FAT_PAGED)   /* a KV cache's reads: lengths and entries checked (page_of,
                                               page_ok, cache_bad: the prelude's) */
#if KV_CACHE
static __device__ __forceinline__ void kv_row_ptrs(const fat_kparams &p, int b, int kvh, int j, int have, int e,
                                                   const char *&gk, const char *&gv, bool &ok, bool &bad) {
    gk = (const char *)p.k;
    gv = (const char *)p.v;
#if FAT_APPEND
    if (j >= have) {
        const long long i = j - have;
        gk = (const char *)p.k_new + 2 * ((long long)b * p.kn_sb + i * p.kn_ss + (long long)kvh * p.kn_sh);
        gv = (const char *)p.v_new + 2 * ((long long)b * p.vn_sb + i * p.vn_ss + (long long)kvh * p.vn_sh);
        return;
    }
#endif
#if FAT_PAGED
    if (!page_ok(p, e)) { bad = true; ok = false; return; }   /* e: the row's table entry */
    const long long pg = e, r = j % FAT_PAGE_SIZE;
#else
    (void)e;
    const long long pg = b, r = j;
#endif
    gk += 2 * (pg * p.k_sb + r * p.k_ss + (long long)kvh * p.k_sh);
    gv += 2 * (pg * p.v_sb + r * p.v_ss + (long long)kvh * p.v_sh);
}
static __device__ __forceinline__ void kv_load_rows(unsigned s_k, unsigned s_v, const fat_kparams &p, int b, int kvh,
                                                    int n0, int sk, int have, bool &bad) {
    const int t = fat_tid_fresh() & 31;
    const int r = t / LD_CW, c = t % LD_CW;
#if FAT_PAGED
    /* the tile's table entries (at most BLOCK_N / 8 + 1), lane t holding the t-th, read once per tile;
     * each row takes its entry by a shuffle instead of a load of its own before its copies */
    const int first = n0 / FAT_PAGE_SIZE, last = (n0 + BLOCK_N - 1) / FAT_PAGE_SIZE;
    int mine = -1;
    if (first + t <= last && (first + t) * FAT_PAGE_SIZE < sk)
        mine = page_of(p, b, (first + t) * FAT_PAGE_SIZE);
#endif
#pragma unroll
    for (int i = 0; i < (BLOCK_N + LD_RS - 1) / LD_RS; ++i) {
        const int row = r + i * LD_RS;
        if (BLOCK_N % LD_RS != 0 && row >= BLOCK_N) break;
#if FAT_PAGED
        const int e = __shfl_sync(0xffffffffu, mine, (n0 + row) / FAT_PAGE_SIZE - first);
#else
        const int e = 0;
#endif
        const char *gk = (const char *)p.k, *gv = (const char *)p.v;
        bool ok = n0 + row < sk;
        if (ok) kv_row_ptrs(p, b, kvh, n0 + row, have, e, gk, gv, ok, bad);
#pragma unroll
        for (int jj = 0; jj < LD_NJ; ++jj) {
            const int cj = c + jj * LD_CW;
            if (CHUNKS % LD_CW != 0 && cj >= CHUNKS) break;
            const int bytes = ok && (VALID_CHUNKS == CHUNKS || cj < VALID_CHUNKS) ? 16 : 0;
            const unsigned so = row * ROW_BYTES + (fat_swz(row, cj) << 4);
            KV_COPY16(s_k + so, gk + cj * 16, bytes);
            KV_COPY16(s_v + so, gv + cj * 16, bytes);
        }
    }
}
#endif
/* Step 1: key tile n of this CTA's head into a warp's K and V buffers. Whole tiles of a page (the
 * page a multiple of the tile, no append: WHOLE_PAGES) take one table entry, `e`, and
 * warp_load_tile's row stride; otherwise a cache is read row by row. The caller reads a tile's
 * entry one load ahead (next_entry), so that its latency passes under a tile's compute instead of
 * stalling the warp before the copies (16-key pages read 16-key tiles: a lookup per 4 KiB). */
#define WHOLE_PAGES (FAT_PAGED && !FAT_APPEND && FAT_PAGE_SIZE % BLOCK_N == 0)
static __device__ __forceinline__ int next_entry(const fat_kparams &p, int b, int n, int n_end) {
#if WHOLE_PAGES
    return n < n_end ? page_of(p, b, n * BLOCK_N) : -1;
#else
    (void)p; (void)b; (void)n; (void)n_end;
    return 0;
#endif
}
static __device__ __forceinline__ void load_kv(unsigned s_k, unsigned s_v, const fat_kparams &p, int b, int kvh,
                                               long long k0, int n, int sk, int have, bool &bad, int e) {
    const int n0 = n * BLOCK_N;
#if FAT_APPEND || (FAT_PAGED && FAT_PAGE_SIZE % BLOCK_N != 0)
    (void)e;
    kv_load_rows(s_k, s_v, p, b, kvh, n0, sk, have, bad);
#elif FAT_PAGED
    const bool ok = page_ok(p, e);
    if (!ok) bad = true;
    const long long r = n0 % FAT_PAGE_SIZE, pg = ok ? e : 0;
    warp_load_tile<BLOCK_N>(s_k, (const char *)p.k + 2 * (pg * p.k_sb + r * p.k_ss + (long long)kvh * p.k_sh),
                            p.k_ss, ok ? sk - n0 : 0);
    warp_load_tile<BLOCK_N>(s_v, (const char *)p.v + 2 * (pg * p.v_sb + r * p.v_ss + (long long)kvh * p.v_sh),
                            p.v_ss, ok ? sk - n0 : 0);
#else
    (void)have; (void)bad; (void)e;
    warp_load_tile<BLOCK_N>(s_k, (const char *)p.k + 2 * ROW_OFF(p.k_sb, p.k_ss, p.k_sh, b, k0 + n0, kvh), p.k_ss,
                            sk - n0);
    warp_load_tile<BLOCK_N>(s_v, (const char *)p.v + 2 * ROW_OFF(p.v_sb, p.v_ss, p.v_sh, b, k0 + n0, kvh), p.v_ss,
                            sk - n0);
#endif
}

/* Step 3: S = Q Kᵀ for one key tile: per 16-deep head-dim step one ldmatrix.x4 of K gives the B
 * fragments of two 8-key tiles; Q's A fragment comes from registers or from the Q tile. */
static __device__ __forceinline__ void gemm_qk(float (&s)[1][N_TILES][4],
#if Q_IN_REGS
                                               const unsigned (&qf)[K_STEPS][4],
#else
                                               unsigned q_base,
#endif
                                               const unsigned (&off)[SW_VARIANTS],
                                               const unsigned (&k_off)[SW_VARIANTS], unsigned k_base) {
#pragma unroll
    for (int kk = 0; kk < K_STEPS; ++kk) {
#if Q_IN_REGS
        const unsigned (&qa)[4] = qf[kk];
#else
        unsigned qa[4];
        fat_ldsm_x4(qa, q_base + off[kk % SW_VARIANTS] + PAIR_OFF(kk));
#endif
#pragma unroll
        for (int np = 0; np < N_TILES / 2; ++np) {
            unsigned kb[4];
            fat_ldsm_x4(kb, k_base + k_off[kk % SW_VARIANTS] + PAIR_OFF(kk) + np * 16 * ROW_BYTES);
            fat_mma16816(s[0][2 * np], qa, kb[0], kb[1]);
            fat_mma16816(s[0][2 * np + 1], qa, kb[2], kb[3]);
        }
    }
}

/* Step 4b: the mask of a tile that straddles a bound: key col0 + 8n + e is kept for this thread's
 * row r (lane/4 + 8r) only from lo[r] to hi[r]. */
static __device__ __forceinline__ void mask_rows(float (&s)[1][N_TILES][4], const int (&lo)[2], const int (&hi)[2],
                                                 int col0) {
#pragma unroll
    for (int n = 0; n < N_TILES; ++n)
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int j = col0 + n * 8 + e;
                if (j > hi[r] || j < lo[r]) s[0][n][2 * r + e] = -FAT_INF;
            }
}

/* Step 6: O += P V on the fragments (lib/tile), P straight from the softmax's registers. */
]] .. tile.gemm_pv() .. [[

/* Row r of the CTA is query i of head j of the group: r = j * sq + i. r < 16, so a few subtractions
 * instead of an integer division by a run-time value (which ptxas makes a call, with a stack). */
static __device__ __forceinline__ void split_row(int r, int sq, int *j, int *i) {
    int jj = 0;
    while (r >= sq) { r -= sq; ++jj; }
    *j = jj;
    *i = r;
}

/* Step 8 reads the partials of the cluster: worker w's lives in the K buffers of warp w % WARPS of
 * CTA w / WARPS. */
static __device__ __forceinline__ unsigned part_addr(unsigned s_parts, int w) {
#if SPLITS > 1
    return fat_cluster_map(s_parts + (w % WARPS) * WARP_SMEM, w / WARPS);
#else
    return s_parts + w * WARP_SMEM;
#endif
}
static __device__ __forceinline__ float part_f32(unsigned a) {
#if SPLITS > 1
    return fat_ld_cluster_f32(a);
#else
    float v;
    asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(v) : "r"(a) : "memory");
    return v;
#endif
}
static __device__ __forceinline__ void part_v4(float (&v)[4], unsigned a) {
#if SPLITS > 1
    fat_ld_cluster_v4f(v, a);
#else
    asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];\n"
                 : "=f"(v[0]), "=f"(v[1]), "=f"(v[2]), "=f"(v[3]) : "r"(a) : "memory");
#endif
}

#if FAT_APPEND
/* Step 0b: k_new and v_new of head kvh of sequence b into the cache at keys have .. have + seqlen_new
 * - 1, 16 bytes an item, items first, first + stride, ... A page entry out of range is skipped and
 * sets bad (the output is poisoned). */
static __device__ __forceinline__ void append_new_rows(const fat_kparams &p, int b, int kvh, int have, int first,
                                                       int stride, bool &bad) {
    for (int idx = first; idx < p.seqlen_new * VALID_CHUNKS; idx += stride) {
        const int i = idx / VALID_CHUNKS, c = idx % VALID_CHUNKS, j = have + i;
#if FAT_PAGED
        const int e = page_of(p, b, j);
        if (!page_ok(p, e)) { bad = true; continue; }
        const long long pg = e, r = j % FAT_PAGE_SIZE;
#else
        const long long pg = b, r = j;
#endif
        unsigned x[4];
        fat_ld_global_v4(x, (const char *)p.k_new + 2 * ((long long)b * p.kn_sb + (long long)i * p.kn_ss +
                                                        (long long)kvh * p.kn_sh) + c * 16);
        fat_st_global_v4((char *)p.k + 2 * (pg * p.k_sb + r * p.k_ss + (long long)kvh * p.k_sh) + c * 16, x);
        fat_ld_global_v4(x, (const char *)p.v_new + 2 * ((long long)b * p.vn_sb + (long long)i * p.vn_ss +
                                                        (long long)kvh * p.vn_sh) + c * 16);
        fat_st_global_v4((char *)p.v + 2 * (pg * p.v_sb + r * p.v_ss + (long long)kvh * p.v_sh) + c * 16, x);
    }
}
#endif

/* Step 8's store of item (row r, 8 columns c) of head kvh of sequence b: O = o / sum in 16 bits, and
 * once per row (c == 0) LSE = (mx * sl2 + log2 sum) * ln 2; a row no key reached (sum 0) gets zeros
 * and -inf, a poisoned one NaN (never a plausible answer from a wrong cache). */
static __device__ __forceinline__ void store_item(const fat_kparams &p, int b, int kvh, int group, long long q0,
                                                  int sq, int r, int c, const float (&o)[8], float sum, float mx,
                                                  bool poisoned, float sl2) {
    const float inv = poisoned ? __int_as_float(0x7fc00000) : sum > 0.f ? 1.f / sum : 0.f;
    int j, i;
    split_row(r, sq, &j, &i);
    const int h = kvh * group + j;
    const unsigned v4[4] = { pack2(o[0] * inv, o[1] * inv), pack2(o[2] * inv, o[3] * inv),
                             pack2(o[4] * inv, o[5] * inv), pack2(o[6] * inv, o[7] * inv) };
    fat_st_global_v4((char *)p.o + 2 * ROW_OFF(p.o_sb, p.o_ss, p.o_sh, b, q0 + i, h) + c * 16, v4);
    if (c == 0 && p.lse != nullptr)
        p.lse[LSE_OFF(p, b, h, q0, i)] = poisoned ? __int_as_float(0x7fc00000)
                                       : sum > 0.f ? (mx * sl2 + log2f(sum)) * 0.6931471805599453f : -FAT_INF;
}

#if BALANCE
/* ---- The balanced schedule (BALANCE): the batch's key tiles, sequence b's KV heads in order and
 * the sequences in order, numbered 0 .. T-1; CTA g of G takes tiles [g T / G, (g + 1) T / G), which
 * may cut a sequence-head (a unit) at either end. A unit the CTA holds whole is finished as above;
 * the share of a cut unit leaves a partial (O unnormalised in f32, its row max m and sum l) in the
 * workspace, in slot 2g when the unit began before the CTA's share, else 2g + 1; the CTA that
 * brings the unit's counter of finished tiles to its count combines the unit's partials. ---- */
#define WS_PART (ROWS * DPAD + 2 * ROWS)       /* floats of one partial: O rows, then m, then l */

/* The key tiles of one KV head of sequence b: Step 0's n_end - n_begin. */
static __device__ __forceinline__ int unit_tiles(const fat_kparams &p, int b) {
    long long q0, k0;
    int sq, sk, have = 0;
    seq_bounds(p, b, &q0, &k0, &sq, &sk);
#if FAT_CACHE
    cache_bad(p, b, &have, &sk);          /* bad: sk = 0, no tile */
#endif
    (void)have;
    if (sq <= 0) return 0;
    int lo_first, hi_first, lo_last, hi_last;
    visible_keys(p, 0, sq, sk, &lo_first, &hi_first);
    visible_keys(p, sq - 1, sq, sk, &lo_last, &hi_last);
    const int nb = lo_first / BLOCK_N, ne = hi_last < 0 ? 0 : hi_last / BLOCK_N + 1;
    return max(ne - nb, 0);
}
/* The CTA whose share holds tile t: the last g with g T / G <= t. */
static __device__ __forceinline__ int cta_of(long long t, long long T, int G) {
    int g = (int)(t * G / T);
    while (g + 1 < G && (long long)(g + 1) * T / G <= t) ++g;
    return g;
}
/* CTA g's share is empty (fewer tiles than CTAs): it left no partial, though cta_of's range of a
 * unit's CTAs may pass over it. */
static __device__ __forceinline__ bool share_empty(int g, long long T, int G) {
    return (long long)g * T / G == (long long)(g + 1) * T / G;
}
/* The workspace slot of CTA g's share of a unit whose first tile is u0. */
static __device__ __forceinline__ int slot_of(int g, long long u0, long long T, int G) {
    return u0 < (long long)g * T / G ? 2 * g : 2 * g + 1;
}
#endif

extern "C" __global__ void CLUSTER_DIMS LAUNCH_BOUNDS fat_decode(const fat_kparams p
#if BALANCE
                                                                , int *const done
#endif
                                                                )
{
    extern __shared__ __align__(128) unsigned char smem[];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    const int group = p.heads_q / p.heads_kv;
#if BALANCE
    /* the log2-domain factors here, for the units with no tile and the combiner; one CTA per
     * sequence-head takes them after Q's fragments, as before (at the top, three d64 variants
     * spilled 8 bytes) */
]] .. softmax.log2_scale .. [[
#endif

#if BALANCE
    /* ---- The batch's tile counts and their prefix sums: s_pref[b] = the tiles before sequence b
     * (all its KV heads), kept in shared memory after the warps' buffers ---- */
    long long *const s_pref = (long long *)(smem + SMEM_Q + WARPS * WARP_SMEM);
    long long *const s_warp_sum = s_pref + ((p.batch + 2) & ~1);   /* then the scan's warp totals */
    int *const s_last = (int *)(s_warp_sum + WARPS);                /* and the combiner's flag */
    for (int bb = tid; bb < p.batch; bb += THREADS) s_pref[bb + 1] = (long long)unit_tiles(p, bb) * p.heads_kv;
    if (tid == 0) s_pref[0] = 0;
    __syncthreads();
    {   /* inclusive scan of s_pref[1 .. batch]: a run of entries per thread, then the runs' totals */
        const int per = (p.batch + THREADS - 1) / THREADS, lo_b = 1 + tid * per, hi_b = min(p.batch + 1, lo_b + per);
        long long run = 0;
        for (int bb = lo_b; bb < hi_b; ++bb) { run += s_pref[bb]; s_pref[bb] = run; }
        long long x = run;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            const long long y = __shfl_up_sync(0xffffffffu, x, off);
            if (lane >= off) x += y;
        }
        if (lane == 31) s_warp_sum[warp] = x;
        __syncthreads();
        long long before = x - run;
        for (int w = 0; w < warp; ++w) before += s_warp_sum[w];
        for (int bb = lo_b; bb < hi_b; ++bb) s_pref[bb] += before;
        __syncthreads();
    }
    const int G = gridDim.x, g = blockIdx.x;
    /* the end of this CTA's share, from shared memory: no 64-bit value of the schedule is held in
     * registers through the key loop (the stretch's unit is worked out again after it) */
#define SHARE_END() ((long long)(g + 1) * s_pref[p.batch] / G)

    /* ---- Units with no tile (a bad length, no visible key): their rows written here (zeros and
     * -inf, or NaN), their new rows appended, by CTA u % G ---- */
    for (int u = g; u < p.batch * p.heads_kv; u += G) {
        const int bb = u / p.heads_kv, hh = u % p.heads_kv;
        if (s_pref[bb + 1] != s_pref[bb]) continue;
        long long q0, k0;
        int sq, sk, have = 0;
        bool bad = false;
        seq_bounds(p, bb, &q0, &k0, &sq, &sk);
#if FAT_CACHE
        bad = cache_bad(p, bb, &have, &sk);
#endif
#if FAT_APPEND
        if (!bad) append_new_rows(p, bb, hh, have, tid, THREADS, bad);
#endif
        bad = __syncthreads_or(bad);
        const float zero[8] = { 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f };
        for (int it = tid; it < min(group * sq, ROWS) * VALID_CHUNKS; it += THREADS)
            store_item(p, bb, hh, group, q0, sq, it / VALID_CHUNKS, it % VALID_CHUNKS, zero, 0.f, -FAT_INF, bad, sl2);
    }

    /* ---- The CTA's share, a stretch [a, e) of one unit's tiles at a time ---- */
    for (long long t = (long long)g * s_pref[p.batch] / G; t < SHARE_END();) {
        int b, kvh, ua, ue;               /* tile t's sequence and KV head; the stretch [ua, ue) of its unit */
        {
            int lo_s = 0, hi_s = p.batch;   /* the last b with s_pref[b] <= t */
            while (hi_s - lo_s > 1) {
                const int mid = (lo_s + hi_s) >> 1;
                if (s_pref[mid] <= t) lo_s = mid; else hi_s = mid;
            }
            b = lo_s;
            const int tu = (int)((s_pref[b + 1] - s_pref[b]) / p.heads_kv);   /* tiles of each of its units */
            kvh = (int)((t - s_pref[b]) / tu);
            const long long u0 = s_pref[b] + (long long)kvh * tu;             /* the unit's first tile */
            ua = (int)(t - u0);
            ue = (int)min((long long)tu, SHARE_END() - u0);
        }
        const int rank = 0;
#else
    {
        const int rank = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
#endif
    /* ---- Step 0: this CTA's KV head and sequence, its rows, and the key tiles any row sees ---- */
    long long q0, k0;
    int sq, sk;
    seq_bounds(p, b, &q0, &k0, &sq, &sk);
    bool bad = false;                     /* a cache length or table entry out of range: output NaN */
    int have = 0;                         /* a KV cache: the keys already in it (k_new's come after) */
#if FAT_CACHE
    bad = cache_bad(p, b, &have, &sk);    /* bad: sk = 0, nothing is read */
#endif
    const int rows = min(group * sq, ROWS);
    /* Keys visible to some row: [lo(query 0), hi(query sq-1)] (both bounds grow with the query);
     * keys in [lo(sq-1), hi(0)] are visible to every row, and a tile inside them skips the mask. */
    int n_begin = 0, n_end = 0, lo_last = 0, hi_first = -1;
    if (sq > 0) {
        int lo_first, hi_last;
        visible_keys(p, 0, sq, sk, &lo_first, &hi_first);
        visible_keys(p, sq - 1, sq, sk, &lo_last, &hi_last);
        n_begin = lo_first / BLOCK_N;
        n_end = hi_last < 0 ? 0 : hi_last / BLOCK_N + 1;
    }
    int lo[2], hi[2];                     /* this thread's two rows' bounds; zero rows see every key */
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = (lane >> 2) + 8 * r;
        lo[r] = 0;
        hi[r] = sk - 1;
        if (row < rows) {
            int j, i;
            split_row(row, sq, &j, &i);
            visible_keys(p, i, sq, sk, &lo[r], &hi[r]);
        }
    }

#if BALANCE
    const int n_lo = n_begin + ua, n_hi = n_begin + ue;   /* this stretch's tiles */
#else
    const int n_lo = n_begin, n_hi = n_end;
#endif

#if FAT_APPEND
    /* ---- Step 0b: k_new and v_new of this head into the cache at keys have .. have + seqlen_new - 1,
     * 16 bytes a thread, the rows shared by the cluster's CTAs (balanced: by the stretch holding the
     * unit's first tile). The attention reads those keys from k_new and v_new (Step 1b), so nothing
     * waits for these stores. A page entry out of range is skipped and poisons the output. ---- */
#if BALANCE
    if (!bad && ua == 0) append_new_rows(p, b, kvh, have, tid, THREADS, bad);
#else
    if (!bad) append_new_rows(p, b, kvh, have, rank * THREADS + tid, SPLITS * THREADS, bad);
#endif
#endif

    /* ---- Shared memory: [Q tile][warp 0: K x STAGES, V x STAGES][warp 1 ...], swizzled ---- */
    const unsigned s_q = fat_smem_u32(smem);
    const unsigned s_parts = s_q + SMEM_Q;
    const unsigned s_k = s_parts + warp * WARP_SMEM, s_v = s_k + STAGES * SMEM_KV;

    /* ---- Step 1: Q's rows (every thread, one group), then this warp's first STAGES-1 tiles ---- */
    for (int idx = tid; idx < ROWS * CHUNKS; idx += THREADS) {
        const int r = idx / CHUNKS, c = idx % CHUNKS;
        const char *src = (const char *)p.q;
        int bytes = 0;
        if (r < rows && (VALID_CHUNKS == CHUNKS || c < VALID_CHUNKS)) {
            int j, i;
            split_row(r, sq, &j, &i);
            src += 2 * ROW_OFF(p.q_sb, p.q_ss, p.q_sh, b, q0 + i, kvh * group + j) + c * 16;
            bytes = 16;
        }
        fat_cp_async16(s_q + r * ROW_BYTES + (fat_swz(r, c) << 4), src, bytes);
    }
    fat_cp_async_commit();
    const int worker = rank * WARPS + warp;
    int n_load = n_lo + worker;           /* this warp's next tile to copy */
    int e_load = next_entry(p, b, n_load, n_hi);    /* its table entry (WHOLE_PAGES) */
#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st) {
        if (n_load < n_hi) {
            load_kv(s_k + st * SMEM_KV, s_v + st * SMEM_KV, p, b, kvh, k0, n_load, sk, have, bad, e_load);
            n_load += WORKERS;
            e_load = next_entry(p, b, n_load, n_hi);
        }
        fat_cp_async_commit();
    }
    fat_cp_async_wait<STAGES - 1>();      /* Q landed (this thread's part) */
    __syncthreads();                      /* ... everyone's */

    /* ldmatrix offsets of this lane, one per swizzle variant (flash_v2's step 3): Q and V read
     * row lane%16, chunk 2k + lane/16; K reads key lane%8 + 8*(lane/16), chunk 2k + (lane/8)%2. */
    unsigned frag_off[SW_VARIANTS], k_off[SW_VARIANTS];
    {
        const int fr = lane & 15, fb = lane >> 4;
        const int kr = (lane & 7) + ((lane >> 4) << 3), kb = (lane >> 3) & 1;
#pragma unroll
        for (int v = 0; v < SW_VARIANTS; ++v) {
            frag_off[v] = fr * ROW_BYTES + (fat_swz(fr, 2 * v + fb) << 4);
            k_off[v] = kr * ROW_BYTES + (fat_swz(kr, 2 * v + kb) << 4);
        }
    }
#if Q_IN_REGS
    unsigned qf[K_STEPS][4];
#pragma unroll
    for (int kk = 0; kk < K_STEPS; ++kk) fat_ldsm_x4(qf[kk], s_q + frag_off[kk % SW_VARIANTS] + PAIR_OFF(kk));
#endif
#if !BALANCE
]] .. softmax.log2_scale .. [[
#endif

    float acc[1][D_TILES][4];
    float m[1][2] = { { -FAT_INF, -FAT_INF } }, l[1][2] = { { 0.f, 0.f } };
#pragma unroll
    for (int d = 0; d < D_TILES; ++d) acc[0][d][0] = acc[0][d][1] = acc[0][d][2] = acc[0][d][3] = 0.f;

    /* ---- Step 2: this warp's pipeline. Per tile: wait until it has landed (at most STAGES-2
     * younger groups pending), __syncwarp (every lane's copies visible; every lane done with the
     * previous tile, whose buffer is refilled next), issue the tile STAGES-1 ahead, compute. One
     * group per tile, committed even when empty, so the count stays exact. ---- */
    int rd = 0, wr = STAGES - 1;
    for (int n = n_lo + worker; n < n_hi; n += WORKERS) {
        fat_cp_async_wait<STAGES - 2>();
        __syncwarp();
        if (n_load < n_hi) {
            load_kv(s_k + wr * SMEM_KV, s_v + wr * SMEM_KV, p, b, kvh, k0, n_load, sk, have, bad, e_load);
            n_load += WORKERS;
            e_load = next_entry(p, b, n_load, n_hi);
        }
        fat_cp_async_commit();
        wr = wr + 1 == STAGES ? 0 : wr + 1;
        const unsigned k_base = s_k + rd * SMEM_KV, v_base = s_v + rd * SMEM_KV;
        rd = rd + 1 == STAGES ? 0 : rd + 1;
        const int n0 = n * BLOCK_N;

        /* ---- Step 3: S = Q Kᵀ ---- */
        float s[1][N_TILES][4];
#pragma unroll
        for (int j = 0; j < N_TILES; ++j) s[0][j][0] = s[0][j][1] = s[0][j][2] = s[0][j][3] = 0.f;
#if Q_IN_REGS
        gemm_qk(s, qf, frag_off, k_off, k_base);
#else
        gemm_qk(s, s_q, frag_off, k_off, k_base);
#endif
#if FAT_SOFTCAP
        /* ---- Step 4a: softcap, in log2 units ---- */
        fat_softcap_scores(s, cap_in, cap_out);
#endif
        /* ---- Step 4b: mask, only on tiles not visible to every row ---- */
        if (n0 < lo_last || n0 + BLOCK_N - 1 > hi_first) mask_rows(s, lo, hi, n0 + 2 * (lane & 3));

        /* ---- Step 5: online softmax (lib/softmax); Step 6: O += P V ---- */
        unsigned pk[1][N_TILES][2];
        fat_softmax_update<RESCALE_SKIP>(s, pk, acc, m, l, sl2);
        gemm_pv(acc, pk, frag_off, v_base);
    }
    fat_cp_async_wait<0>();               /* only empty groups can be left */
    __syncwarp();                         /* every lane is done with this warp's buffers */

    /* ---- Step 7: the warp's partial into its own K buffers: O unnormalised (f32), then per row
     * m (raw score units) and l (summed over the quad). ---- */
    {
        const unsigned part = s_k;
        float lsum[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) lsum[r] = fat_quad_sum(l[0][r]);
#if KV_CACHE
        /* a bad length or page entry seen by any lane of any worker: l = NaN marks the partial */
        if (__any_sync(0xffffffffu, bad)) lsum[0] = lsum[1] = __int_as_float(0x7fc00000);
#endif
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int row = (lane >> 2) + 8 * r;
#pragma unroll
            for (int d = 0; d < D_TILES; ++d)
                asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n"
                             :: "r"(part + (row * PART_LD + d * 8 + 2 * (lane & 3)) * 4),
                                "f"(acc[0][d][2 * r]), "f"(acc[0][d][2 * r + 1]) : "memory");
            if ((lane & 3) == 0) {
                asm volatile("st.shared.f32 [%0], %1;\n" :: "r"(part + PART_M + row * 4), "f"(m[0][r]) : "memory");
                asm volatile("st.shared.f32 [%0], %1;\n" :: "r"(part + PART_L + row * 4), "f"(lsum[r]) : "memory");
            }
        }
    }
#if SPLITS > 1
    fat_cluster_sync();                   /* every partial of the cluster written and visible */
#else
    __syncthreads();
#endif

    /* ---- Step 8: combine. Item (row r, 8 columns c) goes to one thread of the cluster: with
     * M = max_w m_w and f_w = 2^((m_w - M) * sl2), O = sum f_w O_w / sum f_w l_w and
     * LSE = (M * sl2 + log2 sum f_w l_w) * ln 2; a row no worker saw a key of gets zeros, -inf. ---- */
#if BALANCE
    const long long T = s_pref[p.batch];                                /* the batch's tiles */
    const int tu = (int)((s_pref[b + 1] - s_pref[b]) / p.heads_kv);     /* the unit's */
    const long long u0 = s_pref[b] + (long long)kvh * tu;               /* its first */
    const bool whole = ua == 0 && ue == tu;   /* the unit is this CTA's alone: finished here */
    const int slot = slot_of(g, u0, T, G);
#endif
    for (int it = rank * THREADS + tid; it < rows * VALID_CHUNKS; it += SPLITS * THREADS) {
        const int r = it / VALID_CHUNKS, c = it % VALID_CHUNKS;
        float mx = -FAT_INF;
        for (int w = 0; w < WORKERS; ++w) mx = fmaxf(mx, part_f32(part_addr(s_parts, w) + PART_M + r * 4));
        float sum = 0.f, o[8] = { 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f };
        bool poisoned = false;
        for (int w = 0; w < WORKERS; ++w) {
            const unsigned a = part_addr(s_parts, w);
            const float mw = part_f32(a + PART_M + r * 4);
            const float f = mw == -FAT_INF ? 0.f : fat_exp2((mw - mx) * sl2);
            float x[4], y[4];
            part_v4(x, a + (r * PART_LD + c * 8) * 4);
            part_v4(y, a + (r * PART_LD + c * 8 + 4) * 4);
            const float lw = part_f32(a + PART_L + r * 4);
            poisoned |= (__float_as_uint(lw) & 0x7fffffffu) > 0x7f800000u;   /* NaN: Step 7's mark */
            sum += f * lw;
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                o[e] += f * x[e];
                o[4 + e] += f * y[e];
            }
        }
#if BALANCE
        if (!whole) {                     /* a cut unit: this share's partial into the workspace */
            float *const wp = (float *)p.ws + (long long)slot * WS_PART;
#pragma unroll
            for (int k = 0; k < 8; ++k) wp[r * DPAD + c * 8 + k] = o[k];
            if (c == 0) {
                wp[ROWS * DPAD + r] = mx;
                wp[ROWS * DPAD + ROWS + r] = poisoned ? __int_as_float(0x7fc00000) : sum;
            }
            continue;
        }
#endif
        store_item(p, b, kvh, group, q0, sq, r, c, o, sum, mx, poisoned, sl2);
    }
#if SPLITS > 1
    fat_cluster_sync();                   /* no CTA leaves while another still reads its partials */
#endif
#if BALANCE
    if (!whole) {
        /* the partial visible, then the unit's count of finished tiles; the CTA that completes it
         * combines the partials of every share (the CTAs cta_of(u0) .. cta_of(u0 + tu - 1)) */
        __threadfence();
        __syncthreads();
        if (tid == 0) *s_last = atomicAdd(done + b * p.heads_kv + kvh, ue - ua) + (ue - ua) == tu;
        __syncthreads();
        if (*s_last) {
            __threadfence();
            /* the shares' slots, worked out once (64-bit divisions) into the warps' buffers, whose
             * partials every thread has read */
            const int g0 = cta_of(u0, T, G), ns = cta_of(u0 + tu - 1, T, G) - g0 + 1;
            int *const s_slots = (int *)(smem + SMEM_Q);
            for (int i = tid; i < ns; i += THREADS)
                s_slots[i] = share_empty(g0 + i, T, G) ? -1 : slot_of(g0 + i, u0, T, G);
            __syncthreads();
            for (int it = tid; it < rows * VALID_CHUNKS; it += THREADS) {
                const int r = it / VALID_CHUNKS, c = it % VALID_CHUNKS;
                float mx = -FAT_INF;
                for (int i = 0; i < ns; ++i)
                    if (s_slots[i] >= 0)
                        mx = fmaxf(mx, __ldcg((const float *)p.ws + (long long)s_slots[i] * WS_PART + ROWS * DPAD + r));
                float sum = 0.f, o[8] = { 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f };
                bool poisoned = false;
                for (int i = 0; i < ns; ++i) {
                    if (s_slots[i] < 0) continue;
                    const float *const wp = (const float *)p.ws + (long long)s_slots[i] * WS_PART;
                    const float mw = __ldcg(wp + ROWS * DPAD + r), lw = __ldcg(wp + ROWS * DPAD + ROWS + r);
                    const float f = mw == -FAT_INF ? 0.f : fat_exp2((mw - mx) * sl2);
                    poisoned |= (__float_as_uint(lw) & 0x7fffffffu) > 0x7f800000u;
                    sum += f * lw;
#pragma unroll
                    for (int k = 0; k < 8; ++k) o[k] += f * __ldcg(wp + r * DPAD + c * 8 + k);
                }
                store_item(p, b, kvh, group, q0, sq, r, c, o, sum, mx, poisoned, sl2);
            }
        }
    }
    t = u0 + ue;
    __syncthreads();                      /* the next stretch reuses the Q tile and the warps' buffers */
#endif
    }
}
]]

-- The CTAs of the balanced schedule: `balance` per SM (resident together: valid() checks their
-- shared memory, and __launch_bounds__ their registers).
local function balanced_ctas(p, dev) return p.balance * math.max(dev.sms or 1, 1) end

function t.launch(p, shape, dev)
  local g = geometry(p, shape)
  if p.balance > 0 then
    -- a grid of its own; two partials per CTA in the workspace (a sequence-head cut at either end
    -- of its share), and a counter of finished tiles per sequence-head, zeroed before every launch
    local ctas = balanced_ctas(p, dev)
    -- a combiner lists the shares' slots in the warps' buffers
    assert(4 * ctas <= p.warps * g.warp_smem, "decode: the shares' slots must fit in the warps' buffers")
    return P.launch(dev, {
      entry = "fat_decode",
      grid = { ctas, 1, 1 },
      block = { g.threads, 1, 1 },
      smem = g.smem,
      workspace = 2 * ctas * g.ws_part,
      args = { P.params(), P.scratch{ bytes = 4 * (shape.batch or 1) * (shape.heads_kv or 1), zero = true } },
    })
  end
  -- the cluster of `splits` CTAs is fixed at compile time (CLUSTER_DIMS), not set at launch
  return P.launch(dev, {
    entry = "fat_decode",
    grid = { p.splits, shape.heads_kv, shape.batch },
    block = { g.threads, 1, 1 },
    smem = g.smem,
  })
end

function t.emit(p, shape, dev)
  local ok, why = t.valid(p, shape, dev)
  assert(ok, why)
  local g = geometry(p, shape)
  local _, with_q = regs_estimate(p, g)
  local q_in_regs = with_q <= MAX_REGS
  local def = P.define
  local defs = {
    string.format("/* ---- decode constants: %s, %d warps, %d-key tiles, %d stage(s), Q in %s ---- */",
                  p.balance > 0 and string.format("the batch's tiles dealt evenly to %d CTA(s) per SM", p.balance) or
                  string.format("%d CTA(s) per KV head", p.splits),
                  p.warps, p.block_n, p.stages, q_in_regs and "registers" or "shared memory"),
    def("BALANCE", p.balance, "> 0: key tiles dealt evenly over a grid of BALANCE CTAs per SM, partials combined through the workspace"),
    def("LAUNCH_BOUNDS", p.balance > 1 and string.format("__launch_bounds__(THREADS, %d)", p.balance) or "__launch_bounds__(THREADS)",
        "registers for BALANCE CTAs per SM"),
    def("SPLITS", p.splits, "CTAs of a cluster sharing one KV head's keys"),
    def("WARPS", p.warps),
    def("THREADS", g.threads),
    def("WORKERS", p.splits * p.warps, "warps splitting the keys"),
    def("BLOCK_N", p.block_n, "keys per tile"),
    def("STAGES", p.stages, "K/V buffers per warp"),
    def("EVICT_FIRST", p.evict_first, "K and V copied under an L2 evict_first policy"),
    def("Q_IN_REGS", q_in_regs and 1 or 0, "Q fragments held in registers (when they fit)"),
    def("RESCALE_SKIP", RESCALE_SKIP and "true" or "false", "skip the O rescale when no row max moved"),
    def("PART_LD", g.part_ld, "floats per row of a partial O"),
    def("CLUSTER_DIMS", p.splits > 1 and string.format("__cluster_dims__(%d, 1, 1)", p.splits) or "",
        "the CTAs of one KV head form a cluster"),
  }
  for _, line in ipairs(tile.geometry_defs(g, shape)) do defs[#defs + 1] = line end

  local kernel = (p.splits > 1 and ptx.cluster or "") .. (p.evict_first == 1 and ptx.cp_async_policy or "") .. KERNEL
  local e = t.launch(p, shape, dev)
  e.source = tile.source(P.common(t, p, shape), g, defs, kernel)
  return e
end

return t
