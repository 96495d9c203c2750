"""Writes a tiny random-weight Spark TTS model directory in the official layout.

Same files, formats, key names and special tokens as Spark-TTS-0.5B, only
small: tests and `make run` use it when no real weights are installed. It is
built offline and deterministically from a seed.

    python -m spark_tts.tiny_models OUT_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    Wav2Vec2Config,
    Wav2Vec2FeatureExtractor,
    Wav2Vec2Model,
)

from spark_tts import prompts
from spark_tts.bicodec.model import build_bicodec
from spark_tts.layout import BICODEC_DIR, LLM_DIR, WAV2VEC2_DIR

FEATURE_DIM = 32  # wav2vec2 hidden size, and BiCodec's encoder input
# Bumped whenever what this writes changes, so stale generated copies are redone.
GENERATOR_VERSION = 2
MARKER = "GENERATED.txt"

SPARK_CONFIG = {
    "sample_rate": 16000,
    "highpass_cutoff_freq": 40,
    "segment_duration": 2.4,
    "max_val_duration": 12,
    "latent_hop_length": 320,
    "ref_segment_duration": 6,
    "volume_normalize": True,
}

BICODEC_CONFIG = {
    "audio_tokenizer": {
        "mel_params": {
            "sample_rate": 16000, "n_fft": 1024, "win_length": 640, "hop_length": 320,
            "mel_fmin": 10, "mel_fmax": None, "num_mels": 32,
        },
        "encoder": {
            "input_channels": FEATURE_DIM, "vocos_dim": 16, "vocos_intermediate_dim": 32,
            "vocos_num_layers": 2, "out_channels": 16, "sample_ratios": [1, 1],
        },
        "decoder": {
            "input_channel": 16, "channels": 32, "rates": [8, 5, 4, 2],
            "kernel_sizes": [16, 11, 8, 4],
        },
        "quantizer": {
            "input_dim": 16, "codebook_size": prompts.SEMANTIC_VOCAB, "codebook_dim": 4,
            "commitment": 0.25, "codebook_loss_weight": 2.0, "use_l2_normlize": True,
            "threshold_ema_dead_code": 0.2,
        },
        "speaker_encoder": {
            "input_dim": 32, "out_dim": 16, "latent_dim": 16,
            "token_num": prompts.GLOBAL_TOKENS, "fsq_levels": [4, 4, 4, 4, 4, 4],
            "fsq_num_quantizers": 1,
        },
        "prenet": {
            "input_channels": 16, "vocos_dim": 16, "vocos_intermediate_dim": 32,
            "vocos_num_layers": 2, "out_channels": 16, "condition_dim": 16,
            "sample_ratios": [1, 1], "use_tanh_at_final": False,
        },
        "postnet": {
            "input_channels": 16, "vocos_dim": 16, "vocos_intermediate_dim": 32,
            "vocos_num_layers": 1, "out_channels": FEATURE_DIM, "use_tanh_at_final": False,
        },
    }
}

# Enough words for byte-level BPE merges that make English text a few tokens.
_CORPUS = (
    "the quick brown fox jumps over the lazy dog. hello there, how are you today? "
    "speech synthesis turns text into voice. a short reference clip sets the speaker. "
    "one two three four five six seven eight nine ten. good morning and good night."
)


def _write_yaml(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def write_bicodec(root: Path, seed: int) -> None:
    folder = root / BICODEC_DIR
    folder.mkdir(parents=True, exist_ok=True)
    _write_yaml(folder / "config.yaml", BICODEC_CONFIG)
    torch.manual_seed(seed)
    model = build_bicodec(BICODEC_CONFIG["audio_tokenizer"])
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))


def write_wav2vec2(root: Path, seed: int) -> None:
    folder = root / WAV2VEC2_DIR
    # The xlsr-53 layout: stable layer norm, the same 320-sample conv stack,
    # 24 layers there; 16 here so the mixed layers 11, 14 and 16 exist.
    config = Wav2Vec2Config(
        hidden_size=FEATURE_DIM, num_hidden_layers=16, num_attention_heads=2,
        intermediate_size=64, conv_dim=(32,) * 7, feat_extract_norm="layer",
        do_stable_layer_norm=True, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        feat_extract_activation="gelu", conv_bias=True, vocab_size=32,
    )
    torch.manual_seed(seed + 1)
    Wav2Vec2Model(config).save_pretrained(str(folder))
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
        return_attention_mask=True,
    ).save_pretrained(str(folder))


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE like Qwen2's, with every Spark TTS special token added."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    backend.train_from_iterator([_CORPUS], trainer)
    backend.add_special_tokens(prompts.special_tokens())
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
    )


def write_llm(root: Path, seed: int) -> None:
    folder = root / LLM_DIR
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(str(folder))
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=4096, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed + 2)
    model = Qwen2ForCausalLM(config)
    # Random weights know nothing of when speech ends: with the end tokens'
    # (tied) embeddings at zero their logit is 0, below the top-k of a random
    # model, so generation runs to the token cap instead of stopping at noise.
    with torch.no_grad():
        for token in ("<|im_end|>", "<|endoftext|>", "<|end_semantic_token|>"):
            model.model.embed_tokens.weight[tokenizer.convert_tokens_to_ids(token)] = 0.0
    model.save_pretrained(str(folder))


def write_tiny_model(root: Path, seed: int = 0) -> Path:
    """Write the whole directory; returns it."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _write_yaml(root / "config.yaml", SPARK_CONFIG)
    write_bicodec(root, seed)
    write_wav2vec2(root, seed)
    write_llm(root, seed)
    (root / MARKER).write_text(
        f"version {GENERATOR_VERSION} seed {seed}\n"
        "Tiny random-weight model in the Spark-TTS-0.5B layout; it speaks noise, not words.\n"
    )
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_tiny_model(args.out_dir, args.seed))


if __name__ == "__main__":
    main()


def is_current(root: Path, seed: int = 0) -> bool:
    """Whether ``root`` holds what this generator writes for ``seed``."""
    marker = Path(root) / MARKER
    return marker.is_file() and marker.read_text().startswith(
        f"version {GENERATOR_VERSION} seed {seed}\n"
    )
