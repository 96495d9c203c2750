"""The edge's errors filter (edge/errors.lua) run on LuaJIT, Envoy's Lua, through lupa:
fake Envoy handles carry a request's headers in and a response's status, headers and
body out, and each test reads the body the filter leaves. The same shapes through a
real Envoy: tests/integration/test_edge_errors.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import lupa.luajit21 as lupa
import pytest

from edge import errors
from edge.config import EdgeConfig
from edge.errors import ERRORS_FILTER, GRPC_CODE_NAMES, HTTP_STATUS_NAMES, OLD_SERVER_PATHS
from edge.render import render

# A stream as the filter sees it, one handle per direction: headers (get, replace), the
# body (length, getBytes from 0, setBytes) and the dynamic metadata the two directions
# share. ``state.read`` records that the filter asked for the body.
FAKE_HANDLE = b"""
return function(headers, state, metadata)
  local header_map = {
    get = function(_, name) return headers[name] end,
    replace = function(_, name, value) headers[name] = value end,
  }
  local buffer = {
    length = function(_) return #state.body end,
    getBytes = function(_, start, size) return state.body:sub(start + 1, start + size) end,
    setBytes = function(_, bytes) state.body = bytes end,
  }
  local dynamic = {
    set = function(_, filter, key, value)
      metadata[filter] = metadata[filter] or {}
      metadata[filter][key] = value
    end,
    get = function(_, filter) return metadata[filter] end,
  }
  local info = {dynamicMetadata = function(_) return dynamic end}
  return {
    headers = function(_) return header_map end,
    body = function(_, always_wrap)
      assert(always_wrap, "the filter reads the body with handle:body(true)")
      state.read = true
      return buffer
    end,
    streamInfo = function(_) return info end,
  }
end
"""
JSON = "application/json"
# Quotes, a backslash, a newline, a tab, a control character, HTML's specials,
# accents, CJK and a character beyond the BMP (a surrogate pair in \\u escapes).
MESSAGE = 'He said "no" \\ twice\nthen\tleft\x01: <é>, 日本, 🎤'
# The HTTP status the transcoder gives each gRPC code.
TRANSCODER_STATUS = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409, "ABORTED": 409, "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499,
    "UNKNOWN": 500, "INTERNAL": 500, "DATA_LOSS": 500, "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504,
}


@dataclass
class Reply:
    headers: dict[str, str]
    body: bytes
    read: bool  # whether the filter asked for the body

    def error(self) -> dict:
        """The body as the error shape's checks read it: valid UTF-8 JSON, labelled JSON,
        its length in content-length."""
        assert self.headers["content-type"] == JSON
        assert int(self.headers["content-length"]) == len(self.body)
        return json.loads(self.body.decode("utf-8"))


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def exchange(status: int | None, body: str | bytes = b"", content_type: str | None = None,
             path: str = "/v1/synthesize", request_type: str | None = JSON,
             response_headers: dict[str, str] | None = None) -> Reply:
    """A request to ``path`` of content type ``request_type`` through envoy_on_request,
    then a response of ``status`` through envoy_on_response, in a fresh runtime."""
    lua = lupa.LuaRuntime(encoding=None)
    lua.execute(errors.errors_lua().encode())
    handle = lua.execute(FAKE_HANDLE)
    metadata = lua.table()
    request = {":path": path, ":method": "POST", "content-type": request_type}
    request_headers = lua.table_from({_bytes(k): _bytes(v) for k, v in request.items()
                                      if v is not None})
    lua.globals()[b"envoy_on_request"](handle(request_headers, lua.table(), metadata))
    response = {":status": None if status is None else str(status), "content-type": content_type,
                **(response_headers or {})}
    headers = lua.table_from({_bytes(k): _bytes(v) for k, v in response.items()
                              if v is not None})
    state = lua.table_from({b"body": _bytes(body), b"read": False})
    lua.globals()[b"envoy_on_response"](handle(headers, state, metadata))
    return Reply({k.decode(): v.decode() for k, v in headers.items()}, state[b"body"],
                 bool(state[b"read"]))


def transcoded(code: str, message: str = MESSAGE, **extra) -> str:
    """A google.rpc.Status as the transcoder prints it (details empty unless given)."""
    return json.dumps({"code": GRPC_CODE_NAMES.index(code), "message": message,
                       "details": [], **extra})


def test_the_rendered_filter_runs_this_file_after_the_tables_and_the_grpc_test():
    source = resources.files("edge").joinpath("errors.lua").read_text(encoding="utf-8")
    assert Path(errors.__file__).with_name("errors.lua").read_text(encoding="utf-8") == source
    lua = errors.errors_lua()
    assert lua.endswith(errors.IS_GRPC_LUA + "\n" + source)
    assert lua.startswith(f"local ERRORS_FILTER = '{ERRORS_FILTER}'\n")
    (listener, _) = render(EdgeConfig(descriptor=Path("voice.pb")))["static_resources"]["listeners"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    (rendered,) = [f for f in manager["http_filters"] if f["name"] == ERRORS_FILTER]
    assert rendered["typed_config"]["default_source_code"]["inline_string"] == lua


@pytest.mark.parametrize("code", sorted(TRANSCODER_STATUS))
def test_a_grpc_status_keeps_its_name_and_the_transcoders_http_status(code):
    status = TRANSCODER_STATUS[code]
    reply = exchange(status, transcoded(code), JSON)
    assert reply.error() == {"error": {"code": status, "message": MESSAGE, "status": code}}


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_the_message_comes_back_whole_however_the_status_escaped_it(ensure_ascii):
    body = json.dumps({"code": 9, "message": MESSAGE, "details": []}, ensure_ascii=ensure_ascii)
    reply = exchange(400, body, "application/json; charset=UTF-8")
    assert reply.error()["error"] == {
        "code": 400, "message": MESSAGE, "status": "FAILED_PRECONDITION"}


def test_rich_status_details_are_left_out():
    detail = {"@type": "type.googleapis.com/voice.v1.SynthesizeRequest", "text": '}]"{ [ \\'}
    reply = exchange(400, transcoded("FAILED_PRECONDITION", details=[detail, [1, {"a": []}]]),
                     JSON)
    assert reply.error() == {
        "error": {"code": 400, "message": MESSAGE, "status": "FAILED_PRECONDITION"}}


@pytest.mark.parametrize(("status", "name"), [*HTTP_STATUS_NAMES.items(), (418, "UNKNOWN")])
def test_plain_text_gets_the_name_of_its_http_status(status, name):
    text = "upstream connect error or disconnect/reset before headers"
    reply = exchange(status, text, "text/plain")
    assert reply.error() == {"error": {"code": status, "message": text, "status": name}}


@pytest.mark.parametrize("body", ["{not json", '{"foo": 1}', '{"code": "3"}', ""])
def test_json_that_is_no_status_is_the_message_as_it_came(body):
    reply = exchange(500, body, JSON)
    assert reply.error() == {"error": {"code": 500, "message": body, "status": "INTERNAL"}}


def test_bytes_that_are_not_utf8_are_replaced():
    text = b'Failed to parse: non UTF-8 code points.\n\xff "\xc3(\xed\xa0\x80\xe6\x97'
    reply = exchange(400, text, "text/plain")
    message = reply.error()["error"]["message"]
    assert message == 'Failed to parse: non UTF-8 code points.\n\ufffd "\ufffd(' + "\ufffd" * 5


@pytest.mark.parametrize(("value", "said"), [
    ("18446744073709551616", "sampling.seed 18446744073709551616 is outside 0..2^64-1"),
    ('"-1"', "sampling.seed -1 is outside 0..2^64-1"),
    ("1e+20", "sampling.seed 1e+20 is outside 0..2^64-1"),
    ('"seven"', 'sampling.seed: invalid value "seven" for type TYPE_UINT64'),
])
def test_a_seed_out_of_range_is_said_in_the_services_words(value, said):
    text = f"sampling.seed: invalid value {value} for type TYPE_UINT64"
    reply = exchange(400, text, "text/plain")
    assert reply.error()["error"] == {"code": 400, "message": said, "status": "INVALID_ARGUMENT"}


@pytest.mark.parametrize("path", [*OLD_SERVER_PATHS, "/synthesize/", "/tts?x=1"])
def test_the_old_servers_paths_also_get_fastapis_detail(path):
    reply = exchange(400, transcoded("INVALID_ARGUMENT", "text is empty"), JSON, path=path,
                     request_type="text/plain")
    assert reply.error() == {
        "error": {"code": 400, "message": "text is empty", "status": "INVALID_ARGUMENT"},
        "detail": "text is empty"}


@pytest.mark.parametrize("path", ["/v1/synthesize", "/synthesize/x", "/v1/tts"])
def test_other_paths_get_no_detail(path):
    assert "detail" not in exchange(404, "no such route", "text/plain", path=path).error()


def test_envoys_own_replies_already_in_the_shape_pass_as_they_are():
    shaped = b'{"error":{"code":404,"message":"no such route","status":"NOT_FOUND"}}\n'
    headers = {"content-length": str(len(shaped))}
    reply = exchange(404, shaped, JSON, response_headers=headers)
    assert reply.body == shaped
    assert reply.headers == {":status": "404", "content-type": JSON, **headers}


def test_on_the_old_paths_envoys_own_replies_get_detail_once():
    shaped = b'{"error":{"code":413,"message":"too \\"big\\"","status":"RESOURCE_EXHAUSTED"}}\n'
    first = exchange(413, shaped, JSON, path="/synthesize")
    assert first.error() == {
        "error": {"code": 413, "message": 'too "big"', "status": "RESOURCE_EXHAUSTED"},
        "detail": 'too "big"'}
    # A request that expects 100-continue passes the filter twice (edge.expect_continue).
    again = exchange(413, first.body, JSON, path="/synthesize")
    assert again.body == first.body


@pytest.mark.parametrize("content_type", ["application/grpc", "application/grpc+proto"])
def test_grpc_requests_are_left_alone(content_type):
    reply = exchange(404, "no such route", "text/plain", request_type=content_type)
    assert (reply.body, reply.read) == (b"no such route", False)
    assert reply.headers == {":status": "404", "content-type": "text/plain"}


@pytest.mark.parametrize("content_type", ["application/grpc-web", "application/grpc-web+proto",
                                          "application/grpcx", None])
def test_grpc_web_and_the_rest_are_rest(content_type):
    reply = exchange(404, "no such route", "text/plain", request_type=content_type)
    assert reply.error()["error"]["status"] == "NOT_FOUND"


@pytest.mark.parametrize("status", [200, 204, 302, 399, None])
def test_successes_pass_unread_chunk_by_chunk(status):
    reply = exchange(status, b"RIFF....WAVE", "audio/wav")
    assert (reply.body, reply.read) == (b"RIFF....WAVE", False)
    assert reply.headers.get("content-type") == "audio/wav"


def test_an_error_without_a_body_gets_one():
    reply = exchange(503)
    assert reply.error() == {"error": {"code": 503, "message": "", "status": "UNAVAILABLE"}}
