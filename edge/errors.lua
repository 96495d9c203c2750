local ESCAPED = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}
local UNESCAPED = {
  ['"'] = '"', ['\\'] = '\\', ['/'] = '/', b = '\b', f = '\f', n = '\n', r = '\r', t = '\t',
}
local REPLACEMENT = '\239\191\189'  -- U+FFFD

-- s with every byte that is not part of a well-formed UTF-8 sequence replaced.
local function valid_utf8(s)
  local out, start, i, n = {}, 1, 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = 0
    if c < 0x80 then len = 1
    elseif c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then len = 3
    elseif c >= 0xF0 and c <= 0xF4 then len = 4 end
    local ok = len > 0 and i + len - 1 <= n
    if ok and len > 1 then
      local lo, hi = 0x80, 0xBF
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F
      elseif c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
      local b = s:byte(i + 1)
      ok = b >= lo and b <= hi
      for k = 2, len - 1 do
        b = s:byte(i + k)
        ok = ok and b >= 0x80 and b <= 0xBF
      end
    end
    if ok then
      i = i + len
    else
      out[#out + 1] = s:sub(start, i - 1)
      out[#out + 1] = REPLACEMENT
      i = i + 1
      start = i
    end
  end
  out[#out + 1] = s:sub(start)
  return table.concat(out)
end

-- The contents of a JSON string holding s.
local function escape(s)
  if s:find('[\128-\255]') then s = valid_utf8(s) end
  return (s:gsub('[%z\1-\31"\\]', function(c)
    return ESCAPED[c] or string.format('\\u%04x', c:byte())
  end))
end

local function utf8_char(cp)
  local floor = math.floor
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then return string.char(0xC0 + floor(cp / 0x40), 0x80 + cp % 0x40) end
  if cp < 0x10000 then
    return string.char(0xE0 + floor(cp / 0x1000), 0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  end
  return string.char(0xF0 + floor(cp / 0x40000), 0x80 + floor(cp / 0x1000) % 0x40,
                     0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
end

local function skip_space(s, i)
  return s:find('[^ \t\r\n]', i) or #s + 1
end

-- The JSON string starting at s[i] (a quote), decoded, and the index after it.
local function read_string(s, i)
  local parts = {}
  i = i + 1
  while true do
    local j = s:find('["\\]', i)
    if j == nil then return nil end
    parts[#parts + 1] = s:sub(i, j - 1)
    if s:byte(j) == 34 then return table.concat(parts), j + 1 end
    local e = s:sub(j + 1, j + 1)
    if e == 'u' then
      local cp = s:match('^%x%x%x%x', j + 2)
      if cp == nil then return nil end
      cp = tonumber(cp, 16)
      i = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF and s:sub(i, i + 1) == '\\u' then
        local low = tonumber(s:match('^%x%x%x%x', i + 2) or '', 16)
        if low ~= nil and low >= 0xDC00 and low <= 0xDFFF then
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (low - 0xDC00)
          i = i + 6
        end
      end
      if cp >= 0xD800 and cp <= 0xDFFF then cp = 0xFFFD end
      parts[#parts + 1] = utf8_char(cp)
    else
      local c = UNESCAPED[e]
      if c == nil then return nil end
      parts[#parts + 1] = c
      i = j + 2
    end
  end
end

-- The index after the JSON value starting at s[i].
local function skip_value(s, i)
  local c = s:sub(i, i)
  if c == '"' then
    local _, after = read_string(s, i)
    return after
  end
  if c == '{' or c == '[' then
    local depth = 0
    while true do
      i = s:find('[][{}"]', i)
      if i == nil then return nil end
      c = s:sub(i, i)
      if c == '"' then
        local _, after = read_string(s, i)
        if after == nil then return nil end
        i = after
      else
        depth = depth + ((c == '{' or c == '[') and 1 or -1)
        i = i + 1
        if depth == 0 then return i end
      end
    end
  end
  return s:match('^[%w.+-]+()', i)
end

-- The transcoder's rejection of a uint64 (the only one: a sampling seed) in the
-- services' words for a seed past 0..2^64-1 (services/common/seeds.py); other
-- messages as they are.
local function uint64_range(message)
  local field, value = message:match('^%s*([%w_.]+): invalid value (.-) for type TYPE_UINT64%s*$')
  if field == nil then return message end
  local bare = value:match('^"(.*)"$') or value
  if bare:match('^%-?%d+$') or bare:match('^%-?%d+%.?%d*[eE][+-]?%d+$') then
    return field .. ' ' .. bare .. ' is outside 0..2^64-1'
  end
  return message
end

-- code and message of a google.rpc.Status as the transcoder prints it, or nil.
local function parse_status(s)
  local i = skip_space(s, 1)
  if s:sub(i, i) ~= '{' then return nil end
  i = skip_space(s, i + 1)
  local code, message = nil, ''
  while s:sub(i, i) == '"' do
    local key
    key, i = read_string(s, i)
    if key == nil then return nil end
    i = skip_space(s, i)
    if s:sub(i, i) ~= ':' then return nil end
    i = skip_space(s, i + 1)
    if key == 'code' then
      local digits, after = s:match('^(%d+)()', i)
      if digits == nil then return nil end
      code, i = tonumber(digits), after
    elseif key == 'message' then
      if s:sub(i, i) ~= '"' then return nil end
      message, i = read_string(s, i)
      if message == nil then return nil end
    else
      i = skip_value(s, i)
      if i == nil then return nil end
    end
    i = skip_space(s, i)
    local c = s:sub(i, i)
    if c == '}' then return code, message end
    if c ~= ',' then return nil end
    i = skip_space(s, i + 1)
  end
  return nil
end

function envoy_on_request(handle)
  local headers = handle:headers()
  -- Envoy's test (a gRPC reply for a local reply); application/grpc-web is REST to the
  -- transcoder.
  if is_grpc(headers:get('content-type')) then
    handle:streamInfo():dynamicMetadata():set(ERRORS_FILTER, 'grpc', true)
    return
  end
  -- Before the transcoder: the path is still the REST one.
  local path = (headers:get(':path') or ''):match('^[^?]*')
  if OLD_PATHS[path] then
    handle:streamInfo():dynamicMetadata():set(ERRORS_FILTER, 'old', true)
  end
end

-- The error body out with "detail": message, as FastAPI's clients read it.
local function with_detail(out, message)
  return out:sub(1, -2) .. ',"detail":"' .. escape(message) .. '"}'
end

function envoy_on_response(handle)
  local status = tonumber(handle:headers():get(':status'))
  if status == nil or status < 400 then return end
  local marks = handle:streamInfo():dynamicMetadata():get(ERRORS_FILTER)
  if marks ~= nil and marks.grpc then return end
  -- Waits for the whole body; a handle to the headers taken before would be stale.
  local body = handle:body(true)
  local headers = handle:headers()
  local size = body:length()
  local text = size > 0 and body:getBytes(0, size) or ''
  local old = marks ~= nil and marks.old
  if text:sub(1, 10) == '{"error":{' then
    -- Already in the shape (Envoy's own replies): only the old paths add detail.
    if not old then return end
    local shaped = text:match('^(.-)%s*$')
    -- An error object ends '"}}'; with detail after it the body ends '"}' (this filter ran
    -- on it already, in the internal listener behind edge.expect_continue).
    if shaped:sub(-2) ~= '}}' then return end
    local _, message = parse_status(shaped:sub(10))
    if message == nil then return end
    local out = with_detail(shaped, message)
    body:setBytes(out)
    headers:replace('content-length', tostring(#out))
    return
  end
  local code, message
  local kind = (headers:get('content-type') or ''):lower()
  if kind:find('application/json', 1, true) == 1 then
    code, message = parse_status(text)
  end
  local name
  if code ~= nil then
    name = GRPC_NAMES[code] or 'UNKNOWN'
  else
    name, message = HTTP_NAMES[status] or 'UNKNOWN', uint64_range(text)
  end
  local out = '{"error":{"code":' .. status .. ',"message":"' .. escape(message)
    .. '","status":"' .. name .. '"}}'
  if old then out = with_detail(out, message) end
  body:setBytes(out)
  headers:replace('content-type', 'application/json')
  headers:replace('content-length', tostring(#out))
end
