"""Writes to the voice library need more than a token: a scope of their own.

With JWT authentication on (edge.security) any valid token may synthesise; making,
changing or deleting voices and RVC voices (``WRITE_METHODS``) also needs the scope
``EdgeJwt.write_scope`` in the token: in its ``scope`` claim (a space-separated
string, RFC 8693) or its ``scp`` claim (a list, or a string). A Lua filter right
after jwt_authn reads the verified claims jwt_authn left in the request's dynamic
metadata and refuses a write without the scope before its body is read:

    403 PERMISSION_DENIED  voice library writes need a token with the scope 'voices:write'

(gRPC: status PERMISSION_DENIED.) A write is known by its gRPC path or by the REST
bindings of those methods in gateway.proto (method and path, a ``{name}`` one
segment), with or without a trailing slash or a query. Reads (GET /v1/voices,
ListRvcVoices) stay open to every valid token.
"""

from __future__ import annotations

import re

from google.api import annotations_pb2
from google.protobuf.descriptor import ServiceDescriptor
from voice.v1 import gateway_pb2

from edge import errors
from edge.envoy_types import lua_http_filter
from edge.security import JWT_FILTER, JWT_PAYLOAD_KEY

WRITE_SCOPE_FILTER = "voice.edge_write_scope"
WRITE_METHODS = ("CreateVoice", "UpdateVoice", "DeleteVoice", "UploadRvcVoice", "DeleteRvcVoice")
GATEWAY = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"]

WRITE_SCOPE_LUA = r'''
local function is_write(method, path)
  local bare = path:match("^[^?]*")
  if GRPC_WRITES[bare] then return true end
  for _, rule in ipairs(REST_WRITES) do
    if method == rule[1] and bare:match(rule[2]) then return true end
  end
  return false
end

local function names(claim)
  if type(claim) == "string" then
    for word in claim:gmatch("%S+") do
      if word == SCOPE then return true end
    end
  elseif type(claim) == "table" then
    for _, word in pairs(claim) do
      if word == SCOPE then return true end
    end
  end
  return false
end

local function has_scope(handle)
  local verified = handle:streamInfo():dynamicMetadata():get(JWT_FILTER)
  local payload = verified and verified[PAYLOAD_KEY]
  if type(payload) ~= "table" then return false end
  return names(payload["scope"]) or names(payload["scp"])
end

function envoy_on_request(handle)
  local headers = handle:headers()
  if not is_write(headers:get(":method") or "", headers:get(":path") or "") then return end
  if has_scope(handle) then return end
  local message = "voice library writes need a token with the scope '" .. SCOPE .. "'"
  if is_grpc(headers:get("content-type")) then
    handle:respond({[":status"] = "200", ["content-type"] = "application/grpc",
                    ["grpc-status"] = "7", ["grpc-message"] = message}, "")
  else
    handle:respond({[":status"] = "403", ["content-type"] = "text/plain"}, message)
  end
end
'''


def lua_pattern(template: str) -> str:
    """A REST path template as an anchored Lua pattern: each ``{field}`` one segment,
    every other character literal, a trailing slash allowed."""
    parts = re.split(r"\{[^}]*\}", template)
    literal = [re.sub(r"([^A-Za-z0-9])", r"%\1", part) for part in parts]
    return "^" + "[^/]+".join(literal) + "/?$"


def rest_writes(service: ServiceDescriptor = GATEWAY) -> list[tuple[str, str]]:
    """(HTTP method, Lua pattern) of every REST binding of WRITE_METHODS."""
    rules = []
    for name in WRITE_METHODS:
        rule = service.methods_by_name[name].GetOptions().Extensions[annotations_pb2.http]
        for binding in (rule, *rule.additional_bindings):
            verb = binding.WhichOneof("pattern")
            rules.append((verb.upper(), lua_pattern(getattr(binding, verb))))
    return rules


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_scope_lua(scope: str, service: ServiceDescriptor = GATEWAY) -> str:
    """The filter's source: the scope, the writes, where the claims are, then WRITE_SCOPE_LUA."""
    grpc = ", ".join(f'[{_lua_string(f"/{service.full_name}/{name}")}] = true'
                     for name in WRITE_METHODS)
    rest = ", ".join(f"{{{_lua_string(verb)}, {_lua_string(pattern)}}}"
                     for verb, pattern in rest_writes(service))
    return (
        f"local SCOPE = {_lua_string(scope)}\n"
        f"local JWT_FILTER = {_lua_string(JWT_FILTER)}\n"
        f"local PAYLOAD_KEY = {_lua_string(JWT_PAYLOAD_KEY)}\n"
        f"local GRPC_WRITES = {{{grpc}}}\n"
        f"local REST_WRITES = {{{rest}}}\n" + errors.IS_GRPC_LUA + WRITE_SCOPE_LUA
    )


def lua_filter(scope: str) -> dict:
    """The HTTP filter, right after jwt_authn, that refuses a write without ``scope``."""
    return lua_http_filter(WRITE_SCOPE_FILTER, write_scope_lua(scope))
