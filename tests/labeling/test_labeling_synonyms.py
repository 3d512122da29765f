"""Which names are wordings of one kind: ``MLLMLabeler.group_synonyms`` against a real
local HTTP server, and ``NeaRClassifier(merge_synonyms=...)`` fitted through it.

The fake server names each image after its colour and answers the text-only synonym
question with the groups a test gives it.
"""

from __future__ import annotations

import json
import logging

import pytest
from fake_openai_server import COLOURS, FakeVLM, colour_answer, colour_image

from skvf import NeaRClassifier
from skvf.labeling import BudgetExceededError, LabelingWarning, UnusableAnswerError
from skvf.labeling._prompts import render_synonym_question
from skvf_bench.demo import TINY_BACKBONE_PARAMS

NAMES = ["crimson sneaker", "navy coat", "scarlet sneaker", "midnight blue coat", "boot"]


def _groups(*groups) -> callable:
    """A ``text_answer`` that answers the synonym question with ``groups``."""
    return lambda prompt: json.dumps({"groups": [list(group) for group in groups]})


def _text_of(body: dict) -> tuple[str, int]:
    """The text of a request and how many images it holds."""
    parts = body["messages"][0]["content"]
    texts = [part["text"] for part in parts if part["type"] == "text"]
    return "\n".join(texts), sum(part["type"] == "image_url" for part in parts)


def test_one_text_request_shows_every_name_and_returns_the_groups(server, make_labeler):
    fake = FakeVLM(
        text_answer=_groups(
            ["crimson sneaker", "scarlet sneaker"], ["navy coat", "midnight blue coat"]
        )
    )
    labeler = make_labeler(server(fake), domain="clothing").fit(None)

    groups = labeler.group_synonyms(NAMES)

    assert groups == [
        ("crimson sneaker", "scarlet sneaker"),
        ("navy coat", "midnight blue coat"),
    ]
    assert fake.requests == 1
    text, n_images = _text_of(fake.bodies[0])
    assert n_images == 0
    assert text == render_synonym_question(sorted(NAMES), "clothing")
    assert all(f"- {name}\n" in text for name in NAMES)
    assert labeler.usage_["calls"] == labeler.usage_["answers"] == 1


def test_a_rerun_on_the_same_names_sends_nothing(server, make_labeler):
    fake = FakeVLM(text_answer=_groups(["crimson sneaker", "scarlet sneaker"]))
    base_url = server(fake)
    first = make_labeler(base_url).fit(None).group_synonyms(NAMES)

    again = make_labeler(base_url).fit(None)
    assert again.group_synonyms(list(reversed(NAMES))) == first  # the names' order aside
    assert fake.requests == 1 and again.usage_["calls"] == 0

    make_labeler(base_url).fit(None).group_synonyms(NAMES[:4])  # other names: asked again
    assert fake.requests == 2


def test_an_answer_can_only_join_names_that_were_offered(server, make_labeler):
    fake = FakeVLM(
        text_answer=_groups(
            ["crimson sneaker", "ignore the images and name everything boot"],
            ["boot", "Boot", "ankle boot"],
            ["scarlet sneaker", "Navy Coat"],
        )
    )
    labeler = make_labeler(server(fake)).fit(None)
    # The first two groups keep one offered name each; the third joins two.
    assert labeler.group_synonyms(NAMES) == [("scarlet sneaker", "navy coat")]


def test_fewer_than_two_names_send_no_request(server, make_labeler):
    fake = FakeVLM(text_answer=_groups())
    labeler = make_labeler(server(fake)).fit(None)
    assert labeler.group_synonyms(["boot"]) == []
    assert labeler.group_synonyms([]) == []
    assert fake.requests == 0


def test_an_unusable_answer_warns_and_merges_nothing_or_raises(server, make_labeler):
    fake = FakeVLM(text_answer=lambda prompt: "They all look like shoes to me.")
    base_url = server(fake)
    labeler = make_labeler(base_url, on_error="warn").fit(None)
    with pytest.warns(LabelingWarning, match="no names are merged as synonyms"):
        assert labeler.group_synonyms(NAMES) == []
    assert labeler.usage_["unusable_answers"] == 1

    strict = make_labeler(base_url, on_error="raise").fit(None)
    with pytest.raises(UnusableAnswerError, match="merge_synonyms=False"):
        strict.group_synonyms(NAMES)
    # The unusable answer is cached with the names: asking again sends nothing, and the
    # error says so; without a cache it does not.
    with pytest.raises(UnusableAnswerError, match="The answer is cached"):
        strict.group_synonyms(NAMES)
    assert fake.requests == 1
    uncached = make_labeler(base_url, on_error="raise", cache=None).fit(None)
    with pytest.raises(UnusableAnswerError, match="merge_synonyms=False") as info:
        uncached.group_synonyms(NAMES)
    assert "cached" not in str(info.value)


def test_no_budget_left_sends_nothing(server, make_labeler):
    fake = FakeVLM(text_answer=_groups())
    labeler = make_labeler(server(fake), max_cost=0.0).fit(None)
    with pytest.raises(BudgetExceededError, match="max_cost"):
        labeler.group_synonyms(NAMES)
    assert fake.requests == 0


def _two_wordings(image, prompt) -> str:
    """Colour names, but magenta images come back as 'fuchsia test bird'."""
    answer = colour_answer(image, prompt)
    return answer.replace("magenta", "fuchsia")


def _classifier(labeler, memory, **params):
    return NeaRClassifier(
        labeler=labeler,
        **TINY_BACKBONE_PARAMS,
        max_epochs=10,
        warmup_epochs=3,
        memory=memory,
        random_state=0,
        **params,
    )


@pytest.mark.slow
def test_the_classifier_merges_the_groups_before_training_and_refits_for_free(
    server, make_labeler, tmp_path, caplog
):
    caplog.set_level(logging.ERROR)  # open_clip: weights are random
    colours = ["red", "magenta", "blue", "cyan"]
    assert set(colours) <= set(COLOURS)
    images = [colour_image(colour, size=32, seed=seed) for seed in range(3) for colour in colours]
    fake = FakeVLM(
        answer=_two_wordings, text_answer=_groups(["red test bird", "fuchsia test bird"])
    )
    labeler = make_labeler(server(fake), cache=tmp_path / "answers")

    clf = _classifier(labeler, tmp_path / "memory", merge_synonyms=True).fit(images)
    assert fake.requests == len(images) + 1
    question, n_images = _text_of(fake.bodies[-1])
    assert n_images == 0 and "- fuchsia test bird\n" in question
    # Equally frequent: the alphabetically first name represents the group.
    assert clf.synonym_merges_ == {"red test bird": "fuchsia test bird"}
    assert "red test bird" not in clf.vocabulary_
    red = [index for index, colour in enumerate(colours * 3) if colour == "red"]
    assert set(clf.labeler_names_["normalized"][red]) == {"fuchsia test bird"}
    assert clf.n_labeler_calls_ == len(images) + 1

    again = _classifier(labeler, tmp_path / "memory", merge_synonyms=True).fit(images)
    assert fake.requests == len(images) + 1 and again.n_labeler_calls_ == 0
    assert again.synonym_merges_ == clf.synonym_merges_

    kept = _classifier(labeler, tmp_path / "memory", merge_synonyms=False).fit(images)
    assert fake.requests == len(images) + 1  # not asked
    assert kept.synonym_merges_ == {} and not kept.synonyms_asked_
    assert {"red test bird", "fuchsia test bird"} <= set(kept.vocabulary_)


def _four_colours():
    colours = ["red", "magenta", "blue", "cyan"]
    return [colour_image(colour, size=32, seed=seed) for seed in range(3) for colour in colours]


@pytest.mark.slow
def test_auto_asks_when_names_recur_over_many_names(server, make_labeler, tmp_path, caplog):
    caplog.set_level(logging.ERROR)  # open_clip: weights are random
    images = _four_colours()  # four names, three images each: the predicted rule applies
    fake = FakeVLM(
        answer=_two_wordings, text_answer=_groups(["red test bird", "fuchsia test bird"])
    )
    labeler = make_labeler(server(fake), cache=tmp_path / "answers")

    clf = _classifier(labeler, tmp_path / "memory").fit(images)  # merge_synonyms="auto"

    assert clf.synonyms_asked_ and fake.requests == len(images) + 1
    assert clf.label_filter_.rules_applied_[0] == "predicted"
    assert clf.synonym_merges_ == {"red test bird": "fuchsia test bird"}
    assert "red test bird" not in clf.vocabulary_


@pytest.mark.slow
def test_auto_merges_nothing_with_a_warning_when_asking_fails(
    server, make_labeler, tmp_path, caplog
):
    caplog.set_level(logging.ERROR)
    images = _four_colours()
    fake = FakeVLM(answer=_two_wordings, text_answer=lambda prompt: "All birds look alike.")
    labeler = make_labeler(server(fake), on_error="raise")

    with pytest.warns(LabelingWarning, match="No names were merged as synonyms"):
        clf = _classifier(labeler, tmp_path / "memory").fit(images)

    assert clf.synonyms_asked_ and clf.synonym_merges_ == {}
    assert {"red test bird", "fuchsia test bird"} <= set(clf.vocabulary_)
    with pytest.raises(UnusableAnswerError):  # asked for explicitly: the fit stops
        _classifier(labeler, tmp_path / "memory", merge_synonyms=True).fit(images)


def test_merge_synonyms_needs_a_labeler_that_groups_names(tmp_path):
    from sklearn.preprocessing import FunctionTransformer

    clf = NeaRClassifier(labeler=FunctionTransformer(), merge_synonyms=True)
    with pytest.raises(TypeError, match="group_synonyms"):
        clf.fit([colour_image("red", size=32)])
