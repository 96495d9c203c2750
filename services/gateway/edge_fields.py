"""Unknown JSON fields on the transcoded REST routes: a 400 naming the field, not silence.

Envoy's gRPC-JSON transcoder drops the JSON fields its request message lacks (the
proto3 JSON mapping allows it, and the transcoder has no option against it), so
``{"text": "hi", "skip_rcv": true}`` would speak, converted, with no word about
the misspelt ``skip_rvc``. A Lua filter ahead of the transcoder reads the body of
each REST call to a route with a JSON body (POST /v1/synthesize, /v1/tts, ...)
and refuses the first field that the request message, or a message inside it,
does not have:

    400 INVALID_ARGUMENT  unknown field 'skip_rcv' (voice.v1.SynthesizeRequest has no such field)

The fields come from the compiled protos: each field's proto name and its JSON
(lowerCamel) name, the two the transcoder accepts. Map fields and
google.protobuf types (Struct, Value, ...) take any keys. A body the filter
cannot follow (not JSON, nested too deeply) goes on to the transcoder, whose
own 400 names the problem; so do gRPC calls and the google.api.HttpBody routes,
whose handlers read their bodies themselves (services.gateway.openai_speech).

Reading a body whole needs a buffer as large as the transcoder's limit. Envoy
sizes a request's buffer by the route it first matches, and a REST path matches
no gateway route until the transcoder has rewritten it: ``body_routes`` gives
each JSON path a route of its own, with that limit, for the request's way in.
"""

from __future__ import annotations

from google.api import annotations_pb2
from google.protobuf.descriptor import Descriptor, ServiceDescriptor
from voice.v1 import gateway_pb2

_T = "type.googleapis.com/envoy.extensions."
FIELDS_FILTER = "voice.edge_fields"
_FREE_FORM = "google.protobuf."  # well-known types: Struct and Value take any keys

# ROUTES (path -> message) and MESSAGES (message -> {key -> nested message, or ""
# for a value whose keys are not checked}) are defined ahead of it.
EDGE_FIELDS_LUA = r'''
local function skip_space(s, i)
  return s:match("^[ \t\r\n]*()", i)
end

-- The index after the string that starts at i, or nil if it never ends.
local function skip_string(s, i)
  local j = i + 1
  while true do
    local k = s:find('["\\]', j)
    if not k then return nil end
    if s:byte(k) == 34 then return k + 1 end  -- '"'; else a backslash escapes the next byte
    j = k + 2
  end
end

-- The index after the JSON value at i; nil where it is not JSON this follows.
-- An unknown key raises {key = path, message = name}.
local check_value

local function check_object(s, i, message, path)
  local fields = MESSAGES[message]
  i = skip_space(s, i + 1)
  if s:byte(i) == 125 then return i + 1 end  -- '}'
  while true do
    if s:byte(i) ~= 34 then return nil end
    local after = skip_string(s, i)
    if not after then return nil end
    local key = s:sub(i + 1, after - 2)
    local nested = ""
    -- A key with escapes is left to the transcoder, which decodes them.
    if fields and not key:find("\\", 1, true) then
      nested = fields[key]
      if nested == nil then
        error({key = path .. key, message = message}, 0)
      end
    end
    i = skip_space(s, after)
    if s:byte(i) ~= 58 then return nil end  -- ':'
    i = check_value(s, skip_space(s, i + 1), nested, path .. key .. ".")
    if not i then return nil end
    i = skip_space(s, i)
    local c = s:byte(i)
    if c == 125 then return i + 1 end
    if c ~= 44 then return nil end  -- ','
    i = skip_space(s, i + 1)
  end
end

check_value = function(s, i, message, path)
  local c = s:byte(i)
  if c == 123 then return check_object(s, i, message, path) end  -- '{'
  if c == 34 then return skip_string(s, i) end
  if c == 91 then  -- '[': a repeated field's items are all of its message
    i = skip_space(s, i + 1)
    if s:byte(i) == 93 then return i + 1 end
    while true do
      i = check_value(s, i, message, path)
      if not i then return nil end
      i = skip_space(s, i)
      c = s:byte(i)
      if c == 93 then return i + 1 end
      if c ~= 44 then return nil end
      i = skip_space(s, i + 1)
    end
  end
  return s:match("^[%w%.%+%-]+()", i)  -- a number, true, false or null
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local content_type = headers:get("content-type") or ""
  if headers:get(":method") ~= "POST" or content_type:find("application/grpc", 1, true) == 1 then
    return
  end
  local path = (headers:get(":path") or ""):match("^[^?]*")
  local message = ROUTES[path]
  if not message then return end
  local body = handle:body()
  if not body or body:length() == 0 then return end
  local s = body:getBytes(0, body:length())
  local ok, unknown = pcall(check_value, s, skip_space(s, 1), message, "")
  if not ok and type(unknown) == "table" then
    handle:respond(
      {[":status"] = "400", ["content-type"] = "text/plain"},
      "unknown field '" .. unknown.key:sub(1, 200) .. "' (" .. unknown.message
        .. " has no such field)")
  end
end
'''


def body_routes(action: dict, max_body_bytes: int,
                service: ServiceDescriptor = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"],
                ) -> list[dict]:
    """A route for each JSON path, REST POSTs only, whose buffer takes ``max_body_bytes``.

    ``action`` is the gateway routes' own, though the transcoder rewrites the path and
    the request is routed again: a route must have an action for its buffer limit to
    apply (a direct response, such as the 404, keeps Envoy's default of 1 MiB).
    """
    rest_post = [
        {"name": ":method", "string_match": {"exact": "POST"}},
        {"name": "content-type", "string_match": {"prefix": "application/grpc"},
         "invert_match": True, "treat_missing_header_as_empty": True},
    ]
    return [
        {
            "match": {"path": path, "headers": rest_post},
            "route": action,
            "request_body_buffer_limit": max_body_bytes,
        }
        for path in sorted(json_routes(service))
    ]


def json_routes(service: ServiceDescriptor) -> dict[str, Descriptor]:
    """POST path -> request message, for each route whose whole body is that message as JSON."""
    routes = {}
    for method in service.methods:
        if method.input_type.full_name == "google.api.HttpBody":
            continue
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        for binding in (rule, *rule.additional_bindings):
            if binding.post and binding.body == "*":
                routes[binding.post] = method.input_type
    return routes


def message_fields(roots: list[Descriptor]) -> dict[str, dict[str, str]]:
    """message -> {JSON key -> the message its value must be, or "" when not checked}."""
    messages: dict[str, dict[str, str]] = {}
    pending = list(roots)
    while pending:
        message = pending.pop()
        if message.full_name in messages:
            continue
        fields = messages[message.full_name] = {}
        for field in message.fields:
            nested = field.message_type
            checked = (nested is not None and not nested.GetOptions().map_entry
                       and not nested.full_name.startswith(_FREE_FORM))
            fields[field.name] = fields[field.json_name] = nested.full_name if checked else ""
            if checked:
                pending.append(nested)
    return messages


def _lua_table(items: dict) -> str:
    # Proto names are identifiers and dotted paths: nothing in them needs escaping.
    return "{" + ", ".join(
        f'["{key}"] = ' + (_lua_table(value) if isinstance(value, dict) else f'"{value}"')
        for key, value in sorted(items.items())
    ) + "}"


def fields_lua(service: ServiceDescriptor = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"]
               ) -> str:
    """The Lua filter's source: the routes and messages of ``service``, then EDGE_FIELDS_LUA."""
    routes = json_routes(service)
    messages = message_fields(list(routes.values()))
    return (
        f"local ROUTES = {_lua_table({p: m.full_name for p, m in routes.items()})}\n"
        f"local MESSAGES = {_lua_table(messages)}\n" + EDGE_FIELDS_LUA
    )


def lua_filter() -> dict:
    """The HTTP filter that refuses unknown fields; it goes just ahead of the transcoder."""
    return {
        "name": FIELDS_FILTER,
        "typed_config": {
            "@type": _T + "filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": fields_lua()},
        },
    }
