"""What a bench run measures: the scenarios through a stack's edge (with the LLM
alone and the per-layer run where the stack is local), a local stack started,
measured and stopped per LLM engine, and the RVC worker scaling on its own.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from contextlib import nullcontext
from pathlib import Path

from bench import stats
from bench.layers import measure_layers
from bench.llm import measure_llm, prefix_counters, prefix_hit_rate
from bench.load import run_load
from bench.models import ModelDirs
from bench.procstats import ProcessSampler
from bench.scenarios import SCENARIOS, Client, Inputs
from bench.stack import start_stack, watch


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
