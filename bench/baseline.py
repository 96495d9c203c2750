"""The in-process baseline: the same models on the same inputs, without serving.

No gRPC, no Triton, no Envoy: the Spark TTS model code (``spark_tts``: audio
tokenizer -> LLM -> BiCodec vocoder, streamed through ``StreamJoiner``) and
the RVC worker's handler (``services.rvc.worker.ConversionWorker.handle``)
are called directly in this process, with the parameters the services use:

* Spark TTS: the cloning prompt Triton's ``spark_tts`` model builds, the
  tts_gateway's default sampling (``SamplingConfig`` defaults, token cap
  ``token_cap(text, TtsSettings())``), the request's seed, streaming on (what
  the gateway and the TTS service ask Triton for), the chunk plan of
  ``spark_tts.streaming``. The reference clip is tokenized once and kept, as
  Triton's speaker cache keeps it (``speaker_cache=False`` tokenizes it once
  per request instead).
* RVC: ``handle("convert", ...)`` of a ``ConversionWorker`` built as
  ``services.rvc.worker:create`` builds it, seed 0 and no pad, as the RVC
  service's whole-clip ``Convert`` sends; voice ``untrained-v2-f0-48k`` and
  f0 method pm by default (the demo profile of the generated stack).
* pipeline: sentences from ``split_sentences(text, 200)``; sentence k+1 is
  synthesised (up to ``lookahead`` = 2 ahead) while sentence k is converted,
  the gateway's ``Pipeline.synthesize_stream`` overlap, with one seed for all
  sentences of a request.

Scenarios and what a ``Sample`` measures (``time.perf_counter``, from the
moment a worker thread starts the request):

* ``tts``: first audio = the first streamed chunk; total = the last chunk.
* ``rvc``: one clip converted; first audio = total (not streamed).
* ``pipeline``: TTS then RVC per sentence, audio joined; first audio = total
  (the gateway's unary answer arrives whole).
* ``pipeline_stream``: the same; first audio = the first sentence converted.

Concurrency and capacity. The models are CPU (or GPU) bound and torch
releases the GIL inside its ops, so ``concurrency`` requests run at once on a
pool of ``concurrency`` threads sharing one copy of each model; the pool is
a closed loop (a thread starts its next request when its last one ends), the
way the load generator keeps ``concurrency`` requests in flight against the
stack. Each generation runs alone (no cross-request batching) and each RVC
conversion runs on the shared worker object (no worker processes).

    in-process capacity(scenario, c) = requests / (last end - first start)
    of run_baseline(scenario, c, requests), in requests per second, on the
    same machine, the same model weights, the same inputs and the same torch
    thread setting as the stack;

the target "served throughput >= 0.9x the in-process capacity with the same
workers" compares the stack's completed requests per second at concurrency
``c`` with this number at the same ``c``. ``capacity(samples)`` computes it.

Torch threads: on the CPU the local stack gives Spark TTS (Triton's Python
models, through ``OMP_NUM_THREADS``) and the RVC workers each a share of the
cores (``StackConfig.cpu_threads``, half each by default), since sentences
are synthesised and converted at the same time. ``python -m bench`` passes
that share as ``torch_threads``, which is set process-wide here, so each
request's TTS and RVC work runs on as many threads as in the stack.
``torch_threads=None`` leaves torch's default (a thread per core).

Models are loaded once per (model folders, device) and kept; with
``warmup`` one untimed request of the scenario runs first, as the stack is
warm when the benchmark measures it.

The pieces: bench/baseline_inputs.py (BaselineInputs, tiny generated models),
bench/baseline_models.py (the models loaded, speak and convert); the requests
and their timing are here.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench.baseline_inputs import BaselineInputs
from bench.baseline_models import (
    SPARK_RATE,
    Models,
    convert,
    load_models,
    reference_tokens,
    speak,
)
from bench.samples import Sample
from services.common.audio import PcmAudio
from services.gateway.sentences import split_sentences

log = logging.getLogger(__name__)

SCENARIOS = ("tts", "rvc", "pipeline", "pipeline_stream")


def _tts_request(models: Models, inputs: BaselineInputs, text: str) -> Sample:
    start = time.perf_counter()
    first = None
    frames = 0
    for chunk in speak(models, text, reference_tokens(models, inputs), inputs):
        if chunk.size and first is None:
            first = time.perf_counter() - start
        frames += chunk.size
    total = time.perf_counter() - start
    return Sample(True, "OK", first if first is not None else total, total,
                  frames / SPARK_RATE, start)


def _rvc_request(models: Models, inputs: BaselineInputs, text: str) -> Sample:
    start = time.perf_counter()
    out = convert(models, inputs.rvc_clip, inputs)
    total = time.perf_counter() - start
    return Sample(True, "OK", total, total, out.duration, start)


def _pipeline_request(
    models: Models, inputs: BaselineInputs, text: str, streamed: bool
) -> Sample:
    """The gateway's synthesize_stream in threads: TTS runs ahead while RVC converts."""
    start = time.perf_counter()
    sentences = split_sentences(text, inputs.sentence_chars)
    if not sentences:
        raise ValueError("text is empty")
    spoken: queue.Queue = queue.Queue(maxsize=inputs.lookahead)
    stop = threading.Event()

    def put(item: object) -> bool:
        # The consumer may have left (an RVC failure): never block on a full queue then.
        while not stop.is_set():
            try:
                spoken.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def producer() -> None:
        try:
            speaker = reference_tokens(models, inputs)
            for sentence in sentences:
                chunks = list(speak(models, sentence, speaker, inputs))
                if not put(PcmAudio(np.concatenate(chunks).astype(np.float32), SPARK_RATE)):
                    return
        except Exception as exc:  # handed to the consumer, which raises it in order
            put(exc)

    thread = threading.Thread(target=producer, name="baseline-tts", daemon=True)
    thread.start()
    first = None
    audio_seconds = 0.0
    try:
        for _ in sentences:
            result = spoken.get()
            if isinstance(result, BaseException):
                raise result
            converted = convert(models, result, inputs)
            audio_seconds += converted.duration
            if first is None:
                first = time.perf_counter() - start
    finally:
        stop.set()
        thread.join()
    total = time.perf_counter() - start
    return Sample(True, "OK", first if streamed else total, total, audio_seconds, start)


def _request_fn(scenario: str) -> Callable[[Models, BaselineInputs, str], Sample]:
    if scenario == "tts":
        return _tts_request
    if scenario == "rvc":
        return _rvc_request
    if scenario == "pipeline":
        return lambda m, i, t: _pipeline_request(m, i, t, streamed=False)
    if scenario == "pipeline_stream":
        return lambda m, i, t: _pipeline_request(m, i, t, streamed=True)
    raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")


def _guarded(fn: Callable[[], Sample]) -> Sample:
    start = time.perf_counter()
    try:
        return fn()
    except Exception as exc:  # a failed request is a sample, as it is against the stack
        elapsed = time.perf_counter() - start
        log.warning("baseline request failed: %s: %s", type(exc).__name__, exc)
        return Sample(False, "INTERNAL", elapsed, elapsed, 0.0, start)


async def run_baseline(
    scenario: str, concurrency: int, requests: int, inputs: BaselineInputs
) -> list[Sample]:
    """``requests`` timed in-process requests, ``concurrency`` at a time, in start order."""
    request = _request_fn(scenario)
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if requests < 0:
        raise ValueError("requests must not be negative")
    if inputs.torch_threads:
        import torch

        torch.set_num_threads(inputs.torch_threads)
    models = await asyncio.to_thread(load_models, inputs)
    if inputs.warmup:
        warm = await asyncio.to_thread(request, models, inputs, inputs.texts[0])
        if not warm.ok:
            raise RuntimeError(f"the baseline's warm-up request failed: {warm.code}")
    texts = inputs.texts
    with ThreadPoolExecutor(concurrency, thread_name_prefix="baseline") as pool:
        futures = [
            asyncio.wrap_future(pool.submit(
                _guarded, lambda i=i: request(models, inputs, texts[i % len(texts)])
            ))
            for i in range(requests)
        ]
        samples = await asyncio.gather(*futures)
    return sorted(samples, key=lambda s: s.started)


def capacity(samples: list[Sample]) -> float:
    """Completed requests per second over the run: the in-process capacity."""
    ok = [s for s in samples if s.ok]
    if not ok:
        return 0.0
    span = max(s.started + s.total_seconds for s in ok) - min(s.started for s in samples)
    return len(ok) / span if span > 0 else float("inf")
