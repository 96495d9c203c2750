"""The RVC service's metrics: the pool's gauges read at scrape time, and each
conversion's time and audio, scraped over HTTP as Prometheus would."""

from __future__ import annotations

import asyncio
import threading
import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from voice.v1 import audio_pb2, rvc_pb2, rvc_pb2_grpc

from services.common.audio import PcmAudio
from services.common.audio_proto import audio_to_proto
from services.common.metrics import ServerMetrics
from services.common.server import Servicer
from services.rvc import metrics as rvc_metrics
from services.rvc.conversion import Converter
from services.rvc.model_store import ModelStore
from services.rvc.servicer import VoiceConversionServicer
from services.rvc.settings import RvcSettings, StreamSettings
from services.rvc.worker_pool import WorkerPool
from services.rvc.worker_pool_types import PoolConfig, PoolStats, WorkerStats
from tests.grpc_hosts import channel_to, hosted
from tests.unit.rvc.fake_pool import FakePool

WAIT = 20.0  # cap on any wait; never reached when things work


def samples(body: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


async def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """/metrics from another thread, as Prometheus scrapes it while the loop keeps running."""

    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            return reply.read().decode()

    return samples(await asyncio.to_thread(get))


def value(scraped, name: str, **labels: str) -> float:
    return scraped[(name, frozenset(labels.items()))]


class SettablePool:
    """Stats that a test sets, and a record of the threads that read them."""

    def __init__(self) -> None:
        self.state = PoolStats(2, 0, 0, 0, (
            WorkerStats(0, None, "cpu", False, False, 0, 0.0, 0, {}),
            WorkerStats(1, None, "cpu", False, False, 0, 0.0, 0, {}),
        ))
        self.readers: list[int] = []

    def stats(self) -> PoolStats:
        self.readers.append(threading.get_ident())
        return self.state


@pytest.fixture
def served_metrics():
    metrics = ServerMetrics()
    port = metrics.serve("127.0.0.1", 0)
    yield metrics, port
    metrics.close()


async def test_pool_gauges_follow_the_pool_at_every_scrape(served_metrics):
    metrics, port = served_metrics
    pool = SettablePool()
    rvc_metrics.register(metrics.registry, pool, asyncio.get_running_loop())
    before = await scrape(port)
    assert value(before, "rvc_workers_configured") == 2
    assert value(before, "rvc_workers_alive") == 0
    assert value(before, "rvc_queue_depth") == 0
    assert value(before, "rvc_worker_restarts_total", worker="1") == 0

    busy = WorkerStats(0, 10, "cpu", True, True, 7, 0.2, 0, {})
    idle = WorkerStats(1, 11, "cpu", True, False, 4, 0.2, 2, {})
    pool.state = PoolStats(2, 2, 1, 3, (busy, idle))
    after = await scrape(port)
    assert value(after, "rvc_queue_depth") == 3
    assert value(after, "rvc_workers_alive") == 2
    assert value(after, "rvc_workers_busy") == 1
    assert value(after, "rvc_worker_jobs_total", worker="0") == 7
    assert value(after, "rvc_worker_restarts_total", worker="1") == 2
    # The pool's state lives on the event loop: the scrape read it there, not on its own thread.
    assert set(pool.readers) == {threading.get_ident()}


async def test_the_fake_pool_reports_through_the_collector(served_metrics):
    metrics, port = served_metrics
    rvc_metrics.register(metrics.registry, FakePool())  # no loop: read on the scrape's thread
    scraped = await scrape(port)
    assert value(scraped, "rvc_workers_configured") == 3
    assert value(scraped, "rvc_workers_alive") == 1
    assert value(scraped, "rvc_worker_jobs_total", worker="0") == 5
    assert value(scraped, "rvc_worker_restarts_total", worker="0") == 1


async def test_a_stuck_loop_leaves_the_pool_gauges_out_but_the_page_up(served_metrics, monkeypatch):
    metrics, port = served_metrics
    monkeypatch.setattr(rvc_metrics, "STATS_TIMEOUT", 0.2)
    rvc_metrics.register(metrics.registry, SettablePool(), asyncio.get_running_loop())

    def blocking_scrape() -> str:  # on the loop's own thread: the loop cannot answer
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            return reply.read().decode()

    scraped = samples(blocking_scrape())
    assert not any(name.startswith("rvc_worker") or name == "rvc_queue_depth"
                   for name, _ in scraped)
    assert any(name.startswith("process_") for name, _ in scraped)


async def test_a_failing_pool_read_does_not_fail_the_scrape(served_metrics, caplog):
    metrics, port = served_metrics

    class Broken:
        def stats(self):
            raise RuntimeError("state changed under the reader")

    rvc_metrics.register(metrics.registry, Broken(), asyncio.get_running_loop())
    scraped = await scrape(port)
    assert not any(name == "rvc_queue_depth" for name, _ in scraped)
    assert any(name.startswith("process_") for name, _ in scraped)
    assert "could not read the worker pool's state" in caplog.text


async def test_a_real_pool_shows_queueing_busy_workers_jobs_and_restarts(served_metrics):
    metrics, port = served_metrics
    config = PoolConfig("tests.unit.rvc.pool_handlers:make", {}, ("cpu",),
                        restart_backoff=0.05, name="metrics-worker")
    pool = WorkerPool(config)
    rvc_metrics.register(metrics.registry, pool, asyncio.get_running_loop())
    await pool.start()
    try:
        idle = await scrape(port)
        assert (value(idle, "rvc_workers_alive"), value(idle, "rvc_workers_busy")) == (1, 0)
        assert value(idle, "rvc_queue_depth") == 0
        jobs = [asyncio.ensure_future(pool.call("sleep", {"seconds": 1.0})) for _ in range(2)]
        await pool.wait_until(lambda s: s.busy == 1 and s.queue_depth == 1, WAIT)
        loaded = await scrape(port)
        assert value(loaded, "rvc_workers_busy") == 1
        assert value(loaded, "rvc_queue_depth") == 1
        await asyncio.gather(*jobs)
        with pytest.raises(Exception):  # noqa: B017 - any error: the worker dies twice
            await pool.call("crash", {})
        await pool.wait_until(lambda s: s.alive == 1 and s.workers[0].restarts >= 2, WAIT)
        after = await scrape(port)
        assert value(after, "rvc_worker_jobs_total", worker="0") == 2
        assert value(after, "rvc_worker_restarts_total", worker="0") >= 2
        assert value(after, "rvc_queue_depth") == 0
    finally:
        await pool.stop()


@pytest.fixture
async def served_rvc(tmp_path):
    voice = tmp_path / "alice"
    voice.mkdir()
    (voice / "alice.pth").write_bytes(b"not a checkpoint")
    pool = FakePool()
    metrics = ServerMetrics()
    settings = RvcSettings(
        workers=1, max_audio_seconds=5,
        stream=StreamSettings(block_ms=200, context_ms=100, crossfade_ms=10, search_ms=2),
    )
    conversions = rvc_metrics.register(metrics.registry, pool, asyncio.get_running_loop())
    converter = Converter(settings, ModelStore(tmp_path), pool, conversions)
    servicer = Servicer(
        VoiceConversionServicer(converter),
        rvc_pb2_grpc.add_VoiceConversionServicer_to_server,
        rvc_pb2.DESCRIPTOR.services_by_name["VoiceConversion"].full_name,
    )
    async with hosted([servicer], metrics=metrics) as host, channel_to(host) as channel:
        yield rvc_pb2_grpc.VoiceConversionStub(channel), host.metrics_port, pool


async def test_every_conversion_series_exists_at_zero_before_any_work(served_rvc):
    _, port, _ = served_rvc
    scraped = await scrape(port)
    for mode in rvc_metrics.MODES:
        assert value(scraped, "rvc_conversion_seconds_count", mode=mode) == 0
        assert value(scraped, "rvc_real_time_factor_count", mode=mode) == 0
        assert value(scraped, "rvc_audio_seconds_total", mode=mode) == 0


async def test_a_clip_conversion_records_its_time_audio_and_real_time_factor(served_rvc):
    rvc, port, _ = served_rvc
    audio = audio_to_proto(PcmAudio(np.zeros(8000, np.float32), 16_000))
    await rvc.Convert(rvc_pb2.ConvertRequest(audio=audio))
    await rvc.Convert(rvc_pb2.ConvertRequest(audio=audio))
    scraped = await scrape(port)
    assert value(scraped, "rvc_conversion_seconds_count", mode="clip") == 2
    assert value(scraped, "rvc_conversion_seconds_sum", mode="clip") > 0
    assert value(scraped, "rvc_audio_seconds_total", mode="clip") == pytest.approx(1.0)
    assert value(scraped, "rvc_real_time_factor_count", mode="clip") == 2
    # seconds / audio seconds, each clip half a second long.
    rtf = value(scraped, "rvc_real_time_factor_sum", mode="clip")
    assert rtf == pytest.approx(2 * value(scraped, "rvc_conversion_seconds_sum", mode="clip"))
    assert value(scraped, "rvc_conversion_seconds_count", mode="stream") == 0


async def test_a_failed_conversion_records_no_audio(served_rvc):
    rvc, port, pool = served_rvc
    pool.full = True
    audio = audio_to_proto(PcmAudio(np.zeros(8000, np.float32), 16_000))
    with pytest.raises(Exception):  # noqa: B017 - RESOURCE_EXHAUSTED, tested elsewhere
        await rvc.Convert(rvc_pb2.ConvertRequest(audio=audio))
    scraped = await scrape(port)
    assert value(scraped, "rvc_conversion_seconds_count", mode="clip") == 0
    assert value(scraped, "rvc_audio_seconds_total", mode="clip") == 0


async def test_a_stream_is_recorded_once_with_all_its_audio(served_rvc):
    rvc, port, pool = served_rvc
    rate = 16_000
    audio = np.zeros(rate, np.float32)

    async def messages():
        yield rvc_pb2.ConvertStreamRequest(params=rvc_pb2.ConversionParams(model="alice"))
        for start in range(0, rate, 1600):
            chunk = audio_to_proto(PcmAudio(audio[start : start + 1600], rate))
            yield rvc_pb2.ConvertStreamRequest(chunk=audio_pb2.AudioChunk(audio=chunk))

    replies = [reply async for reply in rvc.ConvertStream(messages())]
    assert replies[-1].chunk.final
    scraped = await scrape(port)
    assert len(pool.calls) > 1  # several blocks ...
    assert value(scraped, "rvc_conversion_seconds_count", mode="stream") == 1  # ... one stream
    assert value(scraped, "rvc_audio_seconds_total", mode="stream") == pytest.approx(1.0)
    assert value(scraped, "rvc_real_time_factor_count", mode="stream") == 1


def _clip(histogram, suffix: str) -> float:
    return next(
        s.value for m in histogram.collect() for s in m.samples
        if s.name.endswith(suffix) and s.labels["mode"] == "clip"
    )


def test_conversion_metrics_without_a_registry_record_privately():
    first, second = rvc_metrics.ConversionMetrics(), rvc_metrics.ConversionMetrics()
    first.record("clip", 0.5, 1.0)
    first.record("clip", 0.1, 0.0)  # no audio: time counted, no real-time factor
    assert _clip(first.seconds, "_sum") == pytest.approx(0.6)
    assert _clip(first.real_time_factor, "_count") == 1
    assert _clip(second.seconds, "_count") == 0
