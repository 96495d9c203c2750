"""A malformed grpc-timeout is refused at the edge, and breaks nobody else's deadlines.

It once reached the gateway, whose grpcio remembered the unparsable value in its
HPACK table: every later grpc-timeout on Envoy's shared connection failed with
INTERNAL "Error parsing 'grpc-timeout' metadata" until the gateway restarted.
"""

import http.client
import json
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from voice.v1 import gateway_pb2, gateway_pb2_grpc

from tests.integration.http_client import call

BAD = ("abc", "5", "123456789S", "1.5S", "-1S", "5s", "", "5 S")
# Envoy runs two workers, each with its own connections to the gateway; a new client
# connection lands on either, so the bad requests go over several.
CONNECTIONS = 8


@pytest.mark.parametrize("value", BAD)
def test_rest_malformed_grpc_timeout_is_400_naming_it(stack, value):
    reply = call("GET", f"{stack.api}/v1/voices", headers={"grpc-timeout": value})
    assert reply.status == 400, reply.body
    error = reply.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert "grpc-timeout" in error["message"]


def test_rest_old_path_refusal_keeps_its_detail(stack):
    reply = call("GET", f"{stack.api}/health", headers={"grpc-timeout": "abc"})
    assert reply.status == 400
    body = reply.json()
    assert "grpc-timeout" in body["detail"] == body["error"]["message"]


@pytest.mark.parametrize("content_type", ["application/grpc-web", "application/grpc-web+proto"])
def test_grpc_web_is_rest_and_gets_the_400(stack, content_type):
    """Envoy's gRPC is application/grpc or application/grpc+...: the transcoder takes a
    grpc-web request for REST, so its refusal is the REST 400, not a trailers-only gRPC
    reply (the filter once took anything starting application/grpc for gRPC)."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.config.api_port, timeout=30)
    try:
        connection.request("POST", "/v1/synthesize", body=b'{"text": "Hi."}',
                           headers={"content-type": content_type, "grpc-timeout": "abc"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 400, body
    assert response.getheader("grpc-status") is None
    error = json.loads(body)["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert "grpc-timeout" in error["message"]


@pytest.mark.parametrize("value", ["5S", "500m", "99999999u", "1H", "30M", "20000000n"])
def test_rest_wellformed_grpc_timeout_passes(stack, value):
    assert call("GET", f"{stack.api}/v1/voices", headers={"grpc-timeout": value}).status == 200


def _grpc_with_bad_timeout(stack) -> tuple[str, str]:
    """A gRPC call through the edge whose grpc-timeout header is malformed: grpcio
    writes its own, so the request is framed by hand (HTTP/1.1 to Envoy is enough to
    reach the filter, which answers as gRPC: status and message in the headers)."""
    request = urllib.request.Request(
        f"{stack.api}/grpc.health.v1.Health/Check", method="POST",
        data=b"\x00\x00\x00\x00\x00",  # an empty HealthCheckRequest
        headers={"content-type": "application/grpc", "te": "trailers", "grpc-timeout": "abc"})
    with urllib.request.urlopen(request, timeout=30) as reply:
        return reply.headers.get("grpc-status", ""), reply.headers.get("grpc-message", "")


def test_grpc_malformed_grpc_timeout_is_invalid_argument_naming_it(stack):
    for _ in range(CONNECTIONS):
        status, message = _grpc_with_bad_timeout(stack)
        assert status == str(grpc.StatusCode.INVALID_ARGUMENT.value[0]), (status, message)
        assert "grpc-timeout" in message


def test_after_a_malformed_grpc_timeout_deadlines_still_work(stack):
    for _ in range(CONNECTIONS):
        assert call("GET", f"{stack.api}/v1/voices",
                    headers={"grpc-timeout": "abc"}).status in (400, 500)
        _grpc_with_bad_timeout(stack)
    failures = []
    for n in range(CONNECTIONS):
        with grpc.insecure_channel(f"127.0.0.1:{stack.config.api_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            gateway = gateway_pb2_grpc.GatewayStub(channel)
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            for i in range(100 // CONNECTIONS + 1):
                try:
                    if i % 3 == 0:
                        health.Check(health_pb2.HealthCheckRequest(), timeout=10)
                    elif i % 3 == 1:
                        gateway.ListVoices(gateway_pb2.ListVoicesRequest(), timeout=10)
                    else:
                        request = reflection_pb2.ServerReflectionRequest(list_services="")
                        next(iter(reflection.ServerReflectionInfo(iter([request]), timeout=10)))
                except grpc.RpcError as error:
                    failures.append((n, i, error.code().name, error.details()))
    assert not failures, f"{len(failures)} calls failed, first {failures[:3]}"
