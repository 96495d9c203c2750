"""The gateway's own Prometheus metrics, beside the per-RPC ones.

The pipeline records every request it runs: each sentence's stage times as it
leaves, the time to the first audio, and at the last sentence the request's
real-time factor.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.common.metrics import LATENCY_BUCKETS, REAL_TIME_FACTOR_BUCKETS
from services.gateway.results import SKIP_MESSAGES, Piece

STAGES = ("tts", "rvc")
# Why the pipeline left RVC out: a closed set, so the label stays bounded.
SKIP_REASONS = tuple(SKIP_MESSAGES)
UNKNOWN_RPC = "unknown"


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Without a registry the metrics are recorded nowhere anyone scrapes.
        registry = registry if registry is not None else CollectorRegistry()
        self.first_audio = Histogram(
            "gateway_time_to_first_audio_seconds",
            "From a request's arrival to its first sentence's audio being ready to send.",
            ("rpc",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.stage = Histogram(
            "gateway_stage_seconds",
            "One sentence's time in a stage, as the gateway saw it (network included).",
            ("stage",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.real_time_factor = Histogram(
            "gateway_real_time_factor",
            "A request's seconds, arrival to last audio, per second of audio it produced.",
            ("rpc",),
            buckets=REAL_TIME_FACTOR_BUCKETS,
            registry=registry,
        )
        self.audio = Counter(
            "gateway_audio_seconds_total", "Seconds of speech produced.", ("rpc",),
            registry=registry,
        )
        self.rvc_skipped = Counter(
            "gateway_rvc_skipped_total",
            "Requests answered with the TTS audio unconverted, by reason.",
            ("reason",),
            registry=registry,
        )
        for stage in STAGES:  # every bounded series exists from the start, at zero
            self.stage.labels(stage)
        for reason in SKIP_REASONS:
            self.rvc_skipped.labels(reason)

    def request(self, rpc: str) -> RequestRecorder:
        """A recorder for one pipeline run on behalf of gateway method ``rpc``."""
        return RequestRecorder(self, rpc or UNKNOWN_RPC)


class RequestRecorder:
    """Records one request's pieces as the pipeline yields them."""

    def __init__(self, metrics: GatewayMetrics, rpc: str) -> None:
        self._metrics = metrics
        self._rpc = rpc
        self._audio_seconds = 0.0

    def piece(self, piece: Piece, skipped: str) -> None:
        """``piece`` is ready to send; ``skipped`` is why RVC was left out ('' if it was not)."""
        metrics, rpc = self._metrics, self._rpc
        metrics.stage.labels("tts").observe(piece.tts.seconds)
        if piece.rvc is not None:
            metrics.stage.labels("rvc").observe(piece.rvc.seconds)
        duration = piece.audio.duration
        self._audio_seconds += duration
        metrics.audio.labels(rpc).inc(duration)
        if piece.index == 0:
            metrics.first_audio.labels(rpc).observe(piece.first_audio_seconds)
            if skipped:
                metrics.rvc_skipped.labels(skipped).inc()
        if piece.index == piece.count - 1 and self._audio_seconds > 0:
            # first_audio_seconds of the last piece: from the request to the end of its audio.
            metrics.real_time_factor.labels(rpc).observe(
                piece.first_audio_seconds / self._audio_seconds
            )
