-- bench/decode.lua (one kind, 4 problems) and bench/decode-small.lua (5 kinds)
return {
  sweep{ batch = 16, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = { 1024, 4096, 16384, 65536 }, head_dim = 128, dtype = "bf16" },
  sweep{ batch = { 1, 4 }, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = { 4096, 32768 }, head_dim = 128, dtype = "bf16" },
  shape{ batch = 1, heads_q = 32, heads_kv = 32, seqlen_q = 1, seqlen_k = 32768, head_dim = 128, dtype = "bf16" },
  shape{ batch = 4, heads_q = 32, heads_kv = 8, seqlen_q = 2, seqlen_k = 8192, head_dim = 128, dtype = "bf16", causal = true },
}
