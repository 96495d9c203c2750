"""Cutting text into sentences for pipelined synthesis, long ones again at clauses.

Each piece is synthesised on its own, so a piece must read naturally alone:
cuts fall after sentence-ending punctuation (Latin and CJK), then after clause
punctuation, then at spaces, and only as a last resort inside a word.
"""

from __future__ import annotations

import re

# Sentence ends: . ! ? … (plus closing quotes/brackets) before a space, or CJK enders anywhere.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+|(?<=[。！？])[」』”’）]*\s*|\n\s*\n")
_CLAUSE_END = re.compile(r"(?<=[,;:，、；：—–])\s*")
# A full stop after these is an abbreviation, not a sentence end.
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "no", "jr", "sr"}


def _sentences(text: str) -> list[str]:
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        head = text[start : match.start()].rstrip()
        last_word = head.rsplit(maxsplit=1)[-1].rstrip(".").lower() if head else ""
        if head.endswith(".") and last_word in _ABBREVIATIONS:
            continue
        pieces.append(text[start : match.end()].strip())
        start = match.end()
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def _cut_long(sentence: str, limit: int) -> list[str]:
    """Cut at the last clause mark (else space, else anywhere) before ``limit``, repeatedly."""
    pieces = []
    while len(sentence) > limit:
        window = sentence[: limit + 1]
        cut = 0
        for pattern in (_CLAUSE_END, re.compile(r"\s+")):
            ends = [m.end() for m in pattern.finditer(window) if limit // 3 <= m.end() <= limit]
            if ends:
                cut = ends[-1]
                break
        cut = cut or limit
        pieces.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    if sentence:
        pieces.append(sentence)
    return pieces


def split_sentences(text: str, limit: int = 200) -> list[str]:
    """``text`` as pieces of at most ``limit`` characters, in order, none empty."""
    if limit < 1:  # no piece could hold a character: cutting would never end
        raise ValueError(f"limit must be at least 1, got {limit}")
    pieces: list[str] = []
    for sentence in _sentences(text.strip()):
        pieces += _cut_long(sentence, limit)
    return pieces
