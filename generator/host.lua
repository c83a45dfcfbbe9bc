-- host.lua: the generator's side of the template contract, run inside the sandbox.
--
-- C calls these functions (through the table this chunk returns) with plain tables; everything a
-- template returns is checked here, so C only ever sees well-formed values. Errors are raised with
-- a level that points at the user's file and line where there is one.
local H = {}
local P = require("prelude")

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

-- Loads a template module and checks that it honours the contract.
function H.template(name)
  local t = require(name)
  if type(t) ~= "table" then error(name .. ": a template must return a table", 0) end
  for _, f in ipairs({ "name", "version", "params", "valid", "launch", "emit" }) do
    if t[f] == nil then error(name .. ": template lacks field '" .. f .. "'", 0) end
  end
  if t.name ~= name then error(name .. ": template names itself '" .. tostring(t.name) .. "'", 0) end
  return t
end

-- A KV-cache problem (a paged cache, per-sequence key counts, an append) reaches only a family
-- that declares it reads one (`serves_kv_cache = true`); every other family refuses it whole, with
-- this reason, so that no contiguous kernel is tuned or launched on a cache it cannot read.
local function kv_unserved(t, shape)
  if (shape.page_size or shape.kv_cache or shape.append) and not t.serves_kv_cache then
    return t.name .. " does not read a KV cache (page_size, kv_cache, append)"
  end
  return nil
end

-- Every parameter choice of template `name`, in a fixed order (names sorted, values as listed),
-- each as { canon = "k=v,...", ok = bool, reason = string|nil }.
function H.enumerate(name, shape, dev)
  local t = H.template(name)
  local kv_why = kv_unserved(t, shape)
  local keys = sorted_keys(t.params)
  local out, cur = {}, {}
  local function rec(i)
    if i > #keys then
      local p = {}
      for k, v in pairs(cur) do p[k] = v end
      local ok, reason
      if kv_why then ok, reason = false, kv_why else ok, reason = t.valid(p, shape, dev) end
      local canon = {}
      for _, k in ipairs(keys) do canon[#canon + 1] = k .. "=" .. tostring(p[k]) end
      out[#out + 1] = { canon = table.concat(canon, ","), ok = ok and true or false,
                        reason = (not ok) and tostring(reason or "rejected") or nil }
      return
    end
    for _, v in ipairs(t.params[keys[i]]) do
      cur[keys[i]] = v
      rec(i + 1)
    end
  end
  rec(1)
  return out
end

-- "block_m=64,warps=4" -> { block_m = 64, warps = 4 }, checked against the template's space.
local function parse_params(t, text)
  local p = {}
  for item in string.gmatch(text, "[^,]+") do
    local k, v = string.match(item, "^%s*([%w_]+)%s*=%s*(.-)%s*$")
    if not k then error("bad parameter '" .. item .. "' (want name=value)", 0) end
    if not t.params[k] then
      error(t.name .. " has no parameter '" .. k .. "' (its parameters: " .. table.concat(sorted_keys(t.params), ", ") .. ")", 0)
    end
    p[k] = math.tointeger(tonumber(v)) or tonumber(v) or (v == "true" and true) or (v ~= "false" and v)
  end
  for _, k in ipairs(sorted_keys(t.params)) do
    if p[k] == nil then p[k] = t.params[k][1] end   -- unnamed parameters take their first value
  end
  return p
end

-- Where this file's errors say they are.
local HOST = "generator/host.lua:"

-- What launch() and emit() may return: P.launch's fields, and emit()'s source.
local LAUNCH_FIELDS = { entry = true, grid = true, block = true, smem = true, target = true, cluster = true,
                        nonportable_cluster = true, workspace = true, args = true }

-- One variant for a shape: returns canon, source (nil from launch()), the launch table and the
-- template's version. A variant that valid() rejects is an error here (the caller asked for it by
-- name).
local function variant(name, params_text, shape, dev, with_source)
  local t = H.template(name)
  local p = parse_params(t, params_text)
  local ok, reason
  local kv_why = kv_unserved(t, shape)
  if kv_why then ok, reason = false, kv_why else ok, reason = t.valid(p, shape, dev) end
  if not ok then
    error(name .. (params_text ~= "" and " " .. params_text or "") .. " is not valid here: " .. tostring(reason), 0)
  end
  local fn = with_source and "emit" or "launch"
  local ok, e = pcall(t[fn], p, shape, dev)
  if not ok then
    -- P.launch reports the line that called it; when the template tail-called it (return
    -- P.launch(...)) that frame is gone and the message has no line, or this file's: name the
    -- template's function instead.
    if type(e) == "string" then
      if string.sub(e, 1, #HOST) == HOST then e = string.gsub(string.sub(e, #HOST + 1), "^%d+: ", "", 1) end
      if not string.match(e, "^[^\n:]+:%d+:") then e = H.where(t[fn]) .. ": " .. e end
    end
    error(e, 0)
  end
  if not P.is_launch(e) then
    error(name .. ": " .. fn .. "() must return P.launch(dev, { ... }) (see templates/prelude.lua), got " ..
          type(e), 0)
  end
  for k in pairs(e) do
    if not LAUNCH_FIELDS[k] and not (fn == "emit" and k == "source") then
      error(name .. ": " .. fn .. "() returned a launch table with an unknown field '" .. tostring(k) .. "'", 0)
    end
  end
  if fn == "emit" and type(e.source) ~= "string" then
    error(name .. ": emit() must set the source (a string) of the table launch() returns", 0)
  end
  local keys = sorted_keys(t.params)
  local canon = {}
  for _, k in ipairs(keys) do canon[#canon + 1] = k .. "=" .. tostring(p[k]) end
  return table.concat(canon, ","), fn == "emit" and e.source or nil, e, t.version
end

function H.emit(name, params_text, shape, dev)
  return variant(name, params_text, shape, dev, true)
end

-- The same without the source (nil in its place), from the template's launch().
function H.launch(name, params_text, shape, dev)
  return variant(name, params_text, shape, dev, false)
end

-- What a family says of itself: tuned (boolean), default_rank and decoding_rows (0 when absent).
function H.info(name)
  local t = H.template(name)
  local function int(k)
    local v = t[k]
    if v == nil then return 0 end
    if math.type(v) ~= "integer" or v < 1 then error(name .. ": " .. k .. " must be a positive integer, got " .. tostring(v), 0) end
    return v
  end
  if t.tuned ~= nil and type(t.tuned) ~= "boolean" then error(name .. ": tuned must be a boolean", 0) end
  return t.tuned ~= false, int("default_rank"), int("decoding_rows")
end

-- The built-in default of a family for a shape: the template's default(shape, dev) when it has
-- one, else its first valid choice. default() may return false for a shape the family does not
-- serve at all: then nothing is searched (the runtime asks this for every new untuned shape).
-- Returns the canonical text, or nil and why when nothing is valid (the reason of the first choice
-- refused: the runtime's error when no family serves a call).
local function refusal(name, shape, dev)
  for _, c in ipairs(H.enumerate(name, shape, dev)) do
    if not c.ok and c.reason then return c.reason end
  end
  return "no valid configuration for this problem"
end

function H.default(name, shape, dev)
  local t = H.template(name)
  local kv_why = kv_unserved(t, shape)
  if kv_why then return nil, kv_why end
  if t.default then
    local p = t.default(shape, dev)
    if p == false then return nil, refusal(name, shape, dev) end
    if p then
      local keys, canon = sorted_keys(t.params), {}
      for _, k in ipairs(keys) do canon[#canon + 1] = k .. "=" .. tostring(p[k] == nil and t.params[k][1] or p[k]) end
      local text = table.concat(canon, ",")
      local full = {}
      for _, k in ipairs(keys) do full[k] = p[k] == nil and t.params[k][1] or p[k] end
      if t.valid(full, shape, dev) then return text end
    end
  end
  for _, c in ipairs(H.enumerate(name, shape, dev)) do
    if c.ok then return c.canon end
  end
  return nil, refusal(name, shape, dev)
end

---------------------------------------------------------------------------------------------------
-- Shapes files: a chunk returning a list of problems, built with shape{} and sweep{}.

local FIELDS = { batch = "integer", heads_q = "integer", heads_kv = "integer", seqlen = "integer",
                 seqlen_q = "integer", seqlen_k = "integer", head_dim = "integer", dtype = "string",
                 causal = "boolean", window = "boolean", softcap = "boolean", varlen = "boolean",
                 heads = "integer", page_size = "integer", kv_cache = "boolean", append = "boolean" }
local LIMIT = { batch = 65535, heads_q = 65535, heads_kv = 65535, seqlen_q = 1 << 22, seqlen_k = 1 << 22 }
-- A suite larger than this is a mistake (a sweep over too many values), not a tuning job.
local MAX_PROBLEMS = 100000

-- Checks one problem table and returns its normalised copy; errors carry no position (the
-- callers add the line of the shape{} or sweep{} that was written).
local function normalise(s)
  local level = 0
  if type(s) ~= "table" then error("a shape must be a table, got " .. type(s), level) end
  for k, v in pairs(s) do
    if FIELDS[k] == nil then error("unknown field '" .. tostring(k) .. "'", level) end
    local want = FIELDS[k]
    local got = (want == "integer") and math.type(v) or type(v)
    if want == "integer" and got ~= "integer" then
      if math.type(v) == "float" and v == math.floor(v) then v = math.tointeger(v); s[k] = v
      else error("field '" .. k .. "' must be an integer, got " .. type(v) .. " " .. tostring(v), level) end
    elseif want ~= "integer" and got ~= want then
      error("field '" .. k .. "' must be a " .. want .. ", got " .. type(v), level)
    end
  end
  local p = { batch = s.batch, heads_q = s.heads_q or s.heads, heads_kv = s.heads_kv,
              seqlen_q = s.seqlen_q or s.seqlen, seqlen_k = s.seqlen_k or s.seqlen,
              head_dim = s.head_dim, dtype = s.dtype, causal = s.causal or false,
              window = s.window or false, softcap = s.softcap or false, varlen = s.varlen or false,
              page_size = s.page_size, kv_cache = s.kv_cache or false, append = s.append or false }
  for _, k in ipairs({ "batch", "heads_q", "seqlen_q", "head_dim", "dtype" }) do
    if p[k] == nil then error("missing field '" .. k .. "'", level) end
  end
  p.heads_kv = p.heads_kv or p.heads_q
  p.seqlen_k = p.seqlen_k or p.seqlen_q
  for _, k in ipairs({ "batch", "heads_q", "heads_kv", "seqlen_q", "seqlen_k", "head_dim" }) do
    if p[k] <= 0 then error("field '" .. k .. "' must be positive, got " .. p[k], level) end
    if LIMIT[k] and p[k] > LIMIT[k] then
      error("field '" .. k .. "' = " .. p[k] .. " is absurd (limit " .. LIMIT[k] .. ")", level)
    end
  end
  if p.head_dim % 8 ~= 0 then error("head_dim " .. p.head_dim .. " is not a multiple of 8", level) end
  if p.head_dim > 256 then error("head_dim " .. p.head_dim .. " is above 256", level) end
  if p.heads_q % p.heads_kv ~= 0 then
    error("heads_q " .. p.heads_q .. " is not a multiple of heads_kv " .. p.heads_kv, level)
  end
  if p.page_size and (p.page_size < 8 or p.page_size > 256 or p.page_size % 8 ~= 0) then
    error("page_size " .. p.page_size .. " is not a multiple of 8 from 8 to 256 (keys per page)", level)
  end
  if p.append and not p.kv_cache then
    error("append needs kv_cache: the rows are written at each sequence's cache_seqlens", level)
  end
  if p.varlen and (p.page_size or p.kv_cache) then
    error("varlen with a KV cache: the cache gives each sequence its length through cache_seqlens", level)
  end
  if p.dtype ~= "fp16" and p.dtype ~= "bf16" then
    error("unknown dtype '" .. p.dtype .. "' (want \"fp16\" or \"bf16\")", level)
  end
  local elems = p.batch * p.heads_q * math.max(p.seqlen_q, p.seqlen_k) * p.head_dim
  if elems > (1 << 36) then
    error(string.format("shape is absurd: %d x %d x %d x %d elements per tensor (limit 2^36)",
      p.batch, p.heads_q, math.max(p.seqlen_q, p.seqlen_k), p.head_dim), level)
  end
  return p
end

-- Raises err at the caller of the function that calls this: the line in the user's file.
local function rethrow(ok, r)
  if ok then return r end
  error(r, 3)
end

-- The environment a shapes file runs in: safe libraries plus shape{} and sweep{}.
function H.shapes_env(base)
  local env = {}
  for k, v in pairs(base) do env[k] = v end
  -- shape{ ... }: one problem, checked where it is written.
  env.shape = function(s)
    local p = rethrow(pcall(normalise, s))   -- not a tail call: rethrow counts this frame
    return { p }
  end
  -- sweep{ field = value or {values}, ... }: the cartesian product, in sorted field order.
  env.sweep = function(s)
    local list = rethrow(pcall(function()
      if type(s) ~= "table" then error("sweep{} takes a table", 0) end
      local count = 1
      for _, v in pairs(s) do count = count * (type(v) == "table" and #v or 1) end
      if count > MAX_PROBLEMS then
        error(string.format("too many problems: this sweep makes %.0f; the limit is %d", count, MAX_PROBLEMS), 0)
      end
      local keys, out, cur = sorted_keys(s), {}, {}
      local function rec(i)
        if i > #keys then
          local c = {}
          for k, v in pairs(cur) do c[k] = v end
          out[#out + 1] = normalise(c)
          return
        end
        local v = s[keys[i]]
        if type(v) ~= "table" then v = { v } end
        if #v == 0 then error("sweep field '" .. keys[i] .. "' has no values", 0) end
        for _, x in ipairs(v) do cur[keys[i]] = x; rec(i + 1) end
        cur[keys[i]] = nil
      end
      rec(1)
      return out
    end))
    return list
  end
  return env
end

-- Flattens what a shapes chunk returned (problems, or lists of them from shape{}/sweep{}) and
-- checks plain tables too (without a line: only shape{} and sweep{} know where they were written).
function H.shapes_list(chunkname, ret)
  if type(ret) ~= "table" then error(chunkname .. ": must return a list of shapes, got " .. type(ret), 0) end
  local out = {}
  local function add(x, where)
    if type(x) ~= "table" then error(chunkname .. ": " .. where .. " is a " .. type(x) .. ", not a shape", 0) end
    if x.head_dim ~= nil or x.batch ~= nil or x.dtype ~= nil then
      local ok, p = pcall(normalise, x)
      if not ok then error(chunkname .. ": " .. where .. ": " .. p, 0) end
      out[#out + 1] = p
    else
      for i, y in ipairs(x) do add(y, where .. "[" .. i .. "]") end
    end
  end
  for i, x in ipairs(ret) do
    add(x, "shape " .. i)
    if #out > MAX_PROBLEMS then
      error(string.format("%s: too many problems: more than %d", chunkname, MAX_PROBLEMS), 0)
    end
  end
  if #out == 0 then error(chunkname .. ": the list of shapes is empty", 0) end
  return out
end

return H
