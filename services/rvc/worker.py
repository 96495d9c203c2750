"""What runs inside one worker process: shared models loaded once, voices in an LRU.

The pool calls ``create`` in the child after spawn; ``handle`` then serves one
job at a time. Nothing here knows about gRPC or the pool's pipes.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import torch

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.rvc.dsp.retrieval import FeatureIndex, IndexFormatError
from services.rvc.framing import RATE
from services.rvc.model_store import ModelStore, VoiceFiles
from services.rvc.models.checkpoint import VoiceFormatError, load_synthesizer
from services.rvc.models.content import ContentEncoder
from services.rvc.models.rmvpe import Rmvpe
from services.rvc.params import ConversionParams
from services.rvc.pipeline import ConversionPipeline, Voice

log = logging.getLogger(__name__)

HUBERT_DIR = "hubert_base"
HUBERT_FILE = "hubert_base.pt"
RMVPE_FILE = "rmvpe.pt"


@dataclass(frozen=True)
class Assets:
    hubert: Path
    rmvpe: Path | None


def find_assets(assets_dir: Path) -> Assets:
    """The content encoder (transformers folder or fairseq file) and RMVPE, if present."""
    folder = assets_dir / HUBERT_DIR
    if (folder / "config.json").is_file():
        hubert = folder
    elif (assets_dir / HUBERT_FILE).is_file():
        hubert = assets_dir / HUBERT_FILE
    else:
        raise FailedPrecondition(
            f"no content encoder under {assets_dir}: install {HUBERT_FILE} or a transformers "
            f"{HUBERT_DIR}/ folder (make models)"
        )
    rmvpe = assets_dir / RMVPE_FILE
    return Assets(hubert, rmvpe if rmvpe.is_file() else None)


def describe(voice: Voice) -> dict:
    info = voice.info
    return {
        "name": voice.name,
        "version": info.version,
        "sample_rate": info.sample_rate,
        "pitch_guided": info.pitch_guided,
        "has_index": voice.index is not None,
    }


class ConversionWorker:
    def __init__(
        self,
        device: str,
        models_dir: str,
        assets_dir: str,
        voice_cache: int = 4,
        threads: int = 0,
    ) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        # fp16 on GPUs, fp32 on CPU, as the WebUI runs them.
        self.half = self.device.type == "cuda"
        self.assets = find_assets(Path(assets_dir))
        self.store = ModelStore(Path(models_dir))
        self._voice_cache = voice_cache
        self._voices: OrderedDict[str, tuple[tuple, Voice]] = OrderedDict()
        self._rmvpe: Rmvpe | None = None
        content = ContentEncoder.load(self.assets.hubert, self.device, self.half)
        self.pipeline = ConversionPipeline(content, self.device, self.half, self._load_rmvpe)
        log.info("worker ready", extra={"device": str(self.device), "pid": os.getpid()})

    def _load_rmvpe(self) -> Rmvpe:
        if self._rmvpe is None:
            if self.assets.rmvpe is None:
                raise FailedPrecondition(
                    f"f0_method rmvpe needs {RMVPE_FILE} in the assets folder; "
                    "install it (make models) or choose crepe, harvest, dio or pm"
                )
            self._rmvpe = Rmvpe.load(self.assets.rmvpe, self.device, self.half)
        return self._rmvpe

    def voice(self, name: str) -> Voice:
        """The named voice, loaded once and kept until it is the least recently used."""
        self._forget_changed()
        files = self.store.resolve(name)
        stamp = files.stamp()
        cached = self._voices.get(files.name)
        if cached is not None and cached[0] == stamp:
            self._voices.move_to_end(files.name)
            return cached[1]
        voice = self._load(files)
        self._voices[files.name] = (stamp, voice)
        self._voices.move_to_end(files.name)
        while len(self._voices) > self._voice_cache:
            dropped, _ = self._voices.popitem(last=False)
            log.info("voice unloaded", extra={"voice": dropped})
        return voice

    def _forget_changed(self) -> None:
        """Drop loaded voices deleted or replaced on disk (InstallModel, DeleteModel): they
        would never be served again, and `loaded` must stop naming them."""
        for name, (stamp, _) in list(self._voices.items()):
            try:
                current = self.store.resolve(name).stamp()
            except (NotFound, OSError):
                current = None
            if current != stamp:
                del self._voices[name]
                log.info("voice unloaded: changed on disk", extra={"voice": name})

    def _load(self, files: VoiceFiles) -> Voice:
        try:
            info, synthesizer = load_synthesizer(files.checkpoint, self.device, self.half)
        except VoiceFormatError as exc:
            raise FailedPrecondition(
                f"voice {files.name!r} cannot be loaded: {files.without_paths(str(exc))}"
            ) from None
        index = None
        if files.index is not None:
            try:
                index = FeatureIndex.load(files.index)
            except IndexFormatError as exc:
                raise FailedPrecondition(
                    f"the index of voice {files.name!r} cannot be read: "
                    f"{files.without_paths(str(exc))}"
                ) from None
            if index.dim != info.feature_dim:
                raise FailedPrecondition(
                    f"the index of voice {files.name!r} holds {index.dim}-dim features but the "
                    f"voice is {info.version} ({info.feature_dim}-dim)"
                )
        log.info("voice loaded", extra={"voice": files.name, "version": info.version,
                                        "sample_rate": info.sample_rate})
        return Voice(files.name, info, synthesizer, index)

    def handle(self, op: str, meta: dict, audio: np.ndarray | None) -> tuple[dict, np.ndarray | None]:
        if op == "load":
            return describe(self.voice(meta["model"])), None
        if op == "convert":
            if audio is None:
                raise InvalidArgument("no audio to convert")
            params = ConversionParams.from_wire(meta["params"])
            voice = self.voice(params.model)
            rate = int(meta["sample_rate"])
            samples = audio if rate == RATE else soxr.resample(audio, rate, RATE, quality="HQ")
            out = self.pipeline.convert(
                voice, np.asarray(samples, np.float32), params,
                seed=int(meta.get("seed", 0)), pad_seconds=meta.get("pad_seconds"),
            )
            return {**describe(voice), "sample_rate": params.resample_sr or voice.info.sample_rate}, out
        raise InvalidArgument(f"unknown worker operation {op!r}")

    def info(self) -> dict:
        return {"device": str(self.device), "loaded": list(self._voices)}


def create(device: str, **kwargs) -> ConversionWorker:
    """The pool's factory: builds the worker inside the child process."""
    return ConversionWorker(device, **kwargs)
