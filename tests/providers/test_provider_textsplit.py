"""Splitting long text for providers' character limits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.providers.textsplit import split_text

pytestmark = pytest.mark.timeout(60)


def test_short_text_is_one_part():
    assert split_text("  Just one.  ", 100) == ["Just one."]


def test_packs_whole_sentences_under_the_limit():
    text = "One is short. Two is a bit longer! Three asks why? Four ends."
    parts = split_text(text, 30)
    assert parts == ["One is short.", "Two is a bit longer!", "Three asks why? Four ends."]


def test_over_long_sentence_cut_at_clause_then_words():
    text = "This sentence, which never seems to end, keeps going and going without any full stop at all"
    parts = split_text(text, 40)
    assert all(len(p) <= 40 for p in parts)
    assert parts[0] == "This sentence, which never seems to end,"
    assert " ".join(parts) == text


def test_closing_quotes_stay_with_their_sentence():
    assert split_text('He said "stop." Then he left.', 20) == ['He said "stop."', "Then he left."]


def test_empty_text():
    assert split_text(" \n ", 10) == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc xyz.,!?;\n\"'")), max_size=400), st.integers(1, 80))
def test_parts_respect_limit_and_keep_every_character(text, limit):
    parts = split_text(text, limit)
    assert all(0 < len(p) <= limit for p in parts)
    assert "".join("".join(parts).split()) == "".join(text.split())


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.text(alphabet="abcdefgh ", min_size=1, max_size=30).map(str.strip).filter(bool),
        min_size=1,
        max_size=30,
    ),
    st.integers(35, 200),
)
def test_sentences_shorter_than_limit_are_never_cut(words, limit):
    sentences = [f"{w}." for w in words]
    parts = split_text(" ".join(sentences), limit)
    assert " ".join(" ".join(parts).split()) == " ".join(" ".join(s.split()) for s in sentences)
    assert all(p.endswith(".") for p in parts)
