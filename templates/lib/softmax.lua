-- lib/softmax.lua: online softmax on mma.sync accumulator fragments, as CUDA text.
--
-- Scores live in m16n8 C fragments: float s[MT][NS][4] holds MT row tiles of 16 rows and NS column
-- tiles of 8 keys; a thread owns two rows per row tile (lane/4 and lane/4 + 8) and, per column tile,
-- two adjacent keys (2*(lane%4), +1): s[mt][n][2r + e] is row lane/4 + 8r, key 2*(lane%4) + e. The four
-- threads of a quad share a row, so a row reduction is a thread-local reduction and two shuffles.
--
-- The running statistics per row: m, the largest raw score seen (in the units of s), and l, this
-- thread's part of the sum of 2^((s - m) * sl2); sl2 turns a raw score into the log2 domain
-- (scale * log2(e), or 1 when the scores are already there). l is summed over the quad only once, in
-- fat_softmax_finish. Requires the prelude (FAT_INF, visible_keys, FAT_WINDOW) and lib.ptx (fat_exp2).
--
-- M.defs holds the device functions (quad reductions, softcap, mask, the update step and the final
-- normalisation, in two forms). M.exp_pack_row and M.log2_scale are statements for a family's own
-- code: the exponentiate-and-pack loop of a softmax step written in another form (the update
-- functions below are built with it too), and the log2-domain factors at the top of a kernel.
local M = {}

-- CUDA statements, the heart of every online softmax step: for row r of row tile mt (the loop
-- variables of the caller), p = 2^(s*sl2 - base) of each of the thread's key pairs, added to the
-- float `sum` and packed to the 16-bit type in pk[mt][n][r], the A fragments of P V. base is
-- m_new * sl2 (0 for a row that has seen only masked keys, so that p = 2^-inf = 0). Packing as
-- soon as a pair is exponentiated keeps the live registers at half the score tile. Indented for
-- the body of a `for (r ...)` loop inside a `for (mt ...)` loop of a function.
M.exp_pack_row = [[
#pragma unroll
            for (int n = 0; n < NS; ++n) {
                const float p0 = fat_exp2(fmaf(s[mt][n][2 * r], sl2, -base));
                const float p1 = fat_exp2(fmaf(s[mt][n][2 * r + 1], sl2, -base));
                sum += p0 + p1;
                pk[mt][n][r] = pack2(p0, p1);
            }
]]

-- CUDA statements for the top of a kernel (kernel parameters `p`): sl2, the factor that turns a
-- raw score into the log2 domain (scale * log2(e)), and with FAT_SOFTCAP the factors of
-- fat_softcap_scores, which leaves the scores already in the log2 domain (sl2 = 1).
M.log2_scale = [[
#if FAT_SOFTCAP
    const float sl2 = 1.f;
    const float cap_in = p.scale / p.softcap, cap_out = p.softcap * 1.4426950408889634f;
#else
    const float sl2 = p.scale_log2;
#endif
]]

M.defs = [[
/* ---- lib/softmax: row statistics over the quad, online rescale, mask, softcap ---- */
static __device__ __forceinline__ float fat_quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
    return x;
}
static __device__ __forceinline__ float fat_quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    x += __shfl_xor_sync(0xffffffffu, x, 2);
    return x;
}

/* Softcap in the log2 domain: s <- tanh(s * in) * out, with in = scale / softcap and
 * out = softcap * log2(e), so that afterwards sl2 = 1. */
template <int MT, int NS>
static __device__ __forceinline__ void fat_softcap_scores(float (&s)[MT][NS][4], float in, float out) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int n = 0; n < NS; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) s[mt][n][e] = tanhf(s[mt][n][e] * in) * out;
}

/* Mask: s = -inf where key col0 + 8n + e is not visible to query row row0 + 16mt + 8r (row and key
 * numbered within their sequences; visible_keys from the prelude, which also drops keys >= sk). */
template <int MT, int NS>
static __device__ __forceinline__ void fat_mask_scores(const fat_kparams &p, float (&s)[MT][NS][4],
                                                       int row0, int col0, int sq, int sk) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            int lo, hi;
            visible_keys(p, row0 + mt * 16 + 8 * r, sq, sk, &lo, &hi);
#pragma unroll
            for (int n = 0; n < NS; ++n)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int j = col0 + n * 8 + e;
                    if (j > hi || (FAT_WINDOW && j < lo)) s[mt][n][2 * r + e] = -FAT_INF;
                }
        }
}

/* O and l rescale of the online softmax: acc rows times alpha. With skip, the 2*MT*NO multiplies
 * are left out when no row of the warp changed its max (every alpha == 1, a warp-uniform vote):
 * after the first tiles that is the common case, and it costs one vote when it is not. */
template <bool SKIP, int MT, int NO>
static __device__ __forceinline__ void fat_rescale_acc(float (&acc)[MT][NO][4], const float (&alpha)[MT][2]) {
    if (SKIP) {
        bool change = false;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) change = change || alpha[mt][0] != 1.f || alpha[mt][1] != 1.f;
        if (!__any_sync(0xffffffffu, change)) return;
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int d = 0; d < NO; ++d) {
            acc[mt][d][0] *= alpha[mt][0];
            acc[mt][d][1] *= alpha[mt][0];
            acc[mt][d][2] *= alpha[mt][1];
            acc[mt][d][3] *= alpha[mt][1];
        }
}

/* One step of the online softmax. On entry s holds a tile of raw (masked) scores. On return
 * pk[mt][n][r] holds p = 2^(s*sl2 - m_new*sl2) of row r, keys 2q, 2q+1 of key tile n, packed to the
 * 16-bit type (pack2): the A fragment of P V for keys 16k..16k+15 is pk[mt][2k][0..1], pk[mt][2k+1][0..1].
 * acc and l are rescaled by alpha = 2^((m_old - m_new)*sl2) and m = m_new. l sums the f32 p.
 * A row that has seen only masked keys keeps m = -inf: its exponent base is taken as 0 so that
 * p = 2^-inf = 0 and alpha = 0 (acc and l are still 0), never inf - inf = NaN.
 * Packing as soon as a pair is exponentiated keeps the live registers at half the score tile, and
 * rescaling O only after all exponentials keeps its multiplies out of the score phase (fewer live
 * registers). SKIP: see fat_rescale_acc. Call as fat_softmax_update(...) or
 * fat_softmax_update<true>(...); the sizes are deduced. */
template <bool SKIP = false, int MT, int NS, int NO>
static __device__ __forceinline__ void fat_softmax_update(float (&s)[MT][NS][4], unsigned (&pk)[MT][NS][2],
                                                          float (&acc)[MT][NO][4], float (&m)[MT][2],
                                                          float (&l)[MT][2], float sl2) {
    float alpha[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = m[mt][r];
#pragma unroll
            for (int n = 0; n < NS; ++n) mx = fmaxf(mx, fmaxf(s[mt][n][2 * r], s[mt][n][2 * r + 1]));
            mx = fat_quad_max(mx);
            const float base = mx == -FAT_INF ? 0.f : mx * sl2;   /* m_new in the log2 domain */
            alpha[mt][r] = fat_exp2(m[mt][r] * sl2 - base);      /* rescale of the old terms */
            m[mt][r] = mx;
            float sum = l[mt][r] * alpha[mt][r];
]] .. M.exp_pack_row .. [[
            l[mt][r] = sum;
        }
    fat_rescale_acc<SKIP>(acc, alpha);
}

/* The same step with the row statistics stored once per quad instead of in all four threads: row
 * ri = 2*mt + r of a thread's 2*MT rows is owned by quad lane ri % 4, in slot ri / 4 of m and l
 * ((2*MT + 3) / 4 slots). The other lanes fetch m_old by shuffle and the row sum is reduced over
 * the quad every tile, so l is final in its owner. Five shuffles per row and tile instead of two,
 * for 6 fewer live registers at MT = 2: worth it only where register pressure spills. */
#define FAT_STAT_SLOTS(MT) ((2 * (MT) + 3) / 4)
template <bool SKIP = false, int MT, int NS, int NO>
static __device__ __forceinline__ void fat_softmax_update_q(float (&s)[MT][NS][4], unsigned (&pk)[MT][NS][2],
                                                            float (&acc)[MT][NO][4], float (&m)[FAT_STAT_SLOTS(MT)],
                                                            float (&l)[FAT_STAT_SLOTS(MT)], float sl2) {
    const int lane = threadIdx.x & 31;
    float alpha[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int ri = 2 * mt + r;
            const float m_old = __shfl_sync(0xffffffffu, m[ri / 4], (lane & ~3) | (ri & 3));
            float mx = m_old;
#pragma unroll
            for (int n = 0; n < NS; ++n) mx = fmaxf(mx, fmaxf(s[mt][n][2 * r], s[mt][n][2 * r + 1]));
            mx = fat_quad_max(mx);
            const float base = mx == -FAT_INF ? 0.f : mx * sl2;
            alpha[mt][r] = fat_exp2(m_old * sl2 - base);
            float sum = 0.f;
]] .. M.exp_pack_row .. [[
            sum = fat_quad_sum(sum);
            if ((lane & 3) == (ri & 3)) {
                m[ri / 4] = mx;
                l[ri / 4] = fmaf(l[ri / 4], alpha[mt][r], sum);
            }
        }
    fat_rescale_acc<SKIP>(acc, alpha);
}

/* Final normalisation for quad-owned statistics: the owner turns (m, l) into 1/l and the LSE, the
 * quad gets 1/l by shuffle. lse[k] is the LSE of row 4k + lane%4 of this thread's rows (valid when
 * that is < 2*MT). */
template <int MT, int NO>
static __device__ __forceinline__ void fat_softmax_finish_q(float (&acc)[MT][NO][4], const float (&m)[FAT_STAT_SLOTS(MT)],
                                                            const float (&l)[FAT_STAT_SLOTS(MT)], float sl2,
                                                            float (&lse)[FAT_STAT_SLOTS(MT)]) {
    const int lane = threadIdx.x & 31;
    float inv[FAT_STAT_SLOTS(MT)];
#pragma unroll
    for (int k = 0; k < FAT_STAT_SLOTS(MT); ++k) {
        inv[k] = l[k] > 0.f ? 1.f / l[k] : 0.f;
        lse[k] = l[k] > 0.f ? (m[k] * sl2 + log2f(l[k])) * 0.6931471805599453f : -FAT_INF;
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int ri = 2 * mt + r;
            const float f = __shfl_sync(0xffffffffu, inv[ri / 4], (lane & ~3) | (ri & 3));
#pragma unroll
            for (int d = 0; d < NO; ++d) {
                acc[mt][d][2 * r] *= f;
                acc[mt][d][2 * r + 1] *= f;
            }
        }
}

/* Final normalisation: sums l over the quad, scales acc by 1/l once, and gives the natural-log
 * LSE = (m*sl2 + log2 l) * ln 2 per row. A row with no visible key (l = 0) gives acc = 0 and
 * lse = -inf. */
template <int MT, int NO>
static __device__ __forceinline__ void fat_softmax_finish(float (&acc)[MT][NO][4], const float (&m)[MT][2],
                                                          const float (&l)[MT][2], float sl2,
                                                          float (&lse)[MT][2]) {
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const float sum = fat_quad_sum(l[mt][r]);
            const float inv = sum > 0.f ? 1.f / sum : 0.f;
            lse[mt][r] = sum > 0.f ? (m[mt][r] * sl2 + log2f(sum)) * 0.6931471805599453f : -FAT_INF;
#pragma unroll
            for (int d = 0; d < NO; ++d) {
                acc[mt][d][2 * r] *= inv;
                acc[mt][d][2 * r + 1] *= inv;
            }
        }
}
]]

return M
