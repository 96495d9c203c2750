"""Sentence and clause splitting for pipelined synthesis."""

import pytest

from services.gateway.sentences import split_sentences


def test_sentences_end_at_their_punctuation():
    text = 'Hello there. How are you? I am "fine!" Really… Yes.'
    assert split_sentences(text) == ["Hello there.", "How are you?", 'I am "fine!"', "Really…", "Yes."]


def test_abbreviations_and_decimals_do_not_end_a_sentence():
    text = "Dr. Smith paid 3.50 dollars, e.g. for tea. Then he left."
    assert split_sentences(text) == ["Dr. Smith paid 3.50 dollars, e.g. for tea.", "Then he left."]


def test_chinese_sentences_split_without_spaces():
    assert split_sentences("你好。今天天气很好！我们走吧？") == ["你好。", "今天天气很好！", "我们走吧？"]


def test_paragraph_breaks_end_a_piece():
    assert split_sentences("A title\n\nThe body") == ["A title", "The body"]


def test_long_sentences_are_cut_at_clauses_then_spaces():
    clause = "a fairly long clause of several words"
    sentence = ", ".join([clause] * 8) + "."
    pieces = split_sentences(sentence, limit=100)
    assert all(len(p) <= 100 for p in pieces)
    assert all(p.endswith(",") for p in pieces[:-1])
    assert " ".join(pieces) == sentence
    words = "word " * 60
    pieces = split_sentences(words, limit=50)
    assert all(len(p) <= 50 for p in pieces) and " ".join(pieces) == words.strip()


def test_unbroken_text_is_cut_hard():
    assert split_sentences("x" * 250, limit=100) == ["x" * 100, "x" * 100, "x" * 50]


@pytest.mark.parametrize("text", ["", "   ", "\n\n"])
def test_nothing_to_say_gives_no_pieces(text):
    assert split_sentences(text) == []
