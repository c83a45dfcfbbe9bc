-- The long non-causal prefill shapes of issue #12's 680 TFLOPS bar (head_dim 128 from 8k keys), with
-- head_dim 64 at 4k beside them, for an exhaustive tune of flash_hopper (tools/gpu-hopper.sh
-- STEPS=explore EXPLORE=bench/prefill-long.lua). Batch x seqlen = 16384 tokens, heads = 2048 / head_dim.
return {
  sweep{ batch = 2, heads_q = 16, seqlen = 8192, head_dim = 128, dtype = "bf16", causal = false },
  sweep{ batch = 1, heads_q = 16, seqlen = 16384, head_dim = 128, dtype = "bf16", causal = false },
  sweep{ batch = 4, heads_q = 32, seqlen = 4096, head_dim = 64, dtype = "bf16", causal = false },
}
