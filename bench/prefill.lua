-- The prefill suite of shared/bench/peers.py in both dtypes (48 shapes): 16384 tokens per batch
-- (batch = 16384 / seqlen), heads = 2048 / head_dim, head_dim 64 and 128, seqlen 512..16384,
-- causal and not. FLOPs = 4 * B * H * S * S * D, halved when causal.
local suite = {}
for _, dtype in ipairs({ "bf16", "fp16" }) do
  for _, d in ipairs({ 64, 128 }) do
    for _, s in ipairs({ 512, 1024, 2048, 4096, 8192, 16384 }) do
      suite[#suite + 1] = sweep{ batch = 16384 // s, heads_q = 2048 // d, seqlen = s, head_dim = d,
                                 dtype = dtype, causal = { false, true } }
    end
  end
end
return suite
