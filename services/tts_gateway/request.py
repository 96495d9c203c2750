"""A synthesis request as the TTS core sees it, checked field by field."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import Enum

from services.common.audio import PcmAudio
from services.common.errors import InvalidArgument
from services.common.seeds import check_seed


class Engine(Enum):
    SPARK = "spark"
    PIPER = "piper"


class Gender(Enum):
    FEMALE = "female"
    MALE = "male"


class Level(Enum):
    VERY_LOW = "very_low"
    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"
    VERY_HIGH = "very_high"


@dataclass(frozen=True)
class ReferenceSpeaker:
    audio: PcmAudio
    transcript: str = ""


@dataclass(frozen=True)
class CachedSpeaker:
    speaker_id: str


@dataclass(frozen=True)
class TokenSpeaker:
    """A reference clip as the audio tokenizer encoded it (codec names its weights)."""

    global_ids: tuple[int, ...]
    semantic_ids: tuple[int, ...]
    transcript: str = ""
    codec: str = ""


@dataclass(frozen=True)
class ControlledSpeaker:
    gender: Gender
    pitch: Level = Level.MODERATE
    speed: Level = Level.MODERATE


Speaker = ReferenceSpeaker | CachedSpeaker | TokenSpeaker | ControlledSpeaker

# Spark's BiCodec: 32 global tokens from 4096, semantic tokens from 8192 at 50 a second.
GLOBAL_TOKENS, GLOBAL_VOCAB, SEMANTIC_VOCAB, SEMANTIC_PER_SECOND = 32, 4096, 8192, 50
MAX_CODEC_CHARS = 128


@dataclass(frozen=True)
class Sampling:
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature is not None and not 0.0 < self.temperature <= 5.0:
            raise InvalidArgument(f"sampling.temperature {self.temperature:g} is outside (0, 5]")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise InvalidArgument(f"sampling.top_p {self.top_p:g} is outside (0, 1]")
        if self.top_k is not None and self.top_k > 10_000:
            raise InvalidArgument(f"sampling.top_k {self.top_k} is above 10000")
        if self.seed is not None:
            check_seed(self.seed, "sampling.seed")
        if self.max_tokens is not None and not 1 <= self.max_tokens <= 10_000:
            raise InvalidArgument(f"sampling.max_tokens {self.max_tokens} is outside 1..10000")


# Piper voice names as the piper model accepts them (never a path).
_PIPER_VOICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class PiperChoice:
    """Piper's voice, speaker and pace; empty voice means Piper's default."""

    voice: str = ""
    speaker: int | None = None
    length_scale: float | None = None

    def __post_init__(self) -> None:
        if self.voice and not _PIPER_VOICE.fullmatch(self.voice):
            raise InvalidArgument(
                f"piper.voice {self.voice[:64]!r} is malformed: it must match {_PIPER_VOICE.pattern}")
        if self.speaker is not None and not 0 <= self.speaker < 10_000:
            raise InvalidArgument(f"piper.speaker {self.speaker} is outside 0..9999")
        if self.length_scale is not None and not (
            math.isfinite(self.length_scale) and 0.1 <= self.length_scale <= 10.0
        ):
            raise InvalidArgument(f"piper.length_scale {self.length_scale:g} is outside 0.1..10")

    @property
    def is_set(self) -> bool:
        return self != PiperChoice()


# wav2vec2's feature encoder needs 400 samples (25 ms); a voice needs more.
MIN_REFERENCE_SECONDS = 0.1
# The model's own control tokens; in user text they would rewrite the prompt.
_CONTROL_TOKEN = re.compile(r"<\|[^|<>]{1,64}\|>")
# C0 and C1 control characters other than tab, line and page breaks: never speech.
_CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def _check_text(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidArgument(f"{name} has {len(value)} characters; the limit is {limit} (TTS_MAX_TEXT_CHARS)")
    found = _CONTROL_TOKEN.search(value)
    if found:
        raise InvalidArgument(f"{name} contains the reserved token {found.group(0)!r}")
    control = _CONTROL_CHARACTER.search(value)
    if control:
        raise InvalidArgument(
            f"{name} contains the control character U+{ord(control.group(0)):04X} "
            f"at position {control.start()}"
        )


_SPEAKER_NAMES = {
    ReferenceSpeaker: "a reference clip",
    CachedSpeaker: "a speaker_id",
    TokenSpeaker: "speaker tokens",
    ControlledSpeaker: "a voice description (control)",
}


@dataclass(frozen=True)
class SpeechRequest:
    text: str
    speaker: Speaker | None = None
    sampling: Sampling = field(default_factory=Sampling)
    engine: Engine | None = None  # None: the service's default
    piper: PiperChoice = field(default_factory=PiperChoice)

    def plan(self, default: Engine) -> tuple[Engine, tuple[str, ...]]:
        """The engine that speaks, and a note for each part of the request it ignores.

        A request naming no engine goes to Spark when it gives a speaker (only
        Spark can clone or follow one), else to ``default``.
        """
        engine = self.engine or (Engine.SPARK if self.speaker is not None else default)
        notes = []
        if engine is Engine.PIPER:
            if self.speaker is not None:
                what = _SPEAKER_NAMES[type(self.speaker)]
                notes.append(f"piper ignores the speaker: {what} was given, "
                             "but Piper speaks in its own trained voices (see piper.voice)")
            if self.sampling != Sampling():
                notes.append("piper ignores sampling: its output depends on the text and voice only")
        elif self.piper.is_set:
            notes.append("spark ignores the piper options")
        return engine, tuple(notes)

    def check(self, max_text_chars: int, max_reference_seconds: float,
              engine: Engine = Engine.SPARK) -> None:
        """Limits that depend on the service's settings and the engine that speaks."""
        if not self.text.strip():
            raise InvalidArgument("text is empty")
        _check_text("text", self.text, max_text_chars)
        if engine is Engine.PIPER:
            return  # Piper uses neither the speaker nor its clip
        if self.speaker is None:
            raise InvalidArgument(
                "speaker is required by the spark engine: set reference, speaker_id or control")
        if isinstance(self.speaker, ReferenceSpeaker):
            _check_text("speaker.reference.transcript", self.speaker.transcript, max_text_chars)
            seconds = self.speaker.audio.duration
            if seconds <= 0:
                raise InvalidArgument("speaker.reference.audio is empty")
            if seconds < MIN_REFERENCE_SECONDS:
                raise InvalidArgument(
                    f"speaker.reference.audio lasts {seconds:.3f} s; "
                    f"at least {MIN_REFERENCE_SECONDS:g} s is needed"
                )
            if seconds > max_reference_seconds:
                raise InvalidArgument(
                    f"speaker.reference.audio lasts {seconds:.1f} s; "
                    f"the limit is {max_reference_seconds:g} s (TTS_MAX_REFERENCE_SECONDS)"
                )
        if isinstance(self.speaker, CachedSpeaker) and not self.speaker.speaker_id:
            raise InvalidArgument("speaker.speaker_id is empty")
        if isinstance(self.speaker, TokenSpeaker):
            _check_tokens(self.speaker, max_text_chars, max_reference_seconds)


def _check_tokens(tokens: TokenSpeaker, max_text_chars: int, max_reference_seconds: float) -> None:
    """A clip's tokens: as many as the clips this service takes make, from the codebooks."""
    _check_text("speaker.tokens.transcript", tokens.transcript, max_text_chars)
    if len(tokens.global_ids) != GLOBAL_TOKENS:
        raise InvalidArgument(f"speaker.tokens.global_ids has {len(tokens.global_ids)} ids; "
                              f"{GLOBAL_TOKENS} are needed")
    limit = math.ceil(max_reference_seconds * SEMANTIC_PER_SECOND) + 1
    if not 1 <= len(tokens.semantic_ids) <= limit:
        raise InvalidArgument(
            f"speaker.tokens.semantic_ids has {len(tokens.semantic_ids)} ids; 1..{limit} are "
            f"allowed (a clip of up to {max_reference_seconds:g} s, TTS_MAX_REFERENCE_SECONDS)")
    for name, ids, vocab in (("global_ids", tokens.global_ids, GLOBAL_VOCAB),
                             ("semantic_ids", tokens.semantic_ids, SEMANTIC_VOCAB)):
        if any(not 0 <= i < vocab for i in ids):
            raise InvalidArgument(f"speaker.tokens.{name} holds an id outside 0..{vocab - 1}")
    if not tokens.codec or len(tokens.codec) > MAX_CODEC_CHARS:
        raise InvalidArgument(f"speaker.tokens.codec must be 1..{MAX_CODEC_CHARS} characters "
                              "(the codec of the response that gave the tokens)")
