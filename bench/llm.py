"""The LLM alone: token streams straight to Triton's ``llm`` model, and vLLM's prefix cache.

Each request is one stream of Triton's gRPC stream API (tritonclient) to the
``llm`` model, whichever engine serves it (vLLM, or the transformers loop of
bench/legacy_llm), with one fixed prompt (a cloned voice's: the generation is
semantic tokens from the first) and a fixed ``max_tokens``; every request has
its own seed. A stream ends when the model has sent its last response. Per
concurrency level: the generated tokens of the successful requests per
wall-clock second (first request sent -> last response in), and the time to
the first token (token_group 1: a response per token).

The prefix cache: vLLM's counters of prompt tokens looked up in its KV cache
(``vllm:prefix_cache_queries_total``) and found there
(``vllm:prefix_cache_hits_total``), read from its ``/metrics`` before and after
a load; the hit rate is the difference of the one over that of the other.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bench import stats
from bench.load import run_load

LLM_MODEL = "llm"
# The fixed prompt's text: one sentence of the length the pipeline's are.
PROMPT_TEXT = "The quick brown fox jumps over the lazy dog while the evening train rolls by."
DEADLINE_S = 600.0
HITS = "vllm:prefix_cache_hits_total"
QUERIES = "vllm:prefix_cache_queries_total"


def llm_prompt(text: str = PROMPT_TEXT) -> str:
    """A cloned voice's prompt (fixed global tokens): only semantic tokens follow."""
    from spark_tts import prompts

    return prompts.cloning_prompt(text, list(range(prompts.GLOBAL_TOKENS)))


@dataclass(frozen=True)
class LlmSample:
    ok: bool
    code: str  # "OK", the error's class, or NO_TOKENS
    first_token_seconds: float  # request sent -> first token in
    total_seconds: float  # request sent -> stream ended
    tokens: int
    started: float = 0.0


def summarize(engine: str | None, concurrency: int, samples: Sequence[LlmSample],
              wall_seconds: float, max_tokens: int) -> dict:
    """One level: aggregate tokens/s (successful streams' tokens per wall second), TTFT."""
    ok = [s for s in samples if s.ok]
    tokens = sum(s.tokens for s in ok)
    errors: dict[str, int] = {}
    for s in samples:
        if not s.ok:
            errors[s.code] = errors.get(s.code, 0) + 1
    return {
        "engine": engine,
        "concurrency": concurrency,
        "requests": len(samples),
        "ok": len(ok),
        "errors": dict(sorted(errors.items())),
        "max_tokens": max_tokens,
        "tokens": tokens,
        "wall_seconds": wall_seconds,
        "tokens_per_second": tokens / wall_seconds if ok and wall_seconds > 0 else None,
        "ttft": stats.percentiles(s.first_token_seconds for s in ok),
        "stream_seconds": stats.percentiles(s.total_seconds for s in ok),
    }


def _inputs(prompt: str, max_tokens: int, seed: int) -> list:
    from tritonclient.grpc import InferInput

    def tensor(name: str, value, dtype) -> InferInput:
        item = InferInput(name, [1, 1], {object: "BYTES", np.int32: "INT32",
                                         np.int64: "INT64"}[dtype])
        item.set_data_from_numpy(np.array([[value]], dtype=dtype))  # [batch, 1]
        return item

    return [tensor("prompt", prompt.encode(), object),
            tensor("max_tokens", max_tokens, np.int32),
            tensor("seed", seed, np.int64),
            tensor("token_group", 1, np.int32)]


async def stream_once(client, prompt: str, max_tokens: int, seed: int) -> LlmSample:
    """One request's stream to the ``llm`` model, timed. The request iterator ends
    after its one request: Triton ends the stream once that has had its last response."""
    inputs = _inputs(prompt, max_tokens, seed)

    async def requests():
        yield {"model_name": LLM_MODEL, "inputs": inputs}

    start = time.perf_counter()
    first, tokens, responses = None, 0, None
    try:
        responses = client.stream_infer(requests(), stream_timeout=DEADLINE_S)
        async for result, error in responses:
            if error is not None:
                responses.cancel()
                return LlmSample(False, "MODEL_ERROR", 0.0, time.perf_counter() - start, 0, start)
            count = result.as_numpy("kind").size
            if count and first is None:
                first = time.perf_counter() - start
            tokens += count
    except Exception as exc:  # tritonclient's and gRPC's errors alike: a failed sample
        if responses is not None:
            responses.cancel()
        return LlmSample(False, type(exc).__name__, 0.0, time.perf_counter() - start, 0, start)
    total = time.perf_counter() - start
    if first is None:
        return LlmSample(False, "NO_TOKENS", 0.0, total, 0, start)
    return LlmSample(True, "OK", first, total, tokens, start)


async def measure_llm(address: str, engine: str | None, levels: Sequence[int], requests: int,
                      max_tokens: int, prompt: str | None = None) -> list[dict]:
    """At each concurrency ``c`` of ``levels``, max(``requests``, c) streams with at most
    c in flight (a closed loop), after one untimed warm-up stream."""
    from tritonclient.grpc.aio import InferenceServerClient

    prompt = prompt or llm_prompt()
    client = InferenceServerClient(address)
    rows, seed = [], 0
    try:
        await stream_once(client, prompt, max_tokens, 10**6)  # warm-up, not counted
        for c in levels:
            def call():
                nonlocal seed
                seed += 1
                return stream_once(client, prompt, max_tokens, seed)

            result = await run_load(f"llm@{c}", call, c, max(requests, c))
            # run_load turns a call that raised into a bench Sample: a failed stream here.
            samples = [s if isinstance(s, LlmSample) else
                       LlmSample(False, s.code, 0.0, 0.0, 0, s.started) for s in result.samples]
            row = summarize(engine, c, samples, result.wall_seconds, max_tokens)
            rows.append(row)
            rate = row["tokens_per_second"]
            print(f"llm [{engine}] c={c}: {row['ok']}/{row['requests']} ok, "
                  f"{'–' if rate is None else f'{rate:.1f}'} tokens/s, "
                  f"TTFT p50 {row['ttft']['p50']}, errors {row['errors']}", flush=True)
    finally:
        await client.close()
    return rows


def metric_total(text: str, name: str) -> float | None:
    """The sum of every sample of ``name`` (all label sets) in a Prometheus text
    exposition; None when there is none."""
    total, found = 0.0, False
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(name) or line[len(name):len(name) + 1] not in ("{", " "):
            continue
        rest = line[line.rindex("}") + 1:] if line[len(name)] == "{" else line[len(name):]
        fields = rest.split()
        if not fields:
            continue
        try:
            total += float(fields[0])
        except ValueError:
            continue
        found = True
    return total if found else None


def prefix_counters(metrics_url: str, timeout: float = 5.0) -> dict | None:
    """vLLM's prefix-cache counters now, or None when its metrics cannot be read."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=timeout) as response:
            text = response.read().decode()
    except (OSError, urllib.error.URLError):
        return None
    hits, queries = metric_total(text, HITS), metric_total(text, QUERIES)
    if hits is None or queries is None:
        return None
    return {"hits": hits, "queries": queries}


def prefix_hit_rate(before: dict | None, after: dict | None) -> dict:
    """Prompt tokens looked up and found in the prefix cache between two readings."""
    if before is None or after is None:
        return {"hits": None, "queries": None, "rate": None,
                "note": "vLLM's metrics could not be read"}
    hits, queries = after["hits"] - before["hits"], after["queries"] - before["queries"]
    return {"hits": hits, "queries": queries, "rate": hits / queries if queries > 0 else None,
            "note": "measured" if queries > 0 else "no prompt tokens were looked up"}
