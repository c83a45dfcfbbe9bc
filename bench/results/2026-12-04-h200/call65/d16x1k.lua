-- 16 sequences x 1k keys, peers.py's shortest decoding step (issue 14's 3.2 TB/s bar)
return {
  shape{ batch = 16, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = 1024, head_dim = 128, dtype = "bf16" },
}
