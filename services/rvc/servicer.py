"""voice.v1.VoiceConversion: protos in, RVC core, protos out. Nothing else."""

from __future__ import annotations

from voice.v1 import audio_pb2, rvc_pb2, rvc_pb2_grpc

from services.common.audio_proto import audio_from_proto, audio_to_proto
from services.common.errors import InvalidArgument
from services.rvc.conversion import Converter
from services.rvc.model_store import VoiceFiles
from services.rvc.params import ConversionParams, F0Method

_F0 = {
    rvc_pb2.F0_METHOD_UNSPECIFIED: F0Method.RMVPE,
    rvc_pb2.F0_METHOD_RMVPE: F0Method.RMVPE,
    rvc_pb2.F0_METHOD_CREPE: F0Method.CREPE,
    rvc_pb2.F0_METHOD_CREPE_TINY: F0Method.CREPE_TINY,
    rvc_pb2.F0_METHOD_HARVEST: F0Method.HARVEST,
    rvc_pb2.F0_METHOD_DIO: F0Method.DIO,
    rvc_pb2.F0_METHOD_PM: F0Method.PM,
}


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


def _voice_to_proto(voice: VoiceFiles, loaded: tuple[str, ...]) -> rvc_pb2.VoiceModel:
    # Version, rate and pitch guidance are read from the checkpoint when it loads.
    return rvc_pb2.VoiceModel(
        name=voice.name, has_index=voice.index is not None, loaded=voice.name in loaded
    )


class VoiceConversionServicer(rvc_pb2_grpc.VoiceConversionServicer):
    def __init__(self, converter: Converter) -> None:
        self._converter = converter

    async def Convert(self, request, context):
        params = params_from_proto(request.params)
        audio = audio_from_proto(request.audio)
        converted = await self._converter.convert(params, audio)
        return rvc_pb2.ConvertResponse(audio=audio_to_proto(converted))

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

        sequence = 0
        async for converted in self._converter.convert_stream(params, chunks()):
            yield rvc_pb2.ConvertStreamResponse(
                chunk=audio_pb2.AudioChunk(audio=audio_to_proto(converted), sequence=sequence)
            )
            sequence += 1

    async def ListModels(self, request, context):
        loaded = self._converter.loaded()
        return rvc_pb2.ListModelsResponse(
            models=[_voice_to_proto(v, loaded) for v in self._converter.voices()],
            default_model=self._converter.store.default_name(),
        )

    async def LoadModel(self, request, context):
        voice = await self._converter.load(request.name)
        return _voice_to_proto(voice, self._converter.loaded())

    async def GetStatus(self, request, context):
        state = self._converter.state()
        return rvc_pb2.RvcStatus(
            workers_configured=state.workers_configured,
            workers_alive=state.workers_alive,
            workers_busy=state.workers_busy,
            queue_depth=state.queue_depth,
            device=state.device,
            loaded_models=list(state.loaded_models),
        )
