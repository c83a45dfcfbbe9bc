-- Decoding steps the peers' decode suite leaves out: a small batch (1 and 4 sequences), where one
-- CTA per KV head would leave most SMs idle, plain multi-head attention (one query row per KV
-- head), and two new tokens (speculative decoding, causal). bf16, head_dim 128.
return {
  sweep{ batch = { 1, 4 }, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = { 4096, 32768 },
         head_dim = 128, dtype = "bf16" },
  shape{ batch = 1, heads_q = 32, heads_kv = 32, seqlen_q = 1, seqlen_k = 32768, head_dim = 128, dtype = "bf16" },
  shape{ batch = 4, heads_q = 32, heads_kv = 8, seqlen_q = 2, seqlen_k = 8192, head_dim = 128, dtype = "bf16",
         causal = true },
}
