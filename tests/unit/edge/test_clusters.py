"""The gateway cluster as the edge renders it."""

from pathlib import Path

from edge.config import EdgeConfig
from edge.render import render


def test_the_edge_confines_a_malformed_response_to_its_own_stream():
    """A gateway cuts a REST stream that fails midway with a malformed response
    (services.gateway.stream_abort): it resets that stream alone, not the connection
    and every call on it (tests/unit/gateway/test_stream_abort.py)."""
    config = render(EdgeConfig(descriptor=Path("voice_v1.pb")))
    gateway = next(c for c in config["static_resources"]["clusters"] if c["name"] == "gateway")
    options = gateway["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    http2 = options["explicit_http_config"]["http2_protocol_options"]
    assert http2["override_stream_error_on_invalid_http_message"] is True
