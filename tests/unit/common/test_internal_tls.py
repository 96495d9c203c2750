"""Internal mTLS: the settings, and a real gRPC service that admits only clients
with a certificate from the internal CA (services/common/internal_tls.py)."""

import asyncio
import dataclasses

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edge.security import upstream_transport_socket
from services.common import health_probe
from services.common.channels import open_channel
from services.common.settings import (
    TLS_VARIABLES,
    InternalTls,
    ServerSettings,
    SettingsError,
    from_env,
)
from tests.grpc_hosts import TEST_SERVER, hosted
from tests.internal_credentials import Authority


@pytest.fixture(scope="module")
def authority():
    return Authority.create("voice-internal-ca")


@pytest.fixture
def server_tls(authority, tmp_path) -> InternalTls:
    return authority.issue(tmp_path / "server", "rvc")


@pytest.fixture
def client_tls(authority, tmp_path) -> InternalTls:
    return authority.issue(tmp_path / "client", "gateway")


def test_off_unless_all_three_files_are_given():
    assert not from_env(ServerSettings, "X", {}).internal_tls.enabled


def test_one_file_missing_names_what_is_unset(server_tls):
    environ = {"INTERNAL_TLS_CERT": str(server_tls.cert), "INTERNAL_TLS_CA": str(server_tls.ca)}
    with pytest.raises(SettingsError, match="INTERNAL_TLS_KEY unset"):
        from_env(ServerSettings, "X", environ)


def test_a_file_that_is_not_pem_is_refused(server_tls, tmp_path):
    junk = tmp_path / "junk.crt"
    junk.write_bytes(b"\x00not a certificate")
    environ = {"INTERNAL_TLS_CERT": str(junk), "INTERNAL_TLS_KEY": str(server_tls.key),
               "INTERNAL_TLS_CA": str(server_tls.ca)}
    with pytest.raises(SettingsError, match="INTERNAL_TLS_CERT=.*not a PEM file"):
        from_env(ServerSettings, "X", environ)


def test_a_missing_file_is_refused(server_tls, tmp_path):
    environ = {"INTERNAL_TLS_CERT": str(server_tls.cert), "INTERNAL_TLS_KEY": str(server_tls.key),
               "INTERNAL_TLS_CA": str(tmp_path / "nowhere.crt")}
    with pytest.raises(SettingsError, match="INTERNAL_TLS_CA=.*no such file"):
        from_env(ServerSettings, "X", environ)


def test_every_service_reads_the_same_three_variables(server_tls):
    environ = {"INTERNAL_TLS_CERT": str(server_tls.cert), "INTERNAL_TLS_KEY": str(server_tls.key),
               "INTERNAL_TLS_CA": str(server_tls.ca)}
    assert from_env(ServerSettings, "RVC", environ).internal_tls == server_tls


async def _check(channel: grpc.aio.Channel) -> str:
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    finally:
        await channel.close()


@pytest.fixture
async def secure_port(server_tls):
    async with hosted([], dataclasses.replace(TEST_SERVER, internal_tls=server_tls)) as host:
        yield f"127.0.0.1:{host.grpc_port}"


async def test_a_client_with_a_certificate_from_the_ca_is_served(secure_port, client_tls):
    assert await _check(open_channel(secure_port, tls=client_tls)) == "SERVING"


async def test_plaintext_is_refused(secure_port):
    assert await _check(grpc.aio.insecure_channel(secure_port)) == "UNAVAILABLE"


async def test_tls_without_a_client_certificate_is_refused(secure_port, client_tls):
    anonymous = grpc.ssl_channel_credentials(root_certificates=client_tls.ca.read_bytes())
    assert await _check(grpc.aio.secure_channel(secure_port, anonymous)) == "UNAVAILABLE"


async def test_a_client_certificate_from_another_ca_is_refused(secure_port, client_tls, tmp_path):
    stranger = Authority.create("someone-else").issue(tmp_path / "stranger", "gateway")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=client_tls.ca.read_bytes(),  # trusts the server
        private_key=stranger.key.read_bytes(), certificate_chain=stranger.cert.read_bytes())
    assert await _check(grpc.aio.secure_channel(secure_port, credentials)) == "UNAVAILABLE"


async def test_a_server_from_another_ca_is_not_trusted(client_tls, tmp_path):
    impostor = Authority.create("someone-else").issue(tmp_path / "impostor", "rvc")
    async with hosted([], dataclasses.replace(TEST_SERVER, internal_tls=impostor)) as host:
        channel = open_channel(f"127.0.0.1:{host.grpc_port}", tls=client_tls)
        assert await _check(channel) == "UNAVAILABLE"


async def test_the_probe_command_speaks_mtls(secure_port, client_tls, monkeypatch):
    """python -m services.common.health_probe: what the pods' exec probes run."""
    port = secure_port.rsplit(":", 1)[1]
    probe = [port, "--host", "127.0.0.1"]
    assert await asyncio.to_thread(health_probe.main, probe) == 1  # plaintext: refused
    for var, path in zip(TLS_VARIABLES, (client_tls.cert, client_tls.key, client_tls.ca),
                         strict=True):
        monkeypatch.setenv(var, str(path))
    assert await asyncio.to_thread(health_probe.main, probe) == 0


def test_the_edge_checks_the_gateways_certificate_names(client_tls):
    socket = upstream_transport_socket(client_tls, ["gateway-0.gateway", "10.0.0.7", "gateway-0.gateway"])
    context = socket["typed_config"]
    assert context["@type"].endswith("UpstreamTlsContext")
    validation = context["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"]["filename"] == str(client_tls.ca.resolve())
    assert validation["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "gateway-0.gateway"}},
        {"san_type": "IP_ADDRESS", "matcher": {"exact": "10.0.0.7"}},
    ]
    assert context["sni"] == "gateway-0.gateway"
    (pair,) = context["common_tls_context"]["tls_certificates"]
    assert pair["certificate_chain"]["filename"] == str(client_tls.cert.resolve())
