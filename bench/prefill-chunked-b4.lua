return {
  sweep{ batch = 4, heads_q = 32, heads_kv = 8, seqlen_q = 512, seqlen_k = 8704, head_dim = 128,
         dtype = "bf16", causal = true, kv_cache = true, page_size = 16 },
  sweep{ batch = 4, heads_q = 32, heads_kv = 8, seqlen_q = 512, seqlen_k = 8704, head_dim = 128,
         dtype = "bf16", causal = true },
}
