-- ops/kv_append.lua: k_new and v_new copied into a KV cache, for a call whose attention kernel does
-- not append itself.
--
-- An attention call with an append (flash_attn_with_kvcache's k and v) writes seqlen_new new rows
-- of each sequence into the cache at keys cache_seqlens[b] .. cache_seqlens[b] + seqlen_new - 1,
-- then attends to all of them. The decode family does both in one launch (at most 16 query rows
-- per KV head). flash_hopper reads the cache through tensor maps, and rows one CTA appended are not
-- in the cache when another CTA's TMA reads them, so a prefill chunk's append cannot share its
-- launch. The runtime then launches this kernel first, on the same stream, and the attention
-- kernel (resolved for the same problem without the append) reads the new rows from the cache
-- like the rest: two launches, one call.
--
-- Not an attention family: it is not tuned, tested against the CPU attention or chosen by the
-- lookup (templates/ops/ holds such helpers; templates/*.lua are the families). It takes the same
-- fat_kparams block as the attention it precedes. A sequence whose cache_seqlens is out of range, or
-- a row whose page entry is, is not written: the attention kernel reads the same length and the same
-- entries and makes that sequence's rows NaN, so nothing is written where it should not be and
-- nothing wrong is returned.
local P = require("prelude")

local T = {
  name = "ops.kv_append",
  version = 1,
  serves_kv_cache = true,
  params = { threads = { 256 } },
}

-- CTAs along x: enough for seqlen_q new rows (the usual chunk: as many new keys as query rows); the
-- loop strides over the grid, so any seqlen_new is copied whole.
local MAX_X = 1024

local function chunks(shape) return shape.head_dim // 8 end

function T.valid(p, shape, dev)
  if not shape.append then return false, "ops.kv_append copies k_new and v_new: the problem has no append" end
  if not shape.kv_cache then return false, "ops.kv_append writes into a KV cache (cache_seqlens)" end
  if shape.head_dim % 8 ~= 0 then return false, "head_dim must be a multiple of 8 (16-byte copies)" end
  if p.threads > dev.max_threads then return false, "threads above the device's limit" end
  return true
end

function T.launch(p, shape, dev)
  local x = P.ceil_div(shape.seqlen_q * chunks(shape), p.threads)
  if x > MAX_X then x = MAX_X end
  return P.launch(dev, { entry = "fat_kv_append", grid = { x, shape.heads_kv, shape.batch },
                         block = { p.threads, 1, 1 } })
end

function T.emit(p, shape, dev)
  local src = P.common(T, p, shape) .. string.format([[
#define THREADS %d
#define CHUNKS %d                  /* 16-byte pieces of one row of head_dim values */

static __device__ __forceinline__ void copy16(void *dst, const void *src) {
    unsigned a, b, c, d;
    asm volatile("ld.global.v4.b32 {%%0, %%1, %%2, %%3}, [%%4];" : "=r"(a), "=r"(b), "=r"(c), "=r"(d) : "l"(src));
    asm volatile("st.global.v4.b32 [%%0], {%%1, %%2, %%3, %%4};" :: "l"(dst), "r"(a), "r"(b), "r"(c), "r"(d) : "memory");
}

/* CTA (x, kvh, b): KV head kvh of sequence b; its threads stride over the seqlen_new x CHUNKS pieces
 * of the new rows, new row i going to key have + i of the cache (paged: row (have + i) %% page_size
 * of page block_table[b][(have + i) / page_size]; else row have + i of sequence b). */
extern "C" __global__ void __launch_bounds__(THREADS) fat_kv_append(const fat_kparams p) {
    const int kvh = blockIdx.y, b = blockIdx.z;
    int have, sk;
    if (cache_bad(p, b, &have, &sk)) return;   /* the attention poisons this sequence */
    for (int idx = blockIdx.x * THREADS + threadIdx.x; idx < p.seqlen_new * CHUNKS; idx += gridDim.x * THREADS) {
        const int i = idx / CHUNKS, c = idx %% CHUNKS, j = have + i;
#if FAT_PAGED
        const int e = page_of(p, b, j);
        if (!page_ok(p, e)) continue;             /* never followed; the attention poisons it */
        const long long pg = e, r = j %% FAT_PAGE_SIZE;
#else
        const long long pg = b, r = j;
#endif
        copy16((char *)p.k + 2 * (pg * p.k_sb + r * p.k_ss + (long long)kvh * p.k_sh) + c * 16,
               (const char *)p.k_new + 2 * ((long long)b * p.kn_sb + (long long)i * p.kn_ss + (long long)kvh * p.kn_sh) + c * 16);
        copy16((char *)p.v + 2 * (pg * p.v_sb + r * p.v_ss + (long long)kvh * p.v_sh) + c * 16,
               (const char *)p.v_new + 2 * ((long long)b * p.vn_sb + (long long)i * p.vn_ss + (long long)kvh * p.vn_sh) + c * 16);
    }
}
]], p.threads, chunks(shape))
  local e = T.launch(p, shape, dev)
  e.source = src
  return e
end

return T
