"""Answers in, one normalised name or a reason out."""

import pytest

from skvf.labeling._parsing import UnusableAnswer, parse_name


@pytest.mark.parametrize(
    ("answer", "name"),
    [
        ('{"name": "Painted Bunting"}', "painted bunting"),
        ('```json\n{"name": "The Painted Bunting."}\n```', "painted bunting"),
        (
            'Sure! {"attributes": ["red crest"], "name": "Northern Cardinal"} Hope it helps.',
            "northern cardinal",
        ),
        ('{"category": "Audi A4 Sedan 2012"}', "audi a4 sedan 2012"),
        ('"Blue Jay"', "blue jay"),
        ('{"name": "Indigo Bunting", "attributes": ["blue', "indigo bunting"),
        ("Attributes:\n- red crest\n- black mask\nName: Northern Cardinal", "northern cardinal"),
        ("**Answer:** Cedar Waxwing", "cedar waxwing"),
        ("Cedar Waxwing.", "cedar waxwing"),
        ("  grey-headed  lady's   slipper ", "grey-headed lady's slipper"),
        ('{"name": "Lady\u2019s Slipper"}', "lady's slipper"),
    ],
)
def test_parse_name_reads_the_shapes_models_answer_in(answer, name):
    assert parse_name(answer) == name


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (None, "empty"),
        ("", "empty"),
        ("   \n ", "empty"),
        ('{"name": ""}', "empty"),
        ('{"name": "..."}', "empty"),
        ("I'm sorry, but I can't identify people or objects in this image.", "refusal"),
        ("I cannot determine the species from this picture.", "refusal"),
        ('{"name": "unknown"}', "refusal"),
        ('{"name": "Sorry, I am unable to tell"}', "refusal"),
        (
            "This is a small songbird with a bright red body, a crest and a black face mask.\n"
            "It is common in gardens.",
            "unparsable",
        ),
        ('{"species_guess": "robin"}', "unparsable"),
        ('{"name": "robin', "unparsable"),
        ("[1, 2]", "unparsable"),
        (
            "a small bird with a red crest sitting on a branch near the water in the morning",
            "overlong",
        ),
    ],
)
def test_parse_name_rejects_unusable_answers_with_a_reason(answer, reason):
    with pytest.raises(UnusableAnswer) as caught:
        parse_name(answer)
    assert caught.value.reason == reason


def test_a_refusal_reported_apart_from_the_text_wins():
    with pytest.raises(UnusableAnswer, match="refusal answer: 'policy'"):
        parse_name('{"name": "robin"}', refusal="policy")


def test_overlong_limits_are_parameters():
    assert parse_name("black-throated blue warbler", max_words=3) == "black-throated blue warbler"
    with pytest.raises(UnusableAnswer, match="overlong"):
        parse_name("black-throated blue warbler", max_words=2)
    with pytest.raises(UnusableAnswer, match="overlong"):
        parse_name("black-throated blue warbler", max_chars=10)
