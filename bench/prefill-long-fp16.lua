-- bench/prefill-long.lua in fp16: issue #12's 680 TFLOPS shapes (head_dim 128 from 8k keys) and
-- head_dim 64 at 4k, for the question whether fp16 is slower than bf16 on the same kernels or
-- only timed later in a suite run (docs/flash_hopper.md, next steps 1a). Batch x seqlen = 16384
-- tokens, heads = 2048 / head_dim.
return {
  sweep{ batch = 2, heads_q = 16, seqlen = 8192, head_dim = 128, dtype = "fp16", causal = false },
  sweep{ batch = 1, heads_q = 16, seqlen = 16384, head_dim = 128, dtype = "fp16", causal = false },
  sweep{ batch = 4, heads_q = 32, seqlen = 4096, head_dim = 64, dtype = "fp16", causal = false },
}
