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

This module is the command; the pieces: bench/measure.py (the measurements),
bench/stack.py (the local stack), bench/overhead.py (the baseline and the
overhead against it), bench/environment.py (the host), bench/report.py (the
report).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from bench import models as bench_models
from bench.environment import environment
from bench.layers import breakdown
from bench.measure import measure, rvc_scaling, serve
from bench.overhead import baselines
from bench.report import write_report
from bench.scenarios import SCENARIO_TEXT, SCENARIOS, TEXTS, load_inputs
from bench.stack import ENGINES, LOCAL_MAX_TOKENS

REPO = Path(__file__).resolve().parents[1]


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
