"""The issue's targets, judged on a run's results (the dictionary bench/report.py
writes): each PASS, MISS or N/A with the numbers behind it. Also the engines
compared, vLLM against the transformers loop, which the engine targets and the
report's comparison table read.
"""

from __future__ import annotations

from bench.formatting import ms, num

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
            lambda v: f"{ms(v)} ms")
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
            "detail": f"pipeline_stream c={r['concurrency']}: TTFA p50 {ms(r['ttfa']['p50'])} ms"
                      f" / total p50 {ms(r['latency']['p50'])} ms = {share:.0%}",
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
            "detail": f"TTFA +{ms(row['ttfa']['diff'])} ms, latency +{ms(row['latency']['diff'])} ms",
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
    for name, value, limit, shown in ((names[0], first, GPU_FIRST_CHUNK_S, ms(first) + " ms"),
                                      (names[1], rtf, GPU_RTF, num(rtf, 3))):
        out.append({"target": name,
                    "status": "N/A" if value is None else ("PASS" if value <= limit else "MISS"),
                    "detail": "not measured" if value is None else shown})
    return out
