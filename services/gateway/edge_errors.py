"""One JSON shape for every error the REST edge returns.

Every error a REST client gets has one JSON shape, whatever produced it::

    {"error": {"code": 400, "message": "text is empty", "status": "INVALID_ARGUMENT"}}

``code`` is the HTTP status, ``status`` the gRPC code name, ``message`` the text.
Two pieces of the Envoy configuration (services.gateway.envoy) make it so:

* A Lua filter (EDGE_ERRORS_LUA) ahead of the transcoder. Encoding runs the
  filters in reverse, so it sees responses after the transcoder has turned a
  gRPC status into ``{"code": 3, "message": ..., "details": []}`` (unary and
  server-streaming calls that fail before their first message, JSON and
  google.api.HttpBody methods alike) and rewrites that, keeping the gRPC code's
  name (details are left out). Plain-text errors (the transcoder's rejections of
  malformed JSON or of a body over its limit, Envoy's "upstream connect error",
  "upstream request timeout") get the name of their HTTP status, from
  HTTP_STATUS_NAMES. Only responses of status 400 and above are buffered:
  successful streams pass chunk by chunk, untouched. Requests that came in as
  gRPC are left alone.
* local_reply_config: Envoy's own replies (no route, the HTTP codec's
  rejections, upstream failures) to requests that are not gRPC at the time of
  the reply get the shape from Envoy's JSON formatter, before any filter sees
  them. These replies go through the Lua filter's response path too, which
  passes a body already in the shape on; a transcoded request carries the gRPC
  content type by then, so its local replies are left plain and the Lua filter
  shapes them. A gRPC request's local reply must stay plain text: Envoy puts the
  body in grpc-message.

The old server's routes (OLD_SERVER_PATHS) answer errors with one more member,
``detail``, the message again: its clients read FastAPI's ``{"detail": "..."}``.
The Lua filter marks a request to one of them on its way in and adds the member
to whatever error body it then sends, its own or one already in the shape (once:
a request that expects 100-continue passes the filter twice, services.gateway.edge_limits).
A request is gRPC when Envoy takes it for one: content type application/grpc or
application/grpc+... (GRPC_CONTENT_TYPE); application/grpc-web is REST to the transcoder.

The transcoder gives a gRPC code the HTTP status Google's mapping does
(INVALID_ARGUMENT, FAILED_PRECONDITION and OUT_OF_RANGE 400, UNAUTHENTICATED 401,
PERMISSION_DENIED 403, NOT_FOUND 404, ALREADY_EXISTS and ABORTED 409,
RESOURCE_EXHAUSTED 429, CANCELLED 499, UNKNOWN, INTERNAL and DATA_LOSS 500,
UNIMPLEMENTED 501, UNAVAILABLE 503, DEADLINE_EXCEEDED 504), and the edge keeps it.
"""

from __future__ import annotations

_T = "type.googleapis.com/envoy.extensions."

# gRPC status codes, by number.
GRPC_CODE_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
)
# The gRPC code named for an error that carries none (Envoy's own replies, the
# transcoder's rejections), by HTTP status: a code the transcoder maps to that
# status (the general one where several share it: 400, 409, 500). A body over the
# limit (413) is RESOURCE_EXHAUSTED, as a gRPC client hears for a message over the
# gateway's limit. Any other status from 400 is UNKNOWN.
HTTP_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    411: "INVALID_ARGUMENT",
    413: "RESOURCE_EXHAUSTED",
    414: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    431: "INVALID_ARGUMENT",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
ERRORS_FILTER = "voice.edge_errors"
# Content types Envoy treats as gRPC (its local replies, the transcoder): application/grpc-web
# and the like are not, so their requests are REST.
GRPC_CONTENT_TYPE = r"application/grpc(\+.*)?"
# The same test in Lua, for every Lua filter that tells gRPC from REST (this one,
# services.gateway.edge_fields, edge_timeout, edge_paths): a chunk's first lines.
IS_GRPC_LUA = r'''
-- gRPC as Envoy tells it (its local replies, the transcoder, a route's grpc match): content
-- type application/grpc or application/grpc+...; application/grpc-web, any other type and
-- none are REST.
local function is_grpc(content_type)
  return content_type == "application/grpc"
    or (content_type ~= nil and content_type:sub(1, 17) == "application/grpc+")
end
'''
# The old single-process server's REST paths (the unversioned routes of voice.v1.Gateway).
OLD_SERVER_PATHS = (
    "/synthesize", "/synthesize/stream", "/synthesize/sse", "/tts", "/rvc",
    "/health", "/status", "/config", "/config/reference-audio",
)

# Rewrites error responses to REST requests as {"error": {code, message, status}}
# (plus "detail" on the old server's paths). GRPC_NAMES, HTTP_NAMES and OLD_PATHS
# are defined ahead of it (see errors_lua).
EDGE_ERRORS_LUA = r'''
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
    -- on it already, in the internal listener behind services.gateway.edge_limits).
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
'''


def errors_lua() -> str:
    """The Lua filter's source: the names of codes and statuses, the old paths, then EDGE_ERRORS_LUA."""
    grpc = ", ".join(f"[{n}] = '{name}'" for n, name in enumerate(GRPC_CODE_NAMES))
    http = ", ".join(f"[{n}] = '{name}'" for n, name in HTTP_STATUS_NAMES.items())
    # With a trailing slash too: the transcoder maps those paths as well.
    old = ", ".join(f"['{path}'] = true, ['{path}/'] = true" for path in OLD_SERVER_PATHS)
    return (
        f"local ERRORS_FILTER = '{ERRORS_FILTER}'\n"
        f"local GRPC_NAMES = {{{grpc}}}\n"
        f"local HTTP_NAMES = {{{http}}}\n"
        f"local OLD_PATHS = {{{old}}}\n" + IS_GRPC_LUA + EDGE_ERRORS_LUA
    )


def error_format(status: str, message: str = "%LOCAL_REPLY_BODY%") -> dict:
    """A local reply's body in the error shape, naming gRPC code ``status``."""
    return {
        "json_format": {
            "error": {"code": "%RESPONSE_CODE%", "message": message, "status": status}
        },
        "content_type": "application/json",
    }


def is_grpc(content_type: str | None) -> bool:
    """IS_GRPC_LUA's test, in Python (for the unit tests)."""
    return content_type is not None and (
        content_type == "application/grpc" or content_type.startswith("application/grpc+"))


def not_grpc_header() -> dict:
    """A header matcher for a request whose content type is not gRPC, as Envoy tells
    (exactly application/grpc, or application/grpc+...; a missing one is not)."""
    return {
        "name": "content-type",
        "string_match": {"safe_regex": {"regex": GRPC_CONTENT_TYPE}},
        "treat_missing_header_as_empty": True,
        "invert_match": True,
    }


def not_grpc_filter() -> dict:
    """Matches requests whose content type is not gRPC (a missing one is not)."""
    return {"header_filter": {"header": not_grpc_header()}}


def local_reply_config(max_headers_kb: int) -> dict:
    """Envoy's own error replies, in the error shape, unless the request is gRPC.

    One mapper per named HTTP status, then one for any other status from 400
    (UNKNOWN); the first that matches wins. A gRPC request's local reply becomes
    grpc-status and grpc-message, so it must keep its plain text; at the time of
    a reply a transcoded request already carries the gRPC content type and is
    left to the Lua filter. A request with no content type is not gRPC.
    """
    not_grpc = not_grpc_filter()

    def status_is(op: str, value: int) -> dict:
        return {
            "status_code_filter": {
                "comparison": {
                    "op": op,
                    "value": {"default_value": value, "runtime_key": f"edge.error_status_{value}"},
                }
            }
        }

    # The HTTP codec's refusals, and the path normalisation's (a '#' fragment or an
    # encoded NUL in the path), carry no body of their own: the message names the rule.
    malformed = {"or_filter": {"filters": [
        {"response_flag_filter": {"flags": ["DPE"]}},
        {"header_filter": {"header": {
            "name": ":path", "string_match": {"safe_regex": {"regex": ".*(#|%00).*"}}}}},
    ]}}
    mappers = [
        {
            "filter": {"and_filter": {"filters": [status_is("EQ", 431), not_grpc]}},
            "body_format_override": error_format(
                HTTP_STATUS_NAMES[431],
                f"the request's headers, its URL included, exceed {max_headers_kb} KiB"),
        },
        {
            "filter": {"and_filter": {"filters": [status_is("EQ", 400), malformed, not_grpc]}},
            "body_format_override": error_format(
                "INVALID_ARGUMENT", "malformed HTTP request (%RESPONSE_CODE_DETAILS%)"),
        },
    ]
    mappers += [
        {
            "filter": {"and_filter": {"filters": [status_is("EQ", code), not_grpc]}},
            "body_format_override": error_format(name),
        }
        for code, name in HTTP_STATUS_NAMES.items()
    ]
    mappers.append(
        {
            "filter": {"and_filter": {"filters": [status_is("GE", 400), not_grpc]}},
            "body_format_override": error_format("UNKNOWN"),
        }
    )
    return {"mappers": mappers}


def lua_filter() -> dict:
    """The HTTP filter that rewrites error responses; it goes ahead of the transcoder."""
    return {
        "name": ERRORS_FILTER,
        "typed_config": {
            "@type": _T + "filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": errors_lua()},
        },
    }
