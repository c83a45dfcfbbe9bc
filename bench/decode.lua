-- The decode suite of shared/bench/peers.py: 16 sequences, 32 query heads over 8 KV heads,
-- head_dim 128, one new query token against a KV cache of 1k..64k tokens, bf16. Reported as KV
-- bytes read per second (2 * batch * heads_kv * seqlen_k * head_dim * 2 bytes per call).
return {
  sweep{ batch = 16, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = { 1024, 4096, 16384, 65536 },
         head_dim = 128, dtype = "bf16" },
}
