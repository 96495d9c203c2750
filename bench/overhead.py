"""The serving overhead: the in-process baseline (bench/baseline.py) run on the
served runs' inputs and model files, after the stack has stopped, and the
stack's figures compared with it.
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path

from bench import models as bench_models
from bench import stats
from bench.models import ModelDirs
from bench.scenarios import SCENARIO_TEXT, Inputs


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
    from localstack.config import StackConfig

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
    from bench.baseline_inputs import BaselineInputs

    rows, overhead, failures = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        dirs = dirs or bench_models.tiny(Path(tmp))
        for served in runs:
            name = BASELINE_SCENARIO.get(served["scenario"], served["scenario"])
            text = getattr(inputs, SCENARIO_TEXT[served["scenario"]])
            try:
                base_inputs = BaselineInputs(
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
