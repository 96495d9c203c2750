"""The vLLM server that decodes the Spark LLM, as the TTS service's status shows it:
whether it answers, what it is doing, and how often prompts reuse its prefix cache."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# vLLM's own metrics (its /metrics), summed over their labels.
_SAMPLES = {
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:prefix_cache_hits_total": "hits",
    "vllm:prefix_cache_queries_total": "queries",
    "vllm:generation_tokens_total": "generated",
}


@dataclass(frozen=True)
class LlmServerState:
    address: str
    ready: bool
    running: int = 0
    waiting: int = 0
    prefix_cache_hit_rate: float = 0.0
    generated_tokens: float = 0.0
    error: str = ""


def read_metrics(text: str) -> dict[str, float]:
    """The samples of ``_SAMPLES`` in a Prometheus text page, each summed over labels."""
    totals = dict.fromkeys(_SAMPLES.values(), 0.0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = _SAMPLES.get(sample.name)
            if key is not None:
                totals[key] += sample.value
    return totals


def _fetch(url: str, timeout: float) -> LlmServerState:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as health:
            ready = health.status == 200
        with urllib.request.urlopen(f"{url}/metrics", timeout=timeout) as page:
            totals = read_metrics(page.read().decode("utf-8", errors="replace"))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return LlmServerState(url, False, error=f"{type(exc).__name__}: {exc}")
    return LlmServerState(
        url, ready,
        running=int(totals["running"]),
        waiting=int(totals["waiting"]),
        prefix_cache_hit_rate=totals["hits"] / totals["queries"] if totals["queries"] else 0.0,
        generated_tokens=totals["generated"],
    )


async def llm_server_state(url: str, timeout: float = 2.0) -> LlmServerState:
    return await asyncio.to_thread(_fetch, url, timeout)
