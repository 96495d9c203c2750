"""A reference clip's tokens through the TTS service: read from the request, checked,
sent to Triton in place of the clip, and read back from Triton's first response."""

import numpy as np
import pytest
from voice.v1 import tts_pb2

from services.common.audio import PcmAudio
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.metrics import ServerMetrics
from services.tts_gateway import synthesis
from services.tts_gateway.metrics import TtsMetrics
from services.tts_gateway.request import ReferenceSpeaker, SpeechRequest, TokenSpeaker
from services.tts_gateway.servicer import speech_request_from_proto, tokens_to_proto
from services.tts_gateway.settings import TtsSettings
from services.tts_gateway.synthesis import TtsEngine, triton_inputs
from services.tts_gateway.triton import model_error

GLOBALS = tuple(range(100, 132))
SEMANTICS = (7, 8, 9)
TOKENS = TokenSpeaker(GLOBALS, SEMANTICS, "  What the clip says. ", "bicodec-0123456789abcdef")


def test_tokens_are_read_from_the_prompt_and_written_back_the_same():
    message = tokens_to_proto(TOKENS)
    request = speech_request_from_proto(tts_pb2.SynthesizeSpeechRequest(
        text="Hello.", speaker=tts_pb2.SpeakerPrompt(tokens=message)))
    assert request.speaker == TOKENS


def test_tokens_go_to_triton_in_place_of_a_clip():
    inputs = triton_inputs(SpeechRequest("Hello.", TOKENS), streaming=True)
    assert inputs["global_ids"].dtype == np.int32 and inputs["global_ids"].tolist() == list(GLOBALS)
    assert inputs["semantic_ids"].dtype == np.int32
    assert inputs["semantic_ids"].tolist() == list(SEMANTICS)
    assert inputs["codec"][0] == TOKENS.codec.encode()
    assert inputs["reference_text"][0] == b"What the clip says."  # stripped, as a clip's
    assert not {"reference_wav", "speaker_id", "gender"} & set(inputs)
    bare = triton_inputs(SpeechRequest("Hello.", TokenSpeaker(GLOBALS, SEMANTICS, " ", "c")), True)
    assert "reference_text" not in bare


@pytest.mark.parametrize("tokens, fragment", [
    (TokenSpeaker(GLOBALS[:31], SEMANTICS, "", "c"), "global_ids has 31 ids; 32 are needed"),
    (TokenSpeaker(GLOBALS, (), "", "c"), "semantic_ids has 0 ids; 1..1501 are allowed"),
    (TokenSpeaker(GLOBALS, (1,) * 1502, "", "c"), "semantic_ids has 1502 ids"),
    (TokenSpeaker((4096,) * 32, SEMANTICS, "", "c"), "global_ids holds an id outside 0..4095"),
    (TokenSpeaker(GLOBALS, (8192,), "", "c"), "semantic_ids holds an id outside 0..8191"),
    (TokenSpeaker(GLOBALS, SEMANTICS, "", ""), "codec must be 1..128 characters"),
    (TokenSpeaker(GLOBALS, SEMANTICS, "", "c" * 129), "codec must be 1..128 characters"),
    (TokenSpeaker(GLOBALS, SEMANTICS, "a <|end_content|>", "c"), "reserved token"),
])
def test_malformed_tokens_are_invalid(tokens, fragment):
    with pytest.raises(InvalidArgument, match=None) as caught:
        SpeechRequest("Hello.", tokens).check(100, 30.0)
    assert fragment in caught.value.message


def test_good_tokens_pass_and_piper_notes_it_ignores_them():
    SpeechRequest("Hello.", TOKENS).check(100, 30.0)
    request = SpeechRequest("Hello.", TOKENS, engine=synthesis.Engine.PIPER)
    assert request.plan(synthesis.Engine.SPARK)[1] == (
        "piper ignores the speaker: speaker tokens was given, but Piper speaks in its own "
        "trained voices (see piper.voice)",)


def test_tokens_of_another_codec_are_a_failed_precondition():
    error = model_error("FAILED_PRECONDITION: the speaker tokens were made by codec 'x'")
    assert type(error) is FailedPrecondition
    assert error.message == "the speaker tokens were made by codec 'x'"


def reply(final: bool, tokens: bool) -> dict:
    return {
        "waveform": np.zeros(160, np.float32), "sample_rate": np.array([16_000]),
        "final": np.array([final]), "semantic_tokens": np.array([3]),
        "speaker_id": np.array([b"spk-1" if tokens else b""], np.object_),
        "speaker_global_ids": np.array(GLOBALS if tokens else [], np.int32),
        "speaker_semantic_ids": np.array(SEMANTICS if tokens else [], np.int32),
        "speaker_codec": np.array([b"bicodec-1" if tokens else b""], np.object_),
    }


class OneStreamTriton:
    url = "triton:8001"

    def __init__(self, replies) -> None:
        self.replies, self.outputs = replies, None

    async def ready(self, model=None) -> bool:
        return True

    async def stream(self, model, inputs, outputs, timeout):
        self.outputs = outputs
        for item in self.replies:
            yield item


async def test_the_first_chunk_carries_the_clips_tokens_with_the_requests_transcript():
    triton = OneStreamTriton([reply(False, True), reply(False, False), reply(True, False)])
    tts = TtsEngine(TtsSettings(), triton, TtsMetrics(ServerMetrics().registry))
    clip = ReferenceSpeaker(PcmAudio(np.ones(16_000, np.float32), 16_000), " Said. ")
    chunks = [c async for c in tts.synthesize(SpeechRequest("Hello.", clip))]
    assert chunks[0].tokens == TokenSpeaker(GLOBALS, SEMANTICS, "Said.", "bicodec-1")
    assert [c.tokens for c in chunks[1:]] == [None, None]
    assert {"speaker_global_ids", "speaker_semantic_ids", "speaker_codec"} <= set(triton.outputs)
