-- The even twins of bench/ragged_decode.py's batches as tuning problems (a contiguous cache of `cap`
-- keys per sequence read with cache_seqlens; bf16, head_dim 128, 32 query heads on 8 KV heads, one
-- new token). bench/ragged_splits.py tunes them exhaustively and times the best variant of each
-- split count on the even and the ragged batch.
return {
  sweep{ batch = 16, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = 8192, head_dim = 128, dtype = "bf16", kv_cache = true },
  sweep{ batch = 64, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = 4096, head_dim = 128, dtype = "bf16", kv_cache = true },
  sweep{ batch = 4, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = 65536, head_dim = 128, dtype = "bf16", kv_cache = true },
}
