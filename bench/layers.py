"""Where the serving time goes: the same request entered at each layer of the stack.

At concurrency 1, one operation is sent at every layer it passes, from the
outside in, with the same inputs and seed, so each layer does the same work
and the difference between two neighbours is what the outer one adds:

    tts              edge (Envoy) -> gateway -> TTS service -> Triton -> in-process
    rvc              edge (Envoy) -> gateway -> RVC service -> in-process
    pipeline_stream  edge (Envoy) -> gateway -> in-process   (first audio)

"edge" and "gateway" are the same ``Gateway`` RPC on Envoy's port and on the
gateway's own port; "TTS service" is ``TextToSpeech.Synthesize`` on its port;
"Triton" is the spark_tts model over Triton's gRPC stream, with the very
tensors the TTS service builds (``triton_inputs``); "RVC service" is
``VoiceConversion.Convert``. The in-process rows are the baseline's
(bench/baseline.py) at concurrency 1, joined in by :func:`breakdown`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
from voice.v1 import rvc_pb2_grpc, tts_pb2_grpc

from bench import stats
from bench.load import run_load
from bench.samples import Sample
from bench.scenarios import (
    DEADLINE_S,
    Client,
    Inputs,
    audio_seconds,
    failed,
    pipeline_stream,
    rvc,
    rvc_request,
    tts,
    tts_request,
    unary,
)

# Outermost first; each operation's layers in the order a request crosses them.
LAYERS = {
    "tts": ("edge", "gateway", "tts_service", "triton", "in_process"),
    "rvc": ("edge", "gateway", "rvc_service", "in_process"),
    "pipeline_stream": ("edge", "gateway", "in_process"),
}
# What each operation is compared on: the streamed first audio where there is one.
METRIC = {"tts": "latency", "rvc": "latency", "pipeline_stream": "ttfa"}


async def _tts_service(channel: grpc.aio.Channel, inputs: Inputs) -> Sample:
    stub = tts_pb2_grpc.TextToSpeechStub(channel)
    start = time.perf_counter()
    first, seconds = None, 0.0
    try:
        async for reply in stub.Synthesize(tts_request(inputs), timeout=DEADLINE_S):
            if first is None:
                first = time.perf_counter() - start
            seconds += audio_seconds(reply.chunk.audio)
    except grpc.aio.AioRpcError as exc:
        return failed(exc.code().name, start)
    total = time.perf_counter() - start
    return Sample(True, "OK", total if first is None else first, total, seconds, start)


async def _triton(client, inputs: Inputs) -> Sample:
    """The spark_tts model through Triton's client (``client``: the TTS service's
    ``Triton``, one connection for every request), as the TTS service calls it."""
    from services.tts_gateway.request import Engine, ReferenceSpeaker, Sampling, SpeechRequest
    from services.tts_gateway.settings import TtsSettings
    from services.tts_gateway.synthesis import OUTPUTS, SPARK_MODEL, token_cap, triton_inputs

    request = SpeechRequest(inputs.short,
                            ReferenceSpeaker(inputs.reference, inputs.reference_transcript),
                            Sampling(seed=inputs.seed, max_tokens=inputs.max_tokens))
    # TtsSettings.load() reads the TTS_MAX_TOKENS the local stack was started with.
    tensors = triton_inputs(request, True, token_cap(request.text, TtsSettings.load()))
    start = time.perf_counter()
    first, seconds = None, 0.0
    try:
        async for reply in client.stream(SPARK_MODEL, tensors, OUTPUTS[Engine.SPARK], DEADLINE_S):
            if first is None:
                first = time.perf_counter() - start
            rate = int(reply["sample_rate"].reshape(-1)[0])
            seconds += reply["waveform"].size / rate
    except (Exception, asyncio.CancelledError) as exc:  # Triton's and the client's errors
        # alike (grpc reports a request it could not build as a locally cancelled call)
        if isinstance(exc, asyncio.CancelledError) and _cancelled_from_outside():
            raise
        return failed(type(exc).__name__, start)
    total = time.perf_counter() - start
    return Sample(True, "OK", total if first is None else first, total, seconds, start)


def _cancelled_from_outside() -> bool:
    """Whether this task itself is being cancelled (Python 3.11+ can tell; before, a
    CancelledError is taken to be the task's own)."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return cancelling is None or cancelling() > 0


async def measure_layers(ports: dict[str, int], inputs: Inputs, requests: int) -> list[dict]:
    """``requests`` sequential requests per (operation, served layer), after one warm-up
    each; stats.summarize rows with ``operation`` and ``layer`` added.

    The layers of an operation take turns (edge, gateway, service, ..., edge, ...),
    so that a machine getting slower or faster during the run weighs on every layer
    alike rather than on whichever was measured last."""
    from services.tts_gateway.triton import Triton

    host = "127.0.0.1"
    triton = Triton(f"{host}:{ports['triton']}")
    edge, gateway = Client(f"{host}:{ports['api']}"), Client(f"{host}:{ports['gateway']}")
    tts_channel = grpc.aio.insecure_channel(f"{host}:{ports['tts']}")
    rvc_channel = grpc.aio.insecure_channel(f"{host}:{ports['rvc']}")
    rvc_stub = rvc_pb2_grpc.VoiceConversionStub(rvc_channel)
    calls: dict[tuple[str, str], Callable[[], Awaitable[Sample]]] = {
        ("tts", "edge"): lambda: tts(edge, inputs),
        ("tts", "gateway"): lambda: tts(gateway, inputs),
        ("tts", "tts_service"): lambda: _tts_service(tts_channel, inputs),
        ("tts", "triton"): lambda: _triton(triton, inputs),
        ("rvc", "edge"): lambda: rvc(edge, inputs),
        ("rvc", "gateway"): lambda: rvc(gateway, inputs),
        ("rvc", "rvc_service"): lambda: unary(rvc_stub.Convert, rvc_request(inputs)),
        ("pipeline_stream", "edge"): lambda: pipeline_stream(edge, inputs),
        ("pipeline_stream", "gateway"): lambda: pipeline_stream(gateway, inputs),
    }
    rows = []
    try:
        for operation in LAYERS:
            served = [(layer, call) for (op, layer), call in calls.items() if op == operation]
            samples: dict[str, list[Sample]] = {layer: [] for layer, _ in served}
            for layer, call in served:
                await run_load(f"{operation}/{layer}", call, 1, 1)  # warm-up, not counted
            for _ in range(requests):
                for layer, call in served:  # a raising call: a failed sample
                    result = await run_load(f"{operation}/{layer}", call, 1, 1)
                    samples[layer] += result.samples
            for layer, _ in served:
                row = stats.summarize(operation, 1, samples[layer])
                rows.append({**row, "operation": operation, "layer": layer})
                print(f"layers {operation}/{layer}: {row['ok']}/{row['requests']} ok, "
                      f"{METRIC[operation]} p50 {row[METRIC[operation]]['p50']}", flush=True)
    finally:
        for client in (edge, gateway):
            await client.close()
        for channel in (tts_channel, rvc_channel):
            await channel.close()
        await triton.close()
    return rows


def breakdown(layer_rows: list[dict], baseline_rows: list[dict]) -> list[dict]:
    """Per operation and layer: the p50 of its metric, and what the layer adds over the
    next one inward (absolute and as a ratio). The in-process rows come from the
    baseline at concurrency 1 (missing when the baseline did not run)."""
    measured = {(r["operation"], r["layer"]): r for r in layer_rows}
    for row in baseline_rows:
        if row["concurrency"] == 1 and row["scenario"] in LAYERS:
            measured.setdefault((row["scenario"], "in_process"), row)
    out = []
    for operation, layers in LAYERS.items():
        metric = METRIC[operation]
        for outer, inner in zip(layers, layers[1:] + (None,), strict=True):
            row = measured.get((operation, outer))
            if row is None:
                continue
            p50 = row[metric]["p50"]
            below = measured.get((operation, inner)) if inner else None
            base = below[metric]["p50"] if below else None
            out.append({
                "operation": operation, "layer": outer, "metric": metric, "p50": p50,
                "audio_seconds": row["audio_seconds"] / row["ok"] if row["ok"] else None,
                "errors": row["requests"] - row["ok"], "inner": inner,
                "adds": None if p50 is None or base is None else p50 - base,
                "ratio": None if p50 is None or not base else p50 / base,
            })
    return out
