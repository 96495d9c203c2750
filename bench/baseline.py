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
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.samples import Sample
from services.common.audio import PcmAudio, resample, to_mono
from services.gateway.sentences import split_sentences
from services.rvc.params import ConversionParams, F0Method
from services.tts_gateway.settings import TtsSettings
from services.tts_gateway.synthesis import token_cap

log = logging.getLogger(__name__)

SCENARIOS = ("tts", "rvc", "pipeline", "pipeline_stream")
DEFAULT_RVC_VOICE = "untrained-v2-f0-48k"
SPARK_RATE = 16_000
TINY_SPARK_DIR = "Spark-TTS-tiny"
TINY_RVC_DIR = "rvc-untrained"


@dataclass(frozen=True)
class BaselineInputs:
    """What every baseline request gets; request i speaks ``texts[i % len(texts)]``."""

    texts: tuple[str, ...]
    reference: PcmAudio  # the TTS speaker's reference clip (any rate, mono or not)
    rvc_clip: PcmAudio  # the clip the ``rvc`` scenario converts
    spark_model_dir: Path
    rvc_voices_dir: Path
    rvc_assets_dir: Path
    seed: int = 1234
    max_tokens: int | None = None  # lowers token_cap(text) as the service's TTS_MAX_TOKENS does
    reference_text: str = ""
    rvc_voice: str = DEFAULT_RVC_VOICE
    f0_method: str = "pm"
    device: str = "cpu"
    torch_threads: int | None = None  # None: torch's default, a thread per core
    warmup: bool = True
    speaker_cache: bool = True
    sentence_chars: int = 200
    lookahead: int = 2

    def __post_init__(self) -> None:
        if isinstance(self.texts, str):
            object.__setattr__(self, "texts", (self.texts,))
        if not self.texts or not all(t.strip() for t in self.texts):
            raise ValueError("texts must hold at least one non-empty text")


@dataclass
class _Models:
    """One loaded copy of each model, shared by every thread."""

    tokenizer: object  # spark_tts.audio_tokenizer.AudioTokenizer
    llm: object  # bench.legacy_llm.loop.SparkLlm (the transformers loop)
    vocoder: object  # spark_tts.vocoder.Vocoder
    rvc: object  # services.rvc.worker.ConversionWorker
    # The LLM's Hugging Face tokenizer is not safe to call from two threads at once.
    prompt_lock: threading.Lock = field(default_factory=threading.Lock)
    speakers: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    speakers_lock: threading.Lock = field(default_factory=threading.Lock)


_loaded: dict[tuple[str, str, str, str], _Models] = {}
_load_lock = threading.Lock()


def load_models(inputs: BaselineInputs) -> _Models:
    """The models of ``inputs``' folders on its device, loaded on first use and kept."""
    key = (str(inputs.spark_model_dir), str(inputs.rvc_voices_dir),
           str(inputs.rvc_assets_dir), inputs.device)
    with _load_lock:
        models = _loaded.get(key)
        if models is None:
            from bench.legacy_llm.loop import SparkLlm
            from services.rvc.worker import create
            from spark_tts.audio_tokenizer import AudioTokenizer
            from spark_tts.layout import LLM_DIR
            from spark_tts.vocoder import Vocoder

            spark = Path(inputs.spark_model_dir)
            models = _Models(
                tokenizer=AudioTokenizer(spark, inputs.device),
                llm=SparkLlm(spark / LLM_DIR, inputs.device),
                vocoder=Vocoder(spark, inputs.device),
                # Threads are set process-wide in run_baseline, not by the worker.
                rvc=create(inputs.device, models_dir=str(inputs.rvc_voices_dir),
                           assets_dir=str(inputs.rvc_assets_dir), threads=0),
            )
            _loaded[key] = models
    return models


def _speaker(models: _Models, inputs: BaselineInputs) -> tuple[list[int], list[int]]:
    """(global ids, semantic ids) of the reference clip, as the audio_tokenizer gives them."""
    wav = resample(to_mono(inputs.reference), SPARK_RATE).samples.astype(np.float32)
    if not inputs.speaker_cache:
        return models.tokenizer.tokenize(wav)
    key = hashlib.sha256(np.ascontiguousarray(wav, dtype="<f4").tobytes()).hexdigest()
    with models.speakers_lock:
        cached = models.speakers.get(key)
    if cached is None:
        cached = models.tokenizer.tokenize(wav)
        with models.speakers_lock:
            models.speakers[key] = cached
    return cached


def speak(
    models: _Models, text: str, speaker: tuple[list[int], list[int]], inputs: BaselineInputs
) -> Iterator[np.ndarray]:
    """Streamed 16 kHz chunks of ``text``: Triton's spark_tts model, streaming, in-process."""
    from spark_tts import prompts
    from spark_tts.sampling import SamplingConfig
    from spark_tts.streaming import StreamJoiner

    body = text.strip()
    global_ids, semantic_ids = speaker
    transcript = inputs.reference_text.strip()
    prompt = prompts.cloning_prompt(
        body, global_ids, semantic_ids if transcript else None, transcript
    )
    # The TTS service's own cap, lowered by max_tokens as TTS_MAX_TOKENS lowers it.
    settings = TtsSettings() if inputs.max_tokens is None else dataclasses.replace(
        TtsSettings(), max_tokens=inputs.max_tokens)
    cap = token_cap(body, settings)
    sampling = SamplingConfig(max_tokens=cap, seed=inputs.seed)
    voice = list(global_ids)

    def vocode(semantic: list[int]) -> np.ndarray:
        return models.vocoder(np.asarray(voice, np.int32), np.asarray(semantic, np.int32))

    joiner = StreamJoiner(vocode)
    tokens = models.llm.generate(prompt, sampling)
    with models.prompt_lock:  # the first step tokenizes the prompt
        first = next(tokens, None)
    count = 0
    for token in _chain(first, tokens):
        if token.kind == "global":
            continue  # the voice is the reference's; Triton ignores extra globals too
        count += 1
        audio = joiner.add(token.index)
        if audio is not None and audio.size:
            yield audio
    if count == 0:
        raise RuntimeError("the LLM produced no semantic tokens")
    yield joiner.finish()


def _chain(first, rest: Iterator) -> Iterator:
    if first is not None:
        yield first
        yield from rest


def convert(models: _Models, audio: PcmAudio, inputs: BaselineInputs) -> PcmAudio:
    """One whole clip through the RVC worker's handler, as the service's Convert sends it."""
    params = ConversionParams(model=inputs.rvc_voice, f0_method=F0Method(inputs.f0_method))
    samples = np.ascontiguousarray(to_mono(audio).samples, dtype=np.float32)
    meta, out = models.rvc.handle(
        "convert", {"params": params.to_wire(), "sample_rate": audio.sample_rate}, samples
    )
    return PcmAudio(out, int(meta["sample_rate"]))


def _tts_request(models: _Models, inputs: BaselineInputs, text: str) -> Sample:
    start = time.perf_counter()
    first = None
    frames = 0
    for chunk in speak(models, text, _speaker(models, inputs), inputs):
        if chunk.size and first is None:
            first = time.perf_counter() - start
        frames += chunk.size
    total = time.perf_counter() - start
    return Sample(True, "OK", first if first is not None else total, total,
                  frames / SPARK_RATE, start)


def _rvc_request(models: _Models, inputs: BaselineInputs, text: str) -> Sample:
    start = time.perf_counter()
    out = convert(models, inputs.rvc_clip, inputs)
    total = time.perf_counter() - start
    return Sample(True, "OK", total, total, out.duration, start)


def _pipeline_request(
    models: _Models, inputs: BaselineInputs, text: str, streamed: bool
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
            speaker = _speaker(models, inputs)
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


def _request_fn(scenario: str) -> Callable[[_Models, BaselineInputs, str], Sample]:
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


def generate_tiny_models(root: Path, seed: int = 0) -> tuple[Path, Path, Path]:
    """(Spark model dir, RVC voices dir, RVC assets dir) of generated tiny models under ``root``.

    The generators the stack runs when no real weights are installed
    (``spark_tts.tiny_models``, ``services.rvc.tiny_models``); kept when current.
    """
    from services.rvc import tiny_models as rvc_tiny
    from spark_tts import tiny_models as spark_tiny

    root = Path(root)
    spark, rvc = root / TINY_SPARK_DIR, root / TINY_RVC_DIR
    if not spark_tiny.is_current(spark, seed):
        spark_tiny.write_tiny_model(spark, seed)
    if not rvc_tiny.is_current(rvc, seed):
        rvc_tiny.write_tiny_models(rvc, seed)
    return spark.resolve(), (rvc / "voices").resolve(), (rvc / "assets").resolve()


def synthetic_clip(seconds: float = 3.0, rate: int = 16_000) -> PcmAudio:
    """The stack's demo reference signal (voiced, syllable-paced) standing in for a recording."""
    from services.stack.models import demo_reference

    return PcmAudio(demo_reference(seconds, rate), rate)


def tiny_inputs(root: Path, texts: tuple[str, ...], **overrides) -> BaselineInputs:
    """Inputs on generated tiny models under ``root`` (for tests and smoke runs)."""
    spark, voices, assets = generate_tiny_models(root)
    clip = synthetic_clip()
    return BaselineInputs(
        texts=texts, reference=clip, rvc_clip=clip, spark_model_dir=spark,
        rvc_voices_dir=voices, rvc_assets_dir=assets, **overrides,
    )
