"""BiCodec tokenization of a reference clip: wav2vec2 features in, tokens out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import Wav2Vec2FeatureExtractor, Wav2Vec2Model

from spark_tts.bicodec.model import load_bicodec
from spark_tts.layout import (
    BICODEC_DIR,
    WAV2VEC2_DIR,
    WAV2VEC2_MIX_LAYERS,
    load_spark_config,
)
from spark_tts.reference_audio import normalize_volume, reference_segment


class AudioTokenizer:
    """Reference clip (16 kHz mono float32) ⇄ BiCodec global and semantic tokens.

    The numbers follow the official Spark-TTS code, which reads the reference
    WAV with soundfile as float64: the volume is normalised in float64, and
    the result is rounded to float32 where Spark rounds it (wav2vec2's
    feature extractor casts float64 input to float32 before its own
    normalisation; the reference segment goes through ``.float()``). PCM
    samples arrive here as float32, which holds them exactly, so upcasting
    them gives the very array Spark reads from the file.
    """

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        model_dir = Path(model_dir)
        self.device = torch.device(device)
        self.config = load_spark_config(model_dir)
        self.bicodec = load_bicodec(model_dir / BICODEC_DIR, device=device)
        self.processor = Wav2Vec2FeatureExtractor.from_pretrained(str(model_dir / WAV2VEC2_DIR))
        self.wav2vec2 = Wav2Vec2Model.from_pretrained(str(model_dir / WAV2VEC2_DIR))
        self.wav2vec2.to(self.device).eval()

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def _features(self, wav: np.ndarray) -> torch.Tensor:
        # Given float64, as Spark gives it: the extractor rounds to float32 first.
        values = self.processor(
            wav, sampling_rate=self.config.sample_rate, return_tensors="pt"
        ).input_values.to(self.device)
        hidden = self.wav2vec2(values, output_hidden_states=True).hidden_states
        return sum(hidden[i] for i in WAV2VEC2_MIX_LAYERS) / len(WAV2VEC2_MIX_LAYERS)

    @torch.inference_mode()
    def tokenize(self, audio: np.ndarray) -> tuple[list[int], list[int]]:
        """(global token ids, semantic token ids) of a 16 kHz mono clip."""
        wav = np.asarray(audio, dtype=np.float64)
        if self.config.volume_normalize:
            wav = normalize_volume(wav)
        reference = reference_segment(wav, self.config.ref_segment_samples)
        features = self._features(wav)
        ref_wav = torch.from_numpy(reference.astype(np.float32)).unsqueeze(0).to(self.device)
        semantic, global_ = self.bicodec.tokenize(features, ref_wav)
        return global_.reshape(-1).tolist(), semantic.reshape(-1).tolist()
