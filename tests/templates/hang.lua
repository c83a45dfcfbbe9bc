-- hang.lua: a test-only family whose kernel never finishes, to prove the trial timeout kills the
-- worker and the tune goes on.
local P = require("prelude")
local T = { name = "hang", version = 1, params = { threads = { 32 } } }

function T.valid() return true end

function T.launch(p, shape, dev)
  return P.launch(dev, { entry = "fat_hang", grid = { 1, 1, 1 }, block = { p.threads, 1, 1 } })
end

function T.emit(p, shape, dev)
  local src = P.common(T, p, shape) .. [[
extern "C" __global__ void fat_hang(const fat_kparams p) {
    /* A branch to itself in PTX: a C loop without side effects may be optimised away. */
    asm volatile("{\n\t$fat_spin:\n\tbra.uni $fat_spin;\n\t}" ::: "memory");
    ((float *)p.o)[threadIdx.x] = 0.f;
}
]]
  local e = T.launch(p, shape, dev)
  e.source = src
  return e
end

return T
