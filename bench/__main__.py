"""make bench: load the stack through its public edge and write a report.

    python -m bench [--api HOST:PORT] [--scenarios tts,rvc,...] [--concurrency 1,4,16]
                    [--requests 16] [--out bench/results] [--quick]

Without --api, starts the local stack (tiny generated models, free ports, a
temporary run directory) exactly as `make run` does, and measures each stack
process's CPU and memory too. Then the RVC worker-scaling measurement
(bench/rvc_workers.py) runs on its own, with the stack stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import inspect
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

from bench import stats
from bench.load import run_load
from bench.procstats import ProcessSampler
from bench.report import write_report
from bench.scenarios import SCENARIO_TEXT, SCENARIOS, TEXTS, Client, Inputs, load_inputs

REPO = Path(__file__).resolve().parents[1]


def environment() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
        commit += "+dirty" if dirty else ""
    except (OSError, subprocess.SubprocessError):
        commit = None
    try:
        import torch

        torch_version = torch.__version__
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        torch_version, cuda = None, None
    return {"cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch": torch_version, "gpu": cuda, "platform": platform.platform(),
            "host": socket.gethostname(), "git_commit": commit}


def start_stack(run_dir: Path):
    from services.stack import components
    from services.stack.config import StackConfig
    from services.stack.supervisor import Supervisor

    config = dataclasses.replace(
        StackConfig(), run_dir=run_dir, models_dir=run_dir / "models",
        model_repo=REPO / "triton" / "model_repo", descriptor=REPO / "gen" / "voice_v1.pb",
    ).with_free_ports()
    supervisor = Supervisor(components.build(config, REPO), run_dir / "logs")
    try:
        supervisor.start(timeout=max(config.startup_timeout, 300))
    except BaseException:
        supervisor.stop(timeout=30)
        raise
    return config, supervisor


def load_baseline():
    """The in-process baseline's entry point, or (None, why not)."""
    try:
        from bench import baseline  # written separately; optional
    except ImportError as exc:
        return None, f"bench/baseline.py not importable ({exc})"
    run = getattr(baseline, "run_baseline", None)
    if run is None or not inspect.iscoroutinefunction(run):
        return None, "bench/baseline.py has no `async def run_baseline(...)`"
    return run, "available"


async def measure(args, inputs: Inputs, address: str, roots: dict[str, int]) -> dict:
    client = Client(address)
    runs, procs = [], {}
    try:
        for name in args.scenarios:
            scenario = SCENARIOS[name]

            async def call(scenario=scenario):
                return await scenario(client, inputs)

            warm = await call()  # loads models, caches the speaker: not counted
            print(f"{name}: warm-up {'ok' if warm.ok else warm.code} "
                  f"in {warm.total_seconds:.2f} s", flush=True)
            client.stages.clear()
            for c in args.concurrency:
                sampler = ProcessSampler(roots) if roots else nullcontext()
                with sampler:
                    result = await run_load(name, call, c, args.requests)
                row = stats.summarize(name, c, result.samples, result.wall_seconds)
                runs.append(row)
                if roots:
                    procs[f"{name}@{c}"] = sampler.result()
                print(f"{name} c={c}: {row['ok']}/{row['requests']} ok, latency p50 "
                      f"{row['latency']['p50']}, errors {row['errors']}", flush=True)
        stages = stats.stage_medians(client.stages)
    finally:
        await client.close()
    return {"runs": runs, "procstats": procs, "stages": stages}


# The baseline has no HTTP: the edge's stream is compared with the in-process stream.
BASELINE_SCENARIO = {"http_stream": "pipeline_stream"}


async def baselines(args, inputs: Inputs, runs: list[dict]) -> dict:
    """The in-process baseline on the same inputs (generated tiny models, as the
    local stack serves), run after the stack has stopped so they do not compete."""
    if args.no_baseline:
        return {"baseline": {"available": False, "note": "skipped (--no-baseline)"}, "overhead": []}
    if args.api:
        return {"baseline": {"available": False, "note": "the baseline runs generated tiny "
                             "models: only comparable with the local stack (no --api)"},
                "overhead": []}
    run, note = load_baseline()
    if run is None:
        return {"baseline": {"available": False, "note": note}, "overhead": []}
    from bench import baseline

    rows, overhead, failures = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        spark, voices, assets = baseline.generate_tiny_models(Path(tmp))
        for served in runs:
            name = BASELINE_SCENARIO.get(served["scenario"], served["scenario"])
            text = getattr(inputs, SCENARIO_TEXT[served["scenario"]])
            try:
                base_inputs = baseline.BaselineInputs(
                    texts=(text if isinstance(text, str) else inputs.short,),
                    reference=inputs.reference, rvc_clip=inputs.rvc_clip,
                    spark_model_dir=spark, rvc_voices_dir=voices, rvc_assets_dir=assets,
                    seed=inputs.seed, reference_text=inputs.reference_transcript,
                    rvc_voice=inputs.rvc_voice)
                samples = await run(name, served["concurrency"], served["requests"], base_inputs)
            except Exception as exc:  # optional and written separately: report, go on
                failures.append(f"{served['scenario']}: {type(exc).__name__}: {exc}")
                print(f"baseline {name} c={served['concurrency']}: failed ({exc})", flush=True)
                continue
            base = stats.summarize(served["scenario"], served["concurrency"], samples)
            base["baseline_scenario"] = name
            rows.append(base)
            overhead.append(stats.overhead(served, base))
    note = "available" if not failures else "partly failed: " + "; ".join(failures)
    return {"baseline": {"available": bool(rows), "note": note, "runs": rows},
            "overhead": overhead}


async def rvc_scaling(quick: bool, f0: str) -> list[dict]:
    from voice.v1 import rvc_pb2

    from bench.rvc_workers import measure as measure_workers
    from services.rvc.tiny_models import write_tiny_models

    seconds, rounds = (2.0, 1) if quick else (4.0, 3)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_tiny_models(Path(tmp) / "rvc")
        rows = []
        for workers in (1, 2):
            row = await measure_workers(root, workers, seconds, rounds, getattr(rvc_pb2, f0))
            rows.append({**row, "seconds": seconds, "rounds": rounds, "f0": f0})
            print(f"rvc workers={workers}: one {row['one']:.2f} s, two {row['two']:.2f} s",
                  flush=True)
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--api", help="host:port of a running stack's edge (skip starting one)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, of {', '.join(SCENARIOS)}")
    parser.add_argument("--concurrency", help="comma-separated levels (default 1,4,16)")
    parser.add_argument("--requests", type=int, help="requests per level (default 16)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--texts", type=Path, default=TEXTS, help="the versioned text set")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: concurrency 1,2, 4 requests, short RVC scaling")
    parser.add_argument("--no-rvc-workers", action="store_true",
                        help="skip the RVC worker-scaling measurement")
    parser.add_argument("--rvc-f0", default="F0_METHOD_HARVEST",
                        help="f0 method of the worker-scaling measurement")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args(argv)
    quick = ("1,2", 4) if args.quick else ("1,4,16", 16)
    args.concurrency = args.concurrency or quick[0]
    args.requests = args.requests or quick[1]
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    inputs = load_inputs(args.texts)
    results = {"environment": environment(), "texts_version": inputs.version,
               "scenario_texts": SCENARIO_TEXT,
               "settings": {"scenarios": args.scenarios, "concurrency": args.concurrency,
                            "requests": args.requests, "quick": args.quick}}
    if args.api:
        results["target"] = args.api
        results.update(asyncio.run(measure(args, inputs, args.api, {})))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp:
            print("starting the local stack (generated tiny models)...", flush=True)
            config, supervisor = start_stack(Path(tmp))
            try:
                roots = {c.spec.name: c.process.pid for c in supervisor.children}
                address = f"127.0.0.1:{config.api_port}"
                results["target"] = f"local stack {address}"
                results.update(asyncio.run(measure(args, inputs, address, roots)))
            finally:
                supervisor.stop(timeout=30)
    stem = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H%M%SZ}-{socket.gethostname()}"
    results.update(rvc_workers=[], baseline={"available": False, "note": "not run yet"},
                   overhead=[])
    write_report(results, args.out, stem)  # the stack's figures are safe before the rest runs
    if not args.no_rvc_workers:
        results["rvc_workers"] = asyncio.run(rvc_scaling(args.quick, args.rvc_f0))
        write_report(results, args.out, stem)
    results.update(asyncio.run(baselines(args, inputs, results["runs"])))
    paths = write_report(results, args.out, stem)
    print()
    print(paths["markdown"].read_text())
    print(f"wrote {paths['json']}, {paths['markdown']}"
          + "".join(f", {p}" for p in paths["charts"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
