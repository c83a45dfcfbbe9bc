-- The causal prefill shapes where flash_hopper trails cuDNN (docs/performance.md, 2026-12-02):
-- bf16, head_dim 64 and 128, seqlen 512 and 1024 (peers.py's batch x seqlen = 16384 tokens,
-- heads = 2048 / head_dim). For an exhaustive tune that times every variant, xtile and exp_fma
-- included (tools/gpu-hopper.sh STEPS=explore).
local suite = {}
for _, d in ipairs({ 64, 128 }) do
  for _, s in ipairs({ 512, 1024 }) do
    suite[#suite + 1] = { batch = 16384 // s, heads_q = 2048 // d, seqlen = s, head_dim = d, dtype = "bf16",
                          causal = true }
  end
end
return suite
