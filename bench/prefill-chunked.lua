-- Chunked prefill against a KV cache (issue 14): 512 new rows per sequence whose keys are already in
-- the cache, 32 query heads on 8 KV heads, bf16, head_dim 128, causal (bottom-right), 8k keys before
-- the chunk; the cache paged in 16- and 256-key pages and contiguous with cache_seqlens, and the
-- plain prefill of the same shape (the bar's "our contiguous prefill"). bench/chunked_prefill.py
-- times the same shapes through the binding.
return {
  sweep{ batch = { 1, 4 }, heads_q = 32, heads_kv = 8, seqlen_q = 512, seqlen_k = 8704, head_dim = 128,
         dtype = "bf16", causal = true, kv_cache = true, page_size = { 16, 256 } },
  sweep{ batch = { 1, 4 }, heads_q = 32, heads_kv = 8, seqlen_q = 512, seqlen_k = 8704, head_dim = 128,
         dtype = "bf16", causal = true, kv_cache = true },
  sweep{ batch = { 1, 4 }, heads_q = 32, heads_kv = 8, seqlen_q = 512, seqlen_k = 8704, head_dim = 128,
         dtype = "bf16", causal = true },
}
