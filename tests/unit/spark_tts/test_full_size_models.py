"""The full-size option of the model generator: real Spark-TTS-0.5B shapes, tiny left as it was.

Nothing here writes the GBs of a full-size directory: the models are built
with their parameters on torch's meta device, which has shapes but no data.
"""

from contextlib import contextmanager

import pytest
import torch
from torch import nn
from transformers import Qwen2ForCausalLM, Wav2Vec2Model

from spark_tts import prompts
from spark_tts.bicodec.model import build_bicodec
from spark_tts.layout import SAMPLES_PER_TOKEN, WAV2VEC2_MIX_LAYERS
from spark_tts.tiny_models import (
    BICODEC_CONFIG,
    FULL_BICODEC_CONFIG,
    GENERATOR_VERSION,
    MARKER,
    bicodec_config,
    build_tokenizer,
    is_current,
    llm_config,
    main,
    wav2vec2_config,
    write_tiny_model,
)

# Parameters (Qwen2: the tied embedding counted once) and tensor elements of
# the real checkpoint's files. BiCodec's file also holds a few buffers (the
# speaker encoder's batch-norm statistics and counters), so its tensor
# elements exceed its parameters: 156,354,601 float32 values are the
# ~625.4 MB of BiCodec/model.safetensors.
FULL_BICODEC_PARAMS = 156_330_380
FULL_BICODEC_TENSOR_ELEMENTS = 156_354_601
FULL_BICODEC_TENSORS = 840
FULL_WAV2VEC2_PARAMS = 315_438_720
FULL_LLM_PARAMS = 506_634_112

# What the generator wrote before sizes existed; "tiny" must still write it.
TINY_BICODEC_TENSOR_ELEMENTS = 5_752_887
TINY_WAV2VEC2_PARAMS = 159_440
TINY_LLM_PARAMS = 888_000


@contextmanager
def _parameters_on_meta():
    """Every parameter registered inside is moved to the meta device (buffers stay real).

    torch.device("meta") alone cannot build BiCodec: its FSQ reads a computed
    tensor's value while being constructed.
    """
    register = nn.Module.register_parameter

    def on_meta(module, name, param):
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module", params=["tiny", "full"])
def models(request, tokenizer):
    size = request.param
    with _parameters_on_meta():
        bicodec = build_bicodec(bicodec_config(size)["audio_tokenizer"])
    with torch.device("meta"):
        wav2vec2 = Wav2Vec2Model(wav2vec2_config(size))
        llm = Qwen2ForCausalLM(llm_config(tokenizer, size))
    return size, bicodec, wav2vec2, llm


def test_parameter_counts_are_those_of_each_size(models):
    size, bicodec, wav2vec2, llm = models
    state = bicodec.state_dict()
    elements = sum(v.numel() for v in state.values())
    if size == "full":
        assert _parameters(bicodec) == FULL_BICODEC_PARAMS
        assert elements == FULL_BICODEC_TENSOR_ELEMENTS
        assert len(state) == FULL_BICODEC_TENSORS
        assert _parameters(wav2vec2) == FULL_WAV2VEC2_PARAMS
        assert _parameters(llm) == FULL_LLM_PARAMS
    else:
        assert elements == TINY_BICODEC_TENSOR_ELEMENTS
        assert _parameters(wav2vec2) == TINY_WAV2VEC2_PARAMS
        assert _parameters(llm) == TINY_LLM_PARAMS


def test_full_llm_is_the_qwen2_half_billion_with_spark_vocabulary(tokenizer):
    config = llm_config(tokenizer, "full")
    assert config.vocab_size == 166_000 > len(tokenizer)
    assert (config.hidden_size, config.intermediate_size) == (896, 4864)
    assert config.num_hidden_layers == 24
    assert (config.num_attention_heads, config.num_key_value_heads) == (14, 2)
    assert config.max_position_embeddings == 32768
    assert config.rope_parameters["rope_theta"] == 1_000_000
    assert config.tie_word_embeddings is True
    # The generated tokenizer's end token, not Qwen's: the ids must agree with it.
    assert config.eos_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    # Counted from the shapes: embedding + 24 layers + final norm, no separate head.
    layer = (896 * 896 + 896) + 2 * (896 * 128 + 128) + 896 * 896 + 3 * 896 * 4864 + 2 * 896
    assert FULL_LLM_PARAMS == 166_000 * 896 + 24 * layer + 896


def test_llm_ties_its_head_to_the_embedding(models):
    size, _, _, llm = models
    assert llm.lm_head.weight is llm.model.embed_tokens.weight


def test_full_wav2vec2_is_xlsr_53_large():
    config = wav2vec2_config("full")
    assert (config.hidden_size, config.num_hidden_layers) == (1024, 24)
    assert config.num_attention_heads == 16
    assert config.intermediate_size == 4096
    assert list(config.conv_dim) == [512] * 7
    assert config.feat_extract_norm == "layer" and config.do_stable_layer_norm
    assert (config.num_conv_pos_embeddings, config.num_conv_pos_embedding_groups) == (128, 16)
    # One frame per semantic token, and the layers BiCodec mixes exist.
    hop = 1
    for stride in config.conv_stride:
        hop *= stride
    assert hop == SAMPLES_PER_TOKEN
    assert config.num_hidden_layers >= max(WAV2VEC2_MIX_LAYERS)


def test_full_bicodec_fits_wav2vec2_and_the_prompt_vocabularies():
    block = FULL_BICODEC_CONFIG["audio_tokenizer"]
    assert bicodec_config("full") is FULL_BICODEC_CONFIG
    assert block["encoder"]["input_channels"] == wav2vec2_config("full").hidden_size
    assert block["quantizer"]["codebook_size"] == prompts.SEMANTIC_VOCAB
    levels = 1
    for level in block["speaker_encoder"]["fsq_levels"]:
        levels *= level
    assert levels == prompts.GLOBAL_VOCAB
    assert block["speaker_encoder"]["input_dim"] == block["mel_params"]["num_mels"] == 128
    rates = 1
    for rate in block["decoder"]["rates"]:
        rates *= rate
    assert rates == SAMPLES_PER_TOKEN


def test_tiny_configs_are_unchanged(tokenizer):
    assert bicodec_config() is BICODEC_CONFIG
    assert bicodec_config("tiny")["audio_tokenizer"]["encoder"] == {
        "input_channels": 32, "vocos_dim": 16, "vocos_intermediate_dim": 32,
        "vocos_num_layers": 2, "out_channels": 16, "sample_ratios": [1, 1],
    }
    w2v = wav2vec2_config()
    assert (w2v.hidden_size, w2v.num_hidden_layers, w2v.num_attention_heads) == (32, 16, 2)
    assert (w2v.intermediate_size, list(w2v.conv_dim)) == (64, [32] * 7)
    assert (w2v.num_conv_pos_embeddings, w2v.num_conv_pos_embedding_groups) == (16, 4)
    llm = llm_config(tokenizer)
    assert llm.vocab_size == len(tokenizer)
    assert (llm.hidden_size, llm.intermediate_size, llm.num_hidden_layers) == (64, 128, 2)
    # Heads of 32 (vLLM's CPU attention takes no smaller), the weights' shapes kept.
    assert (llm.num_attention_heads, llm.num_key_value_heads) == (2, 1)
    assert llm.hidden_size // llm.num_attention_heads == 32
    assert llm.max_position_embeddings == 4096


@pytest.mark.parametrize("size", ["huge", "Full", ""])
def test_unknown_sizes_are_refused(tmp_path, tokenizer, size):
    with pytest.raises(ValueError, match="size"):
        bicodec_config(size)
    with pytest.raises(ValueError, match="size"):
        llm_config(tokenizer, size)
    with pytest.raises(ValueError, match="size"):
        write_tiny_model(tmp_path, size=size)
    with pytest.raises(ValueError, match="size"):
        is_current(tmp_path, size=size)


def test_is_current_tells_the_sizes_apart(tmp_path):
    tiny, full = tmp_path / "tiny", tmp_path / "full"
    tiny.mkdir()
    full.mkdir()
    # The marker a tiny write has always left, and the one a full write leaves.
    version = f"version {GENERATOR_VERSION} seed 0"
    (tiny / MARKER).write_text(f"{version}\nTiny random-weight model.\n")
    (full / MARKER).write_text(f"{version} size full\nFull-size random-weight model.\n")
    assert is_current(tiny) and is_current(tiny, 0, "tiny")
    assert not is_current(tiny, 0, "full")
    assert is_current(full, 0, "full")
    assert not is_current(full) and not is_current(full, 0, "tiny")
    assert not is_current(full, 1, "full")


def test_cli_passes_the_size_on(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(
        "spark_tts.tiny_models.write_tiny_model",
        lambda root, seed, size: calls.append((root, seed, size)) or root,
    )
    for argv, size in (([], "tiny"), (["--size", "full"], "full")):
        monkeypatch.setattr("sys.argv", ["tiny_models", str(tmp_path), "--seed", "3", *argv])
        main()
        assert calls.pop() == (tmp_path, 3, size)
    monkeypatch.setattr("sys.argv", ["tiny_models", str(tmp_path), "--size", "huge"])
    with pytest.raises(SystemExit):
        main()
