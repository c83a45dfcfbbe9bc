-- peers.py's prefill shapes at seqlen 1024, 4096 and 16384 (batch x seqlen = 16384 tokens,
-- heads = 2048 / head_dim), bf16, head_dim 64 and 128, causal and not: flash_hopper's first
-- measurement through the tuner beside cuDNN (docs/performance.md, 2026-12-02).
local suite = {}
for _, d in ipairs({ 64, 128 }) do
  for _, s in ipairs({ 1024, 4096, 16384 }) do
    suite[#suite + 1] = sweep{ batch = 16384 // s, heads_q = 2048 // d, seqlen = s, head_dim = d,
                               dtype = "bf16", causal = { false, true } }
  end
end
return suite
