"""The tiny random-weight model directory: official layout, tokenizer, determinism."""

import json
import shutil

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoTokenizer, Wav2Vec2Config

from spark_tts import prompts
from spark_tts.bicodec.model import BiCodec, load_bicodec
from spark_tts.layout import (
    BICODEC_DIR,
    LLM_DIR,
    SAMPLES_PER_TOKEN,
    WAV2VEC2_DIR,
    WAV2VEC2_MIX_LAYERS,
    check_layout,
    load_spark_config,
)
from spark_tts.tiny_models import is_current, write_bicodec, write_tiny_model

LAYOUT = {
    "config.yaml",
    "GENERATED.txt",
    "BiCodec/config.yaml",
    "BiCodec/model.safetensors",
    "LLM/config.json",
    "LLM/generation_config.json",
    "LLM/model.safetensors",
    "LLM/tokenizer.json",
    "LLM/tokenizer_config.json",
    "wav2vec2-large-xlsr-53/config.json",
    "wav2vec2-large-xlsr-53/preprocessor_config.json",
    "wav2vec2-large-xlsr-53/model.safetensors",
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tiny_spark"))


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(str(model_dir / LLM_DIR))


@pytest.fixture(scope="module")
def bicodec(model_dir):
    return load_bicodec(model_dir / BICODEC_DIR)


def test_directory_has_exactly_the_official_layout_files(model_dir):
    files = {p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()}
    assert files == LAYOUT
    assert (BICODEC_DIR, LLM_DIR, WAV2VEC2_DIR) == ("BiCodec", "LLM", "wav2vec2-large-xlsr-53")


def test_check_layout_accepts_the_tiny_model(model_dir):
    check_layout(model_dir)


@pytest.mark.parametrize(
    "piece", ["config.yaml", "BiCodec/model.safetensors", "LLM/config.json"]
)
def test_check_layout_names_the_missing_piece(model_dir, tmp_path, piece):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    (copy / piece).unlink()
    with pytest.raises(FileNotFoundError, match=piece):
        check_layout(copy)


def test_written_directory_is_current_for_its_seed_only(model_dir, tmp_path):
    assert is_current(model_dir)
    assert is_current(model_dir, seed=0)
    assert not is_current(model_dir, seed=1)
    assert not is_current(tmp_path)


def test_top_level_config_matches_spark_tts(model_dir):
    config = load_spark_config(model_dir)
    assert config.sample_rate == 16_000
    assert config.latent_hop_length == SAMPLES_PER_TOKEN
    assert config.volume_normalize is True
    assert config.ref_segment_samples == 6 * 16_000


def test_tokenizer_holds_every_special_token_as_one_token(tokenizer):
    special = prompts.special_tokens()
    ids = tokenizer.convert_tokens_to_ids(special)
    assert None not in ids
    assert len(set(ids)) == len(special)
    # Back to back, or against plain text, each still comes out as that one token.
    assert tokenizer.tokenize("".join(special)) == special
    pieces = tokenizer.tokenize("one<|bicodec_semantic_17|>two")
    assert "<|bicodec_semantic_17|>" in pieces
    assert "".join(p for p in pieces if p != "<|bicodec_semantic_17|>") == "onetwo"


def test_llm_embeddings_cover_the_whole_tokenizer(model_dir, tokenizer):
    config = json.loads((model_dir / LLM_DIR / "config.json").read_text())
    assert config["vocab_size"] >= len(tokenizer)
    assert config["eos_token_id"] == tokenizer.convert_tokens_to_ids("<|endoftext|>")


def test_prompt_text_takes_few_tokens(tokenizer):
    prompt = prompts.control_prompt("the quick brown fox jumps over the lazy dog.", "male")
    assert len(tokenizer(prompt).input_ids) < 25


def test_wav2vec2_has_the_layers_bicodec_mixes(model_dir):
    config = Wav2Vec2Config.from_pretrained(str(model_dir / WAV2VEC2_DIR))
    # hidden_states[0] is the embedding output, so layer n is index n.
    assert config.num_hidden_layers >= max(WAV2VEC2_MIX_LAYERS)
    bicodec = yaml.safe_load((model_dir / BICODEC_DIR / "config.yaml").read_text())
    assert bicodec["audio_tokenizer"]["encoder"]["input_channels"] == config.hidden_size


def test_same_seed_writes_byte_identical_bicodec_weights(model_dir, tmp_path):
    write_bicodec(tmp_path / "again", seed=0)
    write_bicodec(tmp_path / "other", seed=1)
    name = f"{BICODEC_DIR}/model.safetensors"
    original = (model_dir / name).read_bytes()
    assert (tmp_path / "again" / name).read_bytes() == original
    assert (tmp_path / "other" / name).read_bytes() != original


def test_load_bicodec_loads_the_written_weights_strictly(model_dir, bicodec):
    assert isinstance(bicodec, BiCodec)
    assert not bicodec.training
    written = load_file(str(model_dir / BICODEC_DIR / "model.safetensors"))
    loaded = bicodec.state_dict()
    for name in ("quantizer.codebook.weight", "speaker_encoder.quantizer.project_in.weight"):
        torch.testing.assert_close(loaded[name], written[name])


def test_bicodec_vocabularies_match_the_prompt_tokens(bicodec):
    semantic = torch.tensor([[0, prompts.SEMANTIC_VOCAB - 1]])
    global_ = torch.tensor([[[0] * 31 + [prompts.GLOBAL_VOCAB - 1]]])
    wav = bicodec.detokenize(semantic, global_)
    assert wav.shape[-1] == 2 * SAMPLES_PER_TOKEN
    assert torch.isfinite(wav).all()
