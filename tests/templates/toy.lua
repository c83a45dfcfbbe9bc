-- toy.lua: a test-only family for the tuner's CPU tests (tests/test_tune_sim.sh, with the simulated
-- worker): the naive kernel under 48 parameter choices, each a distinct source, so each is its own
-- cubin (the simulation ranks variants by their cubin). b = 4 is valid only from 256 keys on, so
-- the space grows with the sequences as flash_v2's does.
local naive = require("naive")
local T = { name = "toy", version = 1, params = { a = { 1, 2, 3, 4, 5, 6 }, b = { 1, 2, 3, 4 }, c = { 0, 1 } } }

function T.valid(p, shape, dev)
  if p.b == 4 and (shape.seqlen_k or 0) < 256 then return false, "b=4 needs seqlen_k >= 256" end
  return naive.valid({ threads = 64 }, shape, dev)
end

function T.launch(p, shape, dev)
  return naive.launch({ threads = 64 }, shape, dev)
end

function T.emit(p, shape, dev)
  local e = naive.emit({ threads = 64 }, shape, dev)
  e.source = e.source .. string.format("__device__ int fat_toy_tag = %d;   /* a=%d b=%d c=%d */\n",
                                       100 * p.a + 10 * p.b + p.c, p.a, p.b, p.c)
  return e
end

return T
