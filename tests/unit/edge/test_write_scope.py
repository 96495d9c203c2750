"""The voice library's write scope (edge.write_scope) run on LuaJIT, Envoy's Lua,
through lupa: a fake handle carries a request's headers and jwt_authn's verified
claims in, and whatever the filter answered out. Through a real Envoy:
tests/integration/test_edge_auth.py."""

from __future__ import annotations

import lupa.luajit21 as lupa
import pytest

from edge import write_scope
from edge.config import EdgeConfig
from edge.filters import http_filters
from edge.security import JWT_FILTER, EdgeJwt

SCOPE = "voices:write"

FAKE_HANDLE = b'''
return function(headers, metadata, answer)
  local handle = {}
  function handle:headers()
    return {get = function(_, name) return headers[name] end}
  end
  function handle:streamInfo()
    return {dynamicMetadata = function()
      return {get = function(_, filter) return metadata[filter] end}
    end}
  end
  function handle:respond(reply_headers, body)
    answer.status = reply_headers[":status"]
    answer.grpc_status = reply_headers["grpc-status"]
    answer.message = reply_headers["grpc-message"] or body
  end
  return handle
end
'''


def run(method: str, path: str, claims: dict | None, grpc: bool = False) -> dict:
    """The filter's answer to one request ({} when it let the request by)."""
    lua = lupa.LuaRuntime(encoding=None)
    lua.execute(write_scope.write_scope_lua(SCOPE).encode())

    def table(value):
        if isinstance(value, dict):
            return lua.table_from({k.encode(): table(v) for k, v in value.items()})
        if isinstance(value, list):
            return lua.table_from([table(v) for v in value])
        return value.encode() if isinstance(value, str) else value

    headers = {":method": method, ":path": path,
               "content-type": "application/grpc" if grpc else "application/json"}
    metadata = {} if claims is None else {JWT_FILTER: {"jwt_payload": claims}}
    answer = lua.table()
    handle = lua.execute(FAKE_HANDLE)(table(headers), table(metadata), answer)
    lua.globals()[b"envoy_on_request"](handle)
    return {k.decode(): (v.decode() if isinstance(v, bytes) else v) for k, v in answer.items()}


WRITES = [
    ("POST", "/v1/voices"), ("POST", "/v1/voices/"), ("PUT", "/v1/voices/ada"),
    ("PUT", "/v1/voices/ada/?x=1"), ("DELETE", "/v1/voices/ada"), ("POST", "/v1/rvc-voices"),
    ("DELETE", "/v1/rvc-voices/alice-v2"), ("POST", "/v1/voices?name=x"),
]
READS = [
    ("GET", "/v1/voices"), ("GET", "/v1/voices/ada"), ("GET", "/v1/rvc-voices"),
    ("POST", "/v1/synthesize"), ("POST", "/v1/voicesx"), ("PUT", "/v1/voices/a/b"),
    ("DELETE", "/v1/rvc-voices"),
]


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_a_rest_write_without_the_scope_is_403(method, path):
    for claims in (None, {"sub": "u"}, {"scope": "voices:read"}, {"scope": "voices:writer x"},
                   {"scp": ["voices:read"]}):
        answer = run(method, path, claims)
        assert answer["status"] == "403", (method, path, claims)
        assert answer["message"] == f"voice library writes need a token with the scope '{SCOPE}'"


@pytest.mark.parametrize("claims", [
    {"scope": SCOPE}, {"scope": f"openid {SCOPE} profile"}, {"scp": [SCOPE]},
    {"scp": f"a {SCOPE}"},
])
def test_a_write_with_the_scope_goes_on(claims):
    for method, path in WRITES:
        assert run(method, path, claims) == {}


@pytest.mark.parametrize(("method", "path"), READS)
def test_reads_and_other_paths_need_no_scope(method, path):
    assert run(method, path, {"sub": "u"}) == {}


@pytest.mark.parametrize("name", write_scope.WRITE_METHODS)
def test_grpc_writes_get_permission_denied(name):
    path = f"/voice.v1.Gateway/{name}"
    assert run("POST", path, {"sub": "u"}, grpc=True)["grpc_status"] == "7"
    assert run("POST", path, {"scope": SCOPE}, grpc=True) == {}
    assert run("POST", "/voice.v1.Gateway/ListVoices", {"sub": "u"}, grpc=True) == {}


def test_every_write_rpc_has_a_rest_binding_checked():
    verbs = [verb for verb, _ in write_scope.rest_writes()]
    assert sorted(verbs) == ["DELETE", "DELETE", "POST", "POST", "PUT"]


def test_the_filter_runs_right_after_jwt_authn_and_only_with_a_scope(tmp_path):
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    config = EdgeConfig(descriptor=tmp_path / "d.pb", jwt=EdgeJwt(jwks, write_scope=SCOPE))
    names = [f["name"] for f in http_filters(config)]
    assert names[names.index(JWT_FILTER) + 1] == write_scope.WRITE_SCOPE_FILTER
    without = EdgeConfig(descriptor=tmp_path / "d.pb", jwt=EdgeJwt(jwks))
    assert write_scope.WRITE_SCOPE_FILTER not in [f["name"] for f in http_filters(without)]
