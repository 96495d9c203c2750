"""A request's JSON body, for the HTTP routes that take one (the old server's and
the OpenAI-compatible one): an object, or a clear INVALID_ARGUMENT."""

from __future__ import annotations

import json

from services.common.errors import InvalidArgument


def json_object(body: bytes) -> dict:
    """``body`` as a JSON object, or InvalidArgument saying why it is not one."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("the body is not valid JSON") from None
    except RecursionError:
        raise InvalidArgument("the JSON body is nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidArgument("the JSON body must be an object")
    return data
