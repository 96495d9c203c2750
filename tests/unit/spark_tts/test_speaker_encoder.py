"""Fast checks of the BiCodec speaker encoder with a tiny configuration."""

from __future__ import annotations

import io

import pytest
import torch

from spark_tts.bicodec.speaker.fsq import FSQ
from spark_tts.bicodec.speaker.residual_fsq import ResidualFSQ
from spark_tts.bicodec.speaker.speaker_encoder import SpeakerEncoder

LEVELS = [4, 4, 4, 4, 4, 4]
TINY = dict(
    input_dim=32,
    out_dim=48,
    latent_dim=16,
    token_num=32,
    fsq_levels=LEVELS,
    fsq_num_quantizers=1,
)


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    torch.manual_seed(0)
    return SpeakerEncoder(**TINY).eval()


def test_tokenize_gives_32_tokens_in_codebook_range(encoder: SpeakerEncoder) -> None:
    mel = torch.randn(2, 60, 32)
    with torch.no_grad():
        tokens = encoder.tokenize(mel)
    assert tokens.shape == (2, 1, 32)
    assert tokens.dtype == torch.int32
    assert encoder.codebook_size == 4096
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 4096


def test_detokenize_matches_forward_d_vector(encoder: SpeakerEncoder) -> None:
    mel = torch.randn(3, 45, 32)
    with torch.no_grad():
        d_from_tokens = encoder.detokenize(encoder.tokenize(mel))
        x_vector, d_vector = encoder(mel)
    assert d_from_tokens.shape == (3, 48)
    assert x_vector.shape == (3, 48)
    torch.testing.assert_close(d_from_tokens, d_vector, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("frames", [17, 80, 133])
def test_variable_length_mel(encoder: SpeakerEncoder, frames: int) -> None:
    with torch.no_grad():
        tokens = encoder.tokenize(torch.randn(1, frames, 32))
    assert tokens.shape == (1, 1, 32)


def test_fsq_codes_indices_round_trip_is_exact() -> None:
    fsq = FSQ(levels=[8, 5, 5, 3])
    indices = torch.arange(fsq.codebook_size)
    codes = fsq.indices_to_codes(indices)
    assert codes.abs().max() <= 1.0
    assert torch.equal(fsq.codes_to_indices(codes), indices.to(torch.int32))
    # quantizer output lies on the grid and its index decodes back to it exactly
    out, idx = fsq(torch.randn(2, 50, 4) * 3)
    assert torch.equal(fsq.indices_to_codes(idx), out)
    assert idx.unique().numel() > 1


def test_residual_fsq_indices_reproduce_output() -> None:
    torch.manual_seed(1)
    rfsq = ResidualFSQ(levels=[5, 5, 4], num_quantizers=3, dim=10, is_channel_first=True)
    x = torch.randn(2, 10, 7)
    with torch.no_grad():
        out, indices = rfsq(x)
        rebuilt = rfsq.get_output_from_indices(indices.transpose(1, 2)).transpose(1, 2)
    assert indices.shape == (2, 3, 7)
    torch.testing.assert_close(rebuilt, out)


def test_state_dict_strict_round_trip(encoder: SpeakerEncoder) -> None:
    buffer = io.BytesIO()
    torch.save(encoder.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(123)
    other = SpeakerEncoder(**TINY).eval()
    result = other.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    mel = torch.randn(2, 40, 32)
    with torch.no_grad():
        assert torch.equal(other.tokenize(mel), encoder.tokenize(mel))
        torch.testing.assert_close(other(mel), encoder(mel))


def test_persistent_state_has_no_fsq_buffers(encoder: SpeakerEncoder) -> None:
    keys = set(encoder.state_dict())
    assert "perceiver_sampler.latents" in keys
    assert "speaker_encoder.pool.linear1.weight" in keys
    assert not any(k.endswith(("_levels", "_basis", "implicit_codebook", "scales")) for k in keys)
