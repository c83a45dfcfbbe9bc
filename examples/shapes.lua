-- An example shapes file: `fatune --gpu 0 --shapes examples/shapes.lua`.
--
-- A shapes file is Lua returning a list of problems. shape{} is one problem, sweep{} the
-- cartesian product of every field given as a list. Fields: batch, heads_q, heads_kv (default
-- heads_q), seqlen (or seqlen_q and seqlen_k), head_dim (a multiple of 8 up to 256), dtype
-- ("fp16" or "bf16"), causal (default false), and the kernel features window, softcap, varlen.
return {
  -- Llama-3-8B-like prefill: 32 query heads over 8 KV heads, head_dim 128.
  sweep{ batch = 1, heads_q = 32, heads_kv = 8, head_dim = 128, dtype = "bf16", causal = true,
         seqlen = { 1024, 2048, 4096, 8192 } },
  -- A chunked-prefill step: 512 new tokens against a 4k cache.
  shape{ batch = 4, heads_q = 32, heads_kv = 8, seqlen_q = 512, seqlen_k = 4608, head_dim = 128,
         dtype = "bf16", causal = true },
  -- Decoding steps: one new token per sequence against its KV cache (the decode family's case: at
  -- most 16 query rows per KV head), for the batch sizes a server runs.
  sweep{ batch = { 1, 8, 32 }, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = { 4096, 32768 },
         head_dim = 128, dtype = "bf16" },
  -- A sliding-window model (Mistral-style) with fp16 weights.
  shape{ batch = 2, heads_q = 32, heads_kv = 8, seqlen = 8192, head_dim = 128, dtype = "fp16",
         causal = true, window = true },
}
