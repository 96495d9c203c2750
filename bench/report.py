"""Writes a run's results: JSON (everything), Markdown (the tables), PNG charts.

``results`` is the dictionary the runner builds (see ``bench/__main__.py``):
environment, texts version, ``runs`` (stats.summarize rows, each with the
``engine`` that decoded the LLM on a local stack), ``llm_engine`` (the primary
engine: the one the issue's other targets are judged on), ``llm`` (the LLM-alone
rows, bench/llm.py), ``prefix_cache``, ``rvc_workers``, ``baseline``,
``overhead``, ``stages``, ``procstats``. Targets are evaluated here.
"""

from __future__ import annotations

import json
from pathlib import Path

# The issue's targets.
STREAM_TTFA_SHARE = 0.35  # streaming first audio <= 35 % of total, five sentences
RVC_SCALING = 1.7  # 2 workers >= 1.7x the throughput of 1
ERROR_FREE_CONCURRENCY = 16
OVERHEAD_S = 0.010  # serving overhead <= 10 ms p50 vs the in-process baseline
CAPACITY_SHARE = 0.9  # at concurrency 16, >= 0.9x the in-process capacity
GPU_FIRST_CHUNK_S = 0.150  # GPU, full-size models: first chunk p50 at c = 1
GPU_RTF = 0.05  # GPU: real-time factor at c = 4
# vLLM against the transformers loop it replaced (both engines in one run):
# LLM-alone tokens/s ratio vLLM / loop at least this, per concurrency ...
LLM_SPEEDUP = {1: 2.0, 4: 3.0}
# ... and pipeline_stream's TTFA p50 ratio vLLM / loop at most this, at this concurrency.
ENGINE_TTFA_RATIO = 0.5
ENGINE_TTFA_CONCURRENCY = 4
ENGINE_LABELS = {"vllm": "vLLM", "transformers": "transformers loop"}
LAYER_NAMES = {"edge": "Envoy (edge)", "gateway": "gateway", "tts_service": "TTS service",
               "triton": "Triton", "rvc_service": "RVC service", "in_process": "in-process"}


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def rvc_speedup(rows: list[dict]) -> float | None:
    """Throughput of two concurrent requests on 2 workers over that on 1."""
    by = {r["workers"]: r for r in rows or []}
    if 1 not in by or 2 not in by or not by[2]["two"]:
        return None
    return by[1]["two"] / by[2]["two"]


def served_runs(results: dict) -> list[dict]:
    """The rows of the primary engine (all rows of a run without engines)."""
    primary = results.get("llm_engine")
    return [r for r in results.get("runs", []) if r.get("engine") in (None, primary)]


def engines_measured(results: dict) -> list[str]:
    """The engines with rows in this run, in the order they ran."""
    rows = (results.get("runs") or []) + (results.get("llm") or [])
    return list(dict.fromkeys(r["engine"] for r in rows if r.get("engine")))


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return None if ours is None or not theirs else ours / theirs


def engine_comparison(results: dict) -> list[dict]:
    """vLLM against the transformers loop, measure by measure: LLM-alone tokens/s and
    TTFT at every concurrency both measured, pipeline_stream TTFA p50 at each level
    both measured. Each row's ``target`` and ``status`` where the issue sets one.
    Empty unless both engines were measured."""
    if not {"vllm", "transformers"} <= set(engines_measured(results)):
        return []
    llm = {(r["engine"], r["concurrency"]): r for r in results.get("llm") or []}
    stream = {(r["engine"], r["concurrency"]): r for r in results.get("runs") or []
              if r["scenario"] == "pipeline_stream"}
    rows = []

    def add(measure: str, c: int, new, old, unit: str, target: str | None = None,
            passes=None) -> None:
        ratio = _ratio(new, old)
        status = None if target is None else (
            "N/A" if ratio is None else "PASS" if passes(ratio) else "MISS")
        rows.append({"measure": measure, "concurrency": c, "unit": unit, "vllm": new,
                     "transformers": old, "ratio": ratio, "target": target, "status": status})

    levels = sorted({c for e, c in llm if e == "vllm"} & {c for e, c in llm if e == "transformers"})
    for c in levels:
        new, old = llm[("vllm", c)], llm[("transformers", c)]
        limit = LLM_SPEEDUP.get(c)
        add("LLM tokens/s", c, new["tokens_per_second"], old["tokens_per_second"], "tokens/s",
            None if limit is None else f">= {limit:g}x", lambda r, limit=limit: r >= limit)
    for c in levels:
        new, old = llm[("vllm", c)], llm[("transformers", c)]
        add("LLM TTFT p50", c, new["ttft"]["p50"], old["ttft"]["p50"], "s")
    both = sorted({c for e, c in stream if e == "vllm"}
                  & {c for e, c in stream if e == "transformers"})
    for c in both:
        new, old = stream[("vllm", c)], stream[("transformers", c)]
        target = (f"<= {ENGINE_TTFA_RATIO:g}x" if c == ENGINE_TTFA_CONCURRENCY else None)
        add("pipeline_stream TTFA p50", c, new["ttfa"]["p50"], old["ttfa"]["p50"], "s",
            target, lambda r: r <= ENGINE_TTFA_RATIO)
    return rows


def engine_targets(results: dict) -> list[dict]:
    """The issue's vLLM-vs-loop targets (PASS/MISS), N/A unless both engines ran at
    the level the target names."""
    names = [(("LLM tokens/s", c), f"vLLM: LLM tokens/s >= {limit:g}x the transformers "
                                    f"loop's (c={c})") for c, limit in LLM_SPEEDUP.items()]
    names.append((("pipeline_stream TTFA p50", ENGINE_TTFA_CONCURRENCY),
                  f"vLLM: pipeline_stream TTFA p50 <= {ENGINE_TTFA_RATIO:g}x the transformers "
                  f"loop's (c={ENGINE_TTFA_CONCURRENCY})"))
    rows = {(r["measure"], r["concurrency"]): r for r in engine_comparison(results)}
    both = {"vllm", "transformers"} <= set(engines_measured(results))
    out = []
    for key, name in names:
        row = rows.get(key)
        if row is None:
            detail = ("needs both engines (--llm-engine vllm,transformers)" if not both else
                      f"not measured at c={key[1]} by both engines")
            out.append({"target": name, "status": "N/A", "detail": detail})
            continue
        show = (lambda v: f"{v:.1f} tokens/s") if row["unit"] == "tokens/s" else (
            lambda v: f"{_ms(v)} ms")
        detail = (f"vLLM {'–' if row['vllm'] is None else show(row['vllm'])} vs loop "
                  f"{'–' if row['transformers'] is None else show(row['transformers'])}"
                  + ("" if row["ratio"] is None else f" = {row['ratio']:.2f}x"))
        out.append({"target": name, "status": row["status"], "detail": detail})
    return out


def evaluate_targets(results: dict) -> list[dict]:
    targets = []
    runs = served_runs(results)

    stream = sorted((r for r in runs if r["scenario"] == "pipeline_stream" and r["ok"]),
                    key=lambda r: r["concurrency"])
    if stream:
        r = stream[0]
        share = r["ttfa"]["p50"] / r["latency"]["p50"]
        targets.append({
            "target": f"streaming TTFA <= {STREAM_TTFA_SHARE:.0%} of total (five sentences)",
            "status": "PASS" if share <= STREAM_TTFA_SHARE else "MISS",
            "detail": f"pipeline_stream c={r['concurrency']}: TTFA p50 {_ms(r['ttfa']['p50'])} ms"
                      f" / total p50 {_ms(r['latency']['p50'])} ms = {share:.0%}",
        })
    else:
        targets.append({"target": "streaming TTFA share", "status": "N/A",
                        "detail": "pipeline_stream not measured (or no successful request)"})

    speedup = rvc_speedup(results.get("rvc_workers") or [])
    targets.append({
        "target": f"RVC 2 workers >= {RVC_SCALING}x throughput of 1",
        "status": "N/A" if speedup is None else ("PASS" if speedup >= RVC_SCALING else "MISS"),
        "detail": "not measured" if speedup is None else f"{speedup:.2f}x (two concurrent requests)",
    })

    at16 = [r for r in runs if r["concurrency"] == ERROR_FREE_CONCURRENCY]
    errors = sum(r["requests"] - r["ok"] for r in at16)
    targets.append({
        "target": f"concurrency {ERROR_FREE_CONCURRENCY}: zero errors",
        "status": "N/A" if not at16 else ("PASS" if errors == 0 else "MISS"),
        "detail": (f"concurrency {ERROR_FREE_CONCURRENCY} not measured" if not at16 else
                   f"{errors} errors in {sum(r['requests'] for r in at16)} requests"),
    })

    base_runs = {(r["scenario"], r["concurrency"]): r
                 for r in (results.get("baseline") or {}).get("runs", [])}
    for r in at16:
        base = base_runs.get((r["scenario"], r["concurrency"]))
        ours, theirs = r.get("requests_per_second"), (base or {}).get("requests_per_second")
        share = ours / theirs if ours is not None and theirs else None
        targets.append({
            "target": f"concurrency {ERROR_FREE_CONCURRENCY}: throughput >= "
                      f"{CAPACITY_SHARE}x in-process capacity ({r['scenario']})",
            "status": "N/A" if share is None else ("PASS" if share >= CAPACITY_SHARE else "MISS"),
            "detail": "no baseline at this level" if share is None else
                      f"{ours:.2f} req/s served vs {theirs:.2f} in-process = {share:.2f}x",
        })

    targets += gpu_targets(results)
    targets += engine_targets(results)

    rows = results.get("overhead") or []
    if not rows:
        note = (results.get("baseline") or {}).get("note", "baseline not available")
        targets.append({"target": f"serving overhead <= {OVERHEAD_S * 1000:.0f} ms p50",
                        "status": "N/A", "detail": note})
    for row in rows:
        diffs = [row[m]["diff"] for m in ("ttfa", "latency") if row[m]["diff"] is not None]
        worst = max(diffs) if diffs else None
        targets.append({
            "target": f"serving overhead <= {OVERHEAD_S * 1000:.0f} ms p50 "
                      f"({row['scenario']} c={row['concurrency']})",
            "status": "N/A" if worst is None else ("PASS" if worst <= OVERHEAD_S else "MISS"),
            "detail": f"TTFA +{_ms(row['ttfa']['diff'])} ms, latency +{_ms(row['latency']['diff'])} ms",
        })
    return targets


def gpu_targets(results: dict) -> list[dict]:
    """First chunk of the TTS service's stream at c = 1 (the per-layer run) and the
    tts scenario's RTF at c = 4, on a GPU host (full-size models)."""
    names = (f"GPU: TTS first chunk p50 <= {GPU_FIRST_CHUNK_S * 1000:.0f} ms (c=1)",
             f"GPU: TTS RTF <= {GPU_RTF} (c=4)")
    if not (results.get("environment") or {}).get("gpu"):
        return [{"target": name, "status": "N/A", "detail": "no GPU in this run"}
                for name in names]
    first = next((r["ttfa"]["p50"] for r in results.get("layers") or []
                  if r["operation"] == "tts" and r["layer"] == "tts_service"), None)
    rtf = next((r["rtf"] for r in served_runs(results)
                if r["scenario"] == "tts" and r["concurrency"] == 4), None)
    out = []
    for name, value, limit, shown in ((names[0], first, GPU_FIRST_CHUNK_S, _ms(first) + " ms"),
                                      (names[1], rtf, GPU_RTF, _num(rtf, 3))):
        out.append({"target": name,
                    "status": "N/A" if value is None else ("PASS" if value <= limit else "MISS"),
                    "detail": "not measured" if value is None else shown})
    return out


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
                    f"| {_num(r['tokens_per_second'], 1)} | {_ms(t['p50'])} | {_ms(t['p95'])} "
                    f"| {_ms(t['p99'])} | {_ms(r['stream_seconds']['p50'])} |")
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
                         f"| {_num(r['hits'], 0)} | {_num(r['queries'], 0)} | {rate} |")
    comparison = engine_comparison(results)
    if comparison:
        lines += ["", "## vLLM vs the transformers loop (ratio = vLLM / loop)", "",
                  "| measure | c | vLLM | transformers loop | ratio | target |",
                  "|---|---|---|---|---|---|"]
        for r in comparison:
            def show(v, unit=r["unit"]):
                return _num(v, 1) if unit == "tokens/s" else f"{_ms(v)} ms"
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
            f"| {_ms(t['p50'])} | {_ms(t['p95'])} | {_ms(t['p99'])} "
            f"| {_ms(lat['p50'])} | {_ms(lat['p95'])} | {_ms(lat['p99'])} "
            f"| {_num(r['rtf'])} | {_num(r['requests_per_second'])} "
            f"| {_num(r['audio_seconds_per_second'])} |")

    lines += llm_sections(results)

    stages = results.get("stages") or {}
    if stages:
        lines += ["", "## Gateway stage timing (median s, from PipelineTiming)", "",
                  "| scenario | TTS queue | TTS compute | RVC queue | RVC compute | first audio | total |",
                  "|---|---|---|---|---|---|---|"]
        for name, s in stages.items():
            lines.append(f"| {name} | {_num(s['tts_queue'], 3)} | {_num(s['tts_compute'], 3)} "
                         f"| {_num(s['rvc_queue'], 3)} | {_num(s['rvc_compute'], 3)} "
                         f"| {_num(s['first_audio'], 3)} | {_num(s['total'], 3)} |")

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
                f"| {o['scenario']} | {o['concurrency']} | {_ms(t['served_p50'])} "
                f"| {_ms(t['baseline_p50'])} | {_ms(t['diff'])} | {_num(t['ratio'])} "
                f"| {_ms(lat['served_p50'])} | {_ms(lat['baseline_p50'])} | {_ms(lat['diff'])} "
                f"| {_num(lat['ratio'])} |")
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
                f"| {_ms(row['p50'])} | {_ms(row['adds'])} | {_num(row['ratio'])} "
                f"| {_num(row['audio_seconds'])} | {row['errors']} |")

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


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def charts(results: dict, out_dir: Path, stem: str) -> tuple[list[Path], str | None]:
    """PNG charts, or none and a note when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "Charts skipped: matplotlib is not installed (pip install matplotlib)."
    written = []
    runs = results.get("runs", [])
    several = len(engines_measured(results)) > 1
    # One panel per scenario, and per engine when several decoded the LLM.
    scenarios = list(dict.fromkeys((r["scenario"], r.get("engine") if several else None)
                                   for r in runs))
    if scenarios:
        fig, axes = plt.subplots(1, len(scenarios), figsize=(4 * len(scenarios), 3.5),
                                 squeeze=False)
        for ax, (name, engine) in zip(axes[0], scenarios, strict=True):
            rows = sorted((r for r in runs if r["scenario"] == name and r["ok"]
                           and (not several or r.get("engine") == engine)),
                          key=lambda r: r["concurrency"])
            cs = [r["concurrency"] for r in rows]
            for p in ("p50", "p95", "p99"):
                ax.plot(cs, [r["latency"][p] * 1000 for r in rows], marker="o", label=f"latency {p}")
            ax.plot(cs, [r["ttfa"]["p50"] * 1000 for r in rows], marker="x", linestyle="--",
                    label="TTFA p50")
            ax.set_title(name if engine is None else f"{name} [{engine}]")
            ax.set_xlabel("concurrency")
            ax.set_ylabel("ms")
            ax.set_xscale("log", base=2)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize="small")
        written.append(_save(fig, out_dir / f"{stem}-latency.png"))

    llm = [r for r in results.get("llm") or [] if r["tokens_per_second"] is not None]
    if llm:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.5), squeeze=False)
        for engine in dict.fromkeys(r.get("engine") for r in llm):
            rows = sorted((r for r in llm if r.get("engine") == engine),
                          key=lambda r: r["concurrency"])
            cs = [r["concurrency"] for r in rows]
            label = ENGINE_LABELS.get(engine, engine or "llm")
            axes[0][0].plot(cs, [r["tokens_per_second"] for r in rows], marker="o", label=label)
            axes[0][1].plot(cs, [r["ttft"]["p50"] * 1000 for r in rows], marker="o", label=label)
        for ax, title, unit in ((axes[0][0], "LLM alone: tokens/s", "tokens/s"),
                                (axes[0][1], "LLM alone: TTFT p50", "ms")):
            ax.set_title(title)
            ax.set_xlabel("concurrency")
            ax.set_ylabel(unit)
            ax.set_xscale("log", base=2)
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
        written.append(_save(fig, out_dir / f"{stem}-llm.png"))

    workers = results.get("rvc_workers") or []
    if workers:
        fig, ax = plt.subplots(figsize=(4, 3.5))
        ax.bar([str(w["workers"]) for w in workers], [2 / w["two"] for w in workers])
        ax.set_xlabel("RVC workers")
        ax.set_ylabel("conversions/s (2 concurrent)")
        ax.set_title("RVC throughput vs workers")
        written.append(_save(fig, out_dir / f"{stem}-rvc-workers.png"))

    stages = results.get("stages") or {}
    if stages:
        keys = ["tts_queue", "tts_compute", "rvc_queue", "rvc_compute", "first_audio", "total"]
        fig, ax = plt.subplots(figsize=(7, 3.5))
        width = 0.8 / len(stages)
        for i, (name, s) in enumerate(stages.items()):
            ax.bar([k + i * width for k in range(len(keys))], [s[k] for k in keys], width,
                   label=name)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(keys))], keys, fontsize="small")
        ax.set_ylabel("seconds (median)")
        ax.set_title("Gateway stage timing (stages overlap: sentences are pipelined)")
        ax.legend(fontsize="small")
        written.append(_save(fig, out_dir / f"{stem}-stages.png"))
    layers = [r for r in results.get("layer_breakdown") or [] if r["p50"] is not None]
    if layers:
        operations = list(dict.fromkeys(r["operation"] for r in layers))
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for y, name in enumerate(operations):
            left = 0.0
            # Innermost first: the compute, then what each layer outward adds.
            for row in reversed([r for r in layers if r["operation"] == name]):
                # Negative additions (noise) draw as nothing; an unmeasured inner layer
                # leaves the whole rest to the row.
                width = row["p50"] - left if row["adds"] is None else max(row["adds"], 0.0)
                ax.barh(y, width * 1000, left=left * 1000, label=LAYER_NAMES[row["layer"]])
                left += width
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        ax.legend(unique.values(), unique.keys(), fontsize="small")
        ax.set_yticks(range(len(operations)), operations)
        ax.set_xlabel("p50 ms, concurrency 1 (each layer's addition stacked)")
        ax.set_title("Per-layer time breakdown")
        written.append(_save(fig, out_dir / f"{stem}-layers.png"))
    return written, None


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
