"""The public edge: REST transcoded by the real Envoy, and gRPC through it."""

import base64

import grpc
import numpy as np
import pytest
from voice.v1 import gateway_pb2, gateway_pb2_grpc, tts_pb2

from tests.integration.http_client import call

CONTROL = {"control": {"gender": "GENDER_FEMALE", "pitch": "LEVEL_HIGH"}}


def test_health_is_json_from_the_gateway_through_envoy(stack):
    reply = call("GET", f"{stack.api}/v1/health")
    assert reply.status == 200
    assert reply.headers["server"] == "envoy"
    assert reply.headers["content-type"] == "application/json"
    assert len(reply.headers["x-request-id"]) >= 16
    body = reply.json()
    assert body["status"] == "SERVING", body
    assert {d["name"]: d["status"] for d in body["dependencies"]} == {
        "tts": "SERVING",
        "rvc": "SERVING",
    }
    # The unversioned path is the old server's health, ours beside its fields.
    old = call("GET", f"{stack.api}/health").json()
    assert (old["status"], old["serving_status"]) == ("ready", "SERVING")


def test_status_shows_every_stage(stack):
    body = call("GET", f"{stack.api}/v1/status").json()
    assert body["tts"]["triton_ready"] is True
    assert body["tts"]["triton_address"].endswith(f":{stack.config.triton_grpc_port}")
    assert body["rvc"]["workers_alive"] == body["rvc"]["workers_configured"] == 1
    assert body["rvc"]["workers"][0]["device"] == "cpu"
    assert call("GET", f"{stack.api}/status").json()["version"] == body["version"]
    # The vLLM server behind Triton's llm model, with its own counters.
    llm = body["tts"]["llm_server"]
    assert llm["address"] == f"http://127.0.0.1:{stack.config.vllm_port}"
    assert llm["ready"] is True and not llm.get("error")


def test_without_profiles_the_generated_demo_voices_are_listed(stack):
    reply = call("GET", f"{stack.api}/v1/voices")
    assert reply.status == 200
    voices = {v["name"]: v for v in reply.json()["voices"]}
    assert sorted(voices) == ["demo", "demo-piper", "demo-spark"]
    # Without Spark TTS weights the default demo speaks with Piper.
    summary = {name: (v.get("engine"), v.get("speaker", ""), v.get("problem", ""),
                      v.get("is_default", False)) for name, v in voices.items()}
    assert summary == {
        "demo": ("ENGINE_PIPER", "", "", True),
        "demo-piper": ("ENGINE_PIPER", "", "", False),
        "demo-spark": ("ENGINE_SPARK", "reference", "", False),
    }
    # Each converts into one of the generated untrained RVC voices.
    assert all(v["rvc_model"].startswith("untrained-") for v in voices.values())


@pytest.mark.parametrize(
    "path, payload, fragment",
    [
        ("/v1/synthesize", {"text": "Hi.", "engine": "ENGINE_SPARK"}, "no speaker"),
        ("/v1/synthesize", {"text": "Hi.", "voice": "demo", "sample_rate": 1}, "8000..48000"),
        ("/v1/tts", {"text": "", "speaker": CONTROL}, "text is empty"),
        ("/v1/rvc", {"params": {"model": "../../etc"}, "audio": {"sample_rate": 16000}},
         "model name"),
        ("/v1/rvc", {"params": {"pitch_shift": 99}}, "pitch_shift 99"),
    ],
)
def test_bad_requests_are_400_with_a_message(stack, path, payload, fragment):
    reply = call("POST", f"{stack.api}{path}", payload)
    assert reply.status == 400
    assert fragment in reply.json()["error"]["message"]


def test_malformed_json_is_400(stack):
    reply = call("POST", f"{stack.api}/v1/synthesize", raw=b"{not json")
    assert reply.status == 400


def test_unknown_voice_is_404(stack):
    reply = call(
        "POST",
        f"{stack.api}/v1/rvc",
        {"params": {"model": "ghost"}, "audio": {"pcm": "AAA=", "sample_rate": 16000}},
    )
    assert reply.status == 404
    assert "ghost" in reply.json()["error"]["message"]


def test_unknown_routes_are_404_and_internal_services_are_not_exposed(stack):
    assert call("GET", f"{stack.api}/nope").status == 404
    assert call("POST", f"{stack.api}/voice.v1.TextToSpeech/Synthesize", {}).status == 404


async def test_grpc_through_envoy_with_request_id_propagated_to_the_tts_service(stack):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.config.api_port}") as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        health = await stub.GetHealth(gateway_pb2.GetHealthRequest(), timeout=10)
        assert health.status == "SERVING"
        request = gateway_pb2.SynthesizeRequest(
            text="Hi.",
            speaker=tts_pb2.SpeakerPrompt(control=tts_pb2.VoiceControl(gender=tts_pb2.GENDER_MALE)),
            sampling=tts_pb2.SamplingParams(seed=1, max_tokens=150),
        )
        reply = await stub.Synthesize(
            request, metadata=(("x-request-id", "edge-trace-7"),), timeout=120
        )
        assert reply.audio.sample_rate == 16_000
    # Every service on the path logged the call under the id the client sent.
    for service in ("gateway", "tts_gateway"):
        assert '"request_id": "edge-trace-7"' in stack.log(service), service
    assert stack.log_shows("envoy", '"request_id":"edge-trace-7"')


def test_reflection_through_the_edge_shows_only_the_public_api(stack):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with grpc.insecure_channel(f"127.0.0.1:{stack.config.api_port}") as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert "voice.v1.Gateway" in services
    assert "voice.v1.TextToSpeech" not in services
    assert "voice.v1.VoiceConversion" not in services


def test_rest_conversion_of_a_long_clip_fits_through_the_edge(stack):
    """Twelve seconds of float audio is megabytes of JSON each way: the transcoder must take it."""
    rate = 44_100
    t = np.arange(12 * rate) / rate
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * np.clip(np.sin(2 * np.pi * 2 * t), 0, None))
    pcm = base64.b64encode(audio.astype("<f4").tobytes()).decode()
    reply = call("POST", f"{stack.api}/v1/rvc", {
        "params": {"model": "untrained-v1-f0-40k", "f0_method": "F0_METHOD_PM"},
        "audio": {"pcm": pcm, "sample_rate": rate, "sample_format": "SAMPLE_FORMAT_PCM_F32LE"},
    })
    assert reply.status == 200, reply.body[:300]
    converted = reply.json()["audio"]
    assert converted["sample_rate"] == 40_000
    samples = len(base64.b64decode(converted["pcm"])) // 4
    assert abs(samples - 12 * 40_000) <= 400


def test_rest_streaming_synthesis_is_a_json_array_of_sentences(stack):
    rate = 16_000
    t = np.arange(2 * rate) / rate
    clip = (0.2 * np.sin(2 * np.pi * 140 * t)).astype("<f4")
    reference = {"audio": {"pcm": base64.b64encode(clip.tobytes()).decode(), "sample_rate": rate,
                           "sample_format": "SAMPLE_FORMAT_PCM_F32LE"}}
    reply = call("POST", f"{stack.api}/v1/synthesize:stream", {
        "text": "One sentence. And another one.",
        "speaker": {"reference": reference},
        "sampling": {"seed": 1, "max_tokens": 30},
        "skip_rvc": True,
    })
    assert reply.status == 200, reply.body[:300]
    pieces = reply.json()
    assert [p["sentence_index"] for p in pieces] == [0, 1]
    assert pieces[-1]["chunk"]["final"] is True
    assert all(p["chunk"]["audio"]["sample_rate"] == 16_000 for p in pieces)
