import contextvars
import json
import logging

import pytest

from services.common.logs import JsonFormatter
from services.common.request_context import accept_request_id, set_request, time_remaining


@pytest.fixture(autouse=True)
def own_context():
    """Run each test's request context in a copy, so nothing leaks to other tests."""
    context = contextvars.copy_context()
    yield context


def record(msg, **extra):
    return logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": msg, **extra})


def test_json_lines_carry_service_request_id_and_extra_fields(own_context):
    def format_line():
        set_request("abc-123", None)
        return JsonFormatter("rvc").format(record("converted %s", args=("x",), grpc_code="OK"))

    line = own_context.run(format_line)
    entry = json.loads(line)
    assert entry["service"] == "rvc"
    assert entry["msg"] == "converted x"
    assert entry["request_id"] == "abc-123"
    assert entry["grpc_code"] == "OK"


def test_request_ids_from_callers_are_kept_only_when_sane():
    assert accept_request_id("trace-1.a:b") == "trace-1.a:b"
    for bad in (None, "", "x" * 200, "a b", "line\nbreak", "<script>"):
        generated = accept_request_id(bad)
        assert generated != bad and len(generated) == 32


def test_deadline_counts_down(own_context):
    def remaining(seconds):
        set_request("r", seconds)
        return time_remaining()

    assert 4.0 < own_context.run(remaining, 5.0) <= 5.0
    assert own_context.run(remaining, None) is None
