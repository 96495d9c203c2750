"""One real stack for the integration tests: tritonserver, the three services
and Envoy, started by the same supervisor as `make run`, on free loopback ports.

Every test in this folder starts real processes (or uses those of a stack) and is
marked ``integration`` here: ``pytest -m "not integration"`` (``make test-fast``)
leaves them out."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from localstack.config import StackConfig
from localstack.supervise.supervisor import Supervisor
from tests.integration.stacks import stack_config, supervised

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items) -> None:
    """Mark every test of this folder ``integration`` (before ``-m`` selects)."""
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


@dataclasses.dataclass
class RunningStack:
    config: StackConfig
    supervisor: Supervisor

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.config.api_port}"

    def log(self, name: str) -> str:
        return (self.config.run_dir / "logs" / f"{name}.log").read_text(errors="replace")

    def log_shows(self, name: str, text: str, timeout: float = 10.0) -> bool:
        """Whether ``text`` reaches process ``name``'s log within ``timeout``
        (Envoy flushes its access log on a timer, not per request)."""
        deadline = time.monotonic() + timeout
        while text not in self.log(name):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> RunningStack:
    run_dir = tmp_path_factory.mktemp("stack")
    config = stack_config(run_dir)
    with supervised(config) as running:
        yield RunningStack(config, running.supervisor)
