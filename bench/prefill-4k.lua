-- The seqlen-4096 rows of bench/prefill.lua (both dtypes, head_dim 64 and 128, causal and not):
-- where the flash_v1 and flash_v2 loop orders are put side by side.
local suite = {}
for _, dtype in ipairs({ "bf16", "fp16" }) do
  for _, d in ipairs({ 64, 128 }) do
    suite[#suite + 1] = sweep{ batch = 4, heads_q = 2048 // d, seqlen = 4096, head_dim = d,
                               dtype = dtype, causal = { false, true } }
  end
end
return suite
