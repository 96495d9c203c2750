"""A small concurrent load on the gateway, and a watcher of health, for the fault tests.

Each client thread sends one request at a time, each with its own deadline, and
records how it ended; the watcher records what the health endpoints said and when.
Times are time.monotonic() values, so they compare with the moment a fault began.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from voice.v1 import gateway_pb2, gateway_pb2_grpc, rvc_pb2, tts_pb2

from services.common.audio import PcmAudio
from services.common.audio_proto import audio_to_proto

RVC_VOICE = "untrained-v2-f0-48k"
# The generated demo profile clones a reference clip and converts into RVC_VOICE.
PROFILE = "demo-spark"
# Ways a request may take longer than its deadline on the client side: the
# client's own timer, thread scheduling on a loaded machine.
SLACK = 2.0
# Between two requests a client waits this long, as users do: requests are in flight
# when a fault strikes, yet the load leaves CPU to the processes restarting.
PAUSE = 0.5


@dataclass(frozen=True)
class Outcome:
    kind: str
    started: float
    ended: float
    deadline: float
    code: grpc.StatusCode
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.code is grpc.StatusCode.OK

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def _sine(seconds: float = 1.0, rate: int = 16_000) -> PcmAudio:
    t = np.arange(int(seconds * rate)) / rate
    return PcmAudio((0.3 * np.sin(2 * np.pi * 150 * t)).astype(np.float32), rate)


CONVERT = rvc_pb2.ConvertRequest(
    params=rvc_pb2.ConversionParams(model=RVC_VOICE, f0_method=rvc_pb2.F0_METHOD_PM),
    audio=audio_to_proto(_sine(0.5)),
)
# A few tokens of speech: the tiny random model would babble up to its cap otherwise,
# and the load is there to be in flight when a fault strikes, not to fill the CPUs.
SYNTHESIZE = gateway_pb2.SynthesizeRequest(
    text="Hello there.", voice=PROFILE, sampling=tts_pb2.SamplingParams(max_tokens=30))


def synthesize(stub: gateway_pb2_grpc.GatewayStub, deadline: float) -> None:
    """TTS then RVC, streamed: fails unless every sentence came back converted."""
    replies = list(stub.SynthesizeStream(SYNTHESIZE, timeout=deadline))
    if not replies or not replies[-1].chunk.final:
        raise AssertionError(f"the stream ended without a final chunk: {len(replies)} replies")
    if not all(r.rvc_applied for r in replies):
        raise AssertionError("a sentence came back without RVC applied")


def convert(stub: gateway_pb2_grpc.GatewayStub, deadline: float) -> None:
    """RVC only, through the gateway."""
    reply = stub.Rvc(CONVERT, timeout=deadline)
    if reply.audio.sample_rate != 48_000 or not reply.audio.pcm:
        raise AssertionError(f"unexpected conversion: {reply.audio.sample_rate} Hz")


CALLS: dict[str, Callable[[gateway_pb2_grpc.GatewayStub, float], None]] = {
    "synthesize": synthesize,
    "convert": convert,
}


@dataclass
class Load:
    """``clients`` maps a request kind to (threads, deadline in seconds)."""

    target: str
    clients: dict[str, tuple[int, float]]
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _channel: grpc.Channel | None = None
    _running: dict[str, float] = field(default_factory=dict)  # thread name -> request start

    def __enter__(self) -> Load:
        self._channel = grpc.insecure_channel(self.target)
        stub = gateway_pb2_grpc.GatewayStub(self._channel)
        for kind, (threads, deadline) in self.clients.items():
            for i in range(threads):
                thread = threading.Thread(target=self._client, args=(stub, kind, deadline),
                                          name=f"load-{kind}-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _client(self, stub: gateway_pb2_grpc.GatewayStub, kind: str, deadline: float) -> None:
        me = threading.current_thread().name
        while not self._stop.is_set():
            started = time.monotonic()
            with self._lock:
                self._running[me] = started
            code, detail = grpc.StatusCode.OK, ""
            try:
                CALLS[kind](stub, deadline)
            except grpc.RpcError as exc:
                code, detail = exc.code(), exc.details() or ""
            except Exception as exc:  # a reply that is not what was asked for
                code, detail = grpc.StatusCode.UNKNOWN, f"bad reply: {exc!r}"
            with self._lock:
                self.outcomes.append(Outcome(kind, started, time.monotonic(), deadline, code, detail))
                del self._running[me]
            self._stop.wait(PAUSE)

    def stop(self) -> list[str]:
        """Stop sending; the names of client threads still stuck in a request after
        its deadline and the slack (none, unless a call hung)."""
        self._stop.set()
        longest = max(deadline for _, deadline in self.clients.values())
        limit = time.monotonic() + longest + SLACK
        for thread in self._threads:
            thread.join(max(0.0, limit - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if self._channel is not None and not stuck:
            self._channel.close()
        return stuck

    def running(self) -> list[float]:
        """When each request still running started."""
        with self._lock:
            return list(self._running.values())

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def first_success_after(self, moment: float, kinds: set[str] | None = None) -> float | None:
        """When the first request that started after ``moment`` succeeded."""
        ends = [o.ended for o in self.snapshot()
                if o.ok and o.started > moment and (kinds is None or o.kind in kinds)]
        return min(ends, default=None)

    def first_failure_after(self, moment: float) -> float | None:
        ends = [o.ended for o in self.snapshot() if not o.ok and o.ended > moment]
        return min(ends, default=None)


def grpc_health(target: str, timeout: float = 2.0) -> str:
    """A grpc.health.v1 status name, or UNREACHABLE with the error's code."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            return f"UNREACHABLE ({exc.code().name})"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def edge_health(api: str, timeout: float = 5.0) -> str:
    """GET /v1/health through Envoy, in short: "SERVING", or "DEGRADED tts=NOT_SERVING ..."
    naming each dependency that is not serving."""
    try:
        with urllib.request.urlopen(f"{api}/v1/health", timeout=timeout) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        return f"ERROR ({exc})"
    status = body.get("status", "")
    bad = [f"{d['name']}={d.get('status', '')}" for d in body.get("dependencies", [])
           if d.get("status") != "SERVING"]
    return " ".join([status, *bad])


def http_status(url: str, timeout: float = 1.0) -> str:
    """OK for a 200 from ``url``, else DOWN."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return "OK" if response.status == 200 else f"DOWN ({response.status})"
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        return f"DOWN ({exc})"


@dataclass
class HealthWatch:
    """Polls each probe (name -> a function returning a status) in a thread of its own,
    so a slow answer from one does not delay the others, until stopped.

    A probe asks one question at a time: each of its answers was asked after the one
    before it came. A probe that raises is recorded as "ERROR (...)" and polled on, so
    no probe stops answering while the others go on."""

    probes: dict[str, Callable[[], str]]
    interval: float = 0.1
    samples: list[tuple[float, float, str, str]] = field(default_factory=list)  # asked, answered
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> HealthWatch:
        for name, probe in self.probes.items():
            thread = threading.Thread(target=self._run, args=(name, probe),
                                      name=f"health-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self, name: str, probe: Callable[[], str]) -> None:
        while not self._stop.is_set():
            asked = time.monotonic()
            try:
                status = probe()
            except Exception as exc:  # a reply the probe did not expect: still an answer
                status = f"ERROR ({exc!r})"
            with self._lock:
                self.samples.append((asked, time.monotonic(), name, status))
            self._stop.wait(self.interval)

    def of(self, name: str) -> list[tuple[float, str]]:
        """(when answered, status) of each sample of ``name``. Times are those of the
        answers: late rather than early, so a time measured from one is never short."""
        with self._lock:
            return [(answered, status) for _, answered, n, status in self.samples if n == name]

    def first(self, name: str, after: float, predicate: Callable[[str], bool]) -> float | None:
        """When ``name`` was first seen, after ``after``, in a state ``predicate`` accepts."""
        return next((m for m, status in self.of(name) if m > after and predicate(status)), None)

    def first_asked(self, name: str, after: float, predicate: Callable[[str], bool]) -> float | None:
        """Like ``first``, counting only samples asked after ``after``: none of them can
        describe the time before."""
        with self._lock:
            found = [answered for asked, answered, n, status in self.samples
                     if n == name and asked > after and predicate(status)]
        return min(found, default=None)

    def last(self, name: str) -> tuple[float, str] | None:
        """(when answered, status) of the latest answer of ``name``, if any."""
        answers = self.of(name)
        return answers[-1] if answers else None

    def changes(self, name: str, since: float) -> list[tuple[float, str]]:
        """Each status ``name`` went through after ``since``, with when it was first seen."""
        found: list[tuple[float, str]] = []
        for moment, status in self.of(name):
            if moment > since and (not found or found[-1][1] != status):
                found.append((moment, status))
        return found
