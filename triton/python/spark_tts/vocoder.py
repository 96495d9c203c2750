"""BiCodec decoding: semantic tokens in a global-token voice to a waveform."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from spark_tts.bicodec.model import load_bicodec
from spark_tts.layout import BICODEC_DIR


class Vocoder:
    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.bicodec = load_bicodec(Path(model_dir) / BICODEC_DIR, device=device)

    @torch.inference_mode()
    def __call__(self, global_ids, semantic_ids) -> np.ndarray:
        """16 kHz float32 samples, SAMPLES_PER_TOKEN for each semantic token."""
        semantic = torch.as_tensor(np.asarray(semantic_ids), dtype=torch.long, device=self.device)
        global_ = torch.as_tensor(np.asarray(global_ids), dtype=torch.long, device=self.device)
        wav = self.bicodec.detokenize(semantic.reshape(1, -1), global_.reshape(1, 1, -1))
        return wav.reshape(-1).float().cpu().numpy()
