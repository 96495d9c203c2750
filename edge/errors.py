"""One JSON shape for every error the REST edge returns.

Every error a REST client gets has one JSON shape, whatever produced it::

    {"error": {"code": 400, "message": "text is empty", "status": "INVALID_ARGUMENT"}}

``code`` is the HTTP status, ``status`` the gRPC code name, ``message`` the text.
Two pieces of the Envoy configuration (edge.render) make it so:

* A Lua filter (errors.lua, beside this module) ahead of the transcoder. Encoding runs the
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
a request that expects 100-continue passes the filter twice, edge.expect_continue).
A request is gRPC when Envoy takes it for one: content type application/grpc or
application/grpc+... (GRPC_CONTENT_TYPE); application/grpc-web is REST to the transcoder.

The transcoder gives a gRPC code the HTTP status Google's mapping does
(INVALID_ARGUMENT, FAILED_PRECONDITION and OUT_OF_RANGE 400, UNAUTHENTICATED 401,
PERMISSION_DENIED 403, NOT_FOUND 404, ALREADY_EXISTS and ABORTED 409,
RESOURCE_EXHAUSTED 429, CANCELLED 499, UNKNOWN, INTERNAL and DATA_LOSS 500,
UNIMPLEMENTED 501, UNAVAILABLE 503, DEADLINE_EXCEEDED 504), and the edge keeps it.
"""

from __future__ import annotations

from importlib import resources

from edge.envoy_types import lua_http_filter

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
# edge.fields, edge.timeout, edge.paths): a chunk's first lines.
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
# The filter's own code, a file of this package: it rewrites error responses to REST
# requests as {"error": {code, message, status}} (plus "detail" on the old server's
# paths). It uses is_grpc, ERRORS_FILTER, GRPC_NAMES, HTTP_NAMES and OLD_PATHS, which
# errors_lua puts ahead of it.
ERRORS_LUA_FILE = "errors.lua"


def errors_lua() -> str:
    """The Lua filter's source: the names of codes and statuses, the old paths, the
    gRPC test (IS_GRPC_LUA), then errors.lua, read now."""
    grpc = ", ".join(f"[{n}] = '{name}'" for n, name in enumerate(GRPC_CODE_NAMES))
    http = ", ".join(f"[{n}] = '{name}'" for n, name in HTTP_STATUS_NAMES.items())
    # With a trailing slash too: the transcoder maps those paths as well.
    old = ", ".join(f"['{path}'] = true, ['{path}/'] = true" for path in OLD_SERVER_PATHS)
    return (
        f"local ERRORS_FILTER = '{ERRORS_FILTER}'\n"
        f"local GRPC_NAMES = {{{grpc}}}\n"
        f"local HTTP_NAMES = {{{http}}}\n"
        f"local OLD_PATHS = {{{old}}}\n" + IS_GRPC_LUA
        # A blank line between the gRPC test and the file's first line.
        + "\n" + resources.files(__package__).joinpath(ERRORS_LUA_FILE).read_text(encoding="utf-8")
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
    return lua_http_filter(ERRORS_FILTER, errors_lua())
