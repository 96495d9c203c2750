"""voice.v1.VoiceConversion: protos in, RVC core, protos out. Nothing else."""

from __future__ import annotations

import time

from voice.v1 import audio_pb2, rvc_pb2, rvc_pb2_grpc

from services.common.audio_proto import audio_from_proto, audio_to_proto
from services.common.errors import InvalidArgument, ServiceError
from services.rvc.conversion import Converter
from services.rvc.params import ConversionParams, F0Method
from services.rvc.voice_catalog import VoiceSummary
from services.rvc.voice_install import InstallLimits, Part

_F0 = {
    rvc_pb2.F0_METHOD_UNSPECIFIED: F0Method.RMVPE,
    rvc_pb2.F0_METHOD_RMVPE: F0Method.RMVPE,
    rvc_pb2.F0_METHOD_CREPE: F0Method.CREPE,
    rvc_pb2.F0_METHOD_CREPE_TINY: F0Method.CREPE_TINY,
    rvc_pb2.F0_METHOD_HARVEST: F0Method.HARVEST,
    rvc_pb2.F0_METHOD_DIO: F0Method.DIO,
    rvc_pb2.F0_METHOD_PM: F0Method.PM,
}

_PARTS = {"checkpoint": Part.CHECKPOINT, "index": Part.INDEX}


def params_from_proto(message: rvc_pb2.ConversionParams) -> ConversionParams:
    if message.f0_method not in _F0:
        raise InvalidArgument(f"f0_method {message.f0_method} is unknown")
    optional = {
        name: getattr(message, name)
        for name in ("index_rate", "filter_radius", "rms_mix_rate", "protect")
        if message.HasField(name)
    }
    return ConversionParams(
        model=message.model,
        pitch_shift=message.pitch_shift,
        f0_method=_F0[message.f0_method],
        resample_sr=message.resample_sr,
        **optional,
    )


def _voice_to_proto(voice: VoiceSummary, loaded: tuple[str, ...]) -> rvc_pb2.VoiceModel:
    return rvc_pb2.VoiceModel(
        name=voice.name,
        version=voice.version,
        sample_rate=voice.sample_rate,
        pitch_guided=voice.pitch_guided,
        has_index=voice.has_index,
        loaded=voice.name in loaded,
        description=voice.info,
        problem=voice.problem,
    )


def _timing(started: float, audio_seconds: float, first: float | None = None) -> audio_pb2.StageTiming:
    elapsed = time.perf_counter() - started
    return audio_pb2.StageTiming(
        compute_seconds=elapsed,
        first_audio_seconds=elapsed if first is None else first,
        audio_seconds=audio_seconds,
    )


async def _drain(requests, limits: InstallLimits) -> None:
    """Reads and drops what is left of an upload, up to both its limits together."""
    left = limits.max_checkpoint_bytes + limits.max_index_bytes + (1 << 20)
    try:
        async for message in requests:
            left -= message.ByteSize()
            if left < 0:
                return
    except Exception:  # the client left, or sent something unreadable: nothing to wait for
        return


class VoiceConversionServicer(rvc_pb2_grpc.VoiceConversionServicer):
    def __init__(self, converter: Converter) -> None:
        self._converter = converter

    async def Convert(self, request, context):
        params = params_from_proto(request.params)
        audio = audio_from_proto(request.audio)
        started = time.perf_counter()
        converted = await self._converter.convert(params, audio)
        return rvc_pb2.ConvertResponse(
            audio=audio_to_proto(converted), timing=_timing(started, converted.duration)
        )

    async def ConvertStream(self, request_iterator, context):
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("message") != "params":
            raise InvalidArgument("the first ConvertStream message must carry params")
        params = params_from_proto(first.params)

        async def chunks():
            async for message in request_iterator:
                if message.WhichOneof("message") != "chunk":
                    raise InvalidArgument("only the first ConvertStream message may carry params")
                yield audio_from_proto(message.chunk.audio, "chunk.audio")

        started = time.perf_counter()
        first: float | None = None
        sequence = 0
        produced = 0.0
        previous: audio_pb2.AudioChunk | None = None
        # Hold one chunk back so the last reply can say it is final and carry the timing.
        async for converted in self._converter.convert_stream(params, chunks()):
            if first is None:
                first = time.perf_counter() - started
            if previous is not None:
                yield rvc_pb2.ConvertStreamResponse(chunk=previous)
            previous = audio_pb2.AudioChunk(audio=audio_to_proto(converted), sequence=sequence)
            sequence += 1
            produced += converted.duration
        if previous is not None:
            previous.final = True
            yield rvc_pb2.ConvertStreamResponse(
                chunk=previous, timing=_timing(started, produced, first)
            )

    async def ListModels(self, request, context):
        loaded = self._converter.loaded()
        voices = await self._converter.voices()
        return rvc_pb2.ListModelsResponse(
            models=[_voice_to_proto(v, loaded) for v in voices],
            default_model=self._converter.store.default_name(),
        )

    async def LoadModel(self, request, context):
        voice = await self._converter.load(request.name)
        return _voice_to_proto(voice, self._converter.loaded())

    async def InstallModel(self, request_iterator, context):
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument("the first InstallModel message must carry the header")

        async def parts():
            async for message in request_iterator:
                kind = message.WhichOneof("part")
                if kind not in _PARTS:
                    raise InvalidArgument(
                        "only the first InstallModel message may carry the header" if kind
                        else "an InstallModel message carries no part"
                    )
                yield _PARTS[kind], getattr(message, kind)

        try:
            voice = await self._converter.install(first.header.name, first.header.replace,
                                                  parts())
        except ServiceError:
            # A refusal that reaches an asyncio client before it finished sending may be
            # reported to it as INTERNAL instead (grpc/grpc#36066): read the rest of the
            # upload first (up to the limits), so the client's own status arrives.
            await _drain(request_iterator, self._converter.installer.limits)
            raise
        return _voice_to_proto(voice, self._converter.loaded())

    async def DeleteModel(self, request, context):
        await self._converter.delete(request.name)
        return rvc_pb2.DeleteModelResponse()

    async def GetStatus(self, request, context):
        state = self._converter.state()
        return rvc_pb2.RvcStatus(
            workers_configured=state.workers_configured,
            workers_alive=state.workers_alive,
            workers_busy=state.workers_busy,
            queue_depth=state.queue_depth,
            device=state.device,
            loaded_models=list(state.loaded_models),
            workers=[
                rvc_pb2.RvcWorker(
                    index=w.index, alive=w.alive, busy=w.busy, jobs_done=w.jobs_done,
                    mean_seconds=w.mean_seconds, restarts=w.restarts, device=w.device,
                )
                for w in state.workers
            ],
        )
