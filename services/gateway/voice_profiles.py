"""Voice profiles, named bundles of a TTS speaker, an RVC voice and default
parameters: reading one profile file and checking every field.

Each profile is ``<voices_dir>/<name>.json`` (a flat directory, as a mounted
ConfigMap is); a reference clip is a sibling file named in the JSON::

    {"description": "Warm narrator",
     "reference_audio": "narrator.wav", "reference_text": "What the clip says.",
     "rvc_model": "alice-v2", "skip_rvc": false,
     "rvc": {"pitch_shift": 0, "f0_method": "rmvpe", "index_rate": 0.75, "filter_radius": 3,
             "rms_mix_rate": 0.25, "protect": 0.33, "resample_sr": 0},
     "sampling": {"temperature": 0.8, "top_k": 50, "top_p": 0.95, "max_tokens": 2048,
                  "seed": 7}}

Once the TTS service has encoded the clip, the voice library keeps its Spark
tokens beside it (``"speaker_tokens": {"global_ids": [32 ids], "semantic_ids":
[...], "codec": "bicodec-..."}``, the codec naming the audio tokenizer's
weights): the voice speaks from them, and from the clip only where the TTS
service refuses them (other weights). Instead of ``reference_audio`` (+ optional
``reference_text``) a profile may
describe a voice: ``"control": {"gender": "female", "pitch": "moderate",
"speed": "high"}``. A profile may name its TTS engine: ``"engine": "spark"``
(the default when it gives a speaker) or ``"piper"``, with Piper's choices in
``"piper": {"voice": "en_US-joe-medium", "speaker": 0, "length_scale": 1.0}``;
a Piper profile needs no speaker. Everything else is optional; unknown keys are
errors. services.gateway.voices keeps the profiles of a directory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.audio import decode_container, to_mono
from services.common.errors import InvalidArgument
from services.gateway.speech_params import (
    ENGINES,
    F0_METHODS,
    GENDERS,
    LEVELS,
    Control,
    Conversion,
    Engine,
    PiperChoice,
    Reference,
    Sampling,
    Speaker,
    SpeakerTokens,
)

MAX_PROFILE_BYTES = 1 << 20
MAX_CLIP_BYTES = 16 << 20
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

_TOP_KEYS = {"description", "reference_audio", "reference_text", "control", "rvc_model",
             "skip_rvc", "rvc", "sampling", "engine", "piper", "speaker_tokens"}
_PIPER_VOICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


# field -> (what the value must be, test) for the "rvc", "sampling" and "control" objects.
_Rule = tuple[str, Callable[[Any], bool]]
_RVC_RULES: dict[str, _Rule] = {
    "pitch_shift": ("an integer in -24..24", lambda v: _is_int(v) and -24 <= v <= 24),
    "f0_method": (f"one of {', '.join(F0_METHODS)}",
                  lambda v: isinstance(v, str) and v in F0_METHODS),
    "index_rate": ("a number in 0..1", lambda v: _is_number(v) and 0 <= v <= 1),
    "filter_radius": ("an integer in 0..7", lambda v: _is_int(v) and 0 <= v <= 7),
    "rms_mix_rate": ("a number in 0..1", lambda v: _is_number(v) and 0 <= v <= 1),
    "protect": ("a number in 0..0.5", lambda v: _is_number(v) and 0 <= v <= 0.5),
    "resample_sr": ("0 or an integer in 8000..48000",
                    lambda v: _is_int(v) and (v == 0 or 8000 <= v <= 48000)),
}
_SAMPLING_RULES: dict[str, _Rule] = {
    "temperature": ("a number > 0", lambda v: _is_number(v) and v > 0),
    "top_k": ("an integer >= 0", lambda v: _is_int(v) and 0 <= v < 2**32),
    "top_p": ("a number in (0, 1]", lambda v: _is_number(v) and 0 < v <= 1),
    "max_tokens": ("an integer >= 1", lambda v: _is_int(v) and 1 <= v < 2**32),
    "seed": ("an integer in 0..2^64-1", lambda v: _is_int(v) and 0 <= v < 2**64),
}
_PIPER_RULES: dict[str, _Rule] = {
    "voice": ("a Piper voice name", lambda v: isinstance(v, str) and bool(_PIPER_VOICE.fullmatch(v))),
    "speaker": ("an integer in 0..9999", lambda v: _is_int(v) and 0 <= v < 10_000),
    "length_scale": ("a number in 0.1..10", lambda v: _is_number(v) and 0.1 <= v <= 10),
}
_CONTROL_RULES: dict[str, _Rule] = {
    "gender": ("one of female, male", lambda v: isinstance(v, str) and v in GENDERS),
    "pitch": (f"one of {', '.join(LEVELS)}", lambda v: isinstance(v, str) and v in LEVELS),
    "speed": (f"one of {', '.join(LEVELS)}", lambda v: isinstance(v, str) and v in LEVELS),
}




def _ids(value: Any, vocab: int, least: int, most: int) -> bool:
    return (isinstance(value, list) and least <= len(value) <= most
            and all(_is_int(i) and 0 <= i < vocab for i in value))


# Spark's BiCodec: 32 global ids from 4096; semantic ids from 8192, 50 a second of clip.
_TOKEN_RULES: dict[str, _Rule] = {
    "global_ids": ("a list of 32 integers in 0..4095", lambda v: _ids(v, 4096, 32, 32)),
    "semantic_ids": ("a list of 1..100000 integers in 0..8191",
                     lambda v: _ids(v, 8192, 1, 100_000)),
    "codec": ("a string of 1..128 characters",
              lambda v: isinstance(v, str) and 1 <= len(v) <= 128),
}


def speaker_tokens(value: Any, transcript: str = "") -> SpeakerTokens:
    """The ``speaker_tokens`` object of a profile, checked."""
    tokens = _section("speaker_tokens", value, _TOKEN_RULES)
    missing = [key for key in _TOKEN_RULES if key not in tokens]
    if missing:
        raise InvalidArgument(f"speaker_tokens.{missing[0]} is required")
    return SpeakerTokens(tuple(tokens["global_ids"]), tuple(tokens["semantic_ids"]),
                         tokens["codec"], transcript)


@dataclass(frozen=True)
class VoiceProfile:
    """One loaded profile."""

    name: str
    description: str
    speaker: Speaker
    sampling: Sampling
    conversion: Conversion
    skip_rvc: bool
    engine: int = Engine.UNSPECIFIED
    piper: PiperChoice = field(default_factory=PiperChoice)


def _read_capped(path: Path, limit: int, what: str) -> bytes:
    with path.open("rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise InvalidArgument(f"{what} is larger than {limit} bytes")
    return data


def _section(where: str, value: Any, rules: dict[str, _Rule]) -> dict[str, Any]:
    """Checks a JSON object against ``rules``; returns it unchanged."""
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where} must be an object")
    for key, item in value.items():
        if key not in rules:
            raise InvalidArgument(f"{where}.{key} is not a known field: use {', '.join(rules)}")
        expected, test = rules[key]
        if not test(item):
            raise InvalidArgument(f"{where}.{key} must be {expected}, got {json.dumps(item)[:40]}")
    return value


def _string(data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise InvalidArgument(f"{key} must be a string")
    return value


def _reference(directory: Path, data: dict[str, Any], name: str) -> Speaker:
    clip = _string(data, "reference_audio")
    # No separators and not hidden (which rules out "." and ".." too): a file in this directory.
    if not clip or clip.startswith(".") or any(bad in clip for bad in ("/", "\\", "\0")):
        raise InvalidArgument(
            f"reference_audio {clip[:64]!r} must be the plain name of a file beside the profile"
        )
    path = directory / clip
    if not path.is_file():
        raise InvalidArgument(f"reference_audio {clip!r} does not exist")
    try:
        audio = to_mono(decode_container(_read_capped(path, MAX_CLIP_BYTES, "the file")))
    except InvalidArgument as exc:
        raise InvalidArgument(f"reference_audio {clip!r}: {exc.message}") from None
    if audio.frames == 0:
        raise InvalidArgument(f"reference_audio {clip!r} has no samples")
    transcript = _string(data, "reference_text")
    speaker = Speaker(reference=Reference(audio, transcript, origin=name))
    if "speaker_tokens" in data:
        return dataclasses.replace(speaker,
                                   tokens=speaker_tokens(data["speaker_tokens"], transcript))
    return speaker


def _control(data: dict[str, Any]) -> Speaker:
    control = _section("control", data["control"], _CONTROL_RULES)
    if "gender" not in control:
        raise InvalidArgument("control.gender is required")
    return Speaker(control=Control(
        gender=GENDERS[control["gender"]],
        pitch=LEVELS[control.get("pitch", "moderate")],
        speed=LEVELS[control.get("speed", "moderate")],
    ))


def _parse(path: Path) -> VoiceProfile:
    try:
        data = json.loads(_read_capped(path, MAX_PROFILE_BYTES, "the file"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidArgument(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidArgument("must hold a JSON object")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        known = ", ".join(sorted(_TOP_KEYS))
        raise InvalidArgument(f"{unknown[0]} is not a known field: use {known}")
    engine = data.get("engine", "spark")
    if engine not in ENGINES:
        raise InvalidArgument(f"engine must be one of {', '.join(ENGINES)}, "
                              f"got {json.dumps(engine)[:40]}")
    piper = _section("piper", data.get("piper", {}), _PIPER_RULES)
    if piper and engine != "piper":
        raise InvalidArgument('piper options go with "engine": "piper"')
    if "reference_audio" in data and "control" in data:
        raise InvalidArgument("give exactly one of reference_audio and control")
    if "reference_text" in data and "control" in data:
        raise InvalidArgument("reference_text goes with reference_audio, not control")
    if "speaker_tokens" in data and "reference_audio" not in data:
        raise InvalidArgument("speaker_tokens goes with reference_audio (they are its tokens)")
    if "reference_audio" in data:
        speaker = _reference(path.parent, data, path.stem)
    elif "control" in data:
        speaker = _control(data)
    elif engine == "piper":
        speaker = Speaker()  # Piper speaks in its own voices
    else:
        raise InvalidArgument("give exactly one of reference_audio and control "
                              '(or "engine": "piper", which needs neither)')

    skip_rvc = data.get("skip_rvc", False)
    if not isinstance(skip_rvc, bool):
        raise InvalidArgument("skip_rvc must be true or false")
    rvc = dict(_section("rvc", data.get("rvc", {}), _RVC_RULES))
    if "f0_method" in rvc:
        rvc["f0_method"] = F0_METHODS[rvc["f0_method"]]
    sampling = _section("sampling", data.get("sampling", {}), _SAMPLING_RULES)
    return VoiceProfile(
        name=path.stem,
        description=_string(data, "description"),
        speaker=speaker,
        sampling=Sampling(**sampling),
        conversion=Conversion(model=_string(data, "rvc_model"), **rvc),
        skip_rvc=skip_rvc,
        engine=ENGINES[engine] if "engine" in data else Engine.UNSPECIFIED,
        piper=PiperChoice(**piper),
    )


def load_profile(path: Path) -> VoiceProfile:
    """Reads and checks one ``<name>.json``; raises InvalidArgument naming the file."""
    try:
        if not NAME_PATTERN.fullmatch(path.stem):
            raise InvalidArgument(f"the name must match {NAME_PATTERN.pattern}")
        return _parse(path)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path.name}: {exc.message}") from None
    except OSError as exc:
        raise InvalidArgument(f"{path.name}: cannot be read: {exc.strerror}") from None
