"""The bench report's PNG charts (matplotlib, when installed): latency per
scenario, the LLM alone per engine, RVC worker scaling, gateway stages and the
per-layer breakdown.
"""

from __future__ import annotations

from pathlib import Path

from bench.formatting import LAYER_NAMES
from bench.targets import engines_measured

ENGINE_LABELS = {"vllm": "vLLM", "transformers": "transformers loop"}


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
