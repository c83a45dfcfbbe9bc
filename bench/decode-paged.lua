-- Decoding steps against a KV cache (issue 14): 16 sequences, 32 query heads on 8 KV heads, one new
-- token appended per step, bf16, head_dim 128, caches of 1k and 4k keys, contiguous and in pages of
-- 16 and 256 keys (bench/paged_decode.py times the same shapes through the binding beside SDPA).
return {
  sweep{ batch = 16, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = { 1024, 4096 }, head_dim = 128,
         dtype = "bf16", causal = true, kv_cache = true, append = true, page_size = { 16, 256 } },
  sweep{ batch = 16, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = { 1024, 4096 }, head_dim = 128,
         dtype = "bf16", causal = true, kv_cache = true, append = true },
}
