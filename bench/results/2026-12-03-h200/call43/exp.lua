-- call 43: exp16's shapes (bf16): d64 causal 512 and 1024, d64 non-causal 4096, d128 non-causal 8192
return {
  { batch = 32, heads_q = 32, seqlen = 512, head_dim = 64, dtype = "bf16", causal = true },
  { batch = 16, heads_q = 32, seqlen = 1024, head_dim = 64, dtype = "bf16", causal = true },
  { batch = 4, heads_q = 32, seqlen = 4096, head_dim = 64, dtype = "bf16", causal = false },
  { batch = 2, heads_q = 16, seqlen = 8192, head_dim = 128, dtype = "bf16", causal = false },
}
