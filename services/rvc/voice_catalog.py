"""What each installed voice is (version, rate, pitch guidance), read once per file version
(a replaced file is a new version: VoiceFiles.stamp)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services.rvc.model_store import VoiceFiles
from services.rvc.models.checkpoint import VoiceFormatError, read_voice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VoiceSummary:
    name: str
    has_index: bool
    version: str = ""  # empty when the file cannot be read
    sample_rate: int = 0
    pitch_guided: bool = False
    info: str = ""
    problem: str = ""


class VoiceCatalog:
    def __init__(self) -> None:
        self._known: dict[tuple, VoiceSummary] = {}

    def describe(self, voices: list[VoiceFiles]) -> list[VoiceSummary]:
        return [self._summary(voice) for voice in voices]

    def _summary(self, voice: VoiceFiles) -> VoiceSummary:
        try:
            stamp = (voice.name, voice.stamp())
        except OSError as exc:
            return VoiceSummary(voice.name, voice.index is not None,
                                problem=voice.without_paths(str(exc)))
        known = self._known.get(stamp)
        if known is not None:
            return known
        try:
            info, _, _ = read_voice(voice.checkpoint)
        except VoiceFormatError as exc:
            log.warning("unreadable voice", extra={"voice": voice.name, "error": str(exc)})
            summary = VoiceSummary(voice.name, voice.index is not None,
                                   problem=voice.without_paths(str(exc)))
        else:
            summary = VoiceSummary(
                voice.name, voice.index is not None, info.version, info.sample_rate,
                info.pitch_guided, info.info,
            )
        self._known = {k: v for k, v in self._known.items() if k[0] != voice.name}
        self._known[stamp] = summary
        return summary
