-- The default shape suite: what `fatune --gpu 0` tunes when no --shapes file is given.
--
-- 1. The prefill suite of shared/bench/peers.py (24 shapes): 16384 tokens per batch
--    (batch = 16384 / seqlen), heads = 2048 / head_dim, head_dim 64 and 128, seqlen 512..16384,
--    causal and not, bf16: the shapes the PyTorch SDPA peers are measured on.
-- 2. Typical LLM prefill: grouped-query attention 32:8 and 64:8 at head_dim 128, one sequence of
--    2k..32k tokens, causal, bf16.
local suite = {}

for _, d in ipairs({ 64, 128 }) do
  for _, s in ipairs({ 512, 1024, 2048, 4096, 8192, 16384 }) do
    suite[#suite + 1] = sweep{ batch = 16384 // s, heads_q = 2048 // d, seqlen = s, head_dim = d,
                               dtype = "bf16", causal = { false, true } }
  end
end

suite[#suite + 1] = sweep{ batch = 1, heads_q = { 32, 64 }, heads_kv = 8, head_dim = 128, dtype = "bf16",
                           causal = true, seqlen = { 2048, 4096, 8192, 16384, 32768 } }

return suite
