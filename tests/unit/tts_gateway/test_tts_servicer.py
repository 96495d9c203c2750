"""The TTS service over real gRPC: request checks, and Triton reachability."""

import grpc
import numpy as np
import pytest
from voice.v1 import audio_pb2, tts_pb2, tts_pb2_grpc

from localstack.config import free_ports
from services.common.audio import PcmAudio
from services.common.audio_proto import audio_to_proto
from services.common.metrics import ServerMetrics
from services.common.server import Servicer
from services.tts_gateway.metrics import TtsMetrics
from services.tts_gateway.servicer import TextToSpeechServicer
from services.tts_gateway.settings import TtsSettings
from services.tts_gateway.synthesis import TtsEngine
from services.tts_gateway.triton import Triton
from tests.grpc_hosts import channel_to, hosted

CONTROL = tts_pb2.SpeakerPrompt(control=tts_pb2.VoiceControl(gender=tts_pb2.GENDER_FEMALE))


@pytest.fixture
async def tts():
    # Nothing listens on this port: Triton is down.
    (port,) = free_ports(1)
    settings = TtsSettings(triton_url=f"127.0.0.1:{port}", max_text_chars=100,
                           triton_wait_seconds=0)
    triton = Triton(settings.triton_url, timeout=0.5)
    metrics = ServerMetrics()
    servicer = Servicer(
        TextToSpeechServicer(TtsEngine(settings, triton, TtsMetrics(metrics.registry))),
        tts_pb2_grpc.add_TextToSpeechServicer_to_server,
        tts_pb2.DESCRIPTOR.services_by_name["TextToSpeech"].full_name,
    )
    async with hosted([servicer], readiness=triton.ready, metrics=metrics) as host, channel_to(host) as channel:
        yield tts_pb2_grpc.TextToSpeechStub(channel)
    await triton.close()


async def status_of(call):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    return caught.value.code(), caught.value.details()


def reference(seconds, rate=16_000):
    audio = audio_to_proto(PcmAudio(np.zeros(int(seconds * rate), np.float32), rate))
    return tts_pb2.SpeakerPrompt(reference=tts_pb2.ReferenceAudio(audio=audio))


@pytest.mark.parametrize(
    "request_, fragment",
    [
        (tts_pb2.SynthesizeSpeechRequest(text="  ", speaker=CONTROL), "text is empty"),
        (tts_pb2.SynthesizeSpeechRequest(text="x" * 101, speaker=CONTROL), "the limit is 100"),
        (tts_pb2.SynthesizeSpeechRequest(text="hi"), "speaker is required"),
        (
            tts_pb2.SynthesizeSpeechRequest(
                text="hi", speaker=tts_pb2.SpeakerPrompt(control=tts_pb2.VoiceControl())
            ),
            "gender is required",
        ),
        (
            tts_pb2.SynthesizeSpeechRequest(
                text="hi",
                speaker=tts_pb2.SpeakerPrompt(
                    control=tts_pb2.VoiceControl(gender=tts_pb2.GENDER_MALE, pitch=9)
                ),
            ),
            "pitch 9 is not a known level",
        ),
        (
            tts_pb2.SynthesizeSpeechRequest(
                text="hi", speaker=CONTROL, sampling=tts_pb2.SamplingParams(temperature=0)
            ),
            "temperature 0 is outside",
        ),
        (
            tts_pb2.SynthesizeSpeechRequest(
                text="hi", speaker=CONTROL, sampling=tts_pb2.SamplingParams(top_p=1.5)
            ),
            "top_p 1.5",
        ),
        (tts_pb2.SynthesizeSpeechRequest(text="hi", speaker=reference(0)), "audio is empty"),
        (tts_pb2.SynthesizeSpeechRequest(text="hi", speaker=reference(31)), "the limit is 30 s"),
        (tts_pb2.SynthesizeSpeechRequest(text="hi", speaker=reference(0.02)), "at least 0.1 s"),
        (
            tts_pb2.SynthesizeSpeechRequest(
                text="hi",
                speaker=tts_pb2.SpeakerPrompt(reference=tts_pb2.ReferenceAudio(
                    audio=reference(1).reference.audio, transcript="y" * 101,
                )),
            ),
            "transcript has 101 characters; the limit is 100",
        ),
        (
            tts_pb2.SynthesizeSpeechRequest(text="hi <|end_content|> there", speaker=CONTROL),
            "reserved token '<|end_content|>'",
        ),
        (
            tts_pb2.SynthesizeSpeechRequest(text="bell\x07 and\tnull\x00", speaker=CONTROL),
            "text contains the control character U+0007 at position 4",
        ),
        # A clip sent empty is refused whatever the engine (Piper ignores a clip).
        *(
            (tts_pb2.SynthesizeSpeechRequest(text="hi", speaker=speaker, engine=engine),
             "speaker.reference.audio is empty")
            for speaker in (
                tts_pb2.SpeakerPrompt(reference=tts_pb2.ReferenceAudio(
                    audio=audio_pb2.Audio(pcm=b"", sample_rate=16_000))),
                tts_pb2.SpeakerPrompt(reference=tts_pb2.ReferenceAudio(transcript="Hello.")),
            )
            for engine in (tts_pb2.ENGINE_UNSPECIFIED, tts_pb2.ENGINE_SPARK, tts_pb2.ENGINE_PIPER)
        ),
        (
            tts_pb2.SynthesizeSpeechRequest(
                text="hi",
                speaker=tts_pb2.SpeakerPrompt(
                    reference=tts_pb2.ReferenceAudio(audio=audio_pb2.Audio(pcm=b"\0", sample_rate=16000))
                ),
            ),
            "not a whole number",
        ),
        (tts_pb2.SynthesizeSpeechRequest(text="hi", engine=9), "engine 9 is not a known engine"),
        (
            tts_pb2.SynthesizeSpeechRequest(
                text="hi", engine=tts_pb2.ENGINE_PIPER, piper=tts_pb2.PiperOptions(voice="../x")),
            "piper.voice '../x' is malformed",
        ),
        (
            tts_pb2.SynthesizeSpeechRequest(
                text="hi", engine=tts_pb2.ENGINE_PIPER,
                piper=tts_pb2.PiperOptions(length_scale=0.0)),
            "piper.length_scale 0 is outside 0.1..10",
        ),
        (
            tts_pb2.SynthesizeSpeechRequest(
                text="hi", engine=tts_pb2.ENGINE_PIPER, piper=tts_pb2.PiperOptions(speaker=10_000)),
            "piper.speaker 10000 is outside",
        ),
        (tts_pb2.SynthesizeSpeechRequest(text=" ", engine=tts_pb2.ENGINE_PIPER), "text is empty"),
        (
            tts_pb2.SynthesizeSpeechRequest(text="hi", engine=tts_pb2.ENGINE_SPARK),
            "speaker is required by the spark engine",
        ),
    ],
)
async def test_bad_requests_are_invalid_arguments(tts, request_, fragment):
    code, details = await status_of(tts.Synthesize(request_))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in details


async def test_good_request_with_triton_down_is_unavailable(tts):
    code, details = await status_of(
        tts.Synthesize(tts_pb2.SynthesizeSpeechRequest(text="hi", speaker=CONTROL))
    )
    assert code is grpc.StatusCode.UNAVAILABLE
    assert "Triton" in details


@pytest.mark.parametrize("seed", [0, 2**63 - 1, 2**63, 2**64 - 1])
async def test_every_uint64_seed_passes_the_checks(tts, seed):
    """The proto's whole uint64 range: the request gets as far as Triton (down here)."""
    request = tts_pb2.SynthesizeSpeechRequest(
        text="hi", speaker=CONTROL, sampling=tts_pb2.SamplingParams(seed=seed))
    code, details = await status_of(tts.Synthesize(request))
    assert code is grpc.StatusCode.UNAVAILABLE, details


async def test_status_reports_triton_down(tts):
    status = await tts.GetStatus(tts_pb2.GetTtsStatusRequest())
    assert not status.triton_ready
    assert status.in_flight == 0


async def test_a_piper_request_needs_no_speaker_and_waits_for_the_piper_model(tts):
    code, details = await status_of(
        tts.Synthesize(tts_pb2.SynthesizeSpeechRequest(text="hi", engine=tts_pb2.ENGINE_PIPER))
    )
    assert code is grpc.StatusCode.UNAVAILABLE
    assert "no ready piper model" in details


async def test_status_reports_the_default_engine_and_both_engines_down(tts):
    status = await tts.GetStatus(tts_pb2.GetTtsStatusRequest())
    assert status.default_engine == tts_pb2.ENGINE_SPARK
    assert [(e.engine, e.ready, list(e.voices)) for e in status.engines] == [
        (tts_pb2.ENGINE_SPARK, False, []), (tts_pb2.ENGINE_PIPER, False, [])]
