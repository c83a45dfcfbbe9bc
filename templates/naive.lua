-- naive.lua: attention the way the formula reads, and the reference every other family is checked
-- against. S = scale * Q Kᵀ is materialised in global memory (the workspace), softmax runs over each
-- row in fp32, then O = P V. It moves O(Sq * Sk) bytes through memory, which is exactly the cost
-- FlashAttention removes: compare it with flash_v1 and flash_v2 in `fatune` to see why.
local P = require("prelude")

-- Not tuned unless --only names it: it is the reference, and the "before" of the story.
local T = { name = "naive", version = 1, tuned = false }

-- One CTA computes one query row; `threads` threads share its keys and its output columns.
T.params = { threads = { 64, 128, 256 } }

-- Bytes of the S matrix for the largest sequences of the problem.
local function s_bytes(shape)
  return shape.batch * shape.heads_q * shape.seqlen_q * shape.seqlen_k * 4
end

function T.valid(p, shape, dev)
  if p.threads > dev.max_threads then
    return false, string.format("threads %d above the device's %d per block", p.threads, dev.max_threads)
  end
  local limit = (dev.mem or (80 << 30)) // 2
  if s_bytes(shape) > limit then
    return false, string.format("S needs %d MiB, above half the device memory (%d MiB)",
      s_bytes(shape) >> 20, limit >> 20)
  end
  return true
end

-- Where the kernel runs for a shape, without its source (see flash_v2.lua's launch()): one CTA per
-- query row; the workspace holds each row's scores.
function T.launch(p, shape, dev)
  return P.launch(dev, { entry = "fat_naive", grid = { shape.seqlen_q, shape.heads_q, shape.batch },
                         block = { p.threads, 1, 1 }, workspace = s_bytes(shape) })
end

function T.emit(p, shape, dev)
  local src = P.common(T, p, shape) .. string.format([[
#define NTHREADS %d
#define HEAD_DIM %d

/* Sum of v over the block, returned to every thread; red has NTHREADS/32 floats. */
static __device__ float block_sum(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float t = 0.f;
    for (int w = 0; w < NTHREADS / 32; w++) t += red[w];
    __syncthreads();
    return t;
}

static __device__ float block_max(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float t = -FAT_INF;
    for (int w = 0; w < NTHREADS / 32; w++) t = fmaxf(t, red[w]);
    __syncthreads();
    return t;
}

extern "C" __global__ void __launch_bounds__(NTHREADS) fat_naive(const fat_kparams p) {
    __shared__ float qrow[HEAD_DIM];
    __shared__ float red[NTHREADS / 32];
    const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int hk = h / (p.heads_q / p.heads_kv);          /* GQA: the KV head this query head reads */
    long long q0, k0;
    int sq, sk;
    seq_bounds(p, b, &q0, &k0, &sq, &sk);
    if (i >= sq) return;                                   /* varlen: row past this sequence's end */

    const fat_h16 *Q = (const fat_h16 *)p.q + ROW_OFF(p.q_sb, p.q_ss, p.q_sh, b, q0 + i, h);
    const fat_h16 *K = (const fat_h16 *)p.k + ROW_OFF(p.k_sb, p.k_ss, p.k_sh, b, k0, hk);
    const fat_h16 *V = (const fat_h16 *)p.v + ROW_OFF(p.v_sb, p.v_ss, p.v_sh, b, k0, hk);
    fat_h16 *O = (fat_h16 *)p.o + ROW_OFF(p.o_sb, p.o_ss, p.o_sh, b, q0 + i, h);
    /* This row of S in the workspace: the whole Sq x Sk matrix exists, that is the point. */
    float *S = (float *)p.ws + (((long long)b * p.heads_q + h) * p.seqlen_q + i) * (long long)p.seqlen_k;

    int lo, hi;
    visible_keys(p, i, sq, sk, &lo, &hi);

    /* Step 1: the query row, once, in fp32. */
    for (int d = threadIdx.x; d < HEAD_DIM; d += NTHREADS) qrow[d] = to_f32(Q[d]);
    __syncthreads();

    /* Step 2: S[j] = scale * q . k_j for every visible key, and the row maximum. */
    float mx = -FAT_INF;
    for (int j = lo + threadIdx.x; j <= hi; j += NTHREADS) {
        const fat_h16 *kj = K + (long long)j * p.k_ss;
        float s = 0.f;
        for (int d = 0; d < HEAD_DIM; d++) s += qrow[d] * to_f32(kj[d]);
        s = apply_softcap(p, s * p.scale);
        S[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = block_max(mx, red);

    /* Step 3: P[j] = exp(S[j] - max), written back over S, and the row sum l. */
    float l = 0.f;
    for (int j = lo + threadIdx.x; j <= hi; j += NTHREADS) {
        float e = __expf(S[j] - mx);
        S[j] = e;
        l += e;
    }
    l = block_sum(l, red);       /* also a barrier: every P[j] is in memory before step 4 reads it */
    __threadfence_block();

    /* Step 4: O[d] = sum_j P[j] v_j[d] / l. A row that sees no key has l = 0 and gets zeros. */
    float inv = l > 0.f ? 1.f / l : 0.f;
    for (int d = threadIdx.x; d < p.head_dim; d += NTHREADS) {
        float acc = 0.f;
        for (int j = lo; j <= hi; j++) acc += S[j] * to_f32(V[(long long)j * p.v_ss + d]);
        O[d] = from_f32(acc * inv);
    }
    if (p.lse && threadIdx.x == 0) p.lse[LSE_OFF(p, b, h, q0, i)] = l > 0.f ? mx + __logf(l) : -FAT_INF;
}
]], p.threads, shape.head_dim)
  local e = T.launch(p, shape, dev)
  e.source = src
  return e
end

return T
