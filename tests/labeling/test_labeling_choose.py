"""``MLLMLabeler.choose`` against a real local HTTP server: which of a few names, or none.

The fake server names each image after its colour; asked to choose, it answers the same
name, whether or not it was offered, unless a test scripts another answer.
"""

from __future__ import annotations

import base64
import io
import json
import logging

import numpy as np
import pytest
from conftest import KEY_ENV
from fake_openai_server import COLOURS, FakeVLM, Reply, colour_answer, colour_image
from PIL import Image

from skvf import NeaRClassifier
from skvf.labeling import BudgetExceededError, LabelingWarning, UnusableAnswerError
from skvf.labeling._prompts import render_choice_question
from skvf.serialization import dump, load
from skvf_bench.demo import TINY_BACKBONE_PARAMS

RED, GREEN, BLUE = "red test bird", "green test bird", "blue test bird"


def _parts(body: dict) -> tuple[str, list[Image.Image]]:
    """The text and the images of a request body."""
    text, images = [], []
    for part in body["messages"][0]["content"]:
        if part["type"] == "text":
            text.append(part["text"])
        else:
            payload = part["image_url"]["url"].split(",", 1)[1]
            images.append(Image.open(io.BytesIO(base64.b64decode(payload))))
    return "\n".join(text), images


def _none_for(colour: str):
    """An ``answer`` callable: "none of these" for images of ``colour``, else its colour."""

    def answer(image: Image.Image, prompt: str) -> str:
        name = json.loads(colour_answer(image, prompt))["name"]
        return json.dumps({"name": "None of these"}) if name.startswith(colour) else name

    return answer


@pytest.fixture
def rgb():
    """A red, a green and a blue image."""
    return [
        colour_image(colour, seed=index) for index, colour in enumerate(["red", "green", "blue"])
    ]


def test_each_request_carries_its_image_and_its_choices(server, make_labeler, rgb):
    fake = FakeVLM()
    labeler = make_labeler(server(fake), domain="bird").fit()
    choices = [[BLUE, RED], [GREEN, "grey test bird"], ["grey test bird", "white test bird"]]
    names, valid, reasons = labeler.choose(rgb, choices, return_reasons=True)

    assert fake.requests == 3
    sent = {_parts(body)[0]: _parts(body)[1] for body in fake.bodies}
    for image, options in zip(rgb, choices, strict=True):
        question = render_choice_question(options, "bird")
        assert question in sent and all(f"- {option}" in question for option in options)
        (shown,) = sent[question]
        assert np.abs(np.asarray(shown, float).mean((0, 1)) - image.mean((0, 1))).max() < 10
    # The answer is a choice for the first two images; the blue one's is not offered.
    assert names.tolist() == [RED, GREEN, None]
    assert valid.tolist() == [True, True, False]
    assert reasons.tolist() == [None] * 3


def test_none_of_these_keeps_no_name_and_is_no_problem(server, make_labeler, rgb):
    fake = FakeVLM(answer=_none_for("green"))
    labeler = make_labeler(server(fake)).fit()
    names, valid, reasons = labeler.choose(rgb, [[GREEN, RED]] * 3, return_reasons=True)
    assert names.tolist() == [RED, None, None]
    assert valid.tolist() == [True, False, False]
    assert reasons.tolist() == [None] * 3 and labeler.usage_["unusable_answers"] == 0


def test_a_choice_is_matched_after_normalisation_and_returned_as_offered(server, make_labeler, rgb):
    fake = FakeVLM(script=[Reply('```json\n{"name": "The Red Test-Bird."}\n```')])
    labeler = make_labeler(server(fake)).fit()
    names, valid = labeler.choose(rgb[:1], [["Red Test-Bird", BLUE]])
    assert names.tolist() == ["Red Test-Bird"] and valid.tolist() == [True]


def test_a_rerun_with_the_same_cache_sends_nothing_and_usage_counts_the_calls(
    server, make_labeler, rgb
):
    fake = FakeVLM()
    base_url = server(fake)
    labeler = make_labeler(base_url).fit()
    first = labeler.choose(rgb, [[RED, GREEN]] * 3)
    assert fake.requests == 3
    assert labeler.usage_["calls"] == labeler.usage_["answers"] == 3
    assert labeler.usage_["prompt_tokens"] == 300 and labeler.usage_["completion_tokens"] == 30

    again = make_labeler(base_url).fit()
    second = again.choose(rgb, [[RED, GREEN]] * 3)
    assert fake.requests == 3
    assert again.usage_["calls"] == 0 and again.usage_["cache_hits"] == 3
    for before, after in zip(first, second, strict=True):
        np.testing.assert_array_equal(before, after)


def test_the_cache_key_holds_the_choices_and_stays_apart_from_the_names(server, make_labeler, rgb):
    fake = FakeVLM()
    base_url = server(fake)
    labeler = make_labeler(base_url).fit()
    labeler.label(rgb[:1])
    labeler.choose(rgb[:1], [[RED, GREEN]])  # the name's answer is not a choice's
    labeler.choose(rgb[:1], [[RED, BLUE]])  # other names: another question
    labeler.choose(rgb[:1], [[BLUE, RED]])  # another order: another question
    labeler.choose(rgb[:1], [[RED, GREEN]])
    assert fake.requests == 4
    make_labeler(base_url, domain="bird").fit().choose(rgb[:1], [[RED, GREEN]])
    assert fake.requests == 5  # another question text


def test_duplicate_images_asked_the_same_question_are_sent_once(server, make_labeler, rgb):
    fake = FakeVLM()
    labeler = make_labeler(server(fake), cache=None).fit()
    names, _ = labeler.choose([rgb[0], rgb[0], rgb[0]], [[RED, GREEN], [RED, GREEN], [RED]])
    assert fake.requests == 2 and names.tolist() == [RED, RED, RED]


def test_max_cost_stops_choosing(server, make_labeler, rgb):
    fake = FakeVLM()
    price = (1e-3, 1e-3)  # 0.11 USD per call: 100 prompt and 10 completion tokens
    labeler = make_labeler(server(fake), max_cost=0.25, price_per_token=price).fit()
    labeler.label(rgb[:1])
    with pytest.raises(BudgetExceededError, match="max_cost=0.25 USD reached"):
        labeler.choose(rgb, [[RED, GREEN]] * 3)
    assert fake.requests == 2  # one name and one choice fit in the budget, no third call
    assert labeler.usage_["cost_usd"] == pytest.approx(0.22)


def test_an_unusable_answer_follows_on_error(server, make_labeler, rgb):
    refusal = Reply("I'm sorry, I can't help with identifying this image.")
    base_url = server(FakeVLM(script=[refusal, refusal]))
    with pytest.raises(UnusableAnswerError, match="refusal answer") as info:
        make_labeler(base_url, cache=None, max_concurrency=1).fit().choose(rgb[:1], [[RED]])
    assert info.value.reason == "refusal"
    labeler = make_labeler(base_url, cache=None, max_concurrency=1, on_error="warn").fit()
    with pytest.warns(LabelingWarning, match="no usable answer to the choice"):
        names, valid, reasons = labeler.choose(rgb[:2], [[RED, GREEN]] * 2, return_reasons=True)
    assert names.tolist() == [None, GREEN] and valid.tolist() == [False, True]
    assert reasons[1] is None and "X[0]" in reasons[0] and "refusal" in reasons[0]


def test_choices_are_checked(make_labeler, rgb):
    labeler = make_labeler("http://127.0.0.1:9/v1").fit()
    with pytest.raises(ValueError, match="one list of names per image: got 1 lists for 3"):
        labeler.choose(rgb, [[RED]])
    with pytest.raises(ValueError, match=r"choices\[0\] must be a non-empty list"):
        labeler.choose(rgb[:1], ["red"])
    with pytest.raises(ValueError, match=r"choices\[0\] holds 'None of these', which is how"):
        labeler.choose(rgb[:1], [[RED, "None of these"]])


def test_a_server_named_by_a_model_file_gets_no_choice_request(server, make_labeler, rgb, tmp_path):
    fake = FakeVLM()
    base_url = server(fake)
    dump(make_labeler(base_url).fit(), tmp_path / "labeler.skops")
    loaded = load(tmp_path / "labeler.skops")
    with pytest.raises(ValueError, match="loaded from a file and names api_base"):
        loaded.choose(rgb[:1], [[RED, GREEN]])
    assert fake.requests == 0
    loaded.set_params(api_base=base_url, api_key_env=KEY_ENV)  # confirmed in this process
    assert loaded.choose(rgb[:1], [[RED, GREEN]])[0].tolist() == [RED]


@pytest.mark.slow
def test_classifier_reasks_a_contradicted_name_through_the_server(
    server, make_labeler, tmp_path, caplog
):
    caplog.set_level(logging.ERROR)  # open_clip: weights are random; restored after the test
    colours = list(COLOURS)[:4]
    images = [colour_image(colour, size=32, seed=seed) for seed in range(3) for colour in colours]
    # The first image (red) is first named blue; its red neighbours contradict that.
    fake = FakeVLM(script=[Reply(json.dumps({"name": BLUE}))])
    labeler = make_labeler(server(fake), cache=None, max_concurrency=1)
    clf = NeaRClassifier(
        labeler=labeler,
        **TINY_BACKBONE_PARAMS,
        max_epochs=4,
        reask=0.25,
        merge_synonyms=False,  # the names and the choices are every request
        memory=tmp_path / "memory",
        random_state=0,
    )
    clf.fit(images)
    assert 0 in clf.reasked_ and len(clf.reasked_) <= 3
    assert clf.reask_first_names_[0] == BLUE
    assert clf.labeler_names_["normalized"][0] == RED
    assert clf.n_labeler_calls_ == len(images) + len(clf.reasked_)
    assert clf.llm_usage_["calls"] == fake.requests == len(images) + len(clf.reasked_)
    question, shown = _parts(fake.bodies[-1])
    assert "none of these" in question and len(shown) == 1
