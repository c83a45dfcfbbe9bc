-- flash_v2.lua: the production FlashAttention-2 forward kernel for sm_80 and later.
--
-- One CTA per (Q tile of block_m rows, query head, sequence); the warps split the Q rows and loop
-- over the key/value tiles, keeping O, the row max m and the row sum l in registers. S = Q Kᵀ and
-- O += P V run on mma.sync m16n8k16 (f32 accumulate), fed by ldmatrix from XOR-swizzled shared memory
-- that a cp.async pipeline of `stages` K/V buffers fills. P never leaves registers. docs/flash_v2.md
-- explains the steps, the fragment layouts, the swizzle, the masks and the parameter space.
local P = require("prelude")
local softmax = require("lib.softmax")
local tile = require("lib.tile")

local t = {
  name = "flash_v2",
  version = 1,
  default_rank = 30,                  -- the built-in default of prefill on sm_80 and later
  serves_kv_cache = true,             -- a paged or contiguous KV cache with cache_seqlens (no append)
  params = {
    block_m = { 64, 128, 192, 256 },  -- query rows per CTA
    block_n = { 32, 64, 128, 256 },   -- keys per KV tile
    warps = { 4, 8 },                 -- warps per CTA; each owns block_m / warps rows (a multiple of 16)
    stages = { 1, 2, 3 },             -- K/V shared-memory buffers (1: FA2's interleaved K/V schedule)
    q_in_regs = { 0, 1 },             -- 1: Q fragments held in registers for the whole KV loop
  },
}

-- Register budget: the hardware limit per thread, and the margin ptxas needs beyond the
-- accumulators and fragments counted by regs_estimate (addresses, loop state, temporaries).
-- Calibrated against `ptxas -v` for sm_80 and sm_90 over the whole space (docs/flash_v2.md).
local MAX_REGS = 255
local REG_OVERHEAD = 40
-- A KV cache's loads (a table entry and an address per row, the sequence's length, the bad flag):
-- without it 8-104 B of spill in 27 variants near the limit (ptxas, sm_80 and sm_90, 2026-12-03).
local REG_CACHE = 20
local RESCALE_SKIP = true

-- Everything the kernel's shape depends on, derived once from the parameters and the shape: the
-- tile sizes and copy geometry of lib/tile, plus this family's shared-memory layout and occupancy.
local function geometry(p, shape)
  local g = tile.geometry(p, shape)
  g.smem = g.smem_q + 2 * p.stages * g.smem_kv        -- Q, then `stages` K buffers, then V buffers
  g.min_blocks = p.warps == 4 and 2 or 1
  return g
end

-- Registers per thread the variant certainly needs: O and S accumulators, Q fragments when held,
-- P fragments of one 16-key step, and REG_OVERHEAD. Returns the total and a function giving its
-- parts as text (for a reason, made only when needed).
local function regs_estimate(p, g, shape)
  local o, s = tile.acc_regs(p, g)
  local q = p.q_in_regs == 1 and g.m_tiles * (g.dpad // 16) * 4 or 0
  local pf = g.m_tiles * 4
  local cache = (shape.page_size or shape.kv_cache) and REG_CACHE or 0
  local total = o + s + q + pf + REG_OVERHEAD + cache
  return total, function()
    return string.format("O %d + S %d + Q %d + P %d + overhead %d%s", o, s, q, pf, REG_OVERHEAD,
                         cache > 0 and (" + cache " .. cache) or "")
  end
end

function t.valid(p, shape, dev)
  if (dev.cc or 0) < 80 then return false, "needs sm_80 (mma.sync bf16, cp.async)" end
  if shape.append then
    return false, "append: flash_v2 reads a cache its launch does not write (rows one CTA appends are not there when "
                  .. "another reads them; the decode family appends, at most 16 query rows per KV head; a longer "
                  .. "chunk's call gets ops.kv_append first, then this family without the append)"
  end
  local ok, why = tile.check_shape(p, shape)
  if not ok then return false, why end
  local g = geometry(p, shape)
  local regs, regs_parts = regs_estimate(p, g, shape)
  ok, why = tile.check_budget(g, dev, regs, MAX_REGS, function()
    return string.format("Q %d + %d stages x (K %d + V %d)", g.smem_q, p.stages, g.smem_kv, g.smem_kv)
  end, regs_parts)
  if not ok then return false, why end
  -- Pruning by shape: tiles far larger than the sequences only add masked work.
  ok, why = tile.prune_oversized(p, shape, 64, 32)
  if not ok then return false, why end
  local sk = shape.seqlen_k or 0
  local tiles = sk > 0 and (sk + p.block_n - 1) // p.block_n or math.huge
  if p.stages > 1 and p.stages > tiles then
    return false, string.format("stages=%d > %d KV tiles of seqlen_k=%d: buffers never filled", p.stages, tiles, sk)
  end
  return true
end

-- The built-in default, used by the runtime where nothing was tuned: FlashAttention-2's own choices
-- per head_dim (128x64 tiles and 4 warps up to d=128, 64x64 above), then smaller tiles and fewer
-- stages until one is valid (short sequences, GPUs with less shared memory). nil when none is.
local DEFAULTS = {
  small = { { 128, 64, 4, 2 }, { 64, 64, 4, 2 }, { 64, 64, 4, 1 }, { 64, 32, 4, 1 } },  -- d <= 128
  large = { { 64, 64, 4, 2 }, { 64, 64, 4, 1 }, { 64, 32, 4, 1 } },                    -- d > 128
  -- a sliding window's bounds take registers: at d = 128 the 128-row tile of 4 warps spills
  -- 16-32 bytes (ptxas, sm_80 and sm_90), with 8 warps of 16 rows it does not
  window = { { 128, 64, 8, 2 }, { 64, 64, 4, 2 }, { 64, 64, 4, 1 }, { 64, 32, 4, 1 } },
}

function t.default(shape, dev)
  local list = shape.head_dim > 128 and DEFAULTS.large or (shape.window and shape.head_dim > 64) and DEFAULTS.window
               or DEFAULTS.small
  for _, c in ipairs(list) do
    local p = { block_m = c[1], block_n = c[2], warps = c[3], stages = c[4], q_in_regs = 0 }
    if t.valid(p, shape, dev) then return p end
  end
  return nil
end

-- The kernel text after the generated constants. Written once, specialised by the #defines above it
-- and by the prelude's FAT_CAUSAL / FAT_WINDOW / FAT_SOFTCAP / FAT_VARLEN.
local KERNEL = [[
/* ======================================================================================
 * FlashAttention-2 forward. Notation: a CTA owns Q rows [m0, m0 + BLOCK_M) of one head of one
 * sequence; warp w owns the WARP_M rows starting at w * WARP_M, as M_TILES mma row tiles of 16.
 * Per thread and row tile: rows g = lane/4 and g + 8, columns 2*(lane%4), +1 of each 8-wide tile.
 * ====================================================================================== */
]] .. tile.defs .. [[

/* Step 1 (loads): issue the cp.async copies of one ROWS x DPAD tile, global -> shared.
 * Thread t copies chunks c + j*LD_CW of rows r + i*LD_RS (r = t / LD_CW, c = t % LD_CW), so a row
 * of lanes reads one contiguous stretch of a row (coalesced). LD_RS is a multiple of 8, so the
 * swizzle of all of a lane's rows is that of row r and every shared address is s + a constant.
 * s_tile: shared address of the tile; g_tile: global address of its row 0, column 0; ss: row
 * stride in elements; rows_valid: rows of the tile inside the sequence. Rows past the sequence and
 * columns past head_dim are zero-filled (src-size 0, nothing read): the zeros add nothing to Q Kᵀ,
 * and zero V rows keep P V finite. The thread's addresses are derived from a fresh threadIdx at
 * every call: recomputing them costs a few integer ops per tile, holding them across the KV loop
 * would cost registers that the accumulators need. */
]] .. tile.load_tile .. [[

/* Step 1b (a KV cache, issue 14): sequence b's keys are cache_seqlens[b] (FAT_CACHE; out of [0,
 * seqlen_k]: none is read and its rows are NaN), else seqlen_k. Paged, key j is row j % PAGE of page
 * block_table[b][j / PAGE] ([page, row, head] strides): a page that holds whole key tiles gives a
 * tile one table entry and load_tile's row stride; smaller pages are read row by row
 * (load_rows_paged: the same threads, rows and swizzle as load_tile, each row's address from its
 * entry). Rows past the sequence are zero-filled like load_tile's (nothing read: whatever the cache
 * holds there never reaches P V). An entry outside [0, num_pages) is never followed: its rows are
 * zero-filled and `bad` is set, which makes the CTA's rows NaN (Step 7). */
#define KV_CACHE (FAT_CACHE || FAT_PAGED)
#if FAT_PAGED
/* One row of a tile read row by row: chunks c + jj * LD_CW of the row at g into the row of shared
 * memory at s_row (load_tile's lanes and swizzle), zero-filled where !ok or past head_dim. */
static __device__ __forceinline__ void copy_row(unsigned s_row, const char *g, int c, bool ok) {
#pragma unroll
    for (int jj = 0; jj < LD_NJ; ++jj) {
        const int cj = c + jj * LD_CW;
        if (CHUNKS % LD_CW != 0 && cj >= CHUNKS) break;
        const bool copy = ok && (VALID_CHUNKS == CHUNKS || cj < VALID_CHUNKS);
        fat_cp_async16(s_row + jj * LD_CW * 16, g + cj * 16, copy ? 16 : 0);
    }
}
#if FAT_PAGE_SIZE % BLOCK_N == 0
/* key tile n0 of sequence b inside one page: the address of its row 0 (kvh's head), *rows its rows
 * inside the sequence (0 for a bad entry) */
static __device__ __forceinline__ const char *page_tile(const fat_kparams &p, const void *base, long long sb,
                                                        long long ss, long long sh, int b, int kvh, int n0, int sk,
                                                        bool &bad, int &rows) {
    const int e = page_of(p, b, n0);
    if (!page_ok(p, e)) { bad = true; rows = 0; return (const char *)base; }
    rows = sk - n0;
    return (const char *)base + 2 * ((long long)e * sb + (long long)(n0 % FAT_PAGE_SIZE) * ss + (long long)kvh * sh);
}
#define LOAD_KV_TILE(s_tile, base, sb, ss, sh, n0) do { int rows_; \
        const char *g_ = page_tile(p, base, sb, ss, sh, b, kvh, n0, sk, bad, rows_); \
        load_tile<BLOCK_N>(s_tile, g_, ss, rows_); } while (0)
#elif FAT_PAGE_SIZE % LD_RS == 0 && BLOCK_N % FAT_PAGE_SIZE == 0
/* pages that tile the key tile (16 or 32 keys, tiles of 64 or 128): the tile's NE entries read
 * first, together (one latency, not one per row), each pass of LD_RS rows then inside one page,
 * whose entry is known at compile time; entries of pages past the sequence are never read */
template <int ROWS>
static __device__ __forceinline__ void load_rows_paged(unsigned s_tile, const void *base, long long sb, long long ss,
                                                       long long sh, const fat_kparams &p, int b, int kvh, int n0,
                                                       int sk, bool &bad) {
    constexpr int NE = ROWS / FAT_PAGE_SIZE;
    int ent[NE];
#pragma unroll
    for (int q = 0; q < NE; ++q) ent[q] = n0 + q * FAT_PAGE_SIZE < sk ? page_of(p, b, n0 + q * FAT_PAGE_SIZE) : 0;
    const int t = fat_tid_fresh();
    const int r = t / LD_CW, c = t % LD_CW;
    const unsigned s = s_tile + r * ROW_BYTES + (fat_swz(r, c) << 4);
#pragma unroll
    for (int i = 0; i < ROWS / LD_RS; ++i) {
        const int row = r + i * LD_RS, j = n0 + row, e = ent[(i * LD_RS) / FAT_PAGE_SIZE];
        const bool in = j < sk, ok = in && page_ok(p, e);
        if (in && !ok) bad = true;
        const char *g = (const char *)base;
        if (ok) g += 2 * ((long long)e * sb + (long long)(j % FAT_PAGE_SIZE) * ss + (long long)kvh * sh);
        copy_row(s + i * LD_RS * ROW_BYTES, g, c, ok);
    }
}
#define LOAD_KV_TILE(s_tile, base, sb, ss, sh, n0) \
        load_rows_paged<BLOCK_N>(s_tile, base, sb, ss, sh, p, b, kvh, n0, sk, bad)
#else
template <int ROWS>
static __device__ __forceinline__ void load_rows_paged(unsigned s_tile, const void *base, long long sb, long long ss,
                                                       long long sh, const fat_kparams &p, int b, int kvh, int n0,
                                                       int sk, bool &bad) {
    const int t = fat_tid_fresh();
    const int r = t / LD_CW, c = t % LD_CW;
    const unsigned s = s_tile + r * ROW_BYTES + (fat_swz(r, c) << 4);
#pragma unroll
    for (int i = 0; i < (ROWS + LD_RS - 1) / LD_RS; ++i) {
        const int row = r + i * LD_RS, j = n0 + row;
        if (ROWS % LD_RS != 0 && row >= ROWS) break;
        const char *g = (const char *)base;
        bool ok = j < sk;
        if (ok) {
            const int e = page_of(p, b, j);
            ok = page_ok(p, e);
            if (!ok) bad = true;
            else g += 2 * ((long long)e * sb + (long long)(j % FAT_PAGE_SIZE) * ss + (long long)kvh * sh);
        }
        copy_row(s + i * LD_RS * ROW_BYTES, g, c, ok);
    }
}
#define LOAD_KV_TILE(s_tile, base, sb, ss, sh, n0) \
        load_rows_paged<BLOCK_N>(s_tile, base, sb, ss, sh, p, b, kvh, n0, sk, bad)
#endif
#else
#define LOAD_KV_TILE(s_tile, base, sb, ss, sh, n0) \
        load_tile<BLOCK_N>(s_tile, (const char *)(base) + 2 * ROW_OFF(sb, ss, sh, b, k0 + (n0), kvh), ss, sk - (n0))
#endif
#define LOAD_K(s_tile, n) LOAD_KV_TILE(s_tile, p.k, p.k_sb, p.k_ss, p.k_sh, (n) * BLOCK_N)
#define LOAD_V(s_tile, n) LOAD_KV_TILE(s_tile, p.v, p.v_sb, p.v_ss, p.v_sh, (n) * BLOCK_N)

/* Step 3: S = Q Kᵀ for one key tile, on tensor cores. For each 16-deep head-dim step kk, one
 * ldmatrix.x4 of K gives the B fragments of two 8-key tiles (keys stored row-major = "col" B):
 * b0 b1 of keys 0-7, then b0 b1 of keys 8-15 (mma wants each pair in consecutive registers), and
 * each feeds all M_TILES row tiles of this warp. Q's A fragments come from registers (Q_IN_REGS)
 * or, one ldmatrix.x4 per row tile and step, from this warp's rows of the Q tile in shared memory.
 * off / k_off: this lane's offsets per swizzle variant for Q (and V) / for K; q_base, k_base: shared
 * addresses of row 0. */
static __device__ __forceinline__ void gemm_qk(float (&s)[M_TILES][N_TILES][4],
#if Q_IN_REGS
                                               const unsigned (&qf)[M_TILES][K_STEPS][4],
#else
                                               unsigned q_base,
#endif
                                               const unsigned (&off)[SW_VARIANTS],
                                               const unsigned (&k_off)[SW_VARIANTS], unsigned k_base) {
#pragma unroll
    for (int kk = 0; kk < K_STEPS; ++kk) {
#if !Q_IN_REGS
        unsigned qa[M_TILES][4];
#pragma unroll
        for (int mt = 0; mt < M_TILES; ++mt)
            fat_ldsm_x4(qa[mt], q_base + off[kk % SW_VARIANTS] + PAIR_OFF(kk) + mt * 16 * ROW_BYTES);
#endif
#pragma unroll
        for (int np = 0; np < N_TILES / 2; ++np) {
            unsigned kb[4];
            fat_ldsm_x4(kb, k_base + k_off[kk % SW_VARIANTS] + PAIR_OFF(kk) + np * 16 * ROW_BYTES);
#pragma unroll
            for (int mt = 0; mt < M_TILES; ++mt) {
#if Q_IN_REGS
                fat_mma16816(s[mt][2 * np], qf[mt][kk], kb[0], kb[1]);
                fat_mma16816(s[mt][2 * np + 1], qf[mt][kk], kb[2], kb[3]);
#else
                fat_mma16816(s[mt][2 * np], qa[mt], kb[0], kb[1]);
                fat_mma16816(s[mt][2 * np + 1], qa[mt], kb[2], kb[3]);
#endif
            }
        }
    }
}

/* Step 6: O += P V. P stays in registers: the f32 C fragments of two adjacent 8-key tiles, packed
 * to 16 bits in pairs (pk, from step 5), are exactly the A fragment of a 16-deep step (c0c1 -> a0,
 * c2c3 -> a1 from the first tile; a2, a3 from the second). V is row-major [key][d], so
 * ldmatrix.x4.trans gives the B fragments of two 8-wide d tiles per 16 keys. */
]] .. tile.gemm_pv("b0, b1 of d tile 2dp, then of d tile 2dp + 1") .. [[

extern "C" __global__ void __launch_bounds__(THREADS, MIN_BLOCKS) fat_flash_v2(const fat_kparams p)
{
    extern __shared__ __align__(128) unsigned char smem[];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    /* ---- Step 0: this CTA's Q tile, head and sequence ---- */
#if FAT_CAUSAL
    const int m_block = gridDim.x - 1 - blockIdx.x;   /* causal: the longest rows start first */
#else
    const int m_block = blockIdx.x;
#endif
    const int h = blockIdx.y, b = blockIdx.z;
    long long q0, k0;
    int sq, sk;
    seq_bounds(p, b, &q0, &k0, &sq, &sk);
    bool bad = false;                                   /* a cache length or table entry out of range */
#if FAT_CACHE
    {
        int have;
        bad = cache_bad(p, b, &have, &sk);              /* bad: sk = 0, nothing is read */
    }
#endif
    const int m0 = m_block * BLOCK_M;
    if (m0 >= sq) return;                               /* varlen: past this sequence's end */
    const int kvh = h / (p.heads_q / p.heads_kv);       /* GQA / MQA */

    /* ---- Tile skip: keys visible to any row of the tile lie in [lo(m0), hi(last row)] (both bounds
     * grow with the row), so the loop runs over those key tiles only (causal: up to the diagonal;
     * window: from the left edge). A tile whose keys are all in [lo(last row), hi(m0)] is visible
     * to every row and skips the elementwise mask; only the diagonal, the window edges and the
     * seqlen_k tail pay for it. ---- */
    int lo_first, hi_first, lo_last, hi_last;
    visible_keys(p, m0, sq, sk, &lo_first, &hi_first);
    visible_keys(p, min(m0 + BLOCK_M, sq) - 1, sq, sk, &lo_last, &hi_last);
    const int n_begin = lo_first / BLOCK_N;
    const int n_end = hi_last < 0 ? 0 : hi_last / BLOCK_N + 1;

    /* ---- Shared memory: [Q tile][K buffer x STAGES][V buffer x STAGES], all swizzled ---- */
    const unsigned s_q = fat_smem_u32(smem);
    const unsigned s_k = s_q + SMEM_Q;
    const unsigned s_v = s_k + STAGES * SMEM_KV;

    /* Global address of row 0 of the Q tile (step 1; key tiles: LOAD_K, LOAD_V). */
    const char *g_q = (const char *)p.q + 2 * ROW_OFF(p.q_sb, p.q_ss, p.q_sh, b, q0 + m0, h);

    /* ldmatrix offsets of this lane (steps 3 and 6), one per swizzle variant; lane l gives the row
     * address of matrix l/8 of each x4. Q and V read (rows 0-7, chunk 2k), (rows 8-15, 2k),
     * (rows 0-7, 2k+1), (rows 8-15, 2k+1) of a 16-row slice: lane l gives row l%16, chunk 2k + l/16.
     * For Q these are a0..a3 (A); for V, with .trans, b0 b1 of d tile 2k, then of d tile 2k+1.
     * K reads (keys 0-7, 2k), (keys 0-7, 2k+1), (keys 8-15, 2k), (keys 8-15, 2k+1): key
     * l%8 + 8*(l/16), chunk 2k + (l/8)%2, i.e. b0 b1 of keys 0-7, then of keys 8-15.
     * Slices start at multiples of 16 rows and the swizzle depends on row % 8 only, so these
     * offsets hold for every slice. */
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
    const unsigned q_base = s_q + warp * WARP_M * ROW_BYTES;   /* this warp's Q rows */

    /* Scores to the log2 domain: exp(scale*s - max) = 2^(s*sl2 - max*sl2), one FFMA per element.
     * Softcap first maps s to softcap*tanh(scale*s/softcap)*log2(e), already in the log2 domain. */
]] .. softmax.log2_scale .. [[

    /* Per-thread state for the whole KV loop: O accumulator, and per row (2 per row tile) the
     * running max m and this thread's part of the row sum l. */
    float acc[M_TILES][D_TILES][4];
    float m[M_TILES][2], l[M_TILES][2];
#pragma unroll
    for (int mt = 0; mt < M_TILES; ++mt) {
#pragma unroll
        for (int d = 0; d < D_TILES; ++d) acc[mt][d][0] = acc[mt][d][1] = acc[mt][d][2] = acc[mt][d][3] = 0.f;
        m[mt][0] = m[mt][1] = -FAT_INF;
        l[mt][0] = l[mt][1] = 0.f;
    }
    const int row0 = m0 + warp * WARP_M + (lane >> 2);   /* this thread's first row, in the sequence */

    if (n_begin < n_end) {
        /* ---- Step 1: load Q (one cp.async group) ---- */
        load_tile<BLOCK_M>(s_q, g_q, p.q_ss, sq - m0);
        fat_cp_async_commit();

        int n_load = n_begin;                               /* next key tile to copy */

#if STAGES == 1
        /* ---- Step 2, pipeline with one K and one V buffer (FA2's schedule). Per tile n:
         *   wait K(n), barrier  -> issue V(n)    -> S = Q K(n)ᵀ   (V(n) lands under the QKᵀ GEMM)
         *   wait V(n), barrier  -> issue K(n+1)  -> softmax, O += P V(n)   (K(n+1) lands under them)
         * The first barrier also proves every warp finished P V(n-1) (the V buffer is free), the
         * second that every warp finished Q K(n)ᵀ (the K buffer is free). ---- */
        LOAD_K(s_k, n_load);
        fat_cp_async_commit();
#if Q_IN_REGS
        fat_cp_async_wait<1>();                             /* Q landed (K(n_begin) may still fly) */
        __syncthreads();
#endif
#else
        /* ---- Step 2, pipeline with STAGES K/V buffers: tiles n+1 .. n+STAGES-1 are in flight while
         * tile n is computed. Per tile n: wait until tile n has landed (at most STAGES-2 younger
         * groups pending), barrier (makes every thread's copies visible and proves every warp has
         * finished tile n-1, whose buffer is the one refilled next), issue tile n+STAGES-1, then the
         * GEMMs. One barrier per tile; one group per tile, committed even when empty so the count
         * stays exact. ---- */
#pragma unroll
        for (int st = 0; st < STAGES - 1; ++st) {
            if (n_load < n_end) {
                LOAD_K(s_k + st * SMEM_KV, n_load);
                LOAD_V(s_v + st * SMEM_KV, n_load);
                ++n_load;
            }
            fat_cp_async_commit();
        }
        int wr_stage = STAGES - 1, rd_stage = 0;
#if Q_IN_REGS
        fat_cp_async_wait<STAGES - 1>();                    /* Q landed */
        __syncthreads();
#endif
#endif

#if Q_IN_REGS
        /* Q fragments into registers, once: A operand of every Q Kᵀ step of every tile. */
        unsigned qf[M_TILES][K_STEPS][4];
#pragma unroll
        for (int mt = 0; mt < M_TILES; ++mt)
#pragma unroll
            for (int kk = 0; kk < K_STEPS; ++kk)
                fat_ldsm_x4(qf[mt][kk], q_base + frag_off[kk % SW_VARIANTS] + PAIR_OFF(kk) + mt * 16 * ROW_BYTES);
#endif

        for (int n = n_begin; n < n_end; ++n) {
            const int n0 = n * BLOCK_N;
            unsigned k_base, v_base;                        /* shared address of this tile's K, V */
#if STAGES == 1
            fat_cp_async_wait<0>();                         /* K(n) (and Q) landed */
            __syncthreads();
            LOAD_V(s_v, n);
            fat_cp_async_commit();
            k_base = s_k;
            v_base = s_v;
#else
            fat_cp_async_wait<STAGES - 2>();                /* tile n (and Q) landed */
            __syncthreads();
            if (n_load < n_end) {                           /* prefetch tile n + STAGES - 1 */
                LOAD_K(s_k + wr_stage * SMEM_KV, n_load);
                LOAD_V(s_v + wr_stage * SMEM_KV, n_load);
                ++n_load;
            }
            fat_cp_async_commit();
            wr_stage = wr_stage + 1 == STAGES ? 0 : wr_stage + 1;
            k_base = s_k + rd_stage * SMEM_KV;
            v_base = s_v + rd_stage * SMEM_KV;
            rd_stage = rd_stage + 1 == STAGES ? 0 : rd_stage + 1;
#endif

            /* ---- Step 3: S = Q K(n)ᵀ ---- */
            float s[M_TILES][N_TILES][4];
#pragma unroll
            for (int mt = 0; mt < M_TILES; ++mt)
#pragma unroll
                for (int j = 0; j < N_TILES; ++j) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.f;
#if Q_IN_REGS
            gemm_qk(s, qf, frag_off, k_off, k_base);
#else
            gemm_qk(s, q_base, frag_off, k_off, k_base);
#endif

#if STAGES == 1
            fat_cp_async_wait<0>();                         /* V(n) landed */
            __syncthreads();                                /* ... for all; K buffer free */
            if (n + 1 < n_end) {
                LOAD_K(s_k, n + 1);
            }
            fat_cp_async_commit();
#endif

#if FAT_SOFTCAP
            /* ---- Step 4a: softcap, s = softcap * tanh(scale * s / softcap), in log2 units ---- */
            fat_softcap_scores(s, cap_in, cap_out);
#endif
            /* ---- Step 4b: mask, only on tiles that straddle a bound (diagonal, window edge,
             * seqlen_k tail); keys outside [lo, hi] of their row become -inf ---- */
            if (n0 < lo_last || n0 + BLOCK_N - 1 > hi_first)
                fat_mask_scores(p, s, row0, n0 + 2 * (lane & 3), sq, sk);

            /* ---- Step 5: online softmax: new row max over the quad, P = 2^(s*sl2 - m_new*sl2)
             * packed to 16 bits, then O and l rescaled by 2^((m_old - m_new) * sl2) (skipped when
             * no row max of the warp moved) ---- */
            unsigned pk[M_TILES][N_TILES][2];
            fat_softmax_update<RESCALE_SKIP>(s, pk, acc, m, l, sl2);

            /* ---- Step 6: O += P V(n) ---- */
            gemm_pv(acc, pk, frag_off, v_base);
        }
        fat_cp_async_wait<0>();                             /* only empty groups can be left */
    }

    /* ---- Step 7: final normalisation O /= l, and LSE = (m*sl2 + log2 l) * ln 2 ---- */
    float lse[M_TILES][2];
    fat_softmax_finish(acc, m, l, sl2, lse);
#if KV_CACHE
    /* a bad length or table entry seen by any thread (its rows read as zeros): every row NaN */
    if (__syncthreads_or(bad)) {
#pragma unroll
        for (int mt = 0; mt < M_TILES; ++mt) {
#pragma unroll
            for (int d = 0; d < D_TILES; ++d) acc[mt][d][0] = acc[mt][d][1] = acc[mt][d][2] = acc[mt][d][3] = __int_as_float(0x7fffffff);
            lse[mt][0] = lse[mt][1] = __int_as_float(0x7fffffff);
        }
    }
#else
    (void)bad;
#endif
    if (p.lse != nullptr && (lane & 3) == 0) {
#pragma unroll
        for (int mt = 0; mt < M_TILES; ++mt)
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int i = row0 + mt * 16 + 8 * r;
                if (i < sq) p.lse[LSE_OFF(p, b, h, q0, i)] = lse[mt][r];
            }
    }

    /* ---- Step 8: O to the dtype, staged through this warp's own rows of the Q tile (no other warp
     * reads them), then 16-byte stores of rows < seqlen_q and columns < head_dim only ---- */
    __syncwarp();                                           /* the warp's last ldmatrix of Q is done */
#pragma unroll
    for (int mt = 0; mt < M_TILES; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int tr = warp * WARP_M + mt * 16 + 8 * r + (lane >> 2);
            const unsigned row_s = s_q + tr * ROW_BYTES + (lane & 3) * 4;
#pragma unroll
            for (int d = 0; d < D_TILES; ++d)
                fat_st_shared_b32(row_s + (fat_swz(tr, d) << 4), pack2(acc[mt][d][2 * r], acc[mt][d][2 * r + 1]));
        }
    __syncwarp();
    char *g_o = (char *)p.o + 2 * ROW_OFF(p.o_sb, p.o_ss, p.o_sh, b, q0 + m0 + warp * WARP_M, h);
#pragma unroll
    for (int it = 0; it < (WARP_M * CHUNKS + 31) / 32; ++it) {
        const int idx = it * 32 + lane;
        if ((WARP_M * CHUNKS) % 32 != 0 && idx >= WARP_M * CHUNKS) break;
        const int r = idx / CHUNKS, c = idx % CHUNKS, tr = warp * WARP_M + r;
        if ((VALID_CHUNKS == CHUNKS || c < VALID_CHUNKS) && m0 + tr < sq) {
            unsigned v4[4];
            fat_ld_shared_v4(v4, s_q + tr * ROW_BYTES + (fat_swz(tr, c) << 4));
            fat_st_global_v4(g_o + 2LL * r * p.o_ss + c * 16, v4);
        }
    }
}
]]

-- Where the kernel runs for a shape, without its source: what the runtime asks for when a kernel it
-- has loaded meets a new shape (gen_launch), and what emit() returns beside the source.
function t.launch(p, shape, dev)
  local g = geometry(p, shape)
  return P.launch(dev, {
    entry = "fat_flash_v2",
    grid = { P.ceil_div(shape.seqlen_q, p.block_m), shape.heads_q, shape.batch },
    block = { g.threads, 1, 1 },
    smem = g.smem,
  })
end

function t.emit(p, shape, dev)
  local ok, why = t.valid(p, shape, dev)
  assert(ok, why)
  local g = geometry(p, shape)
  local def = P.define
  local defs = {
    string.format("/* ---- flash_v2 constants: tile %dx%d, %d warps (%d rows each), %d stage(s), Q in %s ---- */",
                  p.block_m, p.block_n, p.warps, g.warp_m, p.stages, p.q_in_regs == 1 and "registers" or "shared memory"),
    def("BLOCK_M", p.block_m, "query rows per CTA"),
    def("BLOCK_N", p.block_n, "keys per KV tile"),
    def("WARPS", p.warps),
    def("THREADS", g.threads),
    def("MIN_BLOCKS", g.min_blocks, "__launch_bounds__ CTAs per SM"),
    def("STAGES", p.stages, "K/V shared-memory buffers"),
    def("Q_IN_REGS", p.q_in_regs),
    def("RESCALE_SKIP", RESCALE_SKIP and "true" or "false", "skip the O rescale when no row max moved"),
  }
  for _, line in ipairs(tile.geometry_defs(g, shape)) do defs[#defs + 1] = line end

  local e = t.launch(p, shape, dev)
  e.source = tile.source(P.common(t, p, shape), g, defs, KERNEL)
  return e
end

return t
