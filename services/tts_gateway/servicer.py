"""voice.v1.TextToSpeech: protos in, TTS core, protos out. Nothing else."""

from __future__ import annotations

import time

from voice.v1 import audio_pb2, tts_pb2, tts_pb2_grpc

from services.common.audio_proto import audio_from_proto, audio_to_proto
from services.common.errors import InvalidArgument
from services.tts_gateway.llm_server import llm_server_state
from services.tts_gateway.request import (
    CachedSpeaker,
    ControlledSpeaker,
    Engine,
    Gender,
    Level,
    PiperChoice,
    ReferenceSpeaker,
    Sampling,
    Speaker,
    SpeechRequest,
    TokenSpeaker,
)
from services.tts_gateway.synthesis import TtsEngine

_ENGINES = {tts_pb2.ENGINE_SPARK: Engine.SPARK, tts_pb2.ENGINE_PIPER: Engine.PIPER}
ENGINE_PROTOS = {engine: value for value, engine in _ENGINES.items()}
_GENDERS = {tts_pb2.GENDER_FEMALE: Gender.FEMALE, tts_pb2.GENDER_MALE: Gender.MALE}
_LEVELS = {
    tts_pb2.LEVEL_UNSPECIFIED: Level.MODERATE,
    tts_pb2.LEVEL_VERY_LOW: Level.VERY_LOW,
    tts_pb2.LEVEL_LOW: Level.LOW,
    tts_pb2.LEVEL_MODERATE: Level.MODERATE,
    tts_pb2.LEVEL_HIGH: Level.HIGH,
    tts_pb2.LEVEL_VERY_HIGH: Level.VERY_HIGH,
}


def _level(value: int, what: str) -> Level:
    if value not in _LEVELS:
        raise InvalidArgument(f"{what} {value} is not a known level")
    return _LEVELS[value]


def speaker_from_proto(prompt: tts_pb2.SpeakerPrompt) -> Speaker | None:
    source = prompt.WhichOneof("source")
    if source == "reference":
        if not prompt.reference.audio.pcm:
            # Whatever the engine: a clip sent empty is a mistake, never "no clip".
            raise InvalidArgument("speaker.reference.audio is empty (no PCM bytes)")
        audio = audio_from_proto(prompt.reference.audio, "speaker.reference.audio")
        return ReferenceSpeaker(audio, prompt.reference.transcript)
    if source == "speaker_id":
        return CachedSpeaker(prompt.speaker_id)
    if source == "tokens":
        tokens = prompt.tokens
        return TokenSpeaker(tuple(tokens.global_ids), tuple(tokens.semantic_ids),
                            tokens.transcript, tokens.codec)
    if source == "control":
        gender = _GENDERS.get(prompt.control.gender)
        if gender is None:
            raise InvalidArgument("speaker.control.gender is required in control mode")
        return ControlledSpeaker(
            gender,
            _level(prompt.control.pitch, "speaker.control.pitch"),
            _level(prompt.control.speed, "speaker.control.speed"),
        )
    return None  # whether one is needed depends on the engine


def tokens_to_proto(tokens: TokenSpeaker) -> tts_pb2.SpeakerTokens:
    return tts_pb2.SpeakerTokens(global_ids=tokens.global_ids, semantic_ids=tokens.semantic_ids,
                                 transcript=tokens.transcript, codec=tokens.codec)


def sampling_from_proto(params: tts_pb2.SamplingParams) -> Sampling:
    def opt(name: str):
        return getattr(params, name) if params.HasField(name) else None

    return Sampling(
        temperature=opt("temperature"),
        top_k=opt("top_k"),
        top_p=opt("top_p"),
        max_tokens=opt("max_tokens"),
        seed=opt("seed"),
    )


def engine_from_proto(value: int) -> Engine | None:
    if value == tts_pb2.ENGINE_UNSPECIFIED:
        return None
    if value not in _ENGINES:
        raise InvalidArgument(f"engine {value} is not a known engine")
    return _ENGINES[value]


def piper_from_proto(options: tts_pb2.PiperOptions) -> PiperChoice:
    return PiperChoice(
        voice=options.voice,
        speaker=options.speaker if options.HasField("speaker") else None,
        length_scale=options.length_scale if options.HasField("length_scale") else None,
    )


def speech_request_from_proto(request: tts_pb2.SynthesizeSpeechRequest) -> SpeechRequest:
    return SpeechRequest(
        text=request.text,
        speaker=speaker_from_proto(request.speaker),
        sampling=sampling_from_proto(request.sampling),
        engine=engine_from_proto(request.engine),
        piper=piper_from_proto(request.piper),
    )


class TextToSpeechServicer(tts_pb2_grpc.TextToSpeechServicer):
    def __init__(self, engine: TtsEngine, llm_url: str = "") -> None:
        self._engine = engine
        self._llm_url = llm_url

    async def Synthesize(self, request, context):
        speech = speech_request_from_proto(request)
        start = time.perf_counter()
        first = 0.0
        audio_seconds = 0.0
        sequence = 0
        async for chunk in self._engine.synthesize(speech):
            if sequence == 0:
                first = time.perf_counter() - start
            audio_seconds += chunk.audio.duration
            timing = None
            if chunk.final:
                timing = audio_pb2.StageTiming(
                    compute_seconds=time.perf_counter() - start,
                    first_audio_seconds=first,
                    audio_seconds=audio_seconds,
                )
            reply = tts_pb2.SynthesizeSpeechResponse(
                chunk=audio_pb2.AudioChunk(
                    audio=audio_to_proto(chunk.audio), sequence=sequence, final=chunk.final
                ),
                speaker_id=chunk.speaker_id,
                timing=timing,
            )
            if sequence == 0:
                reply.engine = ENGINE_PROTOS[chunk.engine]
                reply.notes.extend(chunk.notes)
            if chunk.tokens is not None:
                reply.speaker_tokens.CopyFrom(tokens_to_proto(chunk.tokens))
            yield reply
            sequence += 1

    async def GetStatus(self, request, context):
        state = await self._engine.triton.state()
        engines = await self._engine.engines(state)
        llm = await llm_server_state(self._llm_url) if self._llm_url else None
        return tts_pb2.TtsStatus(
            triton_ready=state.ready,
            triton_address=state.address,
            models=[
                tts_pb2.TtsModelStatus(name=m.name, version=m.version, ready=m.ready)
                for m in state.models
            ],
            in_flight=self._engine.in_flight,
            default_engine=ENGINE_PROTOS[self._engine.default_engine],
            engines=[
                tts_pb2.EngineStatus(engine=ENGINE_PROTOS[e.engine], ready=e.ready,
                                     voices=e.voices, default_voice=e.default_voice)
                for e in engines
            ],
            llm_server=None if llm is None else tts_pb2.LlmServerStatus(
                address=llm.address, ready=llm.ready, requests_running=llm.running,
                requests_waiting=llm.waiting, prefix_cache_hit_rate=llm.prefix_cache_hit_rate,
                generated_tokens=llm.generated_tokens, error=llm.error,
            ),
        )
