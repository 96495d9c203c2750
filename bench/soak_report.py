"""The soak's report: JSON (everything), Markdown (the tables) and a PNG chart
of each metric over time per process.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.soak_settings import METRICS, UNITS


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(results: dict) -> str:
    s = results["settings"]
    th = s["thresholds"]
    lines = [
        f"# Soak {results.get('stem', '')}".rstrip(), "",
        f"Target: {results['target']}; {s['seconds'] / 60:g} min of load "
        f"({results['wall_seconds'] / 60:.1f} min wall, the last requests drained), "
        f"concurrency {s['concurrency']}, a sample every {s['sample_seconds']:g} s.",
        "",
        f"**Verdict: {'PASS' if results['passed'] else 'FAIL'}**"
        + ("" if results["passed"] else " — " + "; ".join(results["failures"])),
        "",
        "## Requests", "",
        "| kind | requests | as expected | unexpected | p50 | max |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind, r in results["requests"].items():
        wrong = ", ".join(f"{c} ×{n}" for c, n in r["unexpected"].items()) or "0"
        lines.append(f"| {kind} | {r['requests']} | {r['ok']} | {wrong} | "
                     f"{_num(r['p50_s'], 2)} s | {_num(r['max_s'], 2)} s |")
    total = sum(r["requests"] for r in results["requests"].values())
    lines += ["", f"{total} requests, {results['unexpected']} unexpected outcomes. "
              "`bad_request` counts as expected when the edge answered its 4xx "
              "(gRPC: its status)."]
    if results["unexpected_examples"]:
        lines += ["", "First unexpected outcomes:", ""]
        lines += [f"- {e}" for e in results["unexpected_examples"]]
    if results["restarts"]:
        lines += ["", "Restarts: " + "; ".join(
            f"{r['process']} {'restarted' if r['new_pid'] else 'not running'} at t={r['t']} s"
            for r in results["restarts"])]
    lines += [
        "", "## Processes", "",
        f"Each process with its descendants. Warm-up: the first {th['warmup']:.0%} of the "
        f"run is not judged; windows: the first and last {th['window']:.0%} of the samples "
        f"after it. Growth = slope over the limit **and** rise over the limit: RSS "
        f"{th['rss_slope_mib_per_hour']:g} MiB/h and {th['rss_rise_mib']:g} MiB; open files "
        f"any upward slope and {th['fd_rise']:g}; threads any upward slope and "
        f"{th['thread_rise']:g}.", "",
        "| process | metric | start | end | peak | first window | last window | rise "
        "| slope /h | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    if not results["verdicts"]:
        lines.append("| (no process sampled: --api without --pid) | | | | | | | | | |")
    for name, per in results["verdicts"].items():
        for metric in METRICS:
            v = per[metric]
            verdict = ("GROWS" if v["grew"] else "ok") if v["judged"] else "not judged"
            lines.append(
                f"| {name} | {UNITS[metric]} | {_num(v['start'])} | {_num(v['end'])} | "
                f"{_num(v['peak'])} | {_num(v['first_window'])} | {_num(v['last_window'])} | "
                f"{_num(v['rise'])} | {_num(v['slope_per_hour'])} | {verdict}: {v['reason']} |")
    env = results.get("environment")
    if env:
        lines += ["", f"Environment: {env.get('cpu_count')} CPUs, GPU {env.get('gpu') or 'none'},"
                  f" Python {env.get('python')}, torch {env.get('torch')}, "
                  f"commit {env.get('git_commit')}."]
    return "\n".join(lines) + "\n"


def chart(results: dict, path: Path) -> Path | None:
    """RSS, open files and threads over time per process (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    samples = results["samples"]
    names = sorted({n for s in samples for n in s["procs"]})
    if not names:
        return None
    fig, axes = plt.subplots(len(METRICS), 1, figsize=(9, 8), sharex=True)
    warm = results["settings"]["thresholds"]["warmup"] * samples[-1]["t"] / 60
    for ax, metric in zip(axes, METRICS, strict=True):
        for name in names:  # change since the first sample: small processes stay visible
            rows = [(s["t"] / 60, s["procs"][name][metric]) for s in samples if name in s["procs"]]
            ax.plot([t for t, _ in rows], [v - rows[0][1] for _, v in rows],
                    label=f"{name} ({rows[0][1]:.0f} at first)")
        ax.axvspan(0, warm, color="0.9", label="warm-up")
        ax.set_ylabel(f"{UNITS[metric]}, change")
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.legend(loc="upper left", fontsize="x-small", ncol=3)
    axes[0].set_title("Soak: each stack process with its descendants")
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(results: dict, out_dir: Path, stem: str) -> dict[str, Path | None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {**results, "stem": stem}
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    md_path = out_dir / f"{stem}.md"
    md_path.write_text(markdown(results))
    return {"json": json_path, "markdown": md_path,
            "chart": chart(results, out_dir / f"{stem}.png")}
