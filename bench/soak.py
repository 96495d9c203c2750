"""make soak: mixed load through the public edge for a long time, watching every
stack process for memory, open files and threads that keep growing.

    python -m bench.soak [--minutes 30] [--concurrency 2] [--sample-seconds N]
                         [--out bench/results] [--api HOST:PORT [--pid NAME=PID ...]]
                         [--rss-slope MIB_PER_HOUR] [--rss-rise MIB]
                         [--fd-rise N] [--thread-rise N] [--warmup 0.2]

Without --api, starts the local stack (tiny generated models, free ports, a
temporary run directory, semantic tokens capped as `make bench` caps them)
and samples its processes. With --api, loads a running stack; its processes
are sampled only when named with --pid (e.g. ``--pid rvc=1234``).

``concurrency`` clients each send the next request of a fixed mix (CYCLE) as
soon as their last one is answered, REST and gRPC through the same edge port:
the old server's POST /synthesize and /synthesize/stream and POST /rvc,
gRPC SynthesizeStream converted into an RVC voice, gRPC Rvc, OpenAI's
POST /v1/audio/speech (every response format in turn), clients that leave
mid-stream (gRPC and HTTP), and bad requests that must get their 4xx. Every
``--sample-seconds`` the RSS (VmRSS), open file descriptors and threads of
each process, summed with its descendants (RVC's workers, Triton's Python
stubs), are recorded. bench/trend.py judges each series after the warm-up.
The run fails (exit status 1) on growth, on any unexpected request outcome,
or on a process restart.

This module is the command; the pieces: bench/soak_settings.py (settings and
limits), bench/soak_requests.py (the request kinds and their mix),
bench/soak_load.py (the clients, and run_soak), bench/soak_samples.py (the
samples and verdicts), bench/soak_report.py (the report).
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from bench.soak_load import run_soak
from bench.soak_report import write_report
from bench.soak_settings import Settings, Thresholds

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = Thresholds()
    parser = argparse.ArgumentParser(prog="python -m bench.soak",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="load time (default 30)")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="clients, each with one request in flight (default 2)")
    parser.add_argument("--sample-seconds", type=float,
                        help="seconds between samples (default: the run / 180, 1..10 s)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--api", help="host:port (or http://host:port) of a running stack's "
                        "edge: no stack is started")
    parser.add_argument("--pid", action="append", default=[], metavar="NAME=PID",
                        help="with --api: a process of that stack to sample (repeatable)")
    parser.add_argument("--rss-slope", type=float, default=defaults.rss_slope_mib_per_hour,
                        help="RSS growth limit, MiB per hour (default %(default)s)")
    parser.add_argument("--rss-rise", type=float, default=defaults.rss_rise_mib,
                        help="RSS rise limit, last window's mean over the first's, MiB "
                             "(default %(default)s)")
    parser.add_argument("--fd-rise", type=float, default=defaults.fd_rise,
                        help="open files rise limit (default %(default)s)")
    parser.add_argument("--thread-rise", type=float, default=defaults.thread_rise,
                        help="threads rise limit (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=defaults.warmup,
                        help="share of the run not judged (default %(default)s)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.concurrency < 1:
        parser.error("--minutes must be positive and --concurrency at least 1")
    if not 0 <= args.warmup < 0.9:
        parser.error("--warmup must be within 0..0.9")
    seconds = args.minutes * 60
    if args.sample_seconds is None:
        args.sample_seconds = round(min(10.0, max(1.0, seconds / 180)), 1)
    if args.sample_seconds <= 0:
        parser.error("--sample-seconds must be positive")
    if seconds * (1 - args.warmup) / args.sample_seconds < 6:
        parser.error("too few samples after the warm-up to judge a trend: lengthen --minutes "
                     "or shorten --sample-seconds")
    if args.pid and not args.api:
        parser.error("--pid names processes of a stack given with --api")
    pids = {}
    for item in args.pid:
        name, _, pid = item.partition("=")
        if not name or not pid.isdigit():
            parser.error(f"--pid {item!r}: expected NAME=PID")
        pids[name] = int(pid)
    args.pids = pids
    if args.api:
        args.api = args.api.split("://", 1)[-1].rstrip("/")
    args.settings = Settings(seconds=seconds, concurrency=args.concurrency,
                             sample_seconds=args.sample_seconds,
                             thresholds=Thresholds(args.rss_slope, args.rss_rise, args.fd_rise,
                                                   args.thread_rise, args.warmup))
    return args


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` that stops the stack


def main(argv: list[str] | None = None) -> int:
    from bench.environment import environment
    from bench.stack import LOCAL_MAX_TOKENS, start_stack, watch

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    stem = f"soak-{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H%M%SZ}"
    if args.api:
        pids = args.pids
        results = run_soak(args.api, (lambda: pids) if pids else None, args.settings)
    else:
        # As `make bench`: the random-weight models never stop speaking by themselves.
        os.environ.setdefault("TTS_MAX_TOKENS", str(LOCAL_MAX_TOKENS))
        with tempfile.TemporaryDirectory(prefix="soak-stack-") as tmp:
            print("starting the local stack (generated tiny random-weight models)...", flush=True)
            config, supervisor = start_stack(Path(tmp))
            stop_watching = threading.Event()
            watcher = threading.Thread(target=watch, args=(supervisor, stop_watching),
                                       name="soak-watch", daemon=True)
            watcher.start()
            try:
                print(f"soak: {args.minutes:g} min at concurrency {args.concurrency}, "
                      f"a sample every {args.sample_seconds:g} s", flush=True)
                results = run_soak(
                    f"127.0.0.1:{config.api_port}",
                    lambda: {c.spec.name: c.process.pid for c in supervisor.children
                             if c.process is not None},
                    args.settings, log=lambda line: print(line, flush=True))
                results["target"] = f"local stack 127.0.0.1:{config.api_port}"
                results["settings"]["tts_max_tokens"] = os.environ["TTS_MAX_TOKENS"]
            finally:
                stop_watching.set()
                watcher.join(timeout=15)
                supervisor.stop(timeout=30)
    results["environment"] = environment()
    paths = write_report(results, args.out, stem)
    print()
    print(paths["markdown"].read_text())
    print(f"wrote {paths['json']}, {paths['markdown']}"
          + (f", {paths['chart']}" if paths["chart"] else ""))
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
