"""The parameters of one request to the pipeline, as plain values: who speaks
(``Speaker``), how Spark samples (``Sampling``), how RVC converts
(``Conversion``) and Piper's choices (``PiperChoice``).

A field left at its default is unset: ``None`` for the numbers a caller may set
to zero on purpose, "" or 0 for the rest (as voice.v1 leaves them).
``overlay`` lays a request's fields over a profile's: whatever the request
sets wins. Enumerations keep voice.v1's numbers (``Engine``, and the gender,
level and f0 method fields), so that a value the gateway does not know still
reaches the service that judges it. services.gateway.params_proto translates
to and from voice.v1.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import TypeVar

from services.common.audio import PcmAudio


class Engine(enum.IntEnum):
    """voice.v1.Engine's numbers (a test keeps them in step)."""

    UNSPECIFIED = 0
    SPARK = 1
    PIPER = 2


# The names profiles and forms give the enumerations, with voice.v1's numbers
# (tests/unit/gateway/test_speech_params.py checks them against the protos).
ENGINES = {"spark": Engine.SPARK, "piper": Engine.PIPER}
GENDERS = {"female": 1, "male": 2}
LEVELS = {"very_low": 1, "low": 2, "moderate": 3, "high": 4, "very_high": 5}
# The WebUI's pitch estimators, by the names it gives them.
F0_METHODS = {"rmvpe": 1, "crepe": 2, "crepe-tiny": 3, "harvest": 4, "dio": 5, "pm": 6}


@dataclass(frozen=True)
class Reference:
    audio: PcmAudio
    transcript: str = ""
    origin: str = ""  # the voice profile whose clip this is ("" for a request's own)


@dataclass(frozen=True)
class SpeakerTokens:
    """A reference clip as Spark's audio tokenizer encoded it; ``codec`` names the
    tokenizer's weights (tokens are valid only under those)."""

    global_ids: tuple[int, ...]
    semantic_ids: tuple[int, ...]
    codec: str
    transcript: str = ""  # what the clip says, as a Reference's


@dataclass(frozen=True)
class Control:
    """A described voice: voice.v1 Gender and Level numbers (0: unset)."""

    gender: int = 0
    pitch: int = 0
    speed: int = 0


@dataclass(frozen=True)
class Speaker:
    """Who speaks: at most one of a clip to clone, a speaker the TTS service
    cached from an earlier clip, the tokens of a clip, or a described voice.
    A voice profile's clip may come with its tokens: the TTS service is sent the
    tokens, and the clip only when it refuses them."""

    reference: Reference | None = None
    speaker_id: str = ""
    control: Control | None = None
    tokens: SpeakerTokens | None = None

    @property
    def source(self) -> str:
        """"reference", "speaker_id", "tokens", "control", or "" when none is given
        (a clip with its tokens is a "reference")."""
        if self.reference is not None:
            return "reference"
        if self.tokens is not None:
            return "tokens"
        if self.speaker_id:
            return "speaker_id"
        if self.control is not None:
            return "control"
        return ""


@dataclass(frozen=True)
class Sampling:
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Conversion:
    model: str = ""  # an RVC voice; "" is the RVC service's default
    pitch_shift: int | None = None
    f0_method: int = 0  # a voice.v1.F0Method number; 0: the service's default
    index_rate: float | None = None
    filter_radius: int | None = None
    resample_sr: int = 0
    rms_mix_rate: float | None = None
    protect: float | None = None


@dataclass(frozen=True)
class PiperChoice:
    voice: str = ""
    speaker: int | None = None
    length_scale: float | None = None


@dataclass(frozen=True)
class VoiceSpec:
    """A voice as the API makes it: the fields of a profile file."""

    name: str
    description: str = ""
    speaker: Speaker = field(default_factory=Speaker)
    engine: int = Engine.UNSPECIFIED
    piper: PiperChoice = field(default_factory=PiperChoice)
    conversion: Conversion = field(default_factory=Conversion)
    sampling: Sampling = field(default_factory=Sampling)
    skip_rvc: bool = False


Params = TypeVar("Params", Sampling, Conversion, PiperChoice)


def overlay(base: Params, top: Params) -> Params:
    """``base`` with every field ``top`` sets put in its place."""
    changes = {
        item.name: getattr(top, item.name)
        for item in dataclasses.fields(top)
        if getattr(top, item.name) != item.default
    }
    return dataclasses.replace(base, **changes)
