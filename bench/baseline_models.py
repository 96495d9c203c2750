"""The in-process baseline's models: one copy of each, loaded once per (model
folders, device) and shared by every thread, called as the services call them
(Triton's spark_tts model streaming, the RVC worker's handler).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.baseline_inputs import BaselineInputs
from services.common.audio import PcmAudio, resample, to_mono
from services.rvc.params import ConversionParams, F0Method
from services.tts_gateway.settings import TtsSettings
from services.tts_gateway.synthesis import token_cap

SPARK_RATE = 16_000


@dataclass
class Models:
    """One loaded copy of each model, shared by every thread."""

    tokenizer: object  # spark_tts.audio_tokenizer.AudioTokenizer
    llm: object  # bench.legacy_llm.loop.SparkLlm (the transformers loop)
    vocoder: object  # spark_tts.vocoder.Vocoder
    rvc: object  # services.rvc.worker.ConversionWorker
    # The LLM's Hugging Face tokenizer is not safe to call from two threads at once.
    prompt_lock: threading.Lock = field(default_factory=threading.Lock)
    speakers: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)
    speakers_lock: threading.Lock = field(default_factory=threading.Lock)


_loaded: dict[tuple[str, str, str, str], Models] = {}
_load_lock = threading.Lock()


def load_models(inputs: BaselineInputs) -> Models:
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
            models = Models(
                tokenizer=AudioTokenizer(spark, inputs.device),
                llm=SparkLlm(spark / LLM_DIR, inputs.device),
                vocoder=Vocoder(spark, inputs.device),
                # Threads are set process-wide in run_baseline, not by the worker.
                rvc=create(inputs.device, models_dir=str(inputs.rvc_voices_dir),
                           assets_dir=str(inputs.rvc_assets_dir), threads=0),
            )
            _loaded[key] = models
    return models


def reference_tokens(models: Models, inputs: BaselineInputs) -> tuple[list[int], list[int]]:
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
    models: Models, text: str, speaker: tuple[list[int], list[int]], inputs: BaselineInputs
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


def convert(models: Models, audio: PcmAudio, inputs: BaselineInputs) -> PcmAudio:
    """One whole clip through the RVC worker's handler, as the service's Convert sends it."""
    params = ConversionParams(model=inputs.rvc_voice, f0_method=F0Method(inputs.f0_method))
    samples = np.ascontiguousarray(to_mono(audio).samples, dtype=np.float32)
    meta, out = models.rvc.handle(
        "convert", {"params": params.to_wire(), "sample_rate": audio.sample_rate}, samples
    )
    return PcmAudio(out, int(meta["sample_rate"]))
