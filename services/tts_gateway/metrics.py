"""The TTS service's own Prometheus metrics, beside the per-RPC ones."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.metrics import LATENCY_BUCKETS


class TtsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.first_audio = Histogram(
            "tts_time_to_first_audio_seconds",
            "From request to the first audio chunk from Triton.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.real_time_factor = Histogram(
            "tts_real_time_factor",
            "Synthesis seconds per second of audio produced (below 1 is faster than real time).",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
            registry=registry,
        )
        self.tokens = Counter(
            "tts_semantic_tokens_total", "Semantic tokens generated.", registry=registry
        )
        self.audio = Counter(
            "tts_audio_seconds_total", "Seconds of speech produced.", registry=registry
        )
        self.tokens_per_second = Gauge(
            "tts_last_tokens_per_second", "Semantic tokens per second of the last request.",
            registry=registry,
        )
        self.in_flight = Gauge(
            "tts_in_flight_requests", "Synthesis requests being served now.", registry=registry
        )

    def record_run(self, seconds: float, audio_seconds: float, tokens: int) -> None:
        self.tokens.inc(tokens)
        self.audio.inc(audio_seconds)
        if audio_seconds > 0:
            self.real_time_factor.observe(seconds / audio_seconds)
        if seconds > 0:
            self.tokens_per_second.set(tokens / seconds)
