"""The voice library's RPCs (voice.v1.Gateway's GetVoice ... DeleteRvcVoice):
protos and the upload's form in, the core's library and RVC voices, protos out."""

from __future__ import annotations

from voice.v1 import gateway_pb2

from services.common.errors import InvalidArgument
from services.gateway import legacy_http
from services.gateway.adapters.replies import voice_message
from services.gateway.params_proto import voice_spec_from_proto
from services.gateway.speech import SpeechService

UPLOAD_FIELDS = frozenset({"name", "pth", "index", "replace"})


class LibraryRpcs:
    _speech: SpeechService

    async def GetVoice(self, request, context):
        return voice_message(self._speech.library.get(request.name))

    async def CreateVoice(self, request, context):
        return voice_message(self._speech.library.create(voice_spec_from_proto(request)))

    async def UpdateVoice(self, request, context):
        return voice_message(self._speech.library.update(voice_spec_from_proto(request)))

    async def DeleteVoice(self, request, context):
        self._speech.library.delete(request.name)
        return gateway_pb2.DeleteVoiceResponse()

    async def ListRvcVoices(self, request, context):
        return await self._speech.rvc_voices()

    async def UploadRvcVoice(self, request, context):
        form = legacy_http.parse_form(request.content_type, request.data, UPLOAD_FIELDS)
        name = form.text("name").strip()
        if not name:
            raise InvalidArgument("the field name is required (the voice's name)")
        checkpoint = form.files.get("pth") or b""
        if not checkpoint:
            raise InvalidArgument("the file pth is required (the voice's .pth, not empty)")
        return await self._speech.install_rvc_voice(
            name, checkpoint, form.files.get("index") or b"", form.flag("replace"))

    async def DeleteRvcVoice(self, request, context):
        await self._speech.delete_rvc_voice(request.name)
        return gateway_pb2.DeleteRvcVoiceResponse()
