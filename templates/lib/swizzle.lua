-- lib/swizzle.lua: XOR swizzle of 16-byte chunks for row-major tiles of 16-bit values in shared memory.
--
-- A tile row of `chunks` 16-byte chunks (8 values each) is stored densely (row stride = chunks * 16
-- bytes, no padding). Logical chunk c of row r lives at physical chunk
--     phys(r, c) = c XOR ((r >> shift) & mask)
-- where 2^bits (bits = 1, 2 or 3) is the largest power of two <= 8 that divides `chunks`,
-- mask = 2^bits - 1 and shift = 3 - bits. The XOR only touches the low `bits` bits, so a chunk never
-- leaves its aligned group of 2^bits chunks and never leaves the row.
--
-- Why it is conflict-free: shared memory serves 128 bytes (8 chunks, all 32 banks) per wavefront, so
-- an access of 8 rows x 16 bytes is conflict-free when the 8 chunks land in 8 distinct chunk slots
-- (address / 16 mod 8). For rows r0..r0+7 (r0 a multiple of 8) and one logical chunk c:
--   slot = (r * chunks + phys(r, c)) mod 8.
-- chunks = 2^bits * odd, so r * chunks mod 8 takes the 2^(3-bits) multiples of 2^bits as r mod 2^(3-bits)
-- runs through its values, and the XOR term, (r >> shift) & mask, supplies the low `bits` bits from the
-- rest of r: the 8 rows land in 8 distinct slots. That is the access pattern of ldmatrix (8 rows, one
-- chunk each per 8x8 matrix), of 4-byte fragment stores (8 rows x 4 lanes of one chunk) and, since
-- the XOR permutes chunks inside aligned groups, of 8 lanes copying 8 consecutive chunks (cp.async).
-- With 128-byte rows (head_dim 64, 128, ...) this is the classic chunk ^= row % 8.
local M = {}

-- A swizzle description for rows of `chunks` 16-byte chunks (chunks even, >= 2).
function M.new(chunks)
  assert(math.type(chunks) == "integer" and chunks >= 2 and chunks % 2 == 0,
         "swizzle: chunks per row must be an even integer >= 2")
  local bits = 1
  while bits < 3 and chunks % (2 << bits) == 0 do bits = bits + 1 end
  return {
    chunks = chunks,
    row_bytes = chunks * 16,
    bits = bits,
    shift = 3 - bits,
    mask = (1 << bits) - 1,
    -- ldmatrix x4 reads chunks 2k and 2k+1 (k a pair index); the low `bits` bits of 2k take
    -- `variants` values, so a lane keeps that many precomputed addresses (see M.pair_offset).
    variants = 1 << (bits - 1),
  }
end

-- Physical chunk of logical chunk c in row r (Lua, for checks and documentation).
function M.phys(sw, r, c)
  return c ~ ((r >> sw.shift) & sw.mask)
end

-- Byte offset, from the start of a pair-of-chunks variant address, of chunk pair k (chunks 2k, 2k+1):
-- a lane holding off[v] = row * row_bytes + ((2v + b) ^ f(row)) * 16 for v < variants reaches chunk
-- 2k + b at off[k % variants] + pair_offset(k).
function M.pair_offset(sw, k)
  return (k // sw.variants) * (16 << sw.bits)
end

-- Checks the claims above by brute force for this row width: every logical chunk maps into the row,
-- the map is a permutation of each row, and 8 consecutive rows of one chunk hit 8 distinct slots.
-- Returns true, or false and a message.
function M.check(sw)
  for r = 0, 15 do
    local seen = {}
    for c = 0, sw.chunks - 1 do
      local pc = M.phys(sw, r, c)
      if pc < 0 or pc >= sw.chunks then return false, string.format("row %d chunk %d leaves the row", r, c) end
      if seen[pc] then return false, string.format("row %d: two chunks map to %d", r, pc) end
      seen[pc] = true
    end
  end
  for r0 = 0, 8, 8 do
    for c = 0, sw.chunks - 1 do
      local slots = {}
      for r = r0, r0 + 7 do
        local slot = (r * sw.chunks + M.phys(sw, r, c)) % 8
        if slots[slot] then
          return false, string.format("chunks=%d: rows %d..%d of chunk %d conflict", sw.chunks, r0, r0 + 7, c)
        end
        slots[slot] = true
      end
    end
  end
  for v = 0, sw.variants - 1 do
    for b = 0, 1 do
      for r = 0, 7 do
        for k = v, sw.chunks // 2 - 1, sw.variants do
          local want = M.phys(sw, r, 2 * k + b)
          local got = ((2 * v + b) ~ ((r >> sw.shift) & sw.mask)) + M.pair_offset(sw, k) // 16
          if want ~= got then return false, string.format("pair offset wrong at k=%d b=%d r=%d", k, b, r) end
        end
      end
    end
  end
  return true
end

-- CUDA text: `static int name(int r, int c)` giving the physical chunk, for this row width.
function M.cuda_fn(sw, name)
  return string.format([[
/* ---- lib/swizzle: rows of %d 16-byte chunks; chunk c of row r is stored at c ^ ((r >> %d) & %d) ---- */
static __device__ __forceinline__ int %s(int r, int c) { return c ^ ((r >> %d) & %d); }
]], sw.chunks, sw.shift, sw.mask, name, sw.shift, sw.mask)
end

return M
