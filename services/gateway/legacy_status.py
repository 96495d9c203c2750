"""The old server's GET /health, GET /status and GET /config, from what our services report.

Its clients read these fields by name; each keeps the old meaning where we have
one (a stage is ready when its service serves) and says where ours differs.
"""

from __future__ import annotations

from google.protobuf import struct_pb2
from voice.v1 import gateway_pb2, rvc_pb2, tts_pb2

from services.gateway.results import Health
from services.gateway.speech_params import F0_METHODS, Conversion, overlay
from services.gateway.voice_profiles import VoiceProfile

# The old server's Form(...) defaults. They differ from the WebUI's (RVC's own
# defaults) in rms_mix_rate: 0.0, the TTS audio's loudness envelope, not 0.25.
OLD_DEFAULTS = Conversion(
    pitch_shift=0, f0_method=F0_METHODS["rmvpe"], index_rate=0.75, filter_radius=3,
    rms_mix_rate=0.0, protect=0.33,
)


_TRITON_MODELS = {tts_pb2.ENGINE_SPARK: "spark_tts", tts_pb2.ENGINE_PIPER: "piper"}
_F0_NAMES = {value: name for name, value in F0_METHODS.items()}
# Calls that change no audio are not requests in the old server's counts.
_NOT_COUNTED = ("Get", "List", "LegacyChangeConfig")
CONFIG_IS_READ_ONLY = (
    "the server's one set of voice settings cannot be changed (POST /config, POST and "
    "DELETE /config/reference-audio): every request would hear whichever write came "
    "last, from any client. Make a voice of your own instead (POST /v1/voices: a clip, "
    "its transcript and the RVC fields; PUT /v1/voices/{name} changes it) and name it in "
    "the field voice; GET /v1/voices lists the voices, GET /config shows the default one's "
    "settings. Or send reference_audio and the RVC fields with each request"
)


def _ready(health: Health, name: str) -> bool:
    return any(d.name == name and d.status == "SERVING" for d in health.dependencies)


def legacy_health(health: Health, ours: gateway_pb2.GetHealthResponse
                  ) -> gateway_pb2.LegacyHealthResponse:
    """Both stages ready: "ready"; one: "degraded" (still healthy); none: "error"."""
    tts, rvc = _ready(health, "tts"), _ready(health, "rvc")
    if tts and rvc:
        status, message = "ready", "All services ready"
    elif tts or rvc:
        status, message = "degraded", f"TTS: {tts}, RVC: {rvc}"
    else:
        status, message = "error", "No services available"
    return gateway_pb2.LegacyHealthResponse(
        healthy=tts or rvc, status=status, tts_ready=tts, rvc_ready=rvc, message=message,
        serving_status=ours.status, dependencies=ours.dependencies,
    )


def _counted(counts: list[tuple[str, str, int]]) -> tuple[int, int]:
    """(all, successful) calls of the methods that make or convert speech."""
    made = [(code, n) for method, code, n in counts if not method.startswith(_NOT_COUNTED)]
    return sum(n for _, n in made), sum(n for code, n in made if code == "OK")


def old_status_fields(
    health: Health,
    tts: tts_pb2.TtsStatus | None,
    rvc: rvc_pb2.RvcStatus | None,
    rvc_model: str,
    counts: list[tuple[str, str, int]],
    uptime: float,
) -> dict:
    """The old /status fields, as keyword arguments of GetStatusResponse."""
    total, successful = _counted(counts)
    cap = 2**32 - 1  # the fields are 32-bit so that REST prints numbers
    return {
        "running": True,
        "tts_ready": _ready(health, "tts"),
        "tts_model": _TRITON_MODELS.get(tts.default_engine, "") if tts else "",
        "triton_server": tts.triton_address if tts else "",
        "rvc_ready": _ready(health, "rvc"),
        "rvc_model": rvc_model,
        "rvc_workers": rvc.workers_configured if rvc else 0,
        "rvc_workers_alive": rvc.workers_alive if rvc else 0,
        "total_requests": min(total, cap),
        "successful_requests": min(successful, cap),
        "failed_requests": min(total - successful, cap),
        "uptime": uptime,
    }


def legacy_config(profile: VoiceProfile | None) -> gateway_pb2.LegacyConfig:
    """The default profile's clip and RVC settings, the old defaults where it sets none."""
    params = OLD_DEFAULTS
    config = gateway_pb2.LegacyConfig(reference_audio_duration=struct_pb2.Value(null_value=0))
    if profile is not None:
        params = overlay(OLD_DEFAULTS, profile.conversion)
        config.voice = profile.name
        reference = profile.speaker.reference
        if reference is not None:
            config.has_reference_audio = True
            config.reference_audio_duration.number_value = reference.audio.duration
            config.reference_text = reference.transcript
    config.pitch_shift = params.pitch_shift
    config.f0_method = _F0_NAMES[params.f0_method]
    config.index_rate = round(params.index_rate, 6)  # float32 when it came from a request
    config.filter_radius = params.filter_radius
    config.rms_mix_rate = round(params.rms_mix_rate, 6)
    config.protect = round(params.protect, 6)
    return config
