"""Plain HTTP calls for tests, returning status, headers and body whatever the status."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def call(
    method: str,
    url: str,
    body: object | None = None,
    headers: dict | None = None,
    raw: bytes | None = None,
    context: ssl.SSLContext | None = None,
) -> Reply:
    """``body`` is sent as JSON; ``raw`` bytes are sent as they are, labelled JSON.
    ``context``: TLS settings for https URLs (e.g. trusting a test certificate)."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return Reply(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, dict(error.headers.items()), error.read())
