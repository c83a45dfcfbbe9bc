-- oob.lua: a test-only family that misbehaves on purpose, to prove a tune survives it.
-- It is the naive kernel plus one bad write:
--   how = "guard": one element past the end of O, into the guard bytes (status wrong_result)
--   how = "far":   a terabyte past O, an illegal address that kills the worker's context (fault)
local naive = require("naive")
local T = { name = "oob", version = 1, params = { how = { "far", "guard" } } }

function T.valid() return true end

function T.launch(p, shape, dev)
  return naive.launch({ threads = 128 }, shape, dev)
end

function T.emit(p, shape, dev)
  local e = naive.emit({ threads = 128 }, shape, dev)
  local bad = p.how == "guard"
    and "    if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x == 0)\n" ..
        "        ((fat_h16 *)p.o)[(long long)p.batch * p.seqlen_q * p.heads_q * p.head_dim] = 0;\n"
    or  "    if (threadIdx.x == 0) ((float *)p.o)[1ll << 38] = 1.f;\n"
  e.source = e.source:gsub("\n}\n$", "\n" .. bad .. "}\n")
  return e
end

return T
