"""Is a process of the stack ready? Each probe answers once, quickly, never raising."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable

from services.common.health_probe import credentials_for, health_status
from services.common.settings import InternalTls

Probe = Callable[[], bool]


def http_ok(
    url: str,
    check_json: Callable[[object], bool] | None = None,
    timeout: float = 1.0,
    verify_tls: bool = True,
) -> Probe:
    """200 from ``url``, and, when given, ``check_json`` true of the JSON body.

    ``verify_tls=False`` accepts any certificate: for our own listener on loopback,
    whose certificate names the public host, not 127.0.0.1.
    """
    context = None
    if not verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
                body = response.read()
                if response.status != 200:
                    return False
                return check_json is None or bool(check_json(json.loads(body)))
        except (urllib.error.URLError, OSError, ValueError):
            return False

    return probe


def grpc_serving(address: str, timeout: float = 1.0, tls: InternalTls = InternalTls()) -> Probe:
    """SERVING from the gRPC health service at ``address`` (over mTLS when ``tls`` is on)."""
    credentials = credentials_for(tls)  # read once: the probe runs every few seconds
    return lambda: health_status(address, credentials, timeout) == "SERVING"
