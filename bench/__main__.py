"""make bench: load the stack through its public edge and write a report.

    python -m bench [--api HOST:PORT] [--scenarios tts,rvc,...] [--concurrency 1,4,16]
                    [--requests 16] [--out bench/results] [--quick] [--max-tokens N]
                    [--full-size] [--layer-requests N] [--llm-engine vllm,transformers]
                    [--llm-concurrency 1,4,16] [--llm-requests N] [--llm-max-tokens N]

Without --api, starts the local stack (tiny generated models, free ports, a
temporary run directory) exactly as `make run` does, and measures each stack
process's CPU and memory too, the LLM alone (bench/llm.py: token streams
straight to Triton's llm model, and vLLM's prefix cache), and enters the same
requests at each layer (bench/layers.py). With --llm-engine transformers the
stack's llm model is the decoding loop vLLM replaced (bench/legacy_llm); with
vllm,transformers one stack runs after the other and the report compares
them. Then the RVC worker-scaling measurement (bench/rvc_workers.py) and the
in-process baseline (bench/baseline.py) run on their own, with the stack
stopped.
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
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from contextlib import nullcontext
from pathlib import Path

from bench import models as bench_models
from bench import stats
from bench.layers import breakdown, measure_layers
from bench.legacy_llm.repo import CPU_CONCURRENCY, GPU_CONCURRENCY, legacy_model_repo
from bench.llm import measure_llm, prefix_counters, prefix_hit_rate
from bench.load import run_load
from bench.models import ModelDirs
from bench.procstats import ProcessSampler
from bench.report import write_report
from bench.scenarios import SCENARIO_TEXT, SCENARIOS, TEXTS, Client, Inputs, load_inputs

REPO = Path(__file__).resolve().parents[1]
# Semantic tokens per sentence on the local stack (2 s of speech): its models are
# random weights, which run every sentence to the service's cap otherwise.
LOCAL_MAX_TOKENS = 100
# What decodes the Spark LLM behind Triton's llm model: vLLM (the stack as it is), or
# the transformers loop it replaced (bench/legacy_llm), kept for this comparison only.
ENGINES = ("vllm", "transformers")


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


def start_stack(run_dir: Path, models_dir: Path | None = None, engine: str = "vllm"):
    """The local stack on free ports, on ``models_dir`` (None: generated tiny models),
    its LLM decoded by ``engine``: vllm (the stack as it is), or transformers (the
    llm model of bench/legacy_llm, spark_tts's old concurrency cap, and no vLLM)."""
    from services.stack import components
    from services.stack.config import StackConfig
    from services.stack.supervisor import Supervisor

    if engine not in ENGINES:
        raise ValueError(f"LLM engine {engine!r}: one of {', '.join(ENGINES)}")
    config = dataclasses.replace(
        StackConfig.load(), run_dir=run_dir, models_dir=models_dir or run_dir / "models",
        model_repo=REPO / "triton" / "model_repo", descriptor=REPO / "gen" / "voice_v1.pb",
    ).with_free_ports()
    if engine == "transformers":
        # As services/stack/components.py decides where the models run.
        gpu = (components.gpu_visible() if config.spark_tts_device == "auto"
               else config.spark_tts_device != "cpu")
        repo = legacy_model_repo(config.model_repo, run_dir / "legacy-model-repo",
                                 GPU_CONCURRENCY if gpu else CPU_CONCURRENCY)
        config = dataclasses.replace(config, model_repo=repo)
    specs = components.build(config, REPO)
    if engine == "transformers":  # nothing asks the vLLM server: it would only take memory
        specs = [spec for spec in specs if spec.name != "vllm"]
    supervisor = Supervisor(specs, run_dir / "logs")
    try:
        supervisor.start(timeout=max(config.startup_timeout, 300))
    except BaseException:
        supervisor.stop(timeout=30)
        raise
    return config, supervisor


def watch(supervisor, stop: threading.Event) -> None:
    try:
        supervisor.watch(stop)
    except Exception as exc:  # a process that keeps dying: the run goes on, with errors
        print(f"stack: {exc}", flush=True)


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


async def measure(args, inputs: Inputs, address: str, roots: dict[str, int],
                  ports: dict[str, int] | None = None, engine: str | None = None,
                  triton: str | None = None, vllm_metrics: str | None = None) -> dict:
    """The scenarios through the edge at ``address`` (rows tagged with the LLM
    ``engine``); then, given Triton's gRPC address ``triton``, the LLM alone
    (bench/llm.py); given vLLM's ``vllm_metrics`` URL, its prefix-cache hit rate
    over the scenarios and over the LLM-alone load; given the stack's internal
    ``ports``, the per-layer measurement (bench/layers.py)."""
    client = Client(address)
    runs, procs = [], {}
    before = prefix_counters(vllm_metrics) if vllm_metrics else None
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
                if engine is not None:
                    row["engine"] = engine
                runs.append(row)
                if roots:
                    procs[f"{name}@{c}"] = sampler.result()
                print(f"{name} c={c}: {row['ok']}/{row['requests']} ok, latency p50 "
                      f"{row['latency']['p50']}, errors {row['errors']}", flush=True)
        stages = stats.stage_medians(client.stages)
    finally:
        await client.close()
    prefix = []
    if vllm_metrics:
        after = prefix_counters(vllm_metrics)
        prefix.append({"engine": engine, "load": "scenarios", **prefix_hit_rate(before, after)})
        before = after
    llm_rows, llm_note = [], "skipped" if not triton else "skipped (--llm-requests 0)"
    if triton and args.llm_requests:
        try:
            llm_rows = await measure_llm(triton, engine, args.llm_concurrency,
                                         args.llm_requests, args.llm_max_tokens)
            llm_note = "measured"
        except Exception as exc:  # keep the scenarios' figures: report it, go on
            llm_note = f"failed: {type(exc).__name__}: {exc}"
            print(f"LLM-alone measurement {llm_note}", flush=True)
        if vllm_metrics:
            prefix.append({"engine": engine, "load": "llm",
                           **prefix_hit_rate(before, prefix_counters(vllm_metrics))})
    layer_rows, layer_note = [], "skipped" if not ports else "skipped (--layer-requests 0)"
    if ports and args.layer_requests:
        try:
            layer_rows = await measure_layers(ports, inputs, args.layer_requests)
            layer_note = "measured"
        except Exception as exc:  # keep the scenarios' figures: report it, go on
            layer_note = f"failed: {type(exc).__name__}: {exc}"
            print(f"per-layer measurement {layer_note}", flush=True)
    return {"runs": runs, "procstats": procs, "stages": stages, "layers": layer_rows,
            "layers_note": layer_note, "llm": llm_rows, "llm_note": llm_note,
            "prefix_cache": prefix}


def baseline_device() -> str:
    """Where the stack's models run when it picks (SPARK_TTS_DEVICE / RVC_DEVICE auto)."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def baseline_threads() -> int | None:
    """The local stack's CPU torch threads per stage (it gives Spark TTS and RVC each a
    share of the cores): the baseline's threads, set process-wide, get the same."""
    if baseline_device() != "cpu":
        return None
    from services.stack.config import StackConfig

    return StackConfig.load().cpu_threads()[0]


# The baseline has no HTTP: the edge's stream is compared with the in-process stream.
BASELINE_SCENARIO = {"http_stream": "pipeline_stream"}


async def baselines(args, inputs: Inputs, runs: list[dict], dirs: ModelDirs | None) -> dict:
    """The in-process baseline on the same inputs and the same model files as the
    local stack (``dirs``; None: generated tiny ones), run after the stack has
    stopped so they do not compete."""
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
        dirs = dirs or bench_models.tiny(Path(tmp))
        for served in runs:
            name = BASELINE_SCENARIO.get(served["scenario"], served["scenario"])
            text = getattr(inputs, SCENARIO_TEXT[served["scenario"]])
            try:
                base_inputs = baseline.BaselineInputs(
                    texts=(text if isinstance(text, str) else inputs.short,),
                    reference=inputs.reference, rvc_clip=inputs.rvc_clip,
                    spark_model_dir=dirs.spark, rvc_voices_dir=dirs.rvc_voices,
                    rvc_assets_dir=dirs.rvc_assets,
                    seed=inputs.seed, reference_text=inputs.reference_transcript,
                    rvc_voice=inputs.rvc_voice, max_tokens=args.max_tokens,
                    device=baseline_device(), torch_threads=baseline_threads())
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
    parser.add_argument("--max-tokens", type=int,
                        help="cap on semantic tokens per sentence (50 a second of speech); "
                             f"default {LOCAL_MAX_TOKENS} on the local stack, whose random-weight "
                             "models never predict the end of speech, none with --api; 0: no cap")
    parser.add_argument("--layer-requests", type=int,
                        help="requests per layer in the per-layer breakdown at concurrency 1 "
                             "(default 8, --quick 2; 0 skips it; local stack only)")
    parser.add_argument("--full-size", action="store_true",
                        help="serve random-weight models of the real checkpoints' sizes "
                             "(written once into --models-cache; several GB): real-size "
                             "compute without the trained weights, e.g. on a GPU host")
    parser.add_argument("--models-cache", type=Path, default=REPO / ".bench-models",
                        help="where --full-size writes and keeps its models")
    parser.add_argument("--llm-engine",
                        help="what decodes the LLM on the local stack: vllm (default), "
                             "transformers (the loop vLLM replaced, bench/legacy_llm), or "
                             "vllm,transformers: one stack after the other, compared")
    parser.add_argument("--llm-concurrency",
                        help="levels of the LLM-alone measurement (default 1,4,16; --quick 1,4)")
    parser.add_argument("--llm-requests", type=int,
                        help="streams per LLM-alone level, at least its concurrency "
                             "(default 16, --quick 4; 0 skips it; local stack only)")
    parser.add_argument("--llm-max-tokens", type=int,
                        help="tokens per LLM-alone stream (default --max-tokens, else "
                             f"{LOCAL_MAX_TOKENS})")
    args = parser.parse_args(argv)
    if args.full_size and args.api:
        parser.error("--full-size starts a local stack: it cannot be combined with --api")
    if args.llm_engine and args.api:
        parser.error("--llm-engine picks the local stack's LLM: it cannot be combined with --api")
    engines = [e.strip() for e in (args.llm_engine or "vllm").split(",") if e.strip()]
    if not engines or set(engines) - set(ENGINES) or len(set(engines)) != len(engines):
        parser.error(f"--llm-engine {args.llm_engine!r}: one or both of {', '.join(ENGINES)}, "
                     "each once")
    args.llm_engines = [] if args.api else engines
    quick = ("1,2", 4, 2, "1,4") if args.quick else ("1,4,16", 16, 8, "1,4,16")
    args.concurrency = args.concurrency or quick[0]
    args.requests = args.requests or quick[1]
    args.layer_requests = quick[2] if args.layer_requests is None else args.layer_requests
    args.llm_requests = quick[1] if args.llm_requests is None else args.llm_requests
    if args.llm_requests < 0:
        parser.error("--llm-requests must not be negative")
    try:
        args.llm_concurrency = [int(c) for c in (args.llm_concurrency or quick[3]).split(",")
                                if c.strip()]
    except ValueError:
        parser.error(f"--llm-concurrency {args.llm_concurrency!r}: comma-separated integers")
    if not args.llm_concurrency or min(args.llm_concurrency) < 1:
        parser.error("--llm-concurrency needs levels of at least 1")
    if args.max_tokens is None:
        args.max_tokens = None if args.api else LOCAL_MAX_TOKENS
    elif args.max_tokens == 0:
        args.max_tokens = None
    elif not 1 <= args.max_tokens <= 3000:
        parser.error("--max-tokens must be within 1..3000 (the TTS service's own ceiling), "
                     "or 0 for none")
    if args.llm_max_tokens is None:
        args.llm_max_tokens = args.max_tokens or LOCAL_MAX_TOKENS
    elif not 1 <= args.llm_max_tokens <= 3000:
        parser.error("--llm-max-tokens must be within 1..3000")
    if args.layer_requests < 0:
        parser.error("--layer-requests must not be negative")
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    return args


def _exit_on_sigterm(signum, frame) -> None:
    # SystemExit unwinds through the `finally` that stops the stack: a terminated
    # run leaves no Triton stubs or shared-memory segments behind.
    raise SystemExit(128 + signum)


def primary_engine(engines: list[str]) -> str | None:
    """The engine whose rows the issue's other targets, the per-layer run and the
    baseline comparison use: vLLM (what the stack serves) when it was measured."""
    if not engines:
        return None
    return "vllm" if "vllm" in engines else engines[0]


def merge_engine(results: dict, part: dict, engine: str, labelled: bool) -> None:
    """One engine's stack measurement into ``results``: rows appended (each tagged
    with its engine), per-process and stage figures keyed ``name [engine]`` when
    several engines share the report, the per-layer rows of the primary engine."""
    def label(name: str) -> str:
        return f"{name} [{engine}]" if labelled else name

    results["runs"] += part["runs"]
    results["llm"] += part["llm"]
    results["prefix_cache"] += part["prefix_cache"]
    results["llm_notes"][engine] = part["llm_note"]
    for key, per in part["procstats"].items():
        scenario, _, c = key.rpartition("@")
        results["procstats"][f"{label(scenario)}@{c}"] = per
    for name, medians in part["stages"].items():
        results["stages"][label(name)] = medians
    for name, count in part.get("restarts", {}).items():
        results["restarts"][label(name)] = count
    if engine == results.get("llm_engine"):
        results["layers"], results["layers_note"] = part["layers"], part["layers_note"]


def serve(args, inputs: Inputs, engine: str, dirs: ModelDirs | None, primary: bool) -> dict:
    """The local stack with ``engine`` behind its llm model, measured, then stopped.
    The per-layer run is the primary engine's only."""
    with tempfile.TemporaryDirectory(prefix=f"bench-stack-{engine}-") as tmp:
        print(f"starting the local stack ({'full-size' if dirs else 'generated tiny'} "
              f"random-weight models, LLM on {engine})...", flush=True)
        config, supervisor = start_stack(Path(tmp), dirs.models_dir if dirs else None, engine)
        # As under `make run` (and Kubernetes): a process that dies is restarted.
        stop_watching = threading.Event()
        watcher = threading.Thread(target=watch, args=(supervisor, stop_watching),
                                   name="bench-watch", daemon=True)
        watcher.start()
        part = {}
        try:
            roots = {c.spec.name: c.process.pid for c in supervisor.children}
            address = f"127.0.0.1:{config.api_port}"
            ports = {"api": config.api_port, "gateway": config.gateway_port,
                     "tts": config.tts_port, "rvc": config.rvc_port,
                     "triton": config.triton_grpc_port}
            metrics = (f"http://127.0.0.1:{config.vllm_port}/metrics" if engine == "vllm"
                       else None)
            part = asyncio.run(measure(
                args, inputs, address, roots, ports if primary else None, engine=engine,
                triton=f"127.0.0.1:{config.triton_grpc_port}", vllm_metrics=metrics))
        finally:
            stop_watching.set()
            watcher.join(timeout=15)
            supervisor.stop(timeout=30)
            part["restarts"] = {c.spec.name: c.starts - 1 for c in supervisor.children
                                if c.starts > 1}
        return part


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    inputs = load_inputs(args.texts)
    if args.max_tokens is not None:
        if args.api:  # a stack of someone else's settings: every request says it
            inputs = dataclasses.replace(inputs, max_tokens=args.max_tokens)
        else:  # the local stack's TTS service caps every request, as the baseline does
            os.environ["TTS_MAX_TOKENS"] = str(args.max_tokens)
    dirs, failures = None, []
    stem = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H%M%SZ}-{socket.gethostname()}"
    results = {"environment": environment(), "texts_version": inputs.version,
               "scenario_texts": SCENARIO_TEXT,
               "settings": {"scenarios": args.scenarios, "concurrency": args.concurrency,
                            "requests": args.requests, "quick": args.quick,
                            "max_tokens": args.max_tokens, "full_size": args.full_size,
                            "layer_requests": args.layer_requests,
                            "llm_engines": args.llm_engines,
                            "llm_concurrency": args.llm_concurrency,
                            "llm_requests": args.llm_requests,
                            "llm_max_tokens": args.llm_max_tokens},
               "llm_engine": primary_engine(args.llm_engines),
               "rvc_workers": [], "baseline": {"available": False, "note": "not run yet"},
               "overhead": []}
    if args.api:
        results["target"] = args.api
        results.update(asyncio.run(measure(args, inputs, args.api, {})))
    else:
        if args.full_size:
            print(f"full-size random-weight models in {args.models_cache}...", flush=True)
            dirs = bench_models.full_size(args.models_cache)
        results.update(target="local stack", runs=[], procstats={}, stages={}, layers=[],
                       layers_note="not measured", llm=[], llm_notes={}, prefix_cache=[],
                       restarts={})
        for engine in args.llm_engines:
            try:
                part = serve(args, inputs, engine, dirs, engine == results["llm_engine"])
            except Exception as exc:  # e.g. a stack that would not start: the other engine
                failures.append(engine)  # is still measured; the run exits 1
                results["llm_notes"][engine] = f"stack failed: {type(exc).__name__}: {exc}"
                print(f"the stack with the LLM on {engine} failed: {exc}", flush=True)
                continue
            merge_engine(results, part, engine, labelled=len(args.llm_engines) > 1)
            results["layer_breakdown"] = breakdown(results["layers"], [])
            write_report(results, args.out, stem)  # each stack's figures are safe at once
    results["layer_breakdown"] = breakdown(results.get("layers", []), [])
    write_report(results, args.out, stem)  # the stack's figures are safe before the rest runs
    if not args.no_rvc_workers:
        results["rvc_workers"] = asyncio.run(rvc_scaling(args.quick, args.rvc_f0))
        write_report(results, args.out, stem)
    served = [r for r in results["runs"] if r.get("engine") == results["llm_engine"]]
    results.update(asyncio.run(baselines(args, inputs, served, dirs)))
    results["layer_breakdown"] = breakdown(results.get("layers", []),
                                           results["baseline"].get("runs", []))
    paths = write_report(results, args.out, stem)
    print()
    print(paths["markdown"].read_text())
    print(f"wrote {paths['json']}, {paths['markdown']}"
          + "".join(f", {p}" for p in paths["charts"]))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
