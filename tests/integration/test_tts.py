"""Spark TTS on the real tritonserver with generated tiny models, through the TTS
service (and the gateway): offline, streaming, seeds, the speaker cache, cancel."""

import asyncio
import re
import time

import grpc
import numpy as np
import pytest
from voice.v1 import gateway_pb2, gateway_pb2_grpc, rvc_pb2, tts_pb2, tts_pb2_grpc

from services.common.audio import PcmAudio, resample, to_mono
from services.common.audio_proto import audio_from_proto, audio_to_proto
from services.tts_gateway.triton import Triton
from spark_tts.layout import SAMPLES_PER_TOKEN
from tests.integration.http_client import call
from tests.integration.stacks import vllm_metric


def voice_clip(seed: int, seconds: float = 2.0, rate: int = 22_050) -> PcmAudio:
    """A voiced, wobbling harmonic signal, stereo, at a rate other than 16 kHz."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 3 * t) + seed
    phase = 2 * np.pi * np.cumsum(f0) / rate
    mono = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2
    return PcmAudio(np.stack([mono, mono * 0.9], axis=1).astype(np.float32), rate)


def clone_request(text="Hello there, this is a test.", seed=7, max_tokens=40, clip=0, **extra):
    return tts_pb2.SynthesizeSpeechRequest(
        text=text,
        speaker=tts_pb2.SpeakerPrompt(
            reference=tts_pb2.ReferenceAudio(audio=audio_to_proto(voice_clip(clip)), **extra)
        ),
        sampling=tts_pb2.SamplingParams(seed=seed, max_tokens=max_tokens),
    )


def llm_url(stack) -> str:
    return f"http://127.0.0.1:{stack.config.vllm_port}"


@pytest.fixture
async def tts(stack):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.config.tts_port}") as channel:
        yield tts_pb2_grpc.TextToSpeechStub(channel)


async def collect(call_):
    replies = [reply async for reply in call_]
    audio = np.concatenate([audio_from_proto(r.chunk.audio).samples for r in replies])
    return replies, audio


def triton_metric(stack, name: str, **labels) -> float:
    body = call("GET", f"http://127.0.0.1:{stack.config.triton_metrics_port}/metrics").body
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_streaming_chunks_are_ordered_and_final_carries_timing(tts):
    replies, audio = await collect(tts.Synthesize(clone_request()))
    assert [r.chunk.sequence for r in replies] == list(range(len(replies)))
    assert [r.chunk.final for r in replies] == [False] * (len(replies) - 1) + [True]
    assert len(replies) >= 2, "40 tokens should come as several chunks"
    assert replies[0].speaker_id.startswith("spk-")
    assert all(audio_from_proto(r.chunk.audio).sample_rate == 16_000 for r in replies)
    timing = replies[-1].timing
    assert 0 < timing.first_audio_seconds <= timing.compute_seconds
    assert timing.audio_seconds == pytest.approx(len(audio) / 16_000)
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 0


def test_the_tts_service_reports_its_own_metrics(stack):
    body = call("GET", f"http://127.0.0.1:{stack.config.tts_metrics_port}/metrics").body.decode()
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in body.splitlines() if line and not line.startswith("#")
    }
    assert values["tts_time_to_first_audio_seconds_count"] >= 1
    assert values["tts_real_time_factor_count"] >= 1
    assert values["tts_semantic_tokens_total"] >= 1
    assert values["tts_audio_seconds_total"] > 0
    assert values["tts_in_flight_requests"] == 0


async def test_length_matches_the_generated_semantic_tokens(stack):
    """320 samples per semantic token, offline and streaming alike."""
    triton = Triton(f"127.0.0.1:{stack.config.triton_grpc_port}")
    try:
        reference = resample(to_mono(voice_clip(0)), 16_000).samples
        inputs = {
            "text": np.array([b"Count the tokens, please."], dtype=np.object_),
            "reference_wav": reference,
            "seed": np.array([11], np.int64),
            "max_tokens": np.array([33], np.int32),
        }
        outputs = ["waveform", "sample_rate", "speaker_id", "semantic_tokens", "final"]
        for streaming in (False, True):
            replies = [
                r async for r in triton.stream(
                    "spark_tts", {**inputs, "streaming": np.array([streaming])}, outputs, 60
                )
            ]
            tokens = int(replies[-1]["semantic_tokens"][0])
            samples = sum(r["waveform"].size for r in replies)
            assert 0 < tokens <= 33
            assert samples == tokens * SAMPLES_PER_TOKEN, (streaming, tokens, samples)
    finally:
        await triton.close()


async def test_same_seed_same_audio_and_streaming_joins_to_offline(stack):
    triton = Triton(f"127.0.0.1:{stack.config.triton_grpc_port}")
    outputs = ["waveform", "sample_rate", "speaker_id", "semantic_tokens", "final"]
    base = {
        "text": np.array([b"The same words twice."], dtype=np.object_),
        "gender": np.array([b"female"], dtype=np.object_),
        "seed": np.array([5], np.int64),
        "max_tokens": np.array([120], np.int32),
    }

    async def run(streaming):
        replies = [
            r async for r in triton.stream(
                "spark_tts", {**base, "streaming": np.array([streaming])}, outputs, 120
            )
        ]
        return np.concatenate([r["waveform"] for r in replies]), len(replies)

    try:
        offline_a, _ = await run(False)
        offline_b, _ = await run(False)
        joined, chunks = await run(True)
    finally:
        await triton.close()
    np.testing.assert_array_equal(offline_a, offline_b)
    assert chunks >= 3
    assert joined.shape == offline_a.shape
    # Documented bound (spark_tts.streaming): joins differ from the offline
    # waveform only near chunk boundaries, by well under 1% RMS.
    error = joined - offline_a
    assert np.sqrt(np.mean(error**2)) <= 0.005 * np.sqrt(np.mean(offline_a**2))
    assert np.max(np.abs(error)) <= 0.02 * np.max(np.abs(offline_a))


async def test_a_repeated_reference_skips_the_audio_tokenizer(stack, tts):
    clip = 3  # a clip no other test uses
    request = clone_request(clip=clip, max_tokens=10)
    await collect(tts.Synthesize(request))
    tokenizer_runs = triton_metric(stack, "nv_inference_count", model="audio_tokenizer")
    hits = triton_metric(stack, "spark_tts_speaker_cache_lookups_total", result="hit")
    replies, _ = await collect(tts.Synthesize(request))
    assert triton_metric(stack, "nv_inference_count", model="audio_tokenizer") == tokenizer_runs
    assert triton_metric(stack, "spark_tts_speaker_cache_lookups_total", result="hit") == hits + 1
    # The returned id names the cached speaker for later requests.
    by_id = tts_pb2.SynthesizeSpeechRequest(
        text="Again, by id.",
        speaker=tts_pb2.SpeakerPrompt(speaker_id=replies[0].speaker_id),
        sampling=tts_pb2.SamplingParams(seed=1, max_tokens=10),
    )
    _, audio = await collect(tts.Synthesize(by_id))
    assert audio.size > 0
    assert triton_metric(stack, "nv_inference_count", model="audio_tokenizer") == tokenizer_runs


async def test_a_clips_returned_tokens_speak_as_the_clip_without_the_tokenizer(stack, tts):
    request = clone_request(clip=4, max_tokens=30, transcript="A wobbling hum.")
    replies, by_clip = await collect(tts.Synthesize(request))
    kept = replies[0].speaker_tokens
    assert len(kept.global_ids) == 32 and kept.semantic_ids and kept.codec.startswith("bicodec-")
    assert kept.transcript == "A wobbling hum."
    assert not any(r.HasField("speaker_tokens") for r in replies[1:])
    tokenizer_runs = triton_metric(stack, "nv_inference_count", model="audio_tokenizer")
    lookups = sum(triton_metric(stack, "spark_tts_speaker_cache_lookups_total", result=result)
                  for result in ("hit", "miss"))
    by_tokens = tts_pb2.SynthesizeSpeechRequest(
        text=request.text, speaker=tts_pb2.SpeakerPrompt(tokens=kept), sampling=request.sampling)
    replies, audio = await collect(tts.Synthesize(by_tokens))
    np.testing.assert_array_equal(audio, by_clip)
    assert replies[0].speaker_id == "" and not replies[0].HasField("speaker_tokens")
    assert triton_metric(stack, "nv_inference_count", model="audio_tokenizer") == tokenizer_runs
    assert sum(triton_metric(stack, "spark_tts_speaker_cache_lookups_total", result=result)
               for result in ("hit", "miss")) == lookups, "the speaker cache is not asked"
    stale = tts_pb2.SpeakerTokens()
    stale.CopyFrom(kept)
    stale.codec = "bicodec-0000000000000000"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(tts.Synthesize(tts_pb2.SynthesizeSpeechRequest(
            text="Hi.", speaker=tts_pb2.SpeakerPrompt(tokens=stale))))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert kept.codec in caught.value.details()


async def test_unknown_speaker_id_is_not_found(tts):
    request = tts_pb2.SynthesizeSpeechRequest(
        text="Hi.", speaker=tts_pb2.SpeakerPrompt(speaker_id="spk-nobody")
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(tts.Synthesize(request))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_cancelling_a_stream_stops_generation(stack, tts):
    call_ = tts.Synthesize(clone_request(text="A long text. " * 20, max_tokens=3000, clip=4))
    first = await call_.read()
    assert first.chunk.audio.pcm
    call_.cancel()
    pattern = re.compile(r"llm request \w+ cancelled after (\d+) tokens")
    for _ in range(600):  # a loaded 2-core machine can take a while to get there
        found = pattern.findall(stack.log("triton"))
        if found:
            break
        await asyncio.sleep(0.1)
    assert found, "the llm model never reported the cancelled generation"
    assert int(found[-1]) < 3000


async def test_streams_cancelled_while_others_start_hold_up_none(stack, tts):
    """Six generating streams are cancelled one by one, a new synthesis starting after
    each: every new one ends, and vLLM is left running nothing (each cancel aborted
    its request there). The llm model's cancel watcher once held a lock while asking a
    Triton request, and a stuck ask stopped every later stream from starting."""
    pattern = re.compile(r"llm request \w+ cancelled after \d+ tokens")
    cancelled_before = len(pattern.findall(stack.log("triton")))
    long = [tts.Synthesize(clone_request(text="A long text. " * 20, max_tokens=3000,
                                         seed=seed, clip=4)) for seed in range(6)]
    for call_ in long:
        assert (await call_.read()).chunk.audio.pcm
    starts = []
    for n, call_ in enumerate(long):
        call_.cancel()
        starts.append(asyncio.ensure_future(collect(tts.Synthesize(
            clone_request(text=f"Sentence number {n}.", seed=n, max_tokens=30), timeout=120))))
    for replies, audio in await asyncio.gather(*starts):
        assert replies[-1].chunk.final and audio.size > 0
    deadline = time.monotonic() + 60
    while (len(pattern.findall(stack.log("triton"))) - cancelled_before < 6
           or vllm_metric(llm_url(stack), "vllm:num_requests_running") > 0):
        assert time.monotonic() < deadline, "cancelled streams still generating in vLLM"
        await asyncio.sleep(0.1)


async def test_tts_through_the_gateway_and_rest(stack):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.config.api_port}") as channel:
        reply = await gateway_pb2_grpc.GatewayStub(channel).Synthesize(
            gateway_pb2.SynthesizeRequest(
                text="Through the whole stack.",
                speaker=clone_request().speaker,
                sampling=tts_pb2.SamplingParams(seed=2, max_tokens=25),
            ),
            timeout=120,
        )
    audio = audio_from_proto(reply.audio)
    assert audio.sample_rate == 16_000 and audio.frames > 0
    assert audio.frames % SAMPLES_PER_TOKEN == 0
    assert not reply.rvc_applied
    assert reply.rvc_skipped_reason == (
        "no RVC voice was named and none is the default (set RVC_MODEL)"
    )
    rest = call("POST", f"{stack.api}/v1/tts", {
        "text": "Over REST.",
        "speaker": {"control": {"gender": "GENDER_MALE", "pitch": "LEVEL_LOW"}},
        "sampling": {"seed": 4, "max_tokens": 150},
    })
    assert rest.status == 200, rest.body
    assert rest.json()["audio"]["sample_rate"] == 16_000


async def test_tts_then_rvc_through_the_gateway(stack):
    """A named voice: TTS audio is converted by the RVC workers to the voice's rate."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.config.api_port}") as channel:
        reply = await gateway_pb2_grpc.GatewayStub(channel).Synthesize(
            gateway_pb2.SynthesizeRequest(
                text="Into another voice.",
                speaker=clone_request().speaker,
                sampling=tts_pb2.SamplingParams(seed=3, max_tokens=25),
                conversion=rvc_pb2.ConversionParams(
                    model="untrained-v2-f0-48k", f0_method=rvc_pb2.F0_METHOD_PM
                ),
            ),
            timeout=120,
        )
    assert reply.rvc_applied, reply.rvc_skipped_reason
    audio = audio_from_proto(reply.audio)
    assert audio.sample_rate == 48_000
    spoken = reply.timing.tts.audio_seconds
    assert abs(audio.duration - spoken) <= 0.011


async def test_concurrent_syntheses_decode_together_in_vllm(stack, tts):
    """Continuous batching end to end: five syntheses at once through the TTS service
    (spark_tts no longer lets only 2 through on a CPU) share vLLM's decoding steps, so
    the engine takes far fewer steps than it generates tokens."""
    steps = vllm_metric(llm_url(stack), "vllm:iteration_tokens_total_count")
    generated = vllm_metric(llm_url(stack), "vllm:generation_tokens_total")

    async def one(seed):
        replies, _ = await collect(tts.Synthesize(clone_request(seed=seed, max_tokens=120)))
        return replies[-1].timing.audio_seconds

    spoken = await asyncio.gather(*(one(seed) for seed in range(5)))
    assert all(seconds > 0 for seconds in spoken)
    steps = vllm_metric(llm_url(stack), "vllm:iteration_tokens_total_count") - steps
    generated = vllm_metric(llm_url(stack), "vllm:generation_tokens_total") - generated
    assert generated >= 5 * 60
    # One stream at a time would take a step per token (and one per prompt).
    assert steps < 0.6 * generated, f"{generated:.0f} tokens in {steps:.0f} engine steps"


async def test_a_voices_transcript_is_reused_from_vllms_prefix_cache(stack, tts):
    """The reference's transcript comes first in the prompt (Spark's own format, token
    for token): each later sentence in that voice finds it in vLLM's prefix cache, and
    the TTS service's status shows the hit rate."""
    async def status():
        return (await tts.GetStatus(tts_pb2.GetTtsStatusRequest(), timeout=10)).llm_server

    transcript = "This is what the reference clip says, word for word, at some length. " * 2
    before = await status()
    hits_before = vllm_metric(llm_url(stack), "vllm:prefix_cache_hits_total")
    for text in ("The first sentence.", "The second sentence.", "The third one."):
        await collect(tts.Synthesize(clone_request(text, max_tokens=5, transcript=transcript)))
    after = await status()
    assert after.ready and after.address.endswith(f":{stack.config.vllm_port}")
    assert after.generated_tokens >= before.generated_tokens + 15
    hits = vllm_metric(llm_url(stack), "vllm:prefix_cache_hits_total")
    queries = vllm_metric(llm_url(stack), "vllm:prefix_cache_queries_total")
    assert after.prefix_cache_hit_rate == pytest.approx(hits / queries, abs=0.02)
    # The second and third sentences each find the transcript's full blocks (32 tokens).
    assert hits - hits_before >= 2 * 32


FIVE = (
    "The first sentence starts it. The second follows on. A third comes next! "
    "Is this the fourth? The fifth ends it."
)


async def test_streamed_sentences_start_playing_before_the_last_is_synthesised(stack):
    """Five sentences through Envoy: TTS, then RVC, pipelined; audio leaves in order."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.config.api_port}") as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        message = gateway_pb2.SynthesizeRequest(
            text=FIVE,
            speaker=clone_request().speaker,
            sampling=tts_pb2.SamplingParams(seed=5, max_tokens=40),
            conversion=rvc_pb2.ConversionParams(
                model="untrained-v1-f0-40k", f0_method=rvc_pb2.F0_METHOD_PM
            ),
        )
        start = time.perf_counter()
        arrivals, replies = [], []
        async for reply in stub.SynthesizeStream(message, timeout=300):
            arrivals.append(time.perf_counter() - start)
            replies.append(reply)
        whole = await stub.Synthesize(message, timeout=300)
    assert [r.sentence_index for r in replies] == [0, 1, 2, 3, 4]
    assert replies[-1].chunk.final and all(r.rvc_applied for r in replies)
    timing = replies[-1].timing
    # The first sentence was out while later ones were still in the pipeline: proportions
    # on one clock each (the gateway's own, and the client's), so a loaded machine that
    # slows every stage alike changes neither; a gateway that held the audio back until
    # the end would put both near 1.
    assert timing.first_audio_seconds < 0.6 * timing.total_seconds, timing
    assert arrivals[0] < 0.6 * arrivals[-1], arrivals
    streamed = sum(audio_from_proto(r.chunk.audio).frames for r in replies)
    assert streamed == audio_from_proto(whole.audio).frames
