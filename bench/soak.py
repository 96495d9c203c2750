"""make soak: mixed load through the public edge for a long time, watching every
stack process for memory, open files and threads that keep growing.

    python -m bench.soak [--minutes 30] [--concurrency 2] [--sample-seconds N]
                         [--out bench/results] [--api HOST:PORT [--pid NAME=PID ...]]
                         [--rss-slope MIB_PER_HOUR] [--rss-rise MIB]
                         [--fd-rise N] [--thread-rise N] [--warmup 0.2]

Without --api, starts the local stack (tiny generated models, free ports, a
temporary run directory, semantic tokens capped as `make bench` caps them)
and samples its processes. With --api, loads a running stack; its processes
are sampled only when named with --pid (e.g. ``--pid rvc=1234``).

``concurrency`` clients each send the next request of a fixed mix (CYCLE) as
soon as their last one is answered, REST and gRPC through the same edge port:
the old server's POST /synthesize and /synthesize/stream and POST /rvc,
gRPC SynthesizeStream converted into an RVC voice, gRPC Rvc, OpenAI's
POST /v1/audio/speech (every response format in turn), clients that leave
mid-stream (gRPC and HTTP), and bad requests that must get their 4xx. Every
``--sample-seconds`` the RSS (VmRSS), open file descriptors and threads of
each process, summed with its descendants (RVC's workers, Triton's Python
stubs), are recorded. bench/trend.py judges each series after the warm-up.
The run fails (exit status 1) on growth, on any unexpected request outcome,
or on a process restart.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import io
import itertools
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import requests
import soundfile
from voice.v1 import gateway_pb2, gateway_pb2_grpc, rvc_pb2, tts_pb2

from bench import procstats, stats
from bench.scenarios import Inputs, load_inputs, reference_speaker
from bench.trend import Limit, Verdict, judge
from services.common.audio_proto import audio_to_proto

REPO = Path(__file__).resolve().parents[1]
METRICS = ("rss_mib", "fds", "threads")
UNITS = {"rss_mib": "MiB", "fds": "fds", "threads": "threads"}
# Semantic tokens per sentence of the gRPC requests (50 a second of speech): the
# local stack serves random weights, which never predict the end of speech.
GRPC_MAX_TOKENS = 80
REQUEST_TIMEOUT_S = 120.0
# REST texts are short: REST requests cannot cap tokens, and the TTS service's
# own cap grows with the text (100 + 7 per character).
SHORT = "Hello."
TWO = "Hi. Bye."
FOUR = "One. Two. Three. Four."
OPENAI_FORMATS = ("pcm", "wav", "mp3", "opus", "flac", "aac")


@dataclass(frozen=True)
class Thresholds:
    """What counts as unbounded growth (bench/trend.py applies them)."""

    rss_slope_mib_per_hour: float = 32.0
    rss_rise_mib: float = 16.0
    fd_rise: float = 16.0
    thread_rise: float = 8.0
    warmup: float = 0.2  # share of the run left out before judging
    window: float = 0.2  # share of the post-warm-up samples in each compared window

    def limit(self, metric: str) -> Limit:
        if metric == "rss_mib":
            return Limit(self.rss_slope_mib_per_hour, self.rss_rise_mib)
        # Open files and threads: any upward slope, and a rise of more than N.
        return Limit(0.0, self.fd_rise if metric == "fds" else self.thread_rise)


@dataclass(frozen=True)
class Settings:
    seconds: float = 1800.0
    concurrency: int = 2
    sample_seconds: float = 10.0
    prime: bool = True  # one request of each kind before the clock starts
    thresholds: Thresholds = field(default_factory=Thresholds)


# -- the clients ----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    ok: bool  # what was expected happened (a bad request's 4xx included)
    code: str  # "OK", a gRPC status name, HTTP_<status>, or an exception's name
    seconds: float
    detail: str = ""


class Edge:
    """The public edge: one gRPC channel (shared by the clients, as a service's
    client would share it) and the REST base URL; counters that rotate the
    variants of a kind."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.base_url = f"http://{address}"
        options = [("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.max_send_message_length", 64 << 20)]
        self.channel = grpc.insecure_channel(address, options=options)
        self.gateway = gateway_pb2_grpc.GatewayStub(self.channel)
        self._turns: dict[str, itertools.count] = {}
        self._lock = threading.Lock()

    def turn(self, kind: str) -> int:
        with self._lock:
            return next(self._turns.setdefault(kind, itertools.count()))

    def close(self) -> None:
        self.channel.close()


@dataclass(frozen=True)
class Mix:
    """What the requests carry (the bench's versioned inputs)."""

    inputs: Inputs
    reference_wav: bytes
    rvc_wav: bytes

    @classmethod
    def load(cls) -> Mix:
        inputs = load_inputs()
        return cls(inputs, _wav(inputs.reference), _wav(inputs.rvc_clip))

    def sampling(self) -> tts_pb2.SamplingParams:
        return tts_pb2.SamplingParams(seed=self.inputs.seed, max_tokens=GRPC_MAX_TOKENS)

    def conversion(self) -> rvc_pb2.ConversionParams:
        return rvc_pb2.ConversionParams(model=self.inputs.rvc_voice,
                                        f0_method=rvc_pb2.F0_METHOD_PM)


def _wav(audio) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, audio.samples, audio.sample_rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def _http(response: requests.Response, start: float, want: str | None = None,
          size: int | None = None) -> Outcome:
    """A REST answer: 200, with content type ``want``, and a body (``size`` bytes
    when the caller read a stream itself; else the body is read here)."""
    elapsed = time.perf_counter() - start
    if response.status_code != 200:
        return Outcome(False, f"HTTP_{response.status_code}", elapsed, response.text[:200])
    kind = response.headers.get("content-type", "")
    if want is not None and not kind.startswith(want):
        return Outcome(False, "WRONG_CONTENT_TYPE", elapsed, kind)
    if not (len(response.content) if size is None else size):
        return Outcome(False, "EMPTY_BODY", elapsed)
    return Outcome(True, "OK", elapsed)


def legacy_synthesize(edge: Edge, mix: Mix) -> Outcome:
    """The old client: POST /synthesize, multipart with its reference clip, into a voice."""
    start = time.perf_counter()
    response = requests.post(
        f"{edge.base_url}/synthesize",
        data={"text": SHORT, "reference_text": "", "model": mix.inputs.rvc_voice,
              "f0_method": "pm", "seed": str(mix.inputs.seed)},
        files={"reference_audio": ("ref.wav", mix.reference_wav, "audio/wav")},
        timeout=REQUEST_TIMEOUT_S)
    outcome = _http(response, start, "audio/wav")
    if outcome.ok and float(response.headers.get("X-RVC-Time", 0)) <= 0:
        return Outcome(False, "RVC_NOT_APPLIED", outcome.seconds)
    return outcome


def legacy_stream(edge: Edge, mix: Mix) -> Outcome:
    """POST /synthesize/stream with the ``demo`` profile, asking for audio (without, it is
    the old server's multipart): one open-ended WAV, read to the end."""
    start = time.perf_counter()
    with requests.post(f"{edge.base_url}/synthesize/stream",
                       data={"text": TWO, "voice": mix.inputs.voice_profile, "f0_method": "pm",
                             "seed": str(mix.inputs.seed)},
                       headers={"Accept": "audio/wav"},
                       stream=True, timeout=REQUEST_TIMEOUT_S) as response:
        body = b"".join(response.iter_content(None)) if response.status_code == 200 else b""
        outcome = _http(response, start, "audio/wav", len(body))
    if outcome.ok and body[:4] != b"RIFF":
        return Outcome(False, "NOT_WAV", outcome.seconds)
    return outcome


def legacy_rvc(edge: Edge, mix: Mix) -> Outcome:
    """RVC alone over REST: POST /rvc with a WAV file."""
    start = time.perf_counter()
    response = requests.post(f"{edge.base_url}/rvc",
                             data={"model": mix.inputs.rvc_voice, "f0_method": "pm"},
                             files={"audio": ("clip.wav", mix.rvc_wav, "audio/wav")},
                             timeout=REQUEST_TIMEOUT_S)
    return _http(response, start, "audio/wav")


def grpc_rvc(edge: Edge, mix: Mix) -> Outcome:
    """RVC alone over gRPC: Gateway.Rvc."""
    start = time.perf_counter()
    request = rvc_pb2.ConvertRequest(params=mix.conversion(),
                                     audio=audio_to_proto(mix.inputs.rvc_clip))
    try:
        reply = edge.gateway.Rvc(request, timeout=REQUEST_TIMEOUT_S)
    except grpc.RpcError as exc:
        return Outcome(False, exc.code().name, time.perf_counter() - start, exc.details() or "")
    elapsed = time.perf_counter() - start
    return Outcome(bool(reply.audio.pcm), "OK" if reply.audio.pcm else "EMPTY_AUDIO", elapsed)


def grpc_stream(edge: Edge, mix: Mix) -> Outcome:
    """gRPC SynthesizeStream cloning the reference clip, converted into an RVC voice."""
    start = time.perf_counter()
    request = gateway_pb2.SynthesizeRequest(
        text=TWO, speaker=reference_speaker(mix.inputs), sampling=mix.sampling(),
        conversion=mix.conversion())
    replies = 0
    try:
        for reply in edge.gateway.SynthesizeStream(request, timeout=REQUEST_TIMEOUT_S):
            replies += 1
            if not reply.rvc_applied:
                return Outcome(False, "RVC_NOT_APPLIED", time.perf_counter() - start)
    except grpc.RpcError as exc:
        return Outcome(False, exc.code().name, time.perf_counter() - start, exc.details() or "")
    elapsed = time.perf_counter() - start
    return Outcome(replies > 0, "OK" if replies else "NO_REPLIES", elapsed)


def openai_speech(edge: Edge, mix: Mix) -> Outcome:
    """POST /v1/audio/speech with the profile, streamed; each response format in turn."""
    fmt = OPENAI_FORMATS[edge.turn("openai_speech") % len(OPENAI_FORMATS)]
    body = {"model": "tts-1", "voice": mix.inputs.voice_profile, "input": TWO,
            "response_format": fmt, "seed": mix.inputs.seed}
    start = time.perf_counter()
    with requests.post(f"{edge.base_url}/v1/audio/speech", json=body, stream=True,
                       timeout=REQUEST_TIMEOUT_S) as response:
        size = sum(len(c) for c in response.iter_content(None)) if response.ok else 0
        outcome = _http(response, start, size=size)
    return dataclasses.replace(outcome, detail=f"{fmt} {outcome.detail}".strip())


def disconnect_grpc(edge: Edge, mix: Mix) -> Outcome:
    """A gRPC client that cancels its four-sentence stream after the first sentence."""
    start = time.perf_counter()
    request = gateway_pb2.SynthesizeRequest(
        text=FOUR, voice=mix.inputs.voice_profile, sampling=mix.sampling())
    call = edge.gateway.SynthesizeStream(request, timeout=REQUEST_TIMEOUT_S)
    try:
        first = next(call, None)
    except grpc.RpcError as exc:
        return Outcome(False, exc.code().name, time.perf_counter() - start, exc.details() or "")
    finally:
        call.cancel()
    elapsed = time.perf_counter() - start
    return Outcome(first is not None, "OK" if first is not None else "NO_REPLIES", elapsed)


def disconnect_http(edge: Edge, mix: Mix) -> Outcome:
    """An HTTP client that closes its connection after the first bytes of the stream."""
    body = {"model": "tts-1", "voice": mix.inputs.voice_profile, "input": FOUR,
            "response_format": "pcm", "seed": mix.inputs.seed}
    start = time.perf_counter()
    with requests.Session() as session, session.post(
            f"{edge.base_url}/v1/audio/speech", json=body, stream=True,
            timeout=REQUEST_TIMEOUT_S) as response:
        if response.status_code != 200:
            return _http(response, start)
        first = next(response.iter_content(1024), b"")
        # Leaving the block closes the response unread: its connection is dropped.
    elapsed = time.perf_counter() - start
    return Outcome(bool(first), "OK" if first else "EMPTY_BODY", elapsed)


# Bad requests and the status each must get: (what, send -> status or code name, wanted).
def _bad_http(method: str, path: str, **kwargs) -> Callable[[Edge, Mix], str]:
    def send(edge: Edge, mix: Mix) -> str:
        response = requests.request(method, f"{edge.base_url}{path}", timeout=30, **kwargs)
        return str(response.status_code)
    return send


def _bad_grpc(method: str, build: Callable[[Mix], object]) -> Callable[[Edge, Mix], str]:
    def send(edge: Edge, mix: Mix) -> str:
        try:
            getattr(edge.gateway, method)(build(mix), timeout=30)
        except grpc.RpcError as exc:
            return exc.code().name
        return "OK"
    return send


BAD_REQUESTS: tuple[tuple[str, Callable[[Edge, Mix], str], str], ...] = (
    ("legacy: unknown f0_method", _bad_http(
        "POST", "/synthesize", data={"text": "Hi.", "voice": "demo", "f0_method": "magic"}), "400"),
    ("openai: unknown voice", _bad_http(
        "POST", "/v1/audio/speech", json={"model": "tts-1", "voice": "nobody", "input": "Hi."}),
     "404"),
    ("openai: empty input", _bad_http(
        "POST", "/v1/audio/speech", json={"model": "tts-1", "voice": "demo", "input": ""}), "400"),
    ("unknown route", _bad_http("GET", "/v1/nowhere"), "404"),
    ("grpc: empty text", _bad_grpc(
        "Synthesize", lambda mix: gateway_pb2.SynthesizeRequest(text="", voice="demo")),
     "INVALID_ARGUMENT"),
    ("grpc: unknown RVC voice", _bad_grpc("Rvc", lambda mix: rvc_pb2.ConvertRequest(
        params=rvc_pb2.ConversionParams(model="ghost"),
        audio=audio_to_proto(mix.inputs.rvc_clip))), "NOT_FOUND"),
)


def bad_request(edge: Edge, mix: Mix) -> Outcome:
    """One of BAD_REQUESTS in turn; ok when it gets its 4xx (gRPC: its status)."""
    what, send, wanted = BAD_REQUESTS[edge.turn("bad_request") % len(BAD_REQUESTS)]
    start = time.perf_counter()
    got = send(edge, mix)
    elapsed = time.perf_counter() - start
    if got == wanted:
        return Outcome(True, "OK", elapsed, what)
    code = got if not got.isdigit() else f"HTTP_{got}"
    return Outcome(False, code, elapsed, f"{what}: wanted {wanted}")


KINDS: dict[str, Callable[[Edge, Mix], Outcome]] = {
    "legacy_synthesize": legacy_synthesize,
    "legacy_stream": legacy_stream,
    "legacy_rvc": legacy_rvc,
    "grpc_stream_rvc": grpc_stream,
    "grpc_rvc": grpc_rvc,
    "openai_speech": openai_speech,
    "disconnect_grpc": disconnect_grpc,
    "disconnect_http": disconnect_http,
    "bad_request": bad_request,
}
# The order in which the clients take requests (every kind, the heavier ones twice).
CYCLE = ("grpc_stream_rvc", "openai_speech", "legacy_synthesize", "bad_request", "grpc_rvc",
         "disconnect_grpc", "legacy_stream", "openai_speech", "legacy_rvc", "bad_request",
         "disconnect_http", "grpc_stream_rvc")


class Tally:
    """Outcomes per kind, from every client thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
        self.codes: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
        self.examples: list[str] = []  # the first unexpected outcomes, for the report

    def add(self, kind: str, outcome: Outcome, at: float) -> None:
        with self._lock:
            self.seconds[kind].append(outcome.seconds)
            code = outcome.code if outcome.ok else f"!{outcome.code}"  # "!": unexpected
            self.codes[kind][code] = self.codes[kind].get(code, 0) + 1
            if not outcome.ok and len(self.examples) < 20:
                self.examples.append(f"t={at:.0f}s {kind}: {outcome.code} {outcome.detail}"
                                     .strip())

    def summary(self) -> dict[str, dict]:
        with self._lock:
            out = {}
            for kind in KINDS:
                failed = {c[1:]: n for c, n in self.codes[kind].items() if c.startswith("!")}
                total = sum(self.codes[kind].values())
                pct = stats.percentiles(self.seconds[kind]) if self.seconds[kind] else {}
                out[kind] = {"requests": total, "ok": total - sum(failed.values()),
                             "unexpected": failed, "p50_s": pct.get("p50"),
                             "max_s": max(self.seconds[kind], default=None)}
            return out


def drive(edge: Edge, mix: Mix, kinds: Iterator[str], concurrency: int, tally: Tally,
          stop: threading.Event, started: float, deadline: float | None = None) -> None:
    """``concurrency`` clients, each taking the next kind from ``kinds`` as soon as
    its last request is answered, until ``kinds`` ends or ``deadline`` (monotonic)
    passes; a request under way then is finished and counted."""
    lock = threading.Lock()

    def client() -> None:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            with lock:
                kind = next(kinds, None)
            if kind is None:
                return
            at = time.monotonic() - started
            try:
                outcome = KINDS[kind](edge, mix)
            except Exception as exc:  # a connection refused, a timeout: counted, the run goes on
                outcome = Outcome(False, type(exc).__name__, 0.0, str(exc)[:200])
            tally.add(kind, outcome, at)

    threads = [threading.Thread(target=client, name=f"soak-client-{i}", daemon=True)
               for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# -- the samples ----------------------------------------------------------------


class Sampler:
    """procstats.resources every ``interval`` seconds, in a thread. ``roots`` is
    asked each time, so a restarted process is followed (and the restart noted)."""

    def __init__(self, roots: Callable[[], dict[str, int]], interval: float,
                 started: float) -> None:
        self.roots, self.interval, self.started = roots, interval, started
        self.samples: list[dict] = []
        self.restarts: list[dict] = []
        self._pids: dict[str, int] = {}
        self._down: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-sampler", daemon=True)

    def sample(self) -> None:
        roots = self.roots()
        at = time.monotonic() - self.started
        for name, pid in roots.items():
            old = self._pids.get(name)
            if old is not None and old != pid:
                self.restarts.append({"t": round(at, 1), "process": name, "old_pid": old,
                                      "new_pid": pid})
        self._pids.update(roots)
        procs = procstats.resources(roots)
        for name, row in procs.items():  # not running (yet): noted once per outage
            if row["processes"] == 0 and name not in self._down:
                self._down.add(name)
                self.restarts.append({"t": round(at, 1), "process": name, "old_pid": roots[name],
                                      "new_pid": None})
            elif row["processes"]:
                self._down.discard(name)
        self.samples.append({"t": round(at, 2), "procs": {
            name: {**row, "rss_mib": round(row["rss_mib"], 2)} for name, row in procs.items()}})

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()


def verdicts(samples: list[dict], thresholds: Thresholds) -> dict[str, dict[str, Verdict]]:
    """Per process and metric, bench/trend.py's verdict on the samples."""
    names = sorted({name for s in samples for name in s["procs"]})
    out: dict[str, dict[str, Verdict]] = {}
    for name in names:
        rows = [(s["t"], s["procs"][name]) for s in samples if name in s["procs"]]
        times = [t for t, _row in rows]
        out[name] = {metric: judge(times, [row[metric] for _t, row in rows],
                                   thresholds.limit(metric), thresholds.warmup,
                                   thresholds.window)
                     for metric in METRICS}
    return out


def run_soak(address: str, roots: Callable[[], dict[str, int]] | None,
             settings: Settings, log: Callable[[str], None] = print) -> dict:
    """The soak itself: the mixed load on the edge at ``address`` (host:port) for
    ``settings.seconds``, the processes of ``roots()`` (name -> pid; None: none)
    sampled throughout. Returns the results the report is written from; their
    ``passed`` is the verdict."""
    edge, mix, tally = Edge(address), Mix.load(), Tally()
    stop = threading.Event()
    if settings.prime:  # every kind once, before the clock starts: counted, not sampled
        primed = time.monotonic()
        drive(edge, mix, iter(KINDS), settings.concurrency, tally, stop, primed)
        log(f"soak: primed every kind in {time.monotonic() - primed:.1f} s")
    started = time.monotonic()
    sampler = Sampler(roots or dict, settings.sample_seconds, started)
    load = threading.Thread(
        target=drive, args=(edge, mix, itertools.cycle(CYCLE), settings.concurrency, tally,
                            stop, started, started + settings.seconds),
        name="soak-load", daemon=True)
    try:
        with sampler:
            load.start()
            next_report = 60.0
            while load.is_alive():
                load.join(timeout=min(5.0, settings.sample_seconds))
                elapsed = time.monotonic() - started
                if elapsed >= next_report and load.is_alive():
                    next_report += 60.0
                    done = sum(r["requests"] for r in tally.summary().values())
                    log(f"soak: {elapsed / 60:.1f} of {settings.seconds / 60:.1f} min, "
                        f"{done} requests, {len(tally.examples)} unexpected")
                if elapsed >= settings.seconds:
                    break  # the samples stop with the load; the clients finish their requests
        load.join()
    finally:
        stop.set()
        load.join(timeout=REQUEST_TIMEOUT_S)
        edge.close()
    wall = time.monotonic() - started
    judged = verdicts(sampler.samples, settings.thresholds) if roots else {}
    requests_by_kind = tally.summary()
    unexpected = sum(sum(r["unexpected"].values()) for r in requests_by_kind.values())
    reasons = [f"{unexpected} unexpected request outcomes"] if unexpected else []
    reasons += [f"{r['process']} {'restarted' if r['new_pid'] else 'not running'} at "
                f"t={r['t']} s" for r in sampler.restarts]
    reasons += [f"{name} {metric}: {v.reason}" for name, per in judged.items()
                for metric, v in per.items() if v.grew]
    missing = [kind for kind, r in requests_by_kind.items() if not r["requests"]]
    return {
        "target": address,
        "settings": {"seconds": settings.seconds, "concurrency": settings.concurrency,
                     "sample_seconds": settings.sample_seconds, "prime": settings.prime,
                     "thresholds": dataclasses.asdict(settings.thresholds),
                     "grpc_max_tokens": GRPC_MAX_TOKENS, "cycle": list(CYCLE)},
        "wall_seconds": round(wall, 1),
        "requests": requests_by_kind,
        "unexpected": unexpected,
        "unexpected_examples": tally.examples,
        "kinds_not_run": missing,
        "samples": sampler.samples,
        "restarts": sampler.restarts,
        "verdicts": {name: {m: v.to_dict() for m, v in per.items()}
                     for name, per in judged.items()},
        "failures": reasons,
        "passed": not reasons,
    }


# -- the report -----------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(results: dict) -> str:
    s = results["settings"]
    th = s["thresholds"]
    lines = [
        f"# Soak {results.get('stem', '')}".rstrip(), "",
        f"Target: {results['target']}; {s['seconds'] / 60:g} min of load "
        f"({results['wall_seconds'] / 60:.1f} min wall, the last requests drained), "
        f"concurrency {s['concurrency']}, a sample every {s['sample_seconds']:g} s.",
        "",
        f"**Verdict: {'PASS' if results['passed'] else 'FAIL'}**"
        + ("" if results["passed"] else " — " + "; ".join(results["failures"])),
        "",
        "## Requests", "",
        "| kind | requests | as expected | unexpected | p50 | max |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for kind, r in results["requests"].items():
        wrong = ", ".join(f"{c} ×{n}" for c, n in r["unexpected"].items()) or "0"
        lines.append(f"| {kind} | {r['requests']} | {r['ok']} | {wrong} | "
                     f"{_num(r['p50_s'], 2)} s | {_num(r['max_s'], 2)} s |")
    total = sum(r["requests"] for r in results["requests"].values())
    lines += ["", f"{total} requests, {results['unexpected']} unexpected outcomes. "
              "`bad_request` counts as expected when the edge answered its 4xx "
              "(gRPC: its status)."]
    if results["unexpected_examples"]:
        lines += ["", "First unexpected outcomes:", ""]
        lines += [f"- {e}" for e in results["unexpected_examples"]]
    if results["restarts"]:
        lines += ["", "Restarts: " + "; ".join(
            f"{r['process']} {'restarted' if r['new_pid'] else 'not running'} at t={r['t']} s"
            for r in results["restarts"])]
    lines += [
        "", "## Processes", "",
        f"Each process with its descendants. Warm-up: the first {th['warmup']:.0%} of the "
        f"run is not judged; windows: the first and last {th['window']:.0%} of the samples "
        f"after it. Growth = slope over the limit **and** rise over the limit: RSS "
        f"{th['rss_slope_mib_per_hour']:g} MiB/h and {th['rss_rise_mib']:g} MiB; open files "
        f"any upward slope and {th['fd_rise']:g}; threads any upward slope and "
        f"{th['thread_rise']:g}.", "",
        "| process | metric | start | end | peak | first window | last window | rise "
        "| slope /h | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    if not results["verdicts"]:
        lines.append("| (no process sampled: --api without --pid) | | | | | | | | | |")
    for name, per in results["verdicts"].items():
        for metric in METRICS:
            v = per[metric]
            verdict = ("GROWS" if v["grew"] else "ok") if v["judged"] else "not judged"
            lines.append(
                f"| {name} | {UNITS[metric]} | {_num(v['start'])} | {_num(v['end'])} | "
                f"{_num(v['peak'])} | {_num(v['first_window'])} | {_num(v['last_window'])} | "
                f"{_num(v['rise'])} | {_num(v['slope_per_hour'])} | {verdict}: {v['reason']} |")
    env = results.get("environment")
    if env:
        lines += ["", f"Environment: {env.get('cpu_count')} CPUs, GPU {env.get('gpu') or 'none'},"
                  f" Python {env.get('python')}, torch {env.get('torch')}, "
                  f"commit {env.get('git_commit')}."]
    return "\n".join(lines) + "\n"


def chart(results: dict, path: Path) -> Path | None:
    """RSS, open files and threads over time per process (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    samples = results["samples"]
    names = sorted({n for s in samples for n in s["procs"]})
    if not names:
        return None
    fig, axes = plt.subplots(len(METRICS), 1, figsize=(9, 8), sharex=True)
    warm = results["settings"]["thresholds"]["warmup"] * samples[-1]["t"] / 60
    for ax, metric in zip(axes, METRICS, strict=True):
        for name in names:  # change since the first sample: small processes stay visible
            rows = [(s["t"] / 60, s["procs"][name][metric]) for s in samples if name in s["procs"]]
            ax.plot([t for t, _ in rows], [v - rows[0][1] for _, v in rows],
                    label=f"{name} ({rows[0][1]:.0f} at first)")
        ax.axvspan(0, warm, color="0.9", label="warm-up")
        ax.set_ylabel(f"{UNITS[metric]}, change")
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.legend(loc="upper left", fontsize="x-small", ncol=3)
    axes[0].set_title("Soak: each stack process with its descendants")
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(results: dict, out_dir: Path, stem: str) -> dict[str, Path | None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {**results, "stem": stem}
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(results, indent=1) + "\n")
    md_path = out_dir / f"{stem}.md"
    md_path.write_text(markdown(results))
    return {"json": json_path, "markdown": md_path,
            "chart": chart(results, out_dir / f"{stem}.png")}


# -- the command ------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = Thresholds()
    parser = argparse.ArgumentParser(prog="python -m bench.soak",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="load time (default 30)")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="clients, each with one request in flight (default 2)")
    parser.add_argument("--sample-seconds", type=float,
                        help="seconds between samples (default: the run / 180, 1..10 s)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--api", help="host:port (or http://host:port) of a running stack's "
                        "edge: no stack is started")
    parser.add_argument("--pid", action="append", default=[], metavar="NAME=PID",
                        help="with --api: a process of that stack to sample (repeatable)")
    parser.add_argument("--rss-slope", type=float, default=defaults.rss_slope_mib_per_hour,
                        help="RSS growth limit, MiB per hour (default %(default)s)")
    parser.add_argument("--rss-rise", type=float, default=defaults.rss_rise_mib,
                        help="RSS rise limit, last window's mean over the first's, MiB "
                             "(default %(default)s)")
    parser.add_argument("--fd-rise", type=float, default=defaults.fd_rise,
                        help="open files rise limit (default %(default)s)")
    parser.add_argument("--thread-rise", type=float, default=defaults.thread_rise,
                        help="threads rise limit (default %(default)s)")
    parser.add_argument("--warmup", type=float, default=defaults.warmup,
                        help="share of the run not judged (default %(default)s)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.concurrency < 1:
        parser.error("--minutes must be positive and --concurrency at least 1")
    if not 0 <= args.warmup < 0.9:
        parser.error("--warmup must be within 0..0.9")
    seconds = args.minutes * 60
    if args.sample_seconds is None:
        args.sample_seconds = round(min(10.0, max(1.0, seconds / 180)), 1)
    if args.sample_seconds <= 0:
        parser.error("--sample-seconds must be positive")
    if seconds * (1 - args.warmup) / args.sample_seconds < 6:
        parser.error("too few samples after the warm-up to judge a trend: lengthen --minutes "
                     "or shorten --sample-seconds")
    if args.pid and not args.api:
        parser.error("--pid names processes of a stack given with --api")
    pids = {}
    for item in args.pid:
        name, _, pid = item.partition("=")
        if not name or not pid.isdigit():
            parser.error(f"--pid {item!r}: expected NAME=PID")
        pids[name] = int(pid)
    args.pids = pids
    if args.api:
        args.api = args.api.split("://", 1)[-1].rstrip("/")
    args.settings = Settings(seconds=seconds, concurrency=args.concurrency,
                             sample_seconds=args.sample_seconds,
                             thresholds=Thresholds(args.rss_slope, args.rss_rise, args.fd_rise,
                                                   args.thread_rise, args.warmup))
    return args


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` that stops the stack


def main(argv: list[str] | None = None) -> int:
    from bench.__main__ import LOCAL_MAX_TOKENS, environment, start_stack, watch

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    stem = f"soak-{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H%M%SZ}"
    if args.api:
        pids = args.pids
        results = run_soak(args.api, (lambda: pids) if pids else None, args.settings)
    else:
        # As `make bench`: the random-weight models never stop speaking by themselves.
        os.environ.setdefault("TTS_MAX_TOKENS", str(LOCAL_MAX_TOKENS))
        with tempfile.TemporaryDirectory(prefix="soak-stack-") as tmp:
            print("starting the local stack (generated tiny random-weight models)...", flush=True)
            config, supervisor = start_stack(Path(tmp))
            stop_watching = threading.Event()
            watcher = threading.Thread(target=watch, args=(supervisor, stop_watching),
                                       name="soak-watch", daemon=True)
            watcher.start()
            try:
                print(f"soak: {args.minutes:g} min at concurrency {args.concurrency}, "
                      f"a sample every {args.sample_seconds:g} s", flush=True)
                results = run_soak(
                    f"127.0.0.1:{config.api_port}",
                    lambda: {c.spec.name: c.process.pid for c in supervisor.children
                             if c.process is not None},
                    args.settings, log=lambda line: print(line, flush=True))
                results["target"] = f"local stack 127.0.0.1:{config.api_port}"
                results["settings"]["tts_max_tokens"] = os.environ["TTS_MAX_TOKENS"]
            finally:
                stop_watching.set()
                watcher.join(timeout=15)
                supervisor.stop(timeout=30)
    results["environment"] = environment()
    paths = write_report(results, args.out, stem)
    print()
    print(paths["markdown"].read_text())
    print(f"wrote {paths['json']}, {paths['markdown']}"
          + (f", {paths['chart']}" if paths["chart"] else ""))
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
