"""python -m localstack: run vLLM, Triton, the three services and Envoy until Ctrl-C."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

from localstack import components
from localstack.config import StackConfig
from localstack.supervise.spec import ProcessSpec
from localstack.supervise.supervisor import StackError, Supervisor
from services.common.settings import SettingsError

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("stack")


def banner(specs: list[ProcessSpec], config: StackConfig) -> str:
    rows = [(spec.name, kind, where) for spec in specs for kind, where in spec.endpoints]
    width = max(len(name) for name, _, _ in rows)
    kind_width = max(len(kind) for _, kind, _ in rows)
    lines = ["", "The voice pipeline is up:", ""]
    lines += [f"  {name:<{width}}  {kind:<{kind_width}}  {where}" for name, kind, where in rows]
    base = f"http://127.0.0.1:{config.api_port}"
    if not any(spec.name == "envoy" for spec in specs):
        return "\n".join([*lines, "", "Ctrl-C stops everything.", ""])
    lines += [
        "",
        "Try it:",
        f"  curl {base}/v1/health",
        f"  curl {base}/v1/status",
        f"  curl {base}/v1/voices",
        f"  curl -X POST {base}/synthesize -F text='Hello there.' -o hello.wav"
        "   # the default profile, demo",
        f"  grpcurl -plaintext 127.0.0.1:{config.api_port} list",
        "",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Run every process, or only those named on the command line (e.g. ``triton``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s stack: %(message)s")
    try:
        config = StackConfig.load()
    except SettingsError as exc:
        log.error("bad setting: %s", exc)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        specs = components.build(config, REPO)
        if argv:
            unknown = set(argv) - {spec.name for spec in specs}
            if unknown:
                log.error("unknown component(s) %s; choose from %s",
                          sorted(unknown), [spec.name for spec in specs])
                return 2
            specs = [spec for spec in specs if spec.name in argv]
    except (OSError, RuntimeError) as exc:
        log.error("cannot start the stack: %s", exc)
        return 1
    supervisor = Supervisor(specs, config.run_dir / "logs", echo=sys.stdout)
    try:
        supervisor.start(config.startup_timeout, stop)
        print(banner(specs, config), flush=True)
        supervisor.watch(stop)
        return 0
    except StackError as exc:
        if not stop.is_set():
            log.error("%s", exc)
            return 1
        return 0
    finally:
        log.info("stopping")
        supervisor.stop(config.stop_timeout)
        log.info("stopped; logs are in %s", config.run_dir / "logs")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
