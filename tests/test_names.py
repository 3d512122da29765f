"""Tests of skvf.names: canonical class names and merging of spelling variants."""

from __future__ import annotations

import numpy as np
import pytest

from skvf.names import merge_near_duplicates, normalize_name, normalize_names


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('  "The Painted Bunting." ', "painted bunting"),
        ("\u201cBlue Jay\u201d", "blue jay"),  # typographic quotes
        ("'cardinal'", "cardinal"),  # apostrophes used as quotes
        ("`Cardinal`", "cardinal"),
        ("**Blue Jay**", "blue jay"),  # markdown emphasis
        ("Crow (American)", "crow american"),
        ("Blue_Jay", "blue jay"),  # underscores are separators, not word characters
        ("American   Robin!\n", "american robin"),
        ("-robin-", "robin"),
    ],
)
def test_normalize_name_strips_quotes_and_punctuation(raw, expected):
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The Painted Bunting", "painted bunting"),
        ("an American robin", "american robin"),
        ("A crow", "crow"),
        ("a the robin", "robin"),  # repeated articles all go
        ("theater", "theater"),  # an article prefix inside a word stays
        ("another crow", "another crow"),
        ("atlantic puffin", "atlantic puffin"),
        ("crow, the", "crow the"),  # only leading articles are removed
        ("A", "a"),  # a single letter is a name, not an article
    ],
)
def test_normalize_name_strips_leading_articles_only(raw, expected):
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # full-width letters and an ideographic space
        ("\uff22\uff2c\uff35\uff25\u3000\uff2a\uff21\uff39", "blue jay"),
        ("\uff21\uff22\uff23\uff11\uff12\uff13", "abc123"),
        ("\ufb01nch", "finch"),  # the "fi" ligature decomposes under NFKC
        ("Caf\u00e9", "caf\u00e9"),  # accented letters are letters
        ("Cafe\u0301", "caf\u00e9"),  # combining accent composes to the same name
    ],
)
def test_normalize_name_applies_nfkc(raw, expected):
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Grey-headed  Woodpecker!", "grey-headed woodpecker"),
        ("Anna's Hummingbird", "anna's hummingbird"),
        ("Lady's-slipper", "lady's-slipper"),
    ],
)
def test_normalize_name_keeps_hyphens_and_apostrophes_inside_words(raw, expected):
    assert normalize_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "  .  ", '"".', "***", "--", "' '"])
def test_normalize_name_returns_empty_when_nothing_name_like_is_left(raw):
    assert normalize_name(raw) == ""


# "a" is left out on purpose: a single letter is a legitimate class name (letter datasets).
@pytest.mark.parametrize("raw", ["the", "The.", "an", '"The"', "a the", "An."])
def test_normalize_name_bare_article_is_empty(raw):
    assert normalize_name(raw) == ""


def test_normalize_name_is_idempotent():
    raws = ['"The Painted Bunting."', "\uff22lue-Jay's", "  an  Ibis ", "Crow (American)"]
    for raw in raws:
        once = normalize_name(raw)
        assert normalize_name(once) == once


@pytest.mark.parametrize("bad", [None, 3, b"blue jay", ["blue jay"]])
def test_normalize_name_rejects_non_str(bad):
    with pytest.raises(TypeError, match=r"a class name must be a str, got " + type(bad).__name__):
        normalize_name(bad)


def test_normalize_names_keeps_order_and_returns_object_array():
    result = normalize_names(["The Crow", "Blue Jay.", "  ", "crow"])
    assert result.dtype == object
    assert result.tolist() == ["crow", "blue jay", "", "crow"]
    assert isinstance(normalize_names(iter(["A Crow"])), np.ndarray)


def test_merge_near_duplicates_maps_variants_to_most_frequent_spelling():
    names = ["blue jay"] * 3 + ["blue-jay", "blue jays", "bluejay"] + ["crows", "crow", "crow"]
    mapping = merge_near_duplicates(names)
    assert mapping == {
        "blue jay": "blue jay",
        "blue-jay": "blue jay",
        "blue jays": "blue jay",
        "bluejay": "blue jay",
        "crow": "crow",
        "crows": "crow",
    }


def test_merge_near_duplicates_follows_frequency_not_form():
    # The plural is the more frequent spelling here, so it represents the group.
    mapping = merge_near_duplicates(["cardinals", "cardinals", "cardinal"])
    assert mapping == {"cardinals": "cardinals", "cardinal": "cardinals"}


def test_merge_near_duplicates_breaks_ties_alphabetically():
    mapping = merge_near_duplicates(["blue-jay", "blue jay"])
    assert mapping == {"blue jay": "blue jay", "blue-jay": "blue jay"}
    # Same answer whatever the input order.
    assert merge_near_duplicates(["blue jay", "blue-jay"]) == mapping


def test_merge_near_duplicates_leaves_unrelated_names_alone():
    names = ["crow", "crown", "great heron", "grey heron", "bass", "cat", "cats eye"]
    mapping = merge_near_duplicates(names)
    assert mapping == {name: name for name in names}


def test_merge_near_duplicates_keeps_short_words_ending_in_s():
    # len <= 3 after removing separators: the trailing "s" is not taken as a plural.
    mapping = merge_near_duplicates(["gas", "ga", "emu", "emus"])
    assert mapping["gas"] == "gas"
    assert mapping["ga"] == "ga"
    assert mapping["emus"] == mapping["emu"] == "emu"


def test_merge_near_duplicates_empty_input():
    assert merge_near_duplicates([]) == {}


def test_merge_near_duplicates_merges_the_same_words_in_another_order():
    names = ["audi a4 sedan 2012"] * 2 + ["2012 audi a4 sedan", "sedans audi a4 2012"]
    mapping = merge_near_duplicates(names + ["audi a4 sedan 2007", "audi a4"])
    assert mapping["2012 audi a4 sedan"] == "audi a4 sedan 2012"
    # Each word is compared as a whole name is: a plural "s" does not count.
    assert mapping["sedans audi a4 2012"] == "audi a4 sedan 2012"
    # Other words, or fewer of them, are another name.
    assert mapping["audi a4 sedan 2007"] == "audi a4 sedan 2007"
    assert mapping["audi a4"] == "audi a4"


def test_merge_near_duplicates_is_transitive_across_both_rules():
    # "jay blue" meets "blue jay" by word order, "bluejay" meets it with the spaces gone:
    # one group, represented by its most frequent member.
    mapping = merge_near_duplicates(["jay blue", "blue jay", "bluejay", "bluejay"])
    assert set(mapping.values()) == {"bluejay"}
    # A word repeated is not the word once.
    assert merge_near_duplicates(["tom tom", "tom"]) == {"tom tom": "tom tom", "tom": "tom"}
