"""The voice library: voices made, changed and removed through the API.

A voice is written as an operator would write it (voice_profiles' format): a
``<name>.json`` in the voices folder and, for a cloned voice, its clip beside it
as a float WAV, so it speaks from the very samples it was given. Each write is
checked by the loader every profile goes through before it becomes visible:
the files are made in a hidden staging folder inside the voices folder (which
the voice book never reads), loaded from there, then moved into place, so a
refused voice leaves nothing behind. Every replica's voice book picks changes up
as it picks up an operator's edits.

Once a voice's clip has been encoded by the TTS service, ``remember_tokens``
writes the clip's Spark tokens into its profile (``speaker_tokens``), if the clip
is still the one that was encoded: from then on the voice speaks from them, and no
restart makes the TTS service encode the clip again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from services.gateway.speech_params import (
    ENGINES,
    F0_METHODS,
    GENDERS,
    LEVELS,
    Engine,
    Reference,
    SpeakerTokens,
    VoiceSpec,
)
from services.gateway.voice_profiles import NAME_PATTERN, load_profile, speaker_tokens
from services.gateway.voices import VoiceBook, VoiceListing

_NAMES = {
    "engine": {value: name for name, value in ENGINES.items()},
    "f0_method": {value: name for name, value in F0_METHODS.items()},
    "gender": {value: name for name, value in GENDERS.items()},
    "level": {value: name for name, value in LEVELS.items()},
}
_SPEAKER_KEYS = ("reference_audio", "reference_text", "speaker_tokens", "control")
_TOKENS = "\0speaker_tokens\0"  # stands in for the token lists while the rest is indented


def _set_fields(params: Any) -> dict[str, Any]:
    return {item.name: getattr(params, item.name) for item in dataclasses.fields(params)
            if getattr(params, item.name) != item.default}


def _named(table: str, value: int, what: str) -> str:
    try:
        return _NAMES[table][value]
    except KeyError:
        raise InvalidArgument(f"{what} {value} is unknown") from None


def profile_fields(spec: VoiceSpec) -> dict[str, Any]:
    """The profile file's JSON for ``spec``, but its speaker's (the caller's part)."""
    data: dict[str, Any] = {}
    if spec.description:
        data["description"] = spec.description
    if spec.engine:
        data["engine"] = _named("engine", spec.engine, "engine")
    if piper := _set_fields(spec.piper):
        data["piper"] = piper
    rvc = _set_fields(spec.conversion)
    if model := rvc.pop("model", ""):
        data["rvc_model"] = model
    if "f0_method" in rvc:
        rvc["f0_method"] = _named("f0_method", rvc["f0_method"], "conversion.f0_method")
    if rvc:
        data["rvc"] = rvc
    if sampling := _set_fields(spec.sampling):
        data["sampling"] = sampling
    if spec.skip_rvc:
        data["skip_rvc"] = True
    return data


def dump_profile(data: dict[str, Any]) -> str:
    """The profile's JSON, indented, with its speaker tokens' lists on one line each."""
    tokens = data.get("speaker_tokens")
    if not isinstance(tokens, dict):
        return json.dumps(data, indent=2) + "\n"
    text = json.dumps({**data, "speaker_tokens": _TOKENS}, indent=2)
    inner = ",\n".join(f"    {json.dumps(key)}: {json.dumps(value)}"
                       for key, value in tokens.items())
    return text.replace(json.dumps(_TOKENS), "{\n" + inner + "\n  }") + "\n"


class VoiceLibrary:
    """Writes the profiles of ``book``'s folder; ``max_reference_seconds`` bounds a clip."""

    def __init__(self, book: VoiceBook, max_reference_seconds: float | None = None) -> None:
        self._book = book
        self._max_reference_seconds = max_reference_seconds
        self._lock = threading.Lock()  # one write at a time in this process

    def _folder(self) -> Path:
        folder = self._book.directory
        if folder is None or not folder.is_dir():
            raise FailedPrecondition("voices cannot be made here: no voices folder "
                                     "(GATEWAY_VOICES_DIR) is configured")
        if not os.access(folder, os.W_OK):
            raise FailedPrecondition("voices cannot be made here: the voices folder is "
                                     "read-only (a ConfigMap?); mount a writable volume")
        return folder

    @staticmethod
    def _check_name(name: str) -> str:
        if not NAME_PATTERN.fullmatch(name):
            raise InvalidArgument(f"voice name {name[:64]!r} is malformed: "
                                  f"it must match {NAME_PATTERN.pattern}")
        return name

    def get(self, name: str) -> VoiceListing:
        return self._book.listing(self._check_name(name))

    def create(self, spec: VoiceSpec) -> VoiceListing:
        name = self._check_name(spec.name)
        with self._lock:
            folder = self._folder()
            if (folder / f"{name}.json").exists():
                raise AlreadyExists(f"voice '{name}' exists: update it, or delete it first")
            self._write(folder, spec, previous=None)
        return self._book.listing(name)

    def update(self, spec: VoiceSpec) -> VoiceListing:
        """Replaces the voice; a spec with no speaker (and not for Piper) keeps the old one."""
        name = self._check_name(spec.name)
        with self._lock:
            folder = self._folder()
            previous = self._raw(folder, name)
            self._write(folder, spec, previous)
        return self._book.listing(name)

    def delete(self, name: str) -> None:
        self._check_name(name)
        with self._lock:
            folder = self._folder()
            previous = self._raw(folder, name)
            (folder / f"{name}.json").unlink()
            clip = previous.get("reference_audio")
            if isinstance(clip, str) and not self._clip_in_use(folder, clip):
                with contextlib.suppress(OSError):
                    (folder / clip).unlink()
        self._book.reload()

    @staticmethod
    def _raw(folder: Path, name: str) -> dict[str, Any]:
        try:
            data = json.loads((folder / f"{name}.json").read_bytes())
        except FileNotFoundError:
            raise NotFound(f"voice '{name}' is not defined") from None
        except (OSError, ValueError):
            return {}  # a broken profile can still be replaced or deleted
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _clip_in_use(folder: Path, clip: str) -> bool:
        """Whether another profile names ``clip`` (operators' profiles may share one)."""
        for path in folder.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(path.read_bytes())
                if isinstance(data, dict) and data.get("reference_audio") == clip:
                    return True
        return False

    def _speaker_fields(self, staging: Path, spec: VoiceSpec,
                        previous: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
        """The profile's speaker keys, and the clip written to ``staging`` ("" if none)."""
        speaker = spec.speaker
        if speaker.speaker_id:
            raise InvalidArgument("a voice keeps a reference clip or a description, not a "
                                  "speaker_id (the TTS service forgets those)")
        if speaker.reference is not None:
            audio = speaker.reference.audio
            limit = self._max_reference_seconds
            if limit is not None and audio.duration > limit:
                raise InvalidArgument(f"reference.audio is {audio.duration:.1f} s long; the "
                                      f"limit is {limit:g} s (TTS_MAX_REFERENCE_SECONDS)")
            # A name of its own: an operator's clip of that name may serve other profiles.
            clip = f"{spec.name}-{secrets.token_hex(4)}.wav"
            soundfile.write(staging / clip, audio.samples, audio.sample_rate, subtype="FLOAT")
            return {"reference_audio": clip, "reference_text": speaker.reference.transcript}, clip
        if speaker.control is not None:
            control = speaker.control
            return {"control": {
                "gender": _named("gender", control.gender, "control.gender"),
                "pitch": _named("level", control.pitch or LEVELS["moderate"], "control.pitch"),
                "speed": _named("level", control.speed or LEVELS["moderate"], "control.speed"),
            }}, ""
        if previous is not None and spec.engine != Engine.PIPER:
            kept = {key: previous[key] for key in _SPEAKER_KEYS if key in previous}
            clip = kept.get("reference_audio")
            if isinstance(clip, str) and (self._book.directory / clip).is_file():
                os.link(self._book.directory / clip, staging / clip)  # for the check only
            return kept, ""
        return {}, ""

    def _write(self, folder: Path, spec: VoiceSpec, previous: dict[str, Any] | None) -> None:
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
        try:
            speaker, clip = self._speaker_fields(staging, spec, previous)
            data = {**speaker, **profile_fields(spec)}
            staged = staging / f"{spec.name}.json"
            staged.write_text(dump_profile(data))
            load_profile(staged)  # the loader's own checks, before anything is visible
            if clip:
                os.replace(staging / clip, folder / clip)
            try:
                if previous is None:  # made only if no one (another replica) made it first
                    os.link(staged, folder / staged.name)
                else:
                    os.replace(staged, folder / staged.name)
            except FileExistsError:
                if clip:
                    (folder / clip).unlink(missing_ok=True)
                raise AlreadyExists(f"voice '{spec.name}' exists: update it, or delete "
                                    "it first") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        old_clip = (previous or {}).get("reference_audio")
        if isinstance(old_clip, str) and old_clip != data.get("reference_audio") \
                and not self._clip_in_use(folder, old_clip):
            with contextlib.suppress(OSError):
                (folder / old_clip).unlink()
        self._book.reload()

    @staticmethod
    def _made_here(name: str, clip: object) -> bool:
        """Whether the profile ``name`` is one this library wrote: its clip has the
        name the library gives clips. An operator's own files are never rewritten."""
        return isinstance(clip, str) and re.fullmatch(
            re.escape(name) + r"-[0-9a-f]{8}\.wav", clip) is not None

    def remember_tokens(self, reference: Reference, tokens: SpeakerTokens) -> bool:
        """Keeps ``tokens``, the TTS service's encoding of ``reference``'s clip, in the
        profile the clip came from (``reference.origin``), only while that profile's
        clip is still these very samples and the library made it. False when nothing
        was written: the profile changed or went, it holds these tokens already, an
        operator wrote it (their files stay as they wrote them), or the folder is
        read-only."""
        name = reference.origin
        folder = self._book.directory
        if not NAME_PATTERN.fullmatch(name) or folder is None or not os.access(folder, os.W_OK):
            return False
        path = folder / f"{name}.json"
        with self._lock:
            try:
                before = path.read_bytes()
                data = json.loads(before)
                clip = load_profile(path).speaker
                kept = {"global_ids": list(tokens.global_ids),
                        "semantic_ids": list(tokens.semantic_ids), "codec": tokens.codec}
                speaker_tokens(kept)  # the loader's checks, before the profile holds them
            except (OSError, ValueError, InvalidArgument):
                return False
            audio = clip.reference.audio if clip.reference is not None else None
            if (not isinstance(data, dict) or audio is None
                    or not self._made_here(name, data.get("reference_audio"))
                    or audio.sample_rate != reference.audio.sample_rate
                    or not np.array_equal(audio.samples, reference.audio.samples)
                    or data.get("speaker_tokens") == kept):
                return False
            data["speaker_tokens"] = kept
            handle, temp = tempfile.mkstemp(prefix=f".{name}-", suffix=".tmp", dir=folder)
            try:
                os.fchmod(handle, path.stat().st_mode & 0o777)  # readable as before
                with os.fdopen(handle, "w") as file:
                    file.write(dump_profile(data))
                if path.read_bytes() != before:  # changed meanwhile (another replica)
                    return False
                os.replace(temp, path)
            finally:
                Path(temp).unlink(missing_ok=True)
        self._book.reload()
        return True
