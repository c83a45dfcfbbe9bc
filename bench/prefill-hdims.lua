-- The head_dims of the flash_hopper bar at seqlen 4096 (issue: "head_dim 64, 96, 192 and 256 at
-- seqlen 4096, causal and not, >= 1.0x cuDNN"), with 128 beside them: batch x seqlen = 16384
-- tokens, heads = 2048 / head_dim rounded down (21 at 96, 10 at 192), bf16 and fp16.
-- bench/prefill_peers.py --set hdims times the same shapes beside PyTorch's backends.
local suite = {}
for _, dtype in ipairs({ "bf16", "fp16" }) do
  for _, d in ipairs({ 64, 96, 128, 192, 256 }) do
    suite[#suite + 1] = sweep{ batch = 4, heads_q = 2048 // d, seqlen = 4096, head_dim = d,
                               dtype = dtype, causal = { false, true } }
  end
end
return suite
