"""The RVC core: resolves the voice, checks the audio, converts it on the worker pool;
installs and deletes voices (voice_install)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, replace

import numpy as np
import soxr

from services.common.audio import PcmAudio, to_mono
from services.common.errors import InvalidArgument
from services.common.request_context import time_remaining
from services.rvc.framing import RATE, WINDOW
from services.rvc.metrics import ConversionMetrics
from services.rvc.model_store import ModelStore, VoiceFiles, check_name
from services.rvc.params import ConversionParams
from services.rvc.settings import RvcSettings
from services.rvc.streaming import StreamConverter
from services.rvc.voice_catalog import VoiceCatalog, VoiceSummary
from services.rvc.voice_install import InstallLimits, Part, VoiceInstaller
from services.rvc.worker_pool import WorkerPool
from services.rvc.worker_pool_types import WorkerStats

log = logging.getLogger(__name__)

# Stream blocks carry real left context, so they need far less reflect padding.
STREAM_PAD_SECONDS = 0.25
# One 10 ms pitch frame: anything shorter holds no pitch or content to convert (and is
# shorter than the pipeline's high-pass filter can run over).
MIN_AUDIO_SECONDS = WINDOW / RATE


@dataclass(frozen=True)
class PoolState:
    workers_configured: int
    workers_alive: int
    workers_busy: int
    queue_depth: int
    device: str
    loaded_models: tuple[str, ...]
    workers: tuple[WorkerStats, ...] = ()


class Converter:
    def __init__(
        self, settings: RvcSettings, store: ModelStore, pool: WorkerPool,
        metrics: ConversionMetrics | None = None,
    ) -> None:
        self._settings = settings
        self.store = store
        self.catalog = VoiceCatalog()
        self.installer = VoiceInstaller(
            store, InstallLimits(settings.max_checkpoint_bytes, settings.max_index_bytes)
        )
        self._pool = pool
        self._metrics = metrics or ConversionMetrics()

    @property
    def ready(self) -> bool:
        return self._pool.ready

    def loaded(self) -> tuple[str, ...]:
        names: list[str] = []
        for worker in self._pool.stats().workers:
            for name in worker.info.get("loaded", ()):
                if name not in names:
                    names.append(name)
        return tuple(names)

    async def voices(self) -> list[VoiceSummary]:
        return await asyncio.to_thread(self.catalog.describe, self.store.list())

    async def load(self, name: str) -> VoiceSummary:
        voice = self.store.resolve(check_name(name))
        await self._pool.broadcast("load", {"model": voice.name}, timeout=time_remaining())
        (summary,) = await asyncio.to_thread(self.catalog.describe, [voice])
        return summary

    async def install(
        self, name: str, replace: bool, parts: AsyncIterable[tuple[Part, bytes]]
    ) -> VoiceSummary:
        """Install voice ``name`` from ``parts`` as they arrive (see voice_install)."""
        files = await self.installer.receive(name, replace, parts)
        (summary,) = await asyncio.to_thread(self.catalog.describe, [files])
        return summary

    async def delete(self, name: str) -> None:
        # Workers drop a deleted or replaced voice at their next job (worker.py).
        await asyncio.to_thread(self.installer.delete, name)

    def _resolve(self, params: ConversionParams) -> tuple[VoiceFiles, ConversionParams]:
        voice = self.store.resolve(params.model)
        return voice, replace(params, model=voice.name)

    def _checked(self, audio: PcmAudio, what: str = "audio") -> np.ndarray:
        if audio.frames == 0:
            raise InvalidArgument(f"{what} is empty")
        if audio.duration > self._settings.max_audio_seconds:
            raise InvalidArgument(
                f"{what} lasts {audio.duration:.1f} s; at most "
                f"{self._settings.max_audio_seconds:g} s per request (RVC_MAX_AUDIO_SECONDS; stream longer audio)"
            )
        return np.ascontiguousarray(to_mono(audio).samples, dtype=np.float32)

    @staticmethod
    def _long_enough(seconds: float, what: str) -> None:
        if seconds < MIN_AUDIO_SECONDS:
            raise InvalidArgument(
                f"{what} lasts {seconds:.4f} s; at least {MIN_AUDIO_SECONDS:g} s is needed"
            )

    async def convert(self, params: ConversionParams, audio: PcmAudio) -> PcmAudio:
        _, params = self._resolve(params)
        samples = self._checked(audio)
        self._long_enough(audio.duration, "audio")
        started = time.perf_counter()
        meta, out = await self._pool.call(
            "convert",
            {"params": params.to_wire(), "sample_rate": audio.sample_rate},
            samples,
            timeout=time_remaining(),
        )
        self._metrics.record("clip", time.perf_counter() - started, audio.duration)
        return PcmAudio(out, int(meta["sample_rate"]))

    async def convert_stream(
        self, params: ConversionParams, chunks: AsyncIterator[PcmAudio]
    ) -> AsyncIterator[PcmAudio]:
        """Converted audio as blocks complete; the stream's voice stays on one worker."""
        _, params = self._resolve(params)
        out_rate = params.resample_sr
        # Workers answer at the voice's own rate; any resampling runs here, continuously.
        block_params = replace(params, resample_sr=0).to_wire()
        affinity = uuid.uuid4().hex
        busy = 0.0  # seconds the stream's blocks took on the pool

        async def convert_block(audio: np.ndarray) -> tuple[np.ndarray, int]:
            nonlocal busy
            started = time.perf_counter()
            meta, out = await self._pool.call(
                "convert",
                {"params": block_params, "sample_rate": RATE,
                 "pad_seconds": STREAM_PAD_SECONDS, "seed": stream.blocks},
                audio,
                affinity=affinity,
                timeout=time_remaining(),
            )
            busy += time.perf_counter() - started
            return out, int(meta["sample_rate"])

        stream = StreamConverter(self._settings.stream, convert_block)
        into_16k: soxr.ResampleStream | None = None
        in_rate = 0
        out_resampler: soxr.ResampleStream | None = None
        total = 0.0

        def emit(pieces: list[np.ndarray], last: bool = False) -> list[PcmAudio]:
            nonlocal out_resampler
            rate = stream.rate
            if rate is None:  # nothing converted yet
                return []
            if not out_rate or out_rate == rate:
                return [PcmAudio(p, rate) for p in pieces]
            if out_resampler is None:
                out_resampler = soxr.ResampleStream(rate, out_rate, 1, dtype="float32")
            joined = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
            converted = out_resampler.resample_chunk(joined, last=last)
            return [PcmAudio(converted, out_rate)] if converted.size else []

        try:
            async for chunk in chunks:
                if into_16k is None:
                    in_rate = chunk.sample_rate
                    into_16k = soxr.ResampleStream(in_rate, RATE, 1, dtype="float32")
                elif chunk.sample_rate != in_rate:
                    raise InvalidArgument(
                        f"chunk sample_rate {chunk.sample_rate} Hz differs from the stream's "
                        f"{in_rate} Hz"
                    )
                if chunk.frames == 0:
                    continue
                total += chunk.duration
                samples = into_16k.resample_chunk(self._checked(chunk, "chunk.audio"))
                for piece in emit(await stream.push(samples)):
                    yield piece
            if into_16k is None or total == 0:
                raise InvalidArgument("the stream carried no audio")
            self._long_enough(total, "the stream's audio")
            tail = into_16k.resample_chunk(np.zeros(0, np.float32), last=True)
            pieces = (await stream.push(tail)) + (await stream.finish())
            self._metrics.record("stream", busy, total)
            for piece in emit(pieces, last=True):
                yield piece
        finally:
            self._pool.release(affinity)

    def state(self) -> PoolState:
        stats = self._pool.stats()
        return PoolState(
            workers_configured=stats.configured,
            workers_alive=stats.alive,
            workers_busy=stats.busy,
            queue_depth=stats.queue_depth,
            device=",".join(sorted({w.device for w in stats.workers})),
            loaded_models=self.loaded(),
            workers=stats.workers,
        )
