"""Property tests of ``split_sentences``: any text, any limit, nothing lost and nothing too long."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.gateway.sentences import split_sentences

FUZZ = settings(max_examples=200, deadline=None, derandomize=True)
# Characters the splitter treats specially, so that arbitrary text meets them often.
SPECIAL = list(".!?…。！？,;:，、；：—–\"'”’)]」』） \t\n\r\u3000\u00a0\x1c")
texts = st.text(
    alphabet=st.one_of(st.characters(), st.sampled_from(SPECIAL), st.sampled_from("ab. ")),
    max_size=600,
)
abbreviations = st.lists(
    st.sampled_from(["Mr.", "e.g.", "No.", "etc.", "Dr.", "word", "x.", "\n\n", " ", "!?"]),
    max_size=80,
).map(" ".join)


def visible(text: str) -> str:
    return "".join(c for c in text if not c.isspace())


def check(text: str, limit: int) -> None:
    pieces = split_sentences(text, limit)
    assert all(piece and piece == piece.strip() for piece in pieces), pieces
    assert all(len(piece) <= limit for piece in pieces), (limit, pieces)
    assert visible("".join(pieces)) == visible(text)


@FUZZ
@given(texts, st.integers(1, 300))
def test_any_text_is_cut_into_bounded_pieces_that_keep_every_character(text, limit):
    check(text, limit)


@FUZZ
@given(abbreviations, st.integers(1, 40))
def test_abbreviations_and_paragraphs_lose_nothing(text, limit):
    check(text, limit)


@FUZZ
@given(st.text(max_size=50), st.integers(-5, 0))
def test_a_limit_below_one_is_refused_not_an_endless_loop(text, limit):
    with pytest.raises(ValueError, match="limit must be at least 1"):
        split_sentences(text, limit)
