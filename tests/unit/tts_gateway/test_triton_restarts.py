"""A restarting Triton is waited for, and a stream it dropped before any audio is resent."""

import asyncio
import time

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from localstack.config import free_ports
from services.common.audio import PcmAudio
from services.common.errors import Unavailable
from services.common.metrics import ServerMetrics
from services.common.settings import SettingsError, from_env
from services.tts_gateway import synthesis
from services.tts_gateway.metrics import TtsMetrics
from services.tts_gateway.request import ReferenceSpeaker, SpeechRequest
from services.tts_gateway.settings import TtsSettings
from services.tts_gateway.synthesis import TtsEngine
from services.tts_gateway.triton import Triton


def reply(final: bool) -> dict:
    return {"waveform": np.zeros(160, np.float32), "sample_rate": np.array([16_000]),
            "final": np.array([final]), "semantic_tokens": np.array([3]),
            "speaker_id": np.array([b"s"], np.object_)}


class FlakyTriton:
    """Not ready ``down`` times; each stream plays the next script: a list of replies,
    with an Unavailable where Triton goes away."""

    url = "triton:8001"

    def __init__(self, down: int, scripts: list[list]) -> None:
        self.down, self.scripts, self.polls, self.streams = down, scripts, 0, 0

    async def ready(self, model=None) -> bool:
        self.polls += 1
        return self.polls > self.down

    async def stream(self, model, inputs, outputs, timeout):
        script = self.scripts[self.streams]
        self.streams += 1
        for item in script:
            if isinstance(item, Exception):
                raise item
            yield item


@pytest.fixture(autouse=True)
def no_wait(monkeypatch):
    monkeypatch.setattr(synthesis, "_READY_POLL_SECONDS", 0.0)


def engine(triton, wait=30.0) -> TtsEngine:
    settings = TtsSettings(triton_wait_seconds=wait)
    return TtsEngine(settings, triton, TtsMetrics(ServerMetrics().registry))


REQUEST = SpeechRequest("Hello.", ReferenceSpeaker(PcmAudio(np.ones(16_000, np.float32), 16_000)))


async def chunks(tts: TtsEngine) -> list:
    return [chunk async for chunk in tts.synthesize(REQUEST)]


async def test_a_restarting_triton_is_waited_for():
    triton = FlakyTriton(down=3, scripts=[[reply(False), reply(True)]])
    got = await chunks(engine(triton))
    assert [c.final for c in got] == [False, True]
    assert triton.polls == 4 and triton.streams == 1


async def test_with_no_wait_a_triton_that_is_down_is_unavailable_at_once():
    triton = FlakyTriton(down=10**6, scripts=[])
    with pytest.raises(Unavailable, match="no ready spark_tts"):
        await chunks(engine(triton, wait=0))
    assert triton.polls == 1


async def test_a_stream_dropped_before_any_audio_is_sent_again():
    triton = FlakyTriton(down=0, scripts=[[Unavailable("Triton: connection reset")],
                                          [reply(False), reply(True)]])
    got = await chunks(engine(triton))
    assert len(got) == 2 and triton.streams == 2


async def test_a_stream_dropped_after_audio_left_fails():
    triton = FlakyTriton(down=0, scripts=[[reply(False), Unavailable("Triton: gone")],
                                          [reply(False), reply(True)]])
    with pytest.raises(Unavailable, match="gone"):
        await chunks(engine(triton))
    assert triton.streams == 1


def test_the_wait_is_a_checked_setting():
    assert from_env(TtsSettings, "TTS", {"TTS_TRITON_WAIT_SECONDS": "5"}).triton_wait_seconds == 5
    with pytest.raises(SettingsError, match="TTS_TRITON_WAIT_SECONDS"):
        from_env(TtsSettings, "TTS", {"TTS_TRITON_WAIT_SECONDS": "-1"})


class _ReadyTriton(service_pb2_grpc.GRPCInferenceServiceServicer):
    async def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=True)


async def _poll_until_ready(client: Triton, timeout: float) -> float | None:
    """When ``client``, asking again and again, first saw Triton ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await client.ready():
            return time.monotonic()
        await asyncio.sleep(0.05)
    return None


@pytest.mark.slow  # seconds of real time: an outage, keepalive pings
async def test_a_triton_back_after_a_long_outage_is_seen_within_a_second_or_so():
    """Triton takes tens of seconds to come back after a crash; gRPC's default reconnect
    back-off would by then wait seconds more (1 s, 1.6 s, 2.6 s, 4.1 s...) before
    trying again, and the TTS service would stay NOT_SERVING that long."""
    port = free_ports(1)[0]
    client = Triton(f"127.0.0.1:{port}", timeout=0.5)
    server = None
    try:
        down_until = time.monotonic() + 10.0
        while time.monotonic() < down_until:  # the channel backs off while nobody listens
            assert not await client.ready()
            await asyncio.sleep(0.05)
        server = grpc.aio.server()
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_ReadyTriton(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        up = time.monotonic()
        seen = await _poll_until_ready(client, 10)
        assert seen is not None and seen - up < 2.0, f"seen {None if seen is None else seen - up} s late"
    finally:
        await client.close()
        if server is not None:
            await server.stop(None)
