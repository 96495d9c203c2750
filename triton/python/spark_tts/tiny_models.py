"""Writes a tiny random-weight Spark TTS model directory in the official layout.

Same files, formats, key names and special tokens as Spark-TTS-0.5B, only
small: tests and `make run` use it when no real weights are installed. It is
built offline and deterministically from a seed.

With ``--size full`` the same generator writes every model at the layer sizes
of the real checkpoint (BiCodec, wav2vec2-large-xlsr-53, the 0.5B Qwen2 LLM),
still with random weights and the generator's small tokenizer: the real
shapes and parameter counts, for benchmarking real-size compute on a host
without the trained weights. It takes a few GB of disk and memory.

    python -m spark_tts.tiny_models OUT_DIR [--size full]
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
GENERATOR_VERSION = 3
MARKER = "GENERATED.txt"
SIZES = ("tiny", "full")

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

# The real checkpoint's BiCodec/config.yaml (Spark-TTS-0.5B), the keys
# build_bicodec reads. Cross-checked against several independent public
# copies of that file's values; the postnet has no sample_ratios key there.
FULL_BICODEC_CONFIG = {
    "audio_tokenizer": {
        "mel_params": {
            "sample_rate": 16000, "n_fft": 1024, "win_length": 640, "hop_length": 320,
            "mel_fmin": 10, "mel_fmax": None, "num_mels": 128,
        },
        "encoder": {
            "input_channels": 1024, "vocos_dim": 384, "vocos_intermediate_dim": 2048,
            "vocos_num_layers": 12, "out_channels": 1024, "sample_ratios": [1, 1],
        },
        "decoder": {
            "input_channel": 1024, "channels": 1536, "rates": [8, 5, 4, 2],
            "kernel_sizes": [16, 11, 8, 4],
        },
        "quantizer": {
            "input_dim": 1024, "codebook_size": prompts.SEMANTIC_VOCAB, "codebook_dim": 8,
            "commitment": 0.25, "codebook_loss_weight": 2.0, "use_l2_normlize": True,
            "threshold_ema_dead_code": 0.2,
        },
        "speaker_encoder": {
            "input_dim": 128, "out_dim": 1024, "latent_dim": 128,
            "token_num": prompts.GLOBAL_TOKENS, "fsq_levels": [4, 4, 4, 4, 4, 4],
            "fsq_num_quantizers": 1,
        },
        "prenet": {
            "input_channels": 1024, "vocos_dim": 384, "vocos_intermediate_dim": 2048,
            "vocos_num_layers": 12, "out_channels": 1024, "condition_dim": 1024,
            "sample_ratios": [1, 1], "use_tanh_at_final": False,
        },
        "postnet": {
            "input_channels": 1024, "vocos_dim": 384, "vocos_intermediate_dim": 2048,
            "vocos_num_layers": 6, "out_channels": 1024, "use_tanh_at_final": False,
        },
    }
}

# Rows of the real LLM's embedding (and tied LM head): Qwen2.5's vocabulary
# plus the Spark TTS tokens, padded. The generated tokenizer is far smaller;
# the rows past it exist for their compute and are never produced by it.
FULL_LLM_VOCAB = 166000

# Enough words for byte-level BPE merges that make English text a few tokens.
_CORPUS = (
    "the quick brown fox jumps over the lazy dog. hello there, how are you today? "
    "speech synthesis turns text into voice. a short reference clip sets the speaker. "
    "one two three four five six seven eight nine ten. good morning and good night."
)


def _write_yaml(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, not {size!r}")


def bicodec_config(size: str = "tiny") -> dict:
    """The BiCodec config.yaml contents written for ``size``."""
    _check_size(size)
    return BICODEC_CONFIG if size == "tiny" else FULL_BICODEC_CONFIG


def wav2vec2_config(size: str = "tiny") -> Wav2Vec2Config:
    """The wav2vec2 config written for ``size``."""
    _check_size(size)
    if size == "full":
        # wav2vec2-large-xlsr-53: 7 conv layers of 512 channels (kernels
        # 10,3,3,3,3,2,2, strides 5,2,2,2,2,2,2: 320 samples a frame) with
        # layer norm, then 24 pre-norm transformer layers of width 1024.
        return Wav2Vec2Config(
            hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
            intermediate_size=4096, hidden_act="gelu", layer_norm_eps=1e-5,
            conv_dim=(512,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2),
            conv_stride=(5, 2, 2, 2, 2, 2, 2), conv_bias=True, feat_extract_norm="layer",
            feat_extract_activation="gelu", do_stable_layer_norm=True,
            num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16, vocab_size=32,
        )
    # The xlsr-53 layout: stable layer norm, the same 320-sample conv stack,
    # 24 layers there; 16 here so the mixed layers 11, 14 and 16 exist.
    return Wav2Vec2Config(
        hidden_size=FEATURE_DIM, num_hidden_layers=16, num_attention_heads=2,
        intermediate_size=64, conv_dim=(32,) * 7, feat_extract_norm="layer",
        do_stable_layer_norm=True, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        feat_extract_activation="gelu", conv_bias=True, vocab_size=32,
    )


def llm_config(tokenizer: PreTrainedTokenizerFast, size: str = "tiny") -> Qwen2Config:
    """The Qwen2 config written for ``size``, with ``tokenizer``'s end-of-text id."""
    _check_size(size)
    if size == "full":
        # Spark-TTS-0.5B's LLM/config.json (a Qwen2.5-0.5B body), except for
        # the bos/eos ids, which must be the generated tokenizer's.
        return Qwen2Config(
            vocab_size=max(FULL_LLM_VOCAB, len(tokenizer)), hidden_size=896,
            intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
            num_key_value_heads=2, hidden_act="silu", max_position_embeddings=32768,
            rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True,
            use_sliding_window=False, sliding_window=32768, max_window_layers=21,
            eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
        )
    # Heads of 32 dimensions: vLLM's CPU attention takes no smaller head.
    return Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        max_position_embeddings=4096, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
    )


def write_bicodec(root: Path, seed: int, size: str = "tiny") -> None:
    config = bicodec_config(size)
    folder = root / BICODEC_DIR
    folder.mkdir(parents=True, exist_ok=True)
    _write_yaml(folder / "config.yaml", config)
    torch.manual_seed(seed)
    model = build_bicodec(config["audio_tokenizer"])
    # contiguous() hands back the same tensor when it already is: no second copy.
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    del model
    save_file(state, str(folder / "model.safetensors"))


def write_wav2vec2(root: Path, seed: int, size: str = "tiny") -> None:
    folder = root / WAV2VEC2_DIR
    config = wav2vec2_config(size)
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


def write_llm(root: Path, seed: int, size: str = "tiny") -> None:
    folder = root / LLM_DIR
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(str(folder))
    config = llm_config(tokenizer, size)
    torch.manual_seed(seed + 2)
    model = Qwen2ForCausalLM(config)
    # Random weights know nothing of when speech ends: with the end tokens'
    # (tied) embeddings at zero their logit is 0, below the top-k of a random
    # model, so generation runs to the token cap instead of stopping at noise.
    with torch.no_grad():
        for token in ("<|im_end|>", "<|endoftext|>", "<|end_semantic_token|>"):
            model.model.embed_tokens.weight[tokenizer.convert_tokens_to_ids(token)] = 0.0
        # The same for the rows past the tokenizer (full size only): otherwise
        # most sampled ids would be ones the tokenizer has no token for, not
        # speech tokens. The rows still cost their full compute.
        model.model.embed_tokens.weight[len(tokenizer):] = 0.0
    model.save_pretrained(str(folder))


def _marker_line(seed: int, size: str) -> str:
    # The tiny line is unchanged from before sizes existed, so copies written
    # then stay current.
    if size == "tiny":
        return f"version {GENERATOR_VERSION} seed {seed}\n"
    return f"version {GENERATOR_VERSION} seed {seed} size {size}\n"


def write_tiny_model(root: Path, seed: int = 0, size: str = "tiny") -> Path:
    """Write the whole directory at ``size`` ("tiny" or "full"); returns it."""
    _check_size(size)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # A rewrite into an old copy is not current until it has finished.
    (root / MARKER).unlink(missing_ok=True)
    _write_yaml(root / "config.yaml", SPARK_CONFIG)
    write_bicodec(root, seed, size)
    write_wav2vec2(root, seed, size)
    write_llm(root, seed, size)
    description = (
        "Tiny random-weight model in the Spark-TTS-0.5B layout; it speaks noise, not words.\n"
        if size == "tiny" else
        "Full-size random-weight model in the Spark-TTS-0.5B layout (real layer sizes,"
        " small tokenizer); it speaks noise, not words.\n"
    )
    (root / MARKER).write_text(_marker_line(seed, size) + description)
    return root


def is_current(root: Path, seed: int = 0, size: str = "tiny") -> bool:
    """Whether ``root`` holds what this generator writes for ``seed`` and ``size``."""
    _check_size(size)
    marker = Path(root) / MARKER
    return marker.is_file() and marker.read_text().startswith(_marker_line(seed, size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--size", choices=SIZES, default="tiny",
        help="tiny: small test model; full: the real checkpoint's layer sizes (GBs)",
    )
    args = parser.parse_args()
    print(write_tiny_model(args.out_dir, args.seed, args.size))


if __name__ == "__main__":
    main()
