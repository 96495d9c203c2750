"""The edge refuses a malformed ``grpc-timeout`` request header.

A REST client bounds a call with ``grpc-timeout`` (edge.render), a gRPC
client's library sends it for every call with a deadline. Its form is gRPC's
(PROTOCOL-HTTP2.md): one to eight ASCII digits, then the unit, one of ``H`` (hours),
``M`` (minutes), ``S`` (seconds), ``m`` (milliseconds), ``u`` (microseconds) or
``n`` (nanoseconds). Any other value (``abc``, ``5``, ``123456789S``, two headers)
is refused at the edge and never reaches a gateway: a REST client gets 400
INVALID_ARGUMENT in the error shape (edge.errors), a gRPC client
INVALID_ARGUMENT; both messages name the header. gRPC is what Envoy takes for it,
content type ``application/grpc`` or ``application/grpc+...``
(edge.errors.IS_GRPC_LUA): an ``application/grpc-web`` request
is REST to the transcoder, and gets the 400.

Why at the edge: grpcio's HPACK decoder remembered a value it failed to parse in
its dynamic table, and every later ``grpc-timeout`` on that HTTP/2 connection that
reused the entry's name failed to parse too (INTERNAL "Error parsing 'grpc-timeout'
metadata"). Envoy carries every client's calls to a gateway over a few shared
connections, so one client's bad header broke deadlines for everyone. The gateways
now also decode without a dynamic table (services.common.server.HPACK_DECODER_TABLE).
"""

from __future__ import annotations

from edge import errors
from edge.envoy_types import lua_http_filter

TIMEOUT_FILTER = "voice.edge_timeout"
HEADER = "grpc-timeout"
UNITS = "HMSmun"
MAX_DIGITS = 8

EDGE_TIMEOUT_LUA = r'''
local function valid(value)
  local digits = value:match("^(%d+)[" .. UNITS .. "]$")
  return digits ~= nil and #digits <= MAX_DIGITS
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local count = headers:getNumValues(HEADER)
  if count == 0 then return end
  local value = headers:getAtIndex(HEADER, 0) or ""
  if count == 1 and valid(value) then return end
  local message = "invalid " .. HEADER .. " header '" .. value:sub(1, 40)
    .. "': want 1 to " .. MAX_DIGITS .. " digits and a unit (H, M, S, m, u or n), as in 500m"
  if count > 1 then message = "more than one " .. HEADER .. " header" end
  -- gRPC as Envoy tells it: an application/grpc-web request is REST to the transcoder,
  -- whose client reads the 400, not a gRPC status.
  if is_grpc(headers:get("content-type")) then
    -- Trailers-only: the gRPC status is in the headers.
    handle:respond({[":status"] = "200", ["content-type"] = "application/grpc",
                    ["grpc-status"] = "3", ["grpc-message"] = message}, "")
  else
    handle:respond({[":status"] = "400", ["content-type"] = "text/plain"}, message)
  end
end
'''


def timeout_lua() -> str:
    """The Lua filter's source: the header, its units and digits, then EDGE_TIMEOUT_LUA."""
    return (
        f'local HEADER = "{HEADER}"\n'
        f'local UNITS = "{UNITS}"\n'
        f"local MAX_DIGITS = {MAX_DIGITS}\n" + errors.IS_GRPC_LUA + EDGE_TIMEOUT_LUA
    )


def valid(value: str) -> bool:
    """What the Lua filter accepts, in Python (for the unit tests)."""
    digits, unit = value[:-1], value[-1:]
    return (unit != "" and unit in UNITS and 1 <= len(digits) <= MAX_DIGITS
            and digits.isascii() and digits.isdigit())


def lua_filter() -> dict:
    """The HTTP filter that refuses a malformed grpc-timeout; it goes after the errors filter,
    whose response path shapes its REST refusals."""
    return lua_http_filter(TIMEOUT_FILTER, timeout_lua())
