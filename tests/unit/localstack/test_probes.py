"""The stack's HTTP probe reaches an edge that serves TLS with a certificate for another name."""

from __future__ import annotations

import http.server
import json
import ssl
import threading

import pytest

from localstack.supervise.probes import http_ok
from tests import edge_credentials


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "SERVING"}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def tls_server(tmp_path):
    credentials = edge_credentials.make(tmp_path)
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(credentials.cert, credentials.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/health"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_probe_of_our_own_tls_listener_skips_verification(tls_server):
    def serving(body):
        return body["status"] == "SERVING"

    assert http_ok(tls_server, serving, timeout=5, verify_tls=False)() is True
    # Verifying, the self-signed certificate is refused (and the probe does not raise).
    assert http_ok(tls_server, serving, timeout=5)() is False
