"""Internal mTLS on the real stack: every hop (edge -> gateway -> TTS / RVC, TTS ->
Triton) speaks TLS with client certificates from one CA; the pipeline works end to
end, and no internal port serves a client without a certificate from that CA."""

from __future__ import annotations

import grpc
import pytest
import requests
import tritonclient.grpc as triton_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from services.common.health_probe import health_status
from services.common.internal_tls import channel_credentials
from tests.integration.stacks import reuse_models, stack_config, supervised
from tests.internal_credentials import Authority


@pytest.fixture(scope="module")
def mtls(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("mtls")
    reuse_models(tmp_path_factory, run_dir)
    authority = Authority.create("voice-internal-ca")
    tls = authority.issue(run_dir / "tls", "internal")
    config = stack_config(run_dir, internal_tls=tls)
    # Ready means the edge's /v1/health saw every service serving: each hop's TLS works.
    with supervised(config):
        yield config, tls, authority


def _ports(config) -> dict[str, int]:
    return {"gateway": config.gateway_port, "tts": config.tts_port, "rvc": config.rvc_port}


def test_text_goes_through_tts_and_rvc_over_mtls(mtls):
    config, _, _ = mtls
    reply = requests.post(f"http://127.0.0.1:{config.api_port}/synthesize",
                          data={"text": "Every hop is encrypted."}, timeout=120)
    assert reply.status_code == 200, reply.text[:300]
    assert reply.headers["X-RVC-Applied"] == "true"
    assert len(reply.content) > 44 + 48_000
    status = requests.get(f"http://127.0.0.1:{config.api_port}/v1/status", timeout=30).json()
    assert status["tts"]["engines"], status


def test_our_services_admit_only_certificates_from_the_internal_ca(mtls, tmp_path):
    config, tls, authority = mtls
    stranger = Authority.create("someone-else").issue(tmp_path, "stranger")
    with_stranger = grpc.ssl_channel_credentials(
        root_certificates=tls.ca.read_bytes(), private_key=stranger.key.read_bytes(),
        certificate_chain=stranger.cert.read_bytes())
    anonymous = grpc.ssl_channel_credentials(root_certificates=tls.ca.read_bytes())
    colleague = authority.issue(tmp_path / "colleague", "colleague")
    for name, port in _ports(config).items():
        address = f"127.0.0.1:{port}"
        assert health_status(address) == "UNAVAILABLE", f"{name} served plaintext"
        for credentials, who in ((anonymous, "no certificate"), (with_stranger, "a stranger")):
            with grpc.secure_channel(address, credentials) as channel:
                with pytest.raises(grpc.RpcError) as refused:
                    health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, (name, who)
        assert health_status(address, channel_credentials(colleague)) == "SERVING", name


def test_triton_grpc_admits_only_certificates_from_the_internal_ca(mtls):
    config, tls, _ = mtls
    url = f"127.0.0.1:{config.triton_grpc_port}"
    plain = triton_grpc.InferenceServerClient(url)
    with pytest.raises(InferenceServerException):
        plain.is_server_live(client_timeout=5)
    secure = triton_grpc.InferenceServerClient(url, creds=channel_credentials(tls))
    assert secure.is_server_live(client_timeout=5)
    assert secure.is_model_ready("piper", client_timeout=5)
