-- Decoding steps against long KV caches (issue 14's paged bar at 16k and 64k keys): 32 query heads
-- on 8 KV heads, one query row, bf16, head_dim 128, the cache full (no append), contiguous and in
-- pages of 16 keys (bench/paged_decode.py times the same shapes through the binding beside SDPA).
-- Tune it exhaustively with --only decode to see what the best paged variant costs against the
-- best contiguous one.
return {
  shape{ batch = 8, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = 16384, head_dim = 128, dtype = "bf16",
         causal = true, kv_cache = true, page_size = 16 },
  shape{ batch = 8, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = 16384, head_dim = 128, dtype = "bf16",
         causal = true, kv_cache = true },
  shape{ batch = 2, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = 65536, head_dim = 128, dtype = "bf16",
         causal = true, kv_cache = true, page_size = 16 },
  shape{ batch = 2, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = 65536, head_dim = 128, dtype = "bf16",
         causal = true, kv_cache = true },
}
