"""Other names for voice profiles: OpenAI's voice names, and any set in GATEWAY_VOICE_ALIASES.

OpenAI's clients ask for one of OpenAI's voices (``alloy``, ``echo``, ...). Each
is an alias here, for the default profile unless GATEWAY_VOICE_ALIASES gives it
another (``alloy=narrator,echo=demo-spark``); that setting may add aliases of its
own too. Aliases work wherever a request names a voice (VoiceBook.get), and a
profile of the same name wins over an alias.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from services.gateway.voice_profiles import NAME_PATTERN

OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
)
DEFAULT = ""  # an alias's target: the default profile (GATEWAY_DEFAULT_VOICE)


def alias_table(entries: Iterable[str]) -> dict[str, str]:
    """alias -> profile: OpenAI's names for the default profile, then ``alias=profile`` entries.

    Raises ValueError naming the entry that is malformed or given twice.
    """
    table = dict.fromkeys(OPENAI_VOICES, DEFAULT)
    given: set[str] = set()
    for entry in entries:
        alias, equals, profile = (part.strip() for part in entry.partition("="))
        if not equals:
            raise ValueError(f"{entry!r} is not alias=profile")
        for what, name in (("alias", alias), ("profile", profile)):
            if not NAME_PATTERN.fullmatch(name):
                raise ValueError(f"{entry!r}: the {what} {name!r} must match {NAME_PATTERN.pattern}")
        if alias in given:
            raise ValueError(f"the alias {alias!r} is given twice")
        given.add(alias)
        table[alias] = profile
    return table


def check_targets(table: dict[str, str], voices_dir: Path | None) -> None:
    """Raises ValueError naming an alias whose profile is not in ``voices_dir``."""
    for alias, profile in table.items():
        if profile != DEFAULT and not (voices_dir and (voices_dir / f"{profile}.json").is_file()):
            where = voices_dir or "GATEWAY_VOICES_DIR (unset)"
            raise ValueError(f"the alias {alias!r} stands for {profile!r}, "
                             f"but there is no voice profile {profile}.json in {where}")
