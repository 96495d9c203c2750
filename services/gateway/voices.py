"""The voice book: the voice profiles of one directory, found by name or alias
and laid over a request's TTS and RVC fields.

A profile is a ``<name>.json`` file (its format is in voice_profiles). A profile
that fails to load is listed with its problem and refused by ``get``; the
others keep working.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, ServiceError
from services.gateway.speech_params import (
    Conversion,
    Engine,
    PiperChoice,
    Sampling,
    Speaker,
    overlay,
)
from services.gateway.voice_profiles import NAME_PATTERN, VoiceProfile, load_profile

logger = logging.getLogger(__name__)

RESCAN_SECONDS = 1.0


class Resolved(NamedTuple):
    """A request's TTS and RVC fields laid over a profile's."""

    speaker: Speaker
    sampling: Sampling
    conversion: Conversion
    skip_rvc: bool
    engine: int = Engine.UNSPECIFIED
    piper: PiperChoice = PiperChoice()


@dataclass(frozen=True)
class VoiceListing:
    """One profile as ``ListVoices`` shows it; ``problem`` says why a broken one is refused."""

    name: str
    is_default: bool
    aliases: tuple[str, ...] = ()
    problem: str = ""
    rvc_model: str = ""
    description: str = ""
    speaker: str = ""  # the speaker's source: "reference", "control", or ""
    skip_rvc: bool = False
    engine: int = Engine.UNSPECIFIED


_Signature = tuple[tuple[str, int, int, int], ...]


class VoiceBook:
    """The profiles of one directory, read on first use, then rescanned (at most
    every ``interval`` seconds of ``clock``) and reloaded whenever a file in it changes.

    ``default`` names the profile a request gets when it names no voice and gives
    no speaker. A default that is not defined breaks only those requests.
    ``aliases`` maps other names to profiles ("" for the default one); see
    services.gateway.voice_aliases.
    """

    def __init__(self, directory: Path | None, default: str = "", *,
                 aliases: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 interval: float = RESCAN_SECONDS) -> None:
        self._directory = directory
        self._default = default
        self._aliases = dict(aliases or {})
        self._clock = clock
        self._interval = interval
        self._lock = threading.Lock()
        self._checked_at: float | None = None  # never scanned
        self._signature: _Signature | None = None
        self._entries: dict[str, VoiceProfile | InvalidArgument] = {}

    def _scan(self) -> _Signature | None:
        """Cheap fingerprint of the directory: None when there is none."""
        if self._directory is None:
            return None
        try:
            with os.scandir(self._directory) as listing:
                found = list(listing)
        except OSError:  # missing, or not a directory
            return None
        entries = []
        for entry in found:
            if entry.name.startswith("."):
                continue
            try:
                stat = entry.stat()  # follows the ConfigMap's symlinks
            except OSError:
                continue
            entries.append((entry.name, stat.st_mtime_ns, stat.st_size, stat.st_ino))
        return tuple(sorted(entries))

    def _load(self, signature: _Signature | None) -> dict[str, VoiceProfile | InvalidArgument]:
        if signature is None or self._directory is None:
            where = f"{self._directory} is not a directory" if self._directory else "no directory"
            logger.info("no voice profiles (GATEWAY_VOICES_DIR): %s", where)
            return {}
        entries: dict[str, VoiceProfile | InvalidArgument] = {}
        for name, *_ in signature:
            if not name.endswith(".json"):
                continue
            path = self._directory / name
            try:
                entries[path.stem] = load_profile(path)
            except InvalidArgument as exc:
                logger.warning("voice profile %s", exc.message)
                entries[path.stem] = exc
        if self._default and self._default not in entries:
            logger.warning("the default voice %r is not defined", self._default)
        logger.info("loaded %d voice profile(s) from %s", len(entries), self._directory)
        return entries

    def _current(self) -> dict[str, VoiceProfile | InvalidArgument]:
        with self._lock:
            now, first = self._clock(), self._checked_at is None
            if first or now - self._checked_at >= self._interval:
                self._checked_at = now
                signature = self._scan()
                if first or signature != self._signature:
                    self._signature = signature
                    self._entries = self._load(signature)
            return self._entries

    @property
    def directory(self) -> Path | None:
        return self._directory

    def reload(self) -> None:
        """Reads the folder again on next use (after this process wrote to it)."""
        with self._lock:
            self._checked_at = None

    def listing(self, name: str) -> VoiceListing:
        """The profile ``name`` as ``profiles`` lists it; NotFound when there is none."""
        for listing in self.profiles():
            if listing.name == name:
                return listing
        raise NotFound(f"voice '{name}' is not defined")

    @property
    def default(self) -> str:
        """The profile of requests that name no voice and give no speaker ("" if none)."""
        return self._default

    def profiles(self) -> list[VoiceListing]:
        """Every profile, by name; broken ones carry their problem."""
        entries = self._current()
        aliases = self._aliases_by_profile(entries)
        return [self._listing(name, entry, aliases.get(name, ()))
                for name, entry in sorted(entries.items())]

    def _listing(self, name: str, entry: VoiceProfile | InvalidArgument,
                 aliases: Sequence[str]) -> VoiceListing:
        listing = VoiceListing(name, name == self._default, tuple(aliases))
        if isinstance(entry, InvalidArgument):
            return dataclasses.replace(listing, problem=entry.message)
        return dataclasses.replace(
            listing, rvc_model=entry.conversion.model, description=entry.description,
            speaker=entry.speaker.source, skip_rvc=entry.skip_rvc, engine=entry.engine,
        )

    def _aliases_by_profile(self, entries: dict[str, Any]) -> dict[str, list[str]]:
        """Each profile's aliases, leaving out those a profile of the same name hides."""
        by_profile: dict[str, list[str]] = {}
        for alias, target in sorted(self._aliases.items()):
            if alias not in entries:
                by_profile.setdefault(target or self._default, []).append(alias)
        return by_profile

    def usable_default(self) -> VoiceProfile | None:
        """The default profile, or None when there is none or it cannot be used."""
        if not self._default:
            return None
        try:
            return self.get("")
        except ServiceError:
            return None

    def get(self, name: str) -> VoiceProfile:
        """The profile ``name`` (or the one its alias stands for), the default one for ""."""
        if not name:
            if not self._default:
                raise InvalidArgument("no voice was named and no default voice is configured")
            return self._get(self._default, default=True)
        if not NAME_PATTERN.fullmatch(name):
            raise InvalidArgument(f"voice name {name[:64]!r} is malformed: "
                                  f"it must match {NAME_PATTERN.pattern}")
        if name in self._aliases and name not in self._current():  # a profile of its name wins
            target = self._aliases[name] or self._default
            if not target:
                raise FailedPrecondition(f"voice '{name}' stands for the default voice, and no "
                                         "default voice is configured (GATEWAY_DEFAULT_VOICE)")
            return self._get(target, default=not self._aliases[name], alias=name)
        return self._get(name, default=False)

    def _get(self, name: str, default: bool, alias: str = "") -> VoiceProfile:
        entries = self._current()
        entry = entries.get(name)
        if entry is None and default:
            raise FailedPrecondition(f"the configured default voice '{name}' is not defined")
        if entry is None and not entries:
            raise NotFound("no voice profiles are defined (GATEWAY_VOICES_DIR)")
        voice = f"voice '{alias}' stands for '{name}', which" if alias else f"voice '{name}'"
        if entry is None:
            known = ", ".join(sorted(entries))
            raise NotFound(f"{voice} is not defined; known voices: {known}")
        if isinstance(entry, InvalidArgument):
            raise FailedPrecondition(f"{voice} cannot be used: {entry.message}")
        return entry

    def resolve(
        self,
        name: str,
        speaker: Speaker,
        sampling: Sampling,
        conversion: Conversion,
        skip_rvc: bool,
        engine: int = Engine.UNSPECIFIED,
        piper: PiperChoice | None = None,
    ) -> Resolved:
        """The request's fields laid over the profile's.

        With no name, the default profile applies only to a request without a
        speaker; otherwise (or with no default) the request is returned as is.
        A request's engine wins over the profile's; a request for Piper takes no
        speaker from the profile (Piper would ignore it).
        """
        piper = piper or PiperChoice()
        if not name and (speaker.source or not self._default):
            return Resolved(speaker, sampling, conversion, skip_rvc, engine, piper)
        profile = self.get(name)
        engine = engine or profile.engine
        if not speaker.source and engine != Engine.PIPER:
            speaker = profile.speaker
        return Resolved(
            speaker,
            overlay(profile.sampling, sampling),
            overlay(profile.conversion, conversion),
            skip_rvc or profile.skip_rvc,
            engine,
            overlay(profile.piper, piper),
        )
