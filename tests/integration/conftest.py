"""One real stack for the integration tests: tritonserver, the three services
and Envoy, started by the same supervisor as `make run`, on free loopback ports."""

from __future__ import annotations

import dataclasses
import time

import pytest

from services.stack.config import StackConfig
from services.stack.supervisor import Supervisor
from tests.integration.stacks import stack_config, supervised


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
    with supervised(config) as supervisor:
        yield RunningStack(config, supervisor)
