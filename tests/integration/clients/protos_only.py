"""A gRPC client of every voice.v1.Gateway RPC, built from protos/ alone.

Run by tests/integration/test_protos_only_client.py with stubs it generated
into a fresh folder; it imports nothing from the project. Usage:
    python protos_only.py <host:port>
Prints one line per RPC; exits non-zero on the first failure.
"""

import base64
import io
import json
import math
import struct
import sys
import wave

import grpc
from google.api import httpbody_pb2
from voice.v1 import audio_pb2, gateway_pb2, gateway_pb2_grpc, rvc_pb2, tts_pb2

RATE = 16_000


def tone(seconds: float) -> bytes:
    samples = [int(8000 * math.sin(2 * math.pi * 150 * i / RATE)) for i in range(int(seconds * RATE))]
    return struct.pack(f"<{len(samples)}h", *samples)


def wav(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm)
    return out.getvalue()


def json_body(**fields) -> httpbody_pb2.HttpBody:
    return httpbody_pb2.HttpBody(content_type="application/json", data=json.dumps(fields).encode())


def main(target: str) -> None:
    # The generated code must come from the fresh folder, not the project.
    assert "voice_pipeline_generated" in gateway_pb2.__file__, gateway_pb2.__file__
    stub = gateway_pb2_grpc.GatewayStub(grpc.insecure_channel(target))
    pcm = tone(1.0)
    audio = audio_pb2.Audio(pcm=pcm, sample_rate=RATE, sample_format=audio_pb2.SAMPLE_FORMAT_PCM_S16LE)
    reference = tts_pb2.SpeakerPrompt(reference=tts_pb2.ReferenceAudio(audio=audio))
    pm = rvc_pb2.ConversionParams(model=sys.argv[2], f0_method=rvc_pb2.F0_METHOD_PM)
    timeout = 240

    def check(name: str, ok: bool, detail: str) -> None:
        print(f"{name} {'OK' if ok else 'FAILED'} {detail}", flush=True)
        if not ok:
            sys.exit(1)

    voices = stub.ListVoices(gateway_pb2.ListVoicesRequest(), timeout=timeout)
    check("ListVoices", len(voices.voices) > 0, ",".join(v.name for v in voices.voices))
    voice = voices.voices[0].name
    health = stub.GetHealth(gateway_pb2.GetHealthRequest(), timeout=timeout)
    check("GetHealth", health.status == "SERVING", health.status)
    old_health = stub.GetLegacyHealth(gateway_pb2.GetHealthRequest(), timeout=timeout)
    check("GetLegacyHealth", old_health.status == "ready", old_health.message)
    config = stub.GetLegacyConfig(gateway_pb2.GetLegacyConfigRequest(), timeout=timeout)
    check("GetLegacyConfig", bool(config.f0_method), f"voice={config.voice}")
    try:
        stub.LegacyChangeConfig(json_body(pitch_shift=1), timeout=timeout)
        check("LegacyChangeConfig", False, "accepted")
    except grpc.RpcError as refused:
        check("LegacyChangeConfig", refused.code() == grpc.StatusCode.UNIMPLEMENTED, refused.code().name)
    status = stub.GetStatus(gateway_pb2.GetStatusRequest(), timeout=timeout)
    check("GetStatus", status.rvc.workers_alive > 0, f"uptime={status.uptime_seconds:.1f}")
    reply = stub.Synthesize(gateway_pb2.SynthesizeRequest(text="Whole.", voice=voice), timeout=timeout)
    check("Synthesize", len(reply.audio.pcm) > 0, f"rate={reply.audio.sample_rate} rvc={reply.rvc_applied}")
    chunks = list(stub.SynthesizeStream(
        gateway_pb2.SynthesizeRequest(text="One. Two.", voice=voice, skip_rvc=True), timeout=timeout
    ))
    check("SynthesizeStream", [c.sentence_index for c in chunks] == [0, 1], f"chunks={len(chunks)}")
    tts = stub.Tts(tts_pb2.SynthesizeSpeechRequest(text="Alone.", speaker=reference), timeout=timeout)
    check("Tts", len(tts.audio.pcm) > 0 and bool(tts.speaker_id), f"speaker_id={tts.speaker_id}")
    rvc = stub.Rvc(rvc_pb2.ConvertRequest(params=pm, audio=audio), timeout=timeout)
    check("Rvc", len(rvc.audio.pcm) > 0, f"rate={rvc.audio.sample_rate}")
    clip = base64.b64encode(wav(pcm)).decode()
    legacy = stub.LegacySynthesize(json_body(text="Old.", reference_audio=clip, skip_rvc=True), timeout=timeout)
    check("LegacySynthesize", legacy.data[:4] == b"RIFF", legacy.content_type)
    streamed = list(stub.LegacySynthesizeStream(json_body(text="Old stream.", voice=voice, skip_rvc=True), timeout=timeout))
    check("LegacySynthesizeStream", streamed[0].data.startswith(b"--boundary\r\n"), f"parts={len(streamed)}")
    events = list(stub.LegacySynthesizeSse(json_body(text="Old events.", voice=voice, skip_rvc=True), timeout=timeout))
    check("LegacySynthesizeSse", events[0].data.startswith(b"event: message\r\ndata: "), f"events={len(events)}")
    legacy_tts = stub.LegacyTts(json_body(text="Old tts.", reference_audio=clip), timeout=timeout)
    check("LegacyTts", legacy_tts.data[:4] == b"RIFF", legacy_tts.content_type)
    legacy_rvc = stub.LegacyRvc(json_body(audio=clip, model=sys.argv[2], f0_method="pm"), timeout=timeout)
    check("LegacyRvc", legacy_rvc.data[:4] == b"RIFF", legacy_rvc.content_type)
    speech = list(stub.CreateSpeech(json_body(model="tts-1", input="Open.", voice=voice, response_format="wav"), timeout=timeout))
    check("CreateSpeech", speech[0].data[:4] == b"RIFF", speech[0].content_type)
    # The voice library: a described voice made, read, changed and removed.
    spec = gateway_pb2.VoiceSpec(
        name="protos-only", description="made by a protos-only client", skip_rvc=True,
        control=tts_pb2.VoiceControl(gender=tts_pb2.GENDER_FEMALE))
    made = stub.CreateVoice(spec, timeout=timeout)
    check("CreateVoice", made.speaker == "control", f"name={made.name}")
    got = stub.GetVoice(gateway_pb2.GetVoiceRequest(name="protos-only"), timeout=timeout)
    check("GetVoice", got.description == spec.description, got.description)
    spec.description = "changed"
    changed = stub.UpdateVoice(spec, timeout=timeout)
    check("UpdateVoice", changed.description == "changed", changed.description)
    stub.DeleteVoice(gateway_pb2.DeleteVoiceRequest(name="protos-only"), timeout=timeout)
    left = [v.name for v in stub.ListVoices(gateway_pb2.ListVoicesRequest(), timeout=timeout).voices]
    check("DeleteVoice", "protos-only" not in left, ",".join(left))
    models = stub.ListRvcVoices(rvc_pb2.ListModelsRequest(), timeout=timeout)
    check("ListRvcVoices", sys.argv[2] in [m.name for m in models.models], f"models={len(models.models)}")
    not_a_voice = base64.b64encode(b"not a checkpoint").decode()
    try:
        stub.UploadRvcVoice(json_body(name="protos-only", pth=not_a_voice), timeout=timeout)
        check("UploadRvcVoice", False, "accepted")
    except grpc.RpcError as refused:
        check("UploadRvcVoice", refused.code() == grpc.StatusCode.INVALID_ARGUMENT,
              refused.details()[:80])
    try:
        stub.DeleteRvcVoice(gateway_pb2.DeleteRvcVoiceRequest(name="ghost"), timeout=timeout)
        check("DeleteRvcVoice", False, "deleted a voice that is not there")
    except grpc.RpcError as refused:
        check("DeleteRvcVoice", refused.code() == grpc.StatusCode.NOT_FOUND, refused.code().name)
    # Every RPC of the service was called above.
    called = {"ListVoices", "GetHealth", "GetStatus", "Synthesize", "SynthesizeStream", "Tts", "Rvc",
              "LegacySynthesize", "LegacySynthesizeStream", "LegacyTts", "LegacyRvc", "CreateSpeech",
              "GetLegacyHealth", "GetLegacyConfig", "LegacyChangeConfig", "LegacySynthesizeSse",
              "GetVoice", "CreateVoice", "UpdateVoice", "DeleteVoice", "ListRvcVoices",
              "UploadRvcVoice", "DeleteRvcVoice"}
    methods = set(gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].methods_by_name)
    check("coverage", methods == called, f"uncalled={sorted(methods - called)}")


if __name__ == "__main__":
    main(sys.argv[1])
