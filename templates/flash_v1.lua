-- flash_v1.lua: the FlashAttention-1 loop order (Dao et al. 2022, Algorithm 1), the teaching family.
--
-- KV tiles in the OUTER loop, Q tiles in the INNER loop. Because a Q tile is visited once per KV
-- tile, its running output O and row statistics m (max) and l (sum) cannot stay on chip: they live
-- in global memory (the workspace, fp32) and are read, rescaled and written back for every
-- (KV tile, Q tile) pair. That traffic, and a grid of only batch x heads CTAs, is what FlashAttention-2
-- removed; `fatune` measures it against flash_v2 instead of claiming it. The tile GEMMs are the same
-- tensor-core code as flash_v2 (mma.sync m16n8k16, ldmatrix, cp.async, swizzled shared memory).
-- docs/flash_v1.md maps the paper's lines to the code and explains the parameter space.
local P = require("prelude")
local softmax = require("lib.softmax")
local tile = require("lib.tile")

local t = {
  name = "flash_v1",
  version = 1,
  -- The first value of each list is what `fatune gen` uses for a parameter it is not given.
  params = {
    block_m = { 64, 32, 128 },   -- Br: query rows per Q tile (inner loop)
    block_n = { 64, 32, 128 },   -- Bc: keys per KV tile (outer loop); Tc = seqlen_k / Bc passes over O
    warps = { 4, 2, 8 },         -- warps per CTA; each owns block_m / warps rows (whole 16-row mma tiles)
    stages = { 2, 1 },           -- Q tile buffers: 2 copies the next Q tile under this one's GEMMs
    num_splits = { 1, 0 },       -- CTAs per (head, sequence) sharing its Q tiles: 1 = the paper's grid,
                                 -- 0 = enough to fill the GPU (FA1's own num_splits heuristic)
  },
}

-- Register budget per thread and the margin ptxas needs beyond what regs_estimate counts
-- (addresses, loop state, workspace pointers); checked with `ptxas -v` (docs/flash_v1.md).
local MAX_REGS = 255
local REG_OVERHEAD = 80

-- Everything the kernel's shape depends on, derived from the parameters and the specialisation:
-- the tile sizes and copy geometry of lib/tile, plus this family's shared-memory layout.
local function geometry(p, shape)
  local g = tile.geometry(p, shape)
  g.smem = p.stages * g.smem_q + 2 * g.smem_kv        -- Q buffers, then K_j, then V_j
  return g
end

-- Registers per thread the variant certainly needs: the O tile of the pair (read from the
-- workspace into mma accumulators), the S tile, one 16-deep step of Q and P fragments, overhead.
-- Returns the total and a function giving its parts as text (for a reason, made only when needed).
local function regs_estimate(p, g)
  local o, s = tile.acc_regs(p, g)
  local frag = g.m_tiles * 4 * 2
  local total = o + s + frag + REG_OVERHEAD
  return total, function() return string.format("O %d + S %d + Q/P fragments %d + overhead %d", o, s, frag, REG_OVERHEAD) end
end

-- Workspace rows per (sequence, head): seqlen_q rounded up to a whole Q tile, so that the padded
-- rows of the last tile have a home and the inner loop needs no row predicate on O, m, l.
local function rows_pad(p, shape)
  return P.ceil_div(shape.seqlen_q, p.block_m) * p.block_m
end

-- Bytes of the workspace: fp32 O [batch][heads_q][rows_pad][dpad], then (m, l) pairs
-- [batch][heads_q][rows_pad]. It depends on the sizes (the source does not).
local function ws_bytes(p, shape, g)
  return shape.batch * shape.heads_q * rows_pad(p, shape) * (g.dpad + 2) * 4
end

-- CTAs per (head, sequence): num_splits, or for 0 the fewest that give every SM its resident
-- CTAs (smem and the register estimate decide how many fit), never more than there are Q tiles.
local function splits(p, shape, dev, g)
  local tiles = math.max(1, P.ceil_div(shape.seqlen_q, p.block_m))
  if p.num_splits ~= 0 then return math.min(p.num_splits, tiles) end
  local regs = (regs_estimate(p, g) + 7) // 8 * 8
  local per_sm = math.min((dev.smem_per_sm or dev.smem_optin) // (g.smem + 1024),
                          (dev.regs_per_sm or 65536) // (regs * g.threads))
  per_sm = math.max(1, per_sm)
  local want = P.ceil_div(dev.sms * per_sm, shape.batch * shape.heads_q)
  return math.max(1, math.min(want, tiles))
end

function t.valid(p, shape, dev)
  if (dev.cc or 0) < 80 then return false, "needs sm_80 (mma.sync bf16, ldmatrix, cp.async)" end
  local ok, why = tile.check_shape(p, shape)
  if not ok then return false, why end
  if p.num_splits < 0 then return false, string.format("num_splits=%d: 0 (auto) or a count", p.num_splits) end
  local g = geometry(p, shape)
  local regs, regs_parts = regs_estimate(p, g)
  ok, why = tile.check_budget(g, dev, regs, MAX_REGS, function()
    return string.format("%d x Q %d + K %d + V %d", p.stages, g.smem_q, g.smem_kv, g.smem_kv)
  end, regs_parts)
  if not ok then return false, why end
  local sq = shape.seqlen_q or 0
  if sq > 0 and shape.batch then
    local ws, limit = ws_bytes(p, shape, g), (dev.mem or (80 << 30)) // 2
    if ws > limit then
      return false, string.format("workspace (fp32 O, m, l) %d MiB > half the device memory (%d MiB)", ws >> 20, limit >> 20)
    end
  end
  -- Pruning by shape. Each rule stays true for a smaller problem of the same kind (the tuner also
  -- emits every variant for a reduced check problem), so it only removes duplicates or waste.
  ok, why = tile.prune_oversized(p, shape, 32, 32)
  if not ok then return false, why end
  if sq > 0 and p.stages > 1 and sq <= p.block_m then
    return false, string.format("stages=%d with seqlen_q=%d <= block_m=%d: one Q tile, nothing to prefetch",
                                p.stages, sq, p.block_m)
  end
  if sq > 0 and shape.batch and p.num_splits == 0 and splits(p, shape, dev, g) == 1 then
    return false, string.format("num_splits=0 gives 1 split here (batch x heads = %d CTAs, %d SMs): same as num_splits=1",
                                shape.batch * shape.heads_q, dev.sms)
  end
  return true
end

-- The kernel text after the generated constants, specialised by the #defines above it and by the
-- prelude's FAT_CAUSAL / FAT_WINDOW / FAT_SOFTCAP / FAT_VARLEN.
local KERNEL = [[
/* ======================================================================================
 * FlashAttention-1 forward (Dao et al. 2022, Algorithm 1). Notation of the paper: Br = BLOCK_M
 * query rows per Q tile, Bc = BLOCK_N keys per KV tile, Tr and Tc tiles. A CTA owns one query head
 * of one sequence, or with gridDim.x > 1 the Q tiles blockIdx.x, blockIdx.x + gridDim.x, ... of it.
 * Warp w owns rows [w*WARP_M, (w+1)*WARP_M) of every Q tile, as M_TILES mma row tiles of 16; per
 * thread and row tile: rows g = lane/4 and g + 8, columns 2*(lane%4), +1 of each 8-wide tile.
 * ====================================================================================== */
]] .. tile.defs .. [[

/* fp32 pairs and quads of the workspace, moved as one 8- or 16-byte access. */
struct __align__(8) ws_f2 { float x, y; };
struct __align__(16) ws_f4 { float x, y, z, w; };

/* Copy one ROWS x DPAD tile of 16-bit values, global -> shared, with cp.async (16 bytes a copy).
 * Thread t copies chunks c + j*LD_CW of rows r + i*LD_RS (r = t / LD_CW, c = t % LD_CW): a row of
 * lanes reads one contiguous stretch of a row (coalesced). LD_RS is a multiple of 8, so all of a
 * lane's rows share row r's swizzle. g_tile: global address of row 0, column 0; ss: row stride in
 * elements; rows_valid: rows inside the sequence. Rows past the sequence and columns past head_dim
 * are zero-filled (src-size 0, nothing read): zero Q or K adds nothing to Q Kᵀ, zero V rows keep
 * P V finite where P is 0. */
]] .. tile.load_tile .. [[

/* Line 9: S = Q_i K_jᵀ on tensor cores. Per 16-deep head-dim step kk: one ldmatrix.x4 per row tile
 * gives Q's A fragment (a0..a3), and one ldmatrix.x4 of K (keys stored row-major = "col" B) gives
 * b0 of keys 0-7, b0 of keys 8-15, b1 of keys 0-7, b1 of keys 8-15: the B fragments of two 8-key
 * tiles. Lane l addresses tile row l%16, chunk 2k + l/16 for every operand. */
static __device__ __forceinline__ void gemm_qk(float (&s)[M_TILES][N_TILES][4], unsigned q_base,
                                               const unsigned (&off)[SW_VARIANTS], unsigned k_base) {
#pragma unroll
    for (int kk = 0; kk < K_STEPS; ++kk) {
        unsigned qa[M_TILES][4];
#pragma unroll
        for (int mt = 0; mt < M_TILES; ++mt)
            fat_ldsm_x4(qa[mt], q_base + off[kk % SW_VARIANTS] + PAIR_OFF(kk) + mt * 16 * ROW_BYTES);
#pragma unroll
        for (int np = 0; np < N_TILES / 2; ++np) {
            unsigned kb[4];
            fat_ldsm_x4(kb, k_base + off[kk % SW_VARIANTS] + PAIR_OFF(kk) + np * 16 * ROW_BYTES);
#pragma unroll
            for (int mt = 0; mt < M_TILES; ++mt) {
                fat_mma16816(s[mt][2 * np], qa[mt], kb[0], kb[2]);
                fat_mma16816(s[mt][2 * np + 1], qa[mt], kb[1], kb[3]);
            }
        }
    }
}

/* Line 12, the product: O_i += P V_j. The f32 C fragments of two adjacent 8-key tiles of P,
 * packed to 16 bits in pairs (pk), are exactly the A fragment of a 16-deep step (c0c1 -> a0,
 * c2c3 -> a1 from the first tile; a2, a3 from the second). V is row-major [key][d], so
 * ldmatrix.x4.trans gives b0, b1 of d tile 2dp, then of 2dp + 1, per 16 keys. */
]] .. tile.gemm_pv() .. [[

/* Lines 10-11 of Algorithm 1 for one (KV tile, Q tile) pair, on the mma accumulator fragments.
 * s: the masked scores S_ij (raw q.k, or log2-domain with softcap; sl2 turns them into log2 units,
 * so exp(x) is computed as 2^(x*sl2)). m, l: m_i, l_i of this thread's rows, read from HBM; the four
 * lanes of a quad hold the same row, so a row reduction is a thread-local one and two shuffles.
 *   line 10: m~_ij = rowmax(S_ij)
 *   line 11: m_new = max(m_i, m~_ij)
 *   line 10: P_ij = exp(S_ij - m_new), rowsum(P_ij). (The paper exponentiates against m~_ij and
 *            rescales by exp(m~_ij - m_new) in line 11; using m_new at once is the same number.)
 *   line 11: l_new = exp(m_i - m_new) l_i + rowsum(P_ij)
 *   line 12: O_i *= exp(m_i - m_new), the first term of the update (P V_j is added by gemm_pv).
 * P is packed to the 16-bit type as it is made (pk: the A fragments of P V). A row that has seen
 * only masked keys has m_new = -inf: its exponent base is taken as 0, so P = 2^-inf = 0 and the
 * rescale factor is 0 (O and l are still 0), never inf - inf = NaN. */
template <int MT, int NS, int NO>
static __device__ __forceinline__ void online_softmax_step(float (&s)[MT][NS][4], unsigned (&pk)[MT][NS][2],
                                                           float (&acc)[MT][NO][4], float (&m)[MT][2],
                                                           float (&l)[MT][2], float sl2) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float m_tile = -FAT_INF;
#pragma unroll
            for (int n = 0; n < NS; ++n) m_tile = fmaxf(m_tile, fmaxf(s[mt][n][2 * r], s[mt][n][2 * r + 1]));
            m_tile = fat_quad_max(m_tile);
            const float m_new = fmaxf(m[mt][r], m_tile);
            const float base = m_new == -FAT_INF ? 0.f : m_new * sl2;
            const float alpha = fat_exp2(m[mt][r] * sl2 - base);     /* exp(m_i - m_new) */
            float sum = 0.f;
]] .. softmax.exp_pack_row .. [[
            sum = fat_quad_sum(sum);
            l[mt][r] = fmaf(alpha, l[mt][r], sum);
            m[mt][r] = m_new;
#pragma unroll
            for (int d = 0; d < NO; ++d) {
                acc[mt][d][2 * r] *= alpha;
                acc[mt][d][2 * r + 1] *= alpha;
            }
        }
}

/* The inverse of visible_keys for a key range: every query row (within the sequence) that sees a
 * key of [n0, n1] lies in [*r_lo, *r_hi]. Both visibility bounds grow with the row, so the rows that
 * see the range form one interval: hi(i) >= n0 from some row on, lo(i) <= n1 up to some row.
 * (Rows inside it that see no key at all are harmless: their scores are all -inf.) */
static __device__ __forceinline__ void rows_seeing(const fat_kparams &p, int n0, int n1, int sq, int sk,
                                                   int *r_lo, int *r_hi) {
    const int off = sk - sq;                      /* query i's diagonal key is i + off */
    *r_lo = 0;
    *r_hi = sq - 1;
#if FAT_CAUSAL
    *r_lo = max(*r_lo, n0 - off);                 /* hi(i) = i + off >= n0 */
#endif
#if FAT_WINDOW
    if (p.window_right >= 0) *r_lo = max(*r_lo, n0 - off - p.window_right);
    if (p.window_left >= 0) *r_hi = min(*r_hi, n1 - off + p.window_left);
#endif
}

extern "C" __global__ void __launch_bounds__(THREADS) fat_flash_v1(const fat_kparams p)
{
    extern __shared__ __align__(128) unsigned char smem[];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

    /* ---- This CTA: query head h of sequence b; its Q tiles are i = blockIdx.x + k*gridDim.x
     * (strided, so that with causal masking every CTA gets short and long rows alike) ---- */
    const int h = blockIdx.y, b = blockIdx.z;
    long long q0, k0;
    int sq, sk;
    seq_bounds(p, b, &q0, &k0, &sq, &sk);
    const int tiles_q = (sq + BLOCK_M - 1) / BLOCK_M;   /* Tr (line 3) */
    const int split = blockIdx.x, nsplit = gridDim.x;
    if (split >= tiles_q) return;                       /* varlen or short sequence: no tile here */
    const int kvh = h / (p.heads_q / p.heads_kv);       /* GQA / MQA */

    /* ---- The workspace, our "HBM" copy of O, l and m (line 2), fp32:
     *   O:      [batch][heads_q][rows_pad][DPAD]   (unnormalised: divided by l only at the end)
     *   (m, l): [batch][heads_q][rows_pad]         m in the units of the raw score q.k
     *                                              (with softcap: of the log2-domain score)
     * rows_pad = seqlen_q rounded up to BLOCK_M (seqlen_q is the batch maximum with varlen), so the
     * padded rows of a last, partial Q tile are scratch space and need no predicate. ---- */
    const long long rows_pad = (long long)((p.seqlen_q + BLOCK_M - 1) / BLOCK_M) * BLOCK_M;
    const long long bh = (long long)b * p.heads_q + h;
    float *const ws_o = (float *)p.ws + bh * rows_pad * DPAD;
    ws_f2 *const ws_ml = (ws_f2 *)((float *)p.ws + (long long)p.batch * p.heads_q * rows_pad * DPAD) + bh * rows_pad;

    /* Scores to the log2 domain: exp(scale*s - scale*m) = 2^(s*sl2 - m*sl2). Softcap first maps s
     * to softcap*tanh(scale*s/softcap)*log2(e), already in the log2 domain (sl2 = 1). */
]] .. softmax.log2_scale .. [[

    /* ---- Line 2: initialise O = 0, l = 0, m = -inf in HBM, for every row of this CTA's Q tiles
     * (the runtime does not clear the workspace). Rows no key tile ever reaches keep these values
     * and end as O = 0, LSE = -inf. ---- */
    for (int i = split; i < tiles_q; i += nsplit) {
        ws_f4 *const o4 = (ws_f4 *)(ws_o + (long long)i * BLOCK_M * DPAD);
        for (int e = tid; e < BLOCK_M * DPAD / 4; e += THREADS) o4[e] = ws_f4{ 0.f, 0.f, 0.f, 0.f };
        for (int r = tid; r < BLOCK_M; r += THREADS) ws_ml[i * BLOCK_M + r] = ws_f2{ -FAT_INF, 0.f };
    }
    __syncthreads();                                    /* written by all, read by the owners below */

    /* ---- Shared memory ("SRAM"): [Q_i buffer x STAGES][K_j][V_j], all swizzled ---- */
    const unsigned s_q = fat_smem_u32(smem);
    const unsigned s_k = s_q + STAGES * SMEM_Q;
    const unsigned s_v = s_k + SMEM_KV;
#define Q_TILE(i) ((const char *)p.q + 2 * ROW_OFF(p.q_sb, p.q_ss, p.q_sh, b, q0 + (long long)(i) * BLOCK_M, h))
#define K_TILE(j) ((const char *)p.k + 2 * ROW_OFF(p.k_sb, p.k_ss, p.k_sh, b, k0 + (long long)(j) * BLOCK_N, kvh))
#define V_TILE(j) ((const char *)p.v + 2 * ROW_OFF(p.v_sb, p.v_ss, p.v_sh, b, k0 + (long long)(j) * BLOCK_N, kvh))

    /* ldmatrix offsets of this lane, one per swizzle variant: lane l reads row l%16, chunk
     * 2k + l/16 of a 16-row slice (every slice starts at a multiple of 16 rows, so the swizzle of
     * row l%16 holds for all of them). */
    unsigned frag_off[SW_VARIANTS];
    {
        const int fr = lane & 15, fb = lane >> 4;
#pragma unroll
        for (int v = 0; v < SW_VARIANTS; ++v) frag_off[v] = fr * ROW_BYTES + (fat_swz(fr, 2 * v + fb) << 4);
    }
    const int warp_row = warp * WARP_M + (lane >> 2);   /* this thread's first row within a Q tile */

    /* ---- KV tiles that some query of this sequence sees: causal stops at the last row's
     * diagonal, a window starts at the first row's left edge ---- */
    int lo_top, hi_top, lo_bot, hi_bot;
    visible_keys(p, 0, sq, sk, &lo_top, &hi_top);
    visible_keys(p, sq - 1, sq, sk, &lo_bot, &hi_bot);
    const int j_begin = lo_top / BLOCK_N;
    const int j_end = hi_bot < 0 ? 0 : hi_bot / BLOCK_N + 1;

    /* ---- Line 5: for each KV tile j (OUTER loop) ---- */
    for (int j = j_begin; j < j_end; ++j) {
        const int n0 = j * BLOCK_N, n1 = min(n0 + BLOCK_N, sk) - 1;

        /* Tile skip: only the Q tiles with a row that sees a key of this tile, and of those only
         * this CTA's (i = split mod nsplit). */
        int r_lo, r_hi;
        rows_seeing(p, n0, n1, sq, sk, &r_lo, &r_hi);
        if (r_lo > r_hi) continue;
        const int i_lo = r_lo / BLOCK_M, i_hi = r_hi / BLOCK_M;
        int i = i_lo + (split - i_lo % nsplit + nsplit) % nsplit;
        if (i > i_hi) continue;

        /* ---- Line 6: load K_j, V_j into shared memory, once for all the Q tiles below; with them
         * the first Q tile. The barrier proves every warp is done with the previous K, V and Q. ---- */
        __syncthreads();
        load_tile<BLOCK_N>(s_k, K_TILE(j), p.k_ss, sk - n0);
        load_tile<BLOCK_N>(s_v, V_TILE(j), p.v_ss, sk - n0);
        load_tile<BLOCK_M>(s_q, Q_TILE(i), p.q_ss, sq - i * BLOCK_M);
        fat_cp_async_commit();
        int buf = 0;

        /* ---- Line 7: for each Q tile i (INNER loop) ---- */
        for (; i <= i_hi; i += nsplit) {
            const int i_next = i + nsplit;
            const int m0 = i * BLOCK_M;

            /* Line 8, Q_i: wait for its copy (and K_j, V_j); the barrier makes every thread's copies
             * visible and proves every warp finished the previous pair, whose Q buffer is refilled
             * next with STAGES = 2. */
            fat_cp_async_wait<0>();
            __syncthreads();
#if STAGES == 2
            if (i_next <= i_hi)                         /* Q_{i+1} lands under this pair's GEMMs */
                load_tile<BLOCK_M>(s_q + (buf ^ 1) * SMEM_Q, Q_TILE(i_next), p.q_ss, sq - i_next * BLOCK_M);
            fat_cp_async_commit();
#endif

            /* Line 8, O_i, l_i, m_i: read from HBM straight into registers, O into the mma
             * accumulator layout (acc[mt][d][2r+e] = row warp_row + 16mt + 8r, column 8d + 2q + e).
             * Each element is read and written by the same thread in every pair, so the workspace
             * needs no barrier inside the loop. The loads are issued before the QKᵀ GEMM, which
             * covers their latency. */
            float *const o_frag = ws_o + (long long)(m0 + warp_row) * DPAD + 2 * (lane & 3);
            float acc[M_TILES][D_TILES][4];
#pragma unroll
            for (int mt = 0; mt < M_TILES; ++mt)
#pragma unroll
                for (int r = 0; r < 2; ++r)
#pragma unroll
                    for (int d = 0; d < D_TILES; ++d) {
                        const ws_f2 v = *(const ws_f2 *)(o_frag + (mt * 16 + 8 * r) * DPAD + 8 * d);
                        acc[mt][d][2 * r] = v.x;
                        acc[mt][d][2 * r + 1] = v.y;
                    }
            /* m_i and l_i of this thread's rows (row warp_row + 16mt + 8r): the four lanes of a quad
             * share a row and each read its (m, l); only lane 0 of the quad writes it back (line 13). */
            ws_f2 *const ml_frag = ws_ml + m0 + warp_row;
            float m[M_TILES][2], l[M_TILES][2];
#pragma unroll
            for (int mt = 0; mt < M_TILES; ++mt)
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const ws_f2 v = ml_frag[mt * 16 + 8 * r];
                    m[mt][r] = v.x;
                    l[mt][r] = v.y;
                }

            /* ---- Line 9: S_ij = Q_i K_jᵀ ---- */
            float s[M_TILES][N_TILES][4];
#pragma unroll
            for (int mt = 0; mt < M_TILES; ++mt)
#pragma unroll
                for (int n = 0; n < N_TILES; ++n) s[mt][n][0] = s[mt][n][1] = s[mt][n][2] = s[mt][n][3] = 0.f;
            gemm_qk(s, s_q + buf * SMEM_Q + warp * WARP_M * ROW_BYTES, frag_off, s_k);

#if FAT_SOFTCAP
            /* Softcap: s = softcap * tanh(scale * s / softcap), in log2 units. */
            fat_softcap_scores(s, cap_in, cap_out);
#endif
            /* Mask: keys a row must not see become -inf. Only pairs that straddle a bound pay for it
             * (diagonal, window edges, seqlen_k tail): a tile inside [lo(last row), hi(first row)]
             * is visible to every row of the Q tile. */
            {
                int lo_first, hi_first, lo_last, hi_last;
                visible_keys(p, m0, sq, sk, &lo_first, &hi_first);
                visible_keys(p, min(m0 + BLOCK_M, sq) - 1, sq, sk, &lo_last, &hi_last);
                if (n0 < lo_last || n0 + BLOCK_N - 1 > hi_first)
                    fat_mask_scores(p, s, m0 + warp_row, n0 + 2 * (lane & 3), sq, sk);
            }

            /* ---- Lines 10-11: the online softmax of the pair (online_softmax_step, above) ---- */
            unsigned pk[M_TILES][N_TILES][2];
            online_softmax_step(s, pk, acc, m, l, sl2);

            /* ---- Line 12: O_i = exp(m_i - m_new) O_i + P V_j. The paper also multiplies by
             * diag(l_new)^-1 here so that O in HBM is always normalised; we keep O unnormalised and
             * divide once at the end, where the fp32 -> 16-bit conversion needs a pass anyway. ---- */
            gemm_pv(acc, pk, frag_off, s_v);

            /* Line 12, the write: O_i back to HBM (fp32). Padded rows included: they are scratch. */
#pragma unroll
            for (int mt = 0; mt < M_TILES; ++mt)
#pragma unroll
                for (int r = 0; r < 2; ++r)
#pragma unroll
                    for (int d = 0; d < D_TILES; ++d)
                        *(ws_f2 *)(o_frag + (mt * 16 + 8 * r) * DPAD + 8 * d) = ws_f2{ acc[mt][d][2 * r], acc[mt][d][2 * r + 1] };

            /* ---- Line 13: l_i = l_new, m_i = m_new back to HBM, by lane 0 of each quad ---- */
            if ((lane & 3) == 0) {
#pragma unroll
                for (int mt = 0; mt < M_TILES; ++mt)
#pragma unroll
                    for (int r = 0; r < 2; ++r) ml_frag[mt * 16 + 8 * r] = ws_f2{ m[mt][r], l[mt][r] };
            }

#if STAGES == 1
            /* One Q buffer: every warp must be done with Q_i before Q_{i+1} overwrites it. */
            __syncthreads();
            if (i_next <= i_hi) load_tile<BLOCK_M>(s_q, Q_TILE(i_next), p.q_ss, sq - i_next * BLOCK_M);
            fat_cp_async_commit();
#else
            buf ^= 1;
#endif
        }   /* line 14 */
    }       /* line 15 */
    __syncthreads();                                    /* O, m, l written by the owners, read by all */

    /* ---- Line 16: return O. Here O / l, converted to the dtype, rows < seqlen_q and columns
     * < head_dim only (16-byte stores), and LSE = m + ln l = (m*sl2 + log2 l) * ln 2. A row with
     * l = 0 saw no key: O = 0 and LSE = -inf. ---- */
    for (int i = split; i < tiles_q; i += nsplit) {
        for (int e = tid; e < BLOCK_M * VALID_CHUNKS; e += THREADS) {
            const int r = e / VALID_CHUNKS, c = e % VALID_CHUNKS, row = i * BLOCK_M + r;
            if (row >= sq) break;                       /* rows grow with e */
            const ws_f2 ml = ws_ml[row];
            const float inv = ml.y > 0.f ? 1.f / ml.y : 0.f;
            const ws_f4 *const src = (const ws_f4 *)(ws_o + (long long)row * DPAD + 8 * c);
            const ws_f4 a = src[0], z = src[1];
            const unsigned v4[4] = { pack2(a.x * inv, a.y * inv), pack2(a.z * inv, a.w * inv),
                                     pack2(z.x * inv, z.y * inv), pack2(z.z * inv, z.w * inv) };
            fat_st_global_v4((fat_h16 *)p.o + ROW_OFF(p.o_sb, p.o_ss, p.o_sh, b, q0 + row, h) + 8 * c, v4);
            if (c == 0 && p.lse != nullptr)
                p.lse[LSE_OFF(p, b, h, q0, row)] =
                    ml.y > 0.f ? (ml.x * sl2 + log2f(ml.y)) * 0.6931471805599453f : -FAT_INF;
        }
    }
#undef Q_TILE
#undef K_TILE
#undef V_TILE
}
]]

-- Where the kernel runs for a shape, without its source (see flash_v2.lua's launch()).
function t.launch(p, shape, dev)
  local g = geometry(p, shape)
  return P.launch(dev, {
    entry = "fat_flash_v1",
    grid = { splits(p, shape, dev, g), shape.heads_q, shape.batch },
    block = { g.threads, 1, 1 },
    smem = g.smem,
    workspace = ws_bytes(p, shape, g),
  })
end

function t.emit(p, shape, dev)
  local ok, why = t.valid(p, shape, dev)
  assert(ok, why)
  local g = geometry(p, shape)
  -- The source depends on every parameter but num_splits (the grid only): leave it out of the
  -- banner, so variants that differ only there share one compiled kernel.
  local src_params = {}
  for k, v in pairs(p) do if k ~= "num_splits" then src_params[k] = v end end
  local defs = {
    string.format("/* ---- flash_v1 constants: Q tile %d rows (Br), KV tile %d keys (Bc), %d warps (%d rows each), %d Q buffer(s); num_splits sets gridDim.x only ---- */",
                  p.block_m, p.block_n, p.warps, g.warp_m, p.stages),
    "#define BLOCK_M " .. p.block_m,
    "#define BLOCK_N " .. p.block_n,
    "#define WARPS " .. p.warps,
    "#define THREADS " .. g.threads,
    "#define STAGES " .. p.stages,
    "#define HEAD_DIM " .. shape.head_dim,
    "#define DPAD " .. g.dpad .. "            /* head_dim rounded up to 16; columns past HEAD_DIM are zero */",
    "#define CHUNKS " .. g.chunks .. "          /* 16-byte chunks per shared-memory row */",
    "#define VALID_CHUNKS " .. g.valid_chunks,
    "#define SW_BITS " .. g.sw.bits,
    "#define SW_VARIANTS " .. g.sw.variants,
    "#define LD_CW " .. g.ld_cw .. "            /* copy lanes per row */",
    "#define LD_RS " .. g.ld_rs .. "            /* rows between a lane's copies */",
    "#define LD_NJ " .. g.ld_nj .. "            /* chunks per lane per row */",
  }
  local e = t.launch(p, shape, dev)
  e.source = tile.source(P.common(t, src_params, shape), g, defs, KERNEL)
  return e
end

return t
