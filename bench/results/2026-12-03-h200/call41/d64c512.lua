return { { batch = 32, heads_q = 32, seqlen = 512, head_dim = 64, dtype = "bf16", causal = true } }
