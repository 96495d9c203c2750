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
(The limit on the body itself is edge.limits's, on every route.)

The filter and those routes take a request for what the transcoder takes it: the
path with or without a trailing slash (the transcoder maps ``/v1/synthesize/``
to Synthesize, though not ``/v1/synthesize:stream/``: transcoded_paths), and
REST unless its content type is gRPC's as Envoy tells it
(application/grpc or application/grpc+...: ``application/grpc-web`` is
transcoded, so it is checked). Otherwise such a request reached the gateway
unchecked, of any size.

Query parameters are the other way into a message: the transcoder binds
``?text=hi`` or ``?sampling.seed=7`` to the request message's field of that name
(proto or JSON name, dotted into nested messages) on every route whose message
is not google.api.HttpBody, GET or POST. A parameter that names no field is
ignored, as the old FastAPI server ignored it (``?t=1`` to bust a cache): the
transcoder's ``ignore_unknown_query_parameters`` (edge.filters),
whatever its value (``?a=%zz`` too); so is every parameter of the HttpBody
routes (the old server's, OpenAI's speech), whose body is their whole message.
A parameter that names a field is checked here first (query_routes): its value
must be well-formed percent-encoding (``%`` and two hex digits; the transcoder
passed ``%zz`` on as those three characters, and ``?text=%zz`` spoke them) and
UTF-8 once decoded (``%E9`` reached the gateway as a string it could not
parse: a 400 that named no parameter). Otherwise:

    400 INVALID_ARGUMENT  query parameter 'text': malformed percent-encoding
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from google.api import annotations_pb2
from google.api.http_pb2 import HttpRule
from google.protobuf.descriptor import Descriptor, ServiceDescriptor
from voice.v1 import gateway_pb2

from edge import errors
from edge.envoy_types import lua_http_filter

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

-- s with its %XX escapes decoded, or nil where a % is not followed by two hex digits.
local function percent_decode(s)
  if not s:find("%", 1, true) then return s end
  if s:find("%%[^%x]") or s:find("%%%x[^%x]") or s:find("%%%x?$") then return nil end
  return (s:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

-- Whether s is well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF).
local function is_utf8(s)
  if not s:find("[\128-\255]") then return true end
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len, lo, hi = 1, 0x80, 0xBF
    if c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then
      len = 3
      if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F end
    elseif c >= 0xF0 and c <= 0xF4 then
      len = 4
      if c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    elseif c >= 0x80 then return false end
    for k = 1, len - 1 do
      local b = s:byte(i + k)
      if b == nil or b < (k == 1 and lo or 0x80) or b > (k == 1 and hi or 0xBF) then
        return false
      end
    end
    i = i + len
  end
  return true
end

-- Whether the transcoder would bind the dotted name to a field of message (a scalar, a
-- message, a map or a well-known type; a name past a scalar binds nothing).
local function names_a_field(message, name)
  for segment in (name .. "."):gmatch("([^.]*)%.") do
    local fields = MESSAGES[message]
    if not fields then return false end
    message = fields[segment]
    if message == nil then return false end
  end
  return true
end

-- Why the query's first parameter that names a field of message is refused, or nil.
local function check_query(query, message)
  for pair in query:gmatch("[^&]+") do
    local raw_name, raw_value = pair:match("^([^=]*)=?(.*)$")
    local name = percent_decode(raw_name)
    if name and names_a_field(message, name) then
      local value = percent_decode(raw_value)
      if not value then
        return "query parameter '" .. name .. "': malformed percent-encoding"
      end
      if not is_utf8(value) then
        return "query parameter '" .. name .. "': not UTF-8 once percent-decoded"
      end
    end
  end
  return nil
end

function envoy_on_request(handle)
  local headers = handle:headers()
  -- gRPC as Envoy and the transcoder tell it: anything else is transcoded.
  if is_grpc(headers:get("content-type")) then return end
  local method = headers:get(":method") or ""
  local path, query = (headers:get(":path") or ""):match("^([^?]*)%??(.*)$")
  if query ~= "" and QUERY_ROUTES[method .. " " .. path] then
    local refused = check_query(query, QUERY_ROUTES[method .. " " .. path])
    if refused then
      handle:respond({[":status"] = "400", ["content-type"] = "text/plain"}, refused:sub(1, 300))
      return
    end
  end
  local message = method == "POST" and ROUTES[path]
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
        errors.not_grpc_header(),
    ]
    posts = [
        {
            "match": {"path": variant, "headers": rest_post},
            "route": action,
            "request_body_buffer_limit": max_body_bytes,
        }
        for path in sorted(json_routes(service))
        for variant in transcoded_paths(path)
    ]
    # PUT /v1/voices/{name}: a path template, matched as a regular expression (its
    # body is not checked for unknown fields, which the filter looks up by exact path).
    puts = [
        {
            "match": {"safe_regex": {"regex": template_regex(path)},
                      "headers": [{"name": ":method", "string_match": {"exact": "PUT"}},
                                  errors.not_grpc_header()]},
            "route": action,
            "request_body_buffer_limit": max_body_bytes,
        }
        for path in sorted(put_routes(service))
    ]
    return posts + puts


def template_regex(template: str) -> str:
    """A REST path template as a regular expression: each ``{field}`` one segment,
    the rest literal, a trailing slash allowed (the transcoder maps that too)."""
    parts = re.split(r"\{[^}]*\}", template)
    return "[^/]+".join(re.escape(part) for part in parts) + "/?"


def put_routes(service: ServiceDescriptor) -> list[str]:
    """The path templates of the PUT bindings whose body is the request message."""
    return [binding.put for binding, _ in _message_bindings(service)
            if binding.put and binding.body == "*"]


def transcoded_paths(path: str) -> tuple[str, ...]:
    """The paths the transcoder maps as it maps ``path``: with a trailing slash too,
    unless the path ends in a custom verb (``/v1/synthesize:stream``), which takes none."""
    if ":" in path.rsplit("/", 1)[-1]:
        return (path,)
    return (path, path + "/")


def _message_bindings(service: ServiceDescriptor) -> Iterator[tuple[HttpRule, Descriptor]]:
    """Each REST binding of ``service`` and its request message, but those of the
    google.api.HttpBody methods, whose body is the whole request."""
    for method in service.methods:
        if method.input_type.full_name == "google.api.HttpBody":
            continue
        rule = method.GetOptions().Extensions[annotations_pb2.http]
        for binding in (rule, *rule.additional_bindings):
            yield binding, method.input_type


def json_routes(service: ServiceDescriptor) -> dict[str, Descriptor]:
    """POST path -> request message, for each route whose whole body is that message as JSON."""
    return {binding.post: message for binding, message in _message_bindings(service)
            if binding.post and binding.body == "*"}


def query_routes(service: ServiceDescriptor) -> dict[str, Descriptor]:
    """"METHOD path" -> request message, for every REST binding (each path the transcoder
    maps: transcoded_paths) whose query parameters the transcoder binds to its fields:
    not the google.api.HttpBody ones, whose body is the whole message."""
    routes = {}
    for binding, message in _message_bindings(service):
        verb = binding.WhichOneof("pattern")
        if verb in (None, "custom"):
            continue
        for path in transcoded_paths(getattr(binding, verb)):
            routes[f"{verb.upper()} {path}"] = message
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
    queries = query_routes(service)
    messages = message_fields([*routes.values(), *queries.values()])
    paths = {variant: message.full_name for path, message in routes.items()
             for variant in transcoded_paths(path)}
    return (
        f"local ROUTES = {_lua_table(paths)}\n"
        f"local QUERY_ROUTES = {_lua_table({k: m.full_name for k, m in queries.items()})}\n"
        f"local MESSAGES = {_lua_table(messages)}\n" + errors.IS_GRPC_LUA + EDGE_FIELDS_LUA
    )


def lua_filter() -> dict:
    """The HTTP filter that refuses unknown fields; it goes just ahead of the transcoder."""
    return lua_http_filter(FIELDS_FILTER, fields_lua())
