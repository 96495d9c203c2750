"""The gateway's pipeline metrics, over real gRPC with a scripted TTS and the RVC
service on a stand-in pool, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import grpc
import numpy as np
import pytest
from google.api import httpbody_pb2
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from voice.v1 import gateway_pb2_grpc, rvc_pb2_grpc, tts_pb2_grpc

from services.common.audio import PcmAudio
from services.common.metrics import ServerMetrics
from services.gateway.metrics import SKIP_REASONS, STAGES, GatewayMetrics
from services.gateway.pipeline import Pipeline
from services.gateway.results import SKIP_MESSAGES, Piece
from services.gateway.servicer import SERVICE_NAME, GatewayServicer
from services.gateway.speech import SpeechService
from services.gateway.stages import RvcStage, StageResult, TtsStage
from services.gateway.voices import VoiceBook
from services.rvc.conversion import Converter
from services.rvc.model_store import ModelStore
from services.rvc.servicer import VoiceConversionServicer
from services.rvc.settings import RvcSettings
from tests.grpc_hosts import channel_to, hosted
from tests.unit.gateway.test_gateway_servicer import THREE, ScriptedTts, request, servicer
from tests.unit.rvc.fake_pool import FakePool

TONE_SECONDS = 0.5  # each sentence of the scripted TTS: two chunks of a quarter second


@pytest.fixture
async def gateway(tmp_path):
    pool = FakePool()
    converter = Converter(RvcSettings(), ModelStore(tmp_path / "rvc"), pool)
    tts_servicer = servicer(ScriptedTts(), tts_pb2_grpc, "TextToSpeech")
    rvc_servicer = servicer(VoiceConversionServicer(converter), rvc_pb2_grpc, "VoiceConversion")
    async with hosted([tts_servicer]) as tts_host, hosted([rvc_servicer]) as rvc_host:
        stages = (
            TtsStage(f"127.0.0.1:{tts_host.grpc_port}"),
            RvcStage(f"127.0.0.1:{rvc_host.grpc_port}"),
        )
        voices = tmp_path / "voices"
        voices.mkdir()
        metrics = ServerMetrics()
        pipeline = Pipeline(*stages, metrics=GatewayMetrics(metrics.registry))
        gateway = servicer(
            GatewayServicer(SpeechService(pipeline, VoiceBook(voices), 2.0, metrics,
                                          service_name=SERVICE_NAME)), gateway_pb2_grpc, "Gateway"
        )
        async with hosted([gateway], metrics=metrics) as host, channel_to(host) as channel:
            yield {
                "stub": gateway_pb2_grpc.GatewayStub(channel),
                "port": host.metrics_port,
                "models": tmp_path / "rvc",
                "voices": voices,
                "pool": pool,
            }
        for stage in stages:
            await stage.close()


async def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            return reply.read().decode()

    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(await asyncio.to_thread(get))
        for s in family.samples
    }


def value(scraped, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def install_voice(models, name="alice"):
    voice = models / name
    voice.mkdir(parents=True)
    (voice / f"{name}.pth").write_bytes(b"not loaded in this test")


async def test_bounded_series_exist_at_zero_before_any_request(gateway):
    scraped = await scrape(gateway["port"])
    for stage in STAGES:
        assert (("gateway_stage_seconds_count", frozenset({("stage", stage)})) in scraped)
    for reason in SKIP_REASONS:
        assert value(scraped, "gateway_rvc_skipped_total", reason=reason) == 0
    assert set(SKIP_REASONS) == set(SKIP_MESSAGES)


async def test_a_converted_stream_records_stages_first_audio_rtf_and_audio(gateway):
    install_voice(gateway["models"])
    replies = [r async for r in gateway["stub"].SynthesizeStream(request(THREE))]
    assert all(r.rvc_applied for r in replies)
    scraped = await scrape(gateway["port"])
    # One observation per sentence and stage.
    assert value(scraped, "gateway_stage_seconds_count", stage="tts") == 3
    assert value(scraped, "gateway_stage_seconds_count", stage="rvc") == 3
    assert value(scraped, "gateway_stage_seconds_sum", stage="rvc") > 0
    # One per request, under the method that served it.
    rpc = "SynthesizeStream"
    assert value(scraped, "gateway_time_to_first_audio_seconds_count", rpc=rpc) == 1
    first = value(scraped, "gateway_time_to_first_audio_seconds_sum", rpc=rpc)
    assert first == pytest.approx(replies[-1].timing.first_audio_seconds, rel=0.05)
    assert value(scraped, "gateway_real_time_factor_count", rpc=rpc) == 1
    rtf = value(scraped, "gateway_real_time_factor_sum", rpc=rpc)
    assert 0 < first / (3 * TONE_SECONDS) <= rtf
    assert value(scraped, "gateway_audio_seconds_total", rpc=rpc) == pytest.approx(3 * TONE_SECONDS)
    assert sum(value(scraped, "gateway_rvc_skipped_total", reason=r) for r in SKIP_REASONS) == 0


@pytest.mark.parametrize(
    "skip_rvc, install, reason",
    [(True, True, "requested"), (False, False, "no_voice_installed")],
)
async def test_a_skipped_conversion_is_counted_once_per_request_by_reason(
    gateway, skip_rvc, install, reason
):
    if install:
        install_voice(gateway["models"])
    reply = await gateway["stub"].Synthesize(request(THREE, skip_rvc=skip_rvc))
    assert not reply.rvc_applied
    assert reply.rvc_skipped_reason == SKIP_MESSAGES[reason]
    scraped = await scrape(gateway["port"])
    assert value(scraped, "gateway_rvc_skipped_total", reason=reason) == 1
    assert value(scraped, "gateway_stage_seconds_count", stage="tts") == 3
    assert value(scraped, "gateway_stage_seconds_count", stage="rvc") == 0
    assert value(scraped, "gateway_time_to_first_audio_seconds_count", rpc="Synthesize") == 1
    assert value(scraped, "gateway_audio_seconds_total", rpc="Synthesize") == pytest.approx(1.5)


async def test_no_default_voice_is_its_own_reason(gateway):
    install_voice(gateway["models"], "alice")
    install_voice(gateway["models"], "bob")  # two voices and no RVC_MODEL: no default
    await gateway["stub"].Synthesize(request())
    scraped = await scrape(gateway["port"])
    assert value(scraped, "gateway_rvc_skipped_total", reason="no_default_voice") == 1


async def test_each_rpc_is_labelled_with_its_own_method(gateway):
    stub = gateway["stub"]
    await stub.Synthesize(request(skip_rvc=True))
    [r async for r in stub.SynthesizeStream(request(skip_rvc=True))]
    (gateway["voices"] / "bob.json").write_text(
        json.dumps({"control": {"gender": "male"}, "skip_rvc": True})
    )
    speech = json.dumps({"model": "tts-1", "input": THREE, "voice": "bob", "response_format": "pcm"})
    [r async for r in stub.CreateSpeech(
        httpbody_pb2.HttpBody(content_type="application/json", data=speech.encode())
    )]
    scraped = await scrape(gateway["port"])
    for rpc in ("Synthesize", "SynthesizeStream", "CreateSpeech"):
        assert value(scraped, "gateway_time_to_first_audio_seconds_count", rpc=rpc) == 1
        assert value(scraped, "gateway_real_time_factor_count", rpc=rpc) == 1
    assert value(scraped, "gateway_audio_seconds_total", rpc="CreateSpeech") == pytest.approx(1.5)
    assert value(scraped, "gateway_rvc_skipped_total", reason="requested") == 3


async def test_a_failed_request_records_no_first_audio(gateway):
    install_voice(gateway["models"])
    gateway["pool"].full = True
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await gateway["stub"].Synthesize(request())
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    scraped = await scrape(gateway["port"])
    assert value(scraped, "gateway_time_to_first_audio_seconds_count", rpc="Synthesize") == 0
    assert value(scraped, "gateway_audio_seconds_total", rpc="Synthesize") == 0
    # The error itself is counted by code with every other RPC.
    assert value(scraped, "grpc_server_handled_total", grpc_service="voice.v1.Gateway",
                 grpc_method="Synthesize", grpc_code="RESOURCE_EXHAUSTED") == 1


def test_the_recorder_times_first_audio_and_the_whole_request():
    registry = CollectorRegistry()
    recorder = GatewayMetrics(registry).request("")  # a caller that names no method
    second = PcmAudio(np.zeros(16_000, np.float32), 16_000)
    tts = StageResult(second, 0.4, 0.1)
    for index, elapsed in ((0, 0.5), (1, 1.0)):
        recorder.piece(Piece(index, 2, second, tts, None, "", elapsed), "")
    sample = registry.get_sample_value
    assert sample("gateway_time_to_first_audio_seconds_sum", {"rpc": "unknown"}) == 0.5
    # 1 s from the request to its last audio, for 2 s of speech.
    assert sample("gateway_real_time_factor_sum", {"rpc": "unknown"}) == pytest.approx(0.5)
    assert sample("gateway_stage_seconds_sum", {"stage": "tts"}) == pytest.approx(0.8)
    assert sample("gateway_audio_seconds_total", {"rpc": "unknown"}) == 2.0


def test_pipelines_without_a_registry_do_not_share_one():
    first, second = GatewayMetrics(), GatewayMetrics()
    first.request("Synthesize").piece(
        Piece(0, 1, PcmAudio(np.zeros(160, np.float32), 16_000),
              StageResult(PcmAudio(np.zeros(160, np.float32), 16_000), 0.1, 0.1), None, "", 0.2),
        "requested",
    )
    assert first.rvc_skipped.labels("requested")._value.get() == 1
    assert second.rvc_skipped.labels("requested")._value.get() == 0
