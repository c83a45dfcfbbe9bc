-- A few small shapes for a quick end-to-end tune (seconds, not minutes).
return {
  sweep{ batch = 2, heads_q = 8, heads_kv = 2, seqlen = { 512, 1000 }, head_dim = { 64, 128 },
         dtype = "bf16", causal = { false, true } },
}
