"""Writes a run's results: JSON (everything), Markdown (the tables), PNG charts.

``results`` is the dictionary the runner builds (see ``bench/__main__.py``):
environment, texts version, ``runs`` (stats.summarize rows, each with the
``engine`` that decoded the LLM on a local stack), ``llm_engine`` (the primary
engine: the one the issue's other targets are judged on), ``llm`` (the LLM-alone
rows, bench/llm.py), ``prefix_cache``, ``rvc_workers``, ``baseline``,
``overhead``, ``stages``, ``procstats``. Targets are evaluated by
bench/targets.py, the charts drawn by bench/charts.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.charts import charts
from bench.formatting import LAYER_NAMES, ms, num
from bench.targets import engine_comparison, engines_measured, evaluate_targets


def _engine_line(results: dict) -> str:
    engines = (results.get("settings") or {}).get("llm_engines") or engines_measured(results)
    if not engines:
        return "LLM engine: that of the stack measured (not started by the bench)"
    names = ", ".join(f"`{e}`" for e in engines)
    if len(engines) == 1:
        return f"LLM engine: {names}"
    return (f"LLM engines: {names}, one stack after the other; the issue's other targets, "
            f"the per-layer run and the baseline are `{results.get('llm_engine')}`'s")


def _errors(row: dict) -> str:
    return ", ".join(f"{k}×{v}" for k, v in row["errors"].items()) or "0"


def llm_sections(results: dict) -> list[str]:
    """The LLM alone, vLLM's prefix cache, and the engines compared."""
    lines = []
    llm = results.get("llm") or []
    notes = results.get("llm_notes") or {}
    if llm or notes:
        settings = results.get("settings") or {}
        lines += ["", "## LLM alone: token streams straight to Triton's `llm` model", "",
                  f"One fixed prompt (a cloned voice's), {settings.get('llm_max_tokens')} tokens "
                  "a stream at most, a response per token. tokens/s: every successful stream's "
                  "tokens over the level's wall-clock seconds; TTFT: request sent -> first "
                  "token (ms).", ""]
        if llm:
            lines += ["| engine | c | n | ok | errors | tokens | tokens/s | TTFT p50 | p95 | p99 "
                      "| stream p50 |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
            for r in llm:
                t = r["ttft"]
                lines.append(
                    f"| {r.get('engine') or '–'} | {r['concurrency']} | {r['requests']} "
                    f"| {r['ok']} | {_errors(r)} | {r['tokens']} "
                    f"| {num(r['tokens_per_second'], 1)} | {ms(t['p50'])} | {ms(t['p95'])} "
                    f"| {ms(t['p99'])} | {ms(r['stream_seconds']['p50'])} |")
        for engine, note in notes.items():
            if note != "measured":
                lines += ["", f"`{engine}`: {note}"]
    prefix = results.get("prefix_cache") or []
    if prefix:
        lines += ["", "## vLLM prefix cache (prompt tokens found in its KV cache / looked up)", "",
                  "| engine | load | hits | queries | hit rate |", "|---|---|---|---|---|"]
        loads = {"scenarios": "the scenarios", "llm": "LLM alone"}
        for r in prefix:
            rate = "–" if r["rate"] is None else f"{r['rate']:.1%}"
            if r["rate"] is None and r.get("note"):
                rate += f" ({r['note']})"
            lines.append(f"| {r['engine']} | {loads.get(r['load'], r['load'])} "
                         f"| {num(r['hits'], 0)} | {num(r['queries'], 0)} | {rate} |")
    comparison = engine_comparison(results)
    if comparison:
        lines += ["", "## vLLM vs the transformers loop (ratio = vLLM / loop)", "",
                  "| measure | c | vLLM | transformers loop | ratio | target |",
                  "|---|---|---|---|---|---|"]
        for r in comparison:
            def show(v, unit=r["unit"]):
                return num(v, 1) if unit == "tokens/s" else f"{ms(v)} ms"
            target = "" if r["target"] is None else f"{r['target']}: {r['status']}"
            ratio = "–" if r["ratio"] is None else f"{r['ratio']:.2f}x"
            lines.append(f"| {r['measure']} | {r['concurrency']} | {show(r['vllm'])} "
                         f"| {show(r['transformers'])} | {ratio} | {target} |")
    return lines


def markdown(results: dict) -> str:
    env = results.get("environment", {})
    several = len(engines_measured(results)) > 1
    lines = [
        f"# Benchmark {results.get('stem', '')}",
        "",
        f"texts `{results.get('texts_version')}`, target `{results.get('target')}`, "
        f"{env.get('cpu_count')} CPUs, python {env.get('python')}, torch {env.get('torch')}, "
        f"commit `{env.get('git_commit')}`",
        "",
        _engine_line(results),
        "",
        "## Latency and throughput (times in ms; RTF = total / audio seconds, median)",
        "",
        ("| engine " if several else "")
        + "| scenario | c | n | ok | errors | TTFA p50 | p95 | p99 | latency p50 | p95 | p99 "
        "| RTF | req/s | audio s/s |",
        ("|---" if several else "") + "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results.get("runs", []):
        errors = _errors(r)
        t, lat = r["ttfa"], r["latency"]
        lines.append(
            (f"| {r.get('engine') or '–'} " if several else "")
            + f"| {r['scenario']} | {r['concurrency']} | {r['requests']} | {r['ok']} | {errors} "
            f"| {ms(t['p50'])} | {ms(t['p95'])} | {ms(t['p99'])} "
            f"| {ms(lat['p50'])} | {ms(lat['p95'])} | {ms(lat['p99'])} "
            f"| {num(r['rtf'])} | {num(r['requests_per_second'])} "
            f"| {num(r['audio_seconds_per_second'])} |")

    lines += llm_sections(results)

    stages = results.get("stages") or {}
    if stages:
        lines += ["", "## Gateway stage timing (median s, from PipelineTiming)", "",
                  "| scenario | TTS queue | TTS compute | RVC queue | RVC compute | first audio | total |",
                  "|---|---|---|---|---|---|---|"]
        for name, s in stages.items():
            lines.append(f"| {name} | {num(s['tts_queue'], 3)} | {num(s['tts_compute'], 3)} "
                         f"| {num(s['rvc_queue'], 3)} | {num(s['rvc_compute'], 3)} "
                         f"| {num(s['first_audio'], 3)} | {num(s['total'], 3)} |")

    workers = results.get("rvc_workers") or []
    if workers:
        lines += ["", "## RVC worker scaling (whole-clip conversion, median s)", "",
                  "| workers | 1 request | 2 concurrent | throughput (req/s, 2 concurrent) |",
                  "|---|---|---|---|"]
        for w in workers:
            lines.append(f"| {w['workers']} | {w['one']:.2f} | {w['two']:.2f} | {2 / w['two']:.2f} |")

    baseline = results.get("baseline") or {}
    lines += ["", "## Serving overhead vs in-process baseline", ""]
    if results.get("overhead"):
        lines += ["| scenario | c | TTFA p50 stack | baseline | diff | ratio "
                  "| latency p50 stack | baseline | diff | ratio |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for o in results["overhead"]:
            t, lat = o["ttfa"], o["latency"]
            lines.append(
                f"| {o['scenario']} | {o['concurrency']} | {ms(t['served_p50'])} "
                f"| {ms(t['baseline_p50'])} | {ms(t['diff'])} | {num(t['ratio'])} "
                f"| {ms(lat['served_p50'])} | {ms(lat['baseline_p50'])} | {ms(lat['diff'])} "
                f"| {num(lat['ratio'])} |")
    else:
        lines.append(f"Not available: {baseline.get('note', 'no baseline')}")

    layers = results.get("layer_breakdown") or []
    if layers:
        lines += ["", "## Where the time goes: the same request entered at each layer "
                  "(concurrency 1, p50 ms)", "",
                  "Each row adds the layer named to the one below it; *adds* is its p50 "
                  "minus the next layer inward's.", "",
                  "| operation | compared on | entered at | p50 | adds | ratio | audio s | errors |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in layers:
            lines.append(
                f"| {row['operation']} | {row['metric']} | {LAYER_NAMES[row['layer']]} "
                f"| {ms(row['p50'])} | {ms(row['adds'])} | {num(row['ratio'])} "
                f"| {num(row['audio_seconds'])} | {row['errors']} |")

    procs = results.get("procstats") or {}
    if procs:
        lines += ["", "## Stack processes per scenario and concurrency (with their children)", "",
                  "| scenario | c | process | CPU s | peak RSS MiB | processes |",
                  "|---|---|---|---|---|---|"]
        for key, per in procs.items():
            scenario, _, c = key.rpartition("@")
            for name, p in per.items():
                lines.append(f"| {scenario} | {c} | {name} | {p['cpu_seconds']:.1f} "
                             f"| {p['peak_rss_mib']:.0f} | {p['processes']} |")

    restarts = results.get("restarts") or {}
    if restarts:
        lines += ["", "**Processes that died and were restarted during the run:** "
                  + ", ".join(f"{name} ×{count}" for name, count in restarts.items())
                  + " (see the errors above)."]

    lines += ["", "## Targets", "", "| target | result | numbers |", "|---|---|---|"]
    for t in results.get("targets", []):
        lines.append(f"| {t['target']} | {t['status']} | {t['detail']} |")
    if results.get("charts_note"):
        lines += ["", results["charts_note"]]
    return "\n".join(lines) + "\n"



def write_report(results: dict, out_dir: Path, stem: str) -> dict[str, Path | list[Path]]:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>-*.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {**results, "stem": stem}
    results["targets"] = evaluate_targets(results)
    pngs, note = charts(results, out_dir, stem)
    results["charts"] = [p.name for p in pngs]
    results["charts_note"] = note
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md_path = out_dir / f"{stem}.md"
    md_path.write_text(markdown(results))
    return {"json": json_path, "markdown": md_path, "charts": pngs}
