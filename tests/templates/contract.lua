-- contract.lua: a test-only family that exercises every part of the launch contract on the GPU
-- (tests/test_gpu_contract.sh runs it in the GPU tier; not shipped). It computes attention simply
-- and exactly, so the CPU attention checks it, while it
--   - compiles for the arch-specific target sm_90a (and uses wgmma.fence, which plain sm_90 refuses),
--   - reads K and V through tensor maps (cp.async.bulk.tensor into shared memory, on an mbarrier),
--   - runs as clusters of `cluster` CTAs set at launch (each CTA checks its cluster's size and reads
--     its neighbour's shared memory),
--   - with persistent = 1, runs a persistent grid whose CTAs take work items from a counter in
--     zeroed scratch memory (the grid is smaller than the work: the schedule wraps around),
--   - takes more than 48 KiB of dynamic shared memory at head_dim 256 (the function attribute).
-- A CTA that finds its launch not as declared writes NaN, which the check catches.
local P = require("prelude")
local ptx = require("lib.ptx")
local tma = require("lib.tma")

local T = {
  name = "contract",
  version = 1,
  tuned = false,
  params = { block_n = { 32, 64 }, cluster = { 1, 2 }, persistent = { 0, 1 } },
}

local BM = 16          -- query rows per work item; 4 warps take 4 rows each
local THREADS = 128

local function has_target(dev, t)
  for _, x in ipairs(dev.targets) do if x == t then return true end end
  return false
end

function T.valid(p, shape, dev)
  if (dev.cc or 0) ~= 90 or not has_target(dev, "sm_90a") then
    return false, "needs sm_90a (tensor maps, clusters, wgmma.fence): this is " .. dev.arch
  end
  if shape.varlen then return false, "tensor maps of a packed batch need its row counts" end
  if p.cluster > dev.max_cluster then return false, "cluster " .. p.cluster .. " above the device's " .. dev.max_cluster end
  return true
end

local function items(shape)
  return P.ceil_div(shape.seqlen_q, BM) * shape.heads_q * shape.batch
end

-- K and V tiles of block_n rows, head_dim columns each (rank 4, no swizzle), the mbarrier and two
-- words, and up to 1023 bytes to reach a 1024-byte boundary.
local function smem_bytes(p, shape)
  return 2 * p.block_n * shape.head_dim * 2 + 16 + 1023
end

function T.launch(p, shape, dev)
  local n = items(shape)
  local ctas = n
  -- persistent: fewer CTAs than items, so each takes several from the counter
  if p.persistent == 1 then ctas = math.max(1, math.min(n, dev.sms // 2)) end
  ctas = P.ceil_div(ctas, p.cluster) * p.cluster
  local args = {
    P.params(),
    P.tma{ tensor = "k", box = { shape.head_dim, p.block_n } },
    P.tma{ tensor = "v", box = { shape.head_dim, p.block_n } },
  }
  if p.persistent == 1 then args[#args + 1] = P.scratch{ bytes = 4, zero = true } end
  return P.launch(dev, {
    entry = "fat_contract",
    target = "sm_90a",
    grid = { ctas, 1, 1 },
    block = { THREADS, 1, 1 },
    cluster = p.cluster > 1 and { p.cluster, 1, 1 } or nil,
    smem = smem_bytes(p, shape),
    args = args,
  })
end

local KERNEL = [[
#if !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "the contract family is compiled for sm_90a"
#endif

static __device__ __forceinline__ unsigned cluster_rank() {
    unsigned r; asm("mov.u32 %0, %%cluster_ctarank;" : "=r"(r)); return r;
}
static __device__ __forceinline__ unsigned cluster_size() {
    unsigned r; asm("mov.u32 %0, %%cluster_nctarank;" : "=r"(r)); return r;
}

extern "C" __global__ void __launch_bounds__(THREADS) fat_contract(const fat_kparams p,
        const __grid_constant__ fat_tmap tm_k, const __grid_constant__ fat_tmap tm_v
#if PERSISTENT
        , unsigned *counter
#endif
        ) {
    /* [K tile][V tile][mbarrier][tag][next], from a 1024-byte boundary (the copies need 128) */
    extern __shared__ unsigned char smem_raw[];
    unsigned char *smem = smem_raw + ((1024u - (fat_shared_addr(smem_raw) & 1023u)) & 1023u);
    fat_h16 *Ks = (fat_h16 *)smem;                              /* [BLOCK_N][HEAD_DIM] */
    fat_h16 *Vs = Ks + BLOCK_N * HEAD_DIM;
    unsigned long long *bar = (unsigned long long *)(smem + 2 * BLOCK_N * HEAD_DIM * 2);
    unsigned &tag = *(unsigned *)(bar + 1), &next = *((unsigned *)(bar + 1) + 1);
    const unsigned bar_a = fat_shared_addr(bar);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    /* The arch-specific target: a no-op fence of the warpgroup MMA unit, sm_90a only. */
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");

    /* The cluster as launched: its size, and the neighbour's shared memory. */
    int bad = cluster_size() != CLUSTER;
    if (threadIdx.x == 0) {
        tag = 1000u + cluster_rank();
        fat_mbar_init(bar_a, 1);
        fat_mbar_fence_init();
    }
    __syncthreads();
    fat_cluster_sync();
    unsigned peer = (cluster_rank() + 1) % CLUSTER;
    unsigned got;
    asm volatile("ld.shared::cluster.u32 %0, [%1];\n" : "=r"(got) : "r"(fat_cluster_map(fat_shared_addr(&tag), peer)) : "memory");
    bad |= got != 1000u + peer;
    fat_cluster_sync();                 /* no CTA leaves while another may still read its tag */

    const int m_blocks = (p.seqlen_q + BM - 1) / BM, n_items = m_blocks * p.heads_q * p.batch;
    unsigned phase = 0;
#if PERSISTENT
    /* A persistent grid: work items come from the zeroed counter until none is left. */
    for (;;) {
        if (threadIdx.x == 0) next = atomicAdd(counter, 1u);
        __syncthreads();
        const int item = (int)next;
        __syncthreads();
        if (item >= n_items) break;
#else
    {
        const int item = blockIdx.x;
        if (item >= n_items) return;
#endif
        const int mb = item % m_blocks, h = (item / m_blocks) % p.heads_q, b = item / (m_blocks * p.heads_q);
        const int hk = h / (p.heads_q / p.heads_kv);
        const int sq = p.seqlen_q, sk = p.seqlen_k;
        /* each warp takes rows mb*BM + warp*ROWS_PER_WARP + r; each lane columns lane + 32*c */
        float q[ROWS_PER_WARP][COLS], o[ROWS_PER_WARP][COLS], m[ROWS_PER_WARP], l[ROWS_PER_WARP];
        int lo[ROWS_PER_WARP], hi[ROWS_PER_WARP];
        for (int r = 0; r < ROWS_PER_WARP; r++) {
            const int i = mb * BM + warp * ROWS_PER_WARP + r;
            const fat_h16 *Q = (const fat_h16 *)p.q + ROW_OFF(p.q_sb, p.q_ss, p.q_sh, b, i, h);
            for (int c = 0; c < COLS; c++) {
                const int d = lane + 32 * c;
                q[r][c] = (i < sq && d < HEAD_DIM) ? to_f32(Q[d]) : 0.f;
                o[r][c] = 0.f;
            }
            m[r] = -FAT_INF;
            l[r] = 0.f;
            visible_keys(p, i, sq, sk, &lo[r], &hi[r]);
        }
        /* The key tiles through the tensor maps, one at a time: K and V land on one mbarrier. */
        for (int j0 = 0; j0 < sk; j0 += BLOCK_N) {
            if (threadIdx.x == 0) {
                fat_mbar_expect_tx(bar_a, 2u * BLOCK_N * HEAD_DIM * 2u);
                fat_tma_load_4d(fat_shared_addr(Ks), &tm_k, bar_a, 0, j0, hk, b);
                fat_tma_load_4d(fat_shared_addr(Vs), &tm_v, bar_a, 0, j0, hk, b);
            }
            fat_mbar_wait(bar_a, phase);
            phase ^= 1u;
            for (int r = 0; r < ROWS_PER_WARP; r++) {
                const int jmax = min(hi[r], j0 + BLOCK_N - 1);
                for (int j = max(lo[r], j0); j <= jmax; j++) {
                    /* score: the lanes' partial dot products, summed over the warp */
                    float s = 0.f;
                    for (int c = 0; c < COLS; c++) {
                        const int d = lane + 32 * c;
                        if (d < HEAD_DIM) s += q[r][c] * to_f32(Ks[(j - j0) * HEAD_DIM + d]);
                    }
                    for (int x = 16; x > 0; x >>= 1) s += __shfl_xor_sync(0xffffffffu, s, x);
                    s = apply_softcap(p, s * p.scale);
                    /* online softmax: rescale by exp(m_old - m_new) when the maximum moves */
                    const float mn = fmaxf(m[r], s), alpha = __expf(m[r] - mn), e = __expf(s - mn);
                    l[r] = l[r] * alpha + e;
                    for (int c = 0; c < COLS; c++) {
                        const int d = lane + 32 * c;
                        o[r][c] = o[r][c] * alpha + (d < HEAD_DIM ? e * to_f32(Vs[(j - j0) * HEAD_DIM + d]) : 0.f);
                    }
                    m[r] = mn;
                }
            }
            __syncthreads();            /* every warp is done with the tile before the next lands */
        }
        for (int r = 0; r < ROWS_PER_WARP; r++) {
            const int i = mb * BM + warp * ROWS_PER_WARP + r;
            if (i >= sq) continue;
            fat_h16 *O = (fat_h16 *)p.o + ROW_OFF(p.o_sb, p.o_ss, p.o_sh, b, i, h);
            const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
            for (int c = 0; c < COLS; c++) {
                const int d = lane + 32 * c;
                if (d < HEAD_DIM) O[d] = from_f32(bad ? __int_as_float(0x7fc00000) : o[r][c] * inv);
            }
            if (p.lse && lane == 0) p.lse[LSE_OFF(p, b, h, 0, i)] = l[r] > 0.f ? m[r] + __logf(l[r]) : -FAT_INF;
        }
    }
}
]]

function T.emit(p, shape, dev)
  local ok, why = T.valid(p, shape, dev)
  assert(ok, why)
  local defs = table.concat({
    P.define("BLOCK_N", p.block_n),
    P.define("CLUSTER", p.cluster),
    P.define("PERSISTENT", p.persistent),
    P.define("THREADS", THREADS),
    P.define("BM", BM),
    P.define("ROWS_PER_WARP", BM // (THREADS // 32)),
    P.define("HEAD_DIM", shape.head_dim),
    P.define("COLS", P.ceil_div(shape.head_dim, 32)),
  }, "\n") .. "\n"
  local e = T.launch(p, shape, dev)
  e.source = P.common(T, p, shape) .. ptx.cluster .. tma.defs .. defs .. KERNEL
  return e
end

return T
