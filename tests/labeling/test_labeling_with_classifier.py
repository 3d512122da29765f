"""NeaRClassifier fitted end to end with MLLMLabeler against a real local HTTP server."""

from __future__ import annotations

import json
import logging

import pytest
from fake_openai_server import COLOURS, FakeVLM, colour_image

from skvf import NeaRClassifier
from skvf_bench.demo import TINY_BACKBONE_PARAMS


def _classifier(labeler, memory):
    return NeaRClassifier(
        labeler=labeler,
        **TINY_BACKBONE_PARAMS,
        max_epochs=30,
        warmup_epochs=10,
        memory=memory,
        random_state=0,
    )


@pytest.mark.slow
def test_classifier_fits_on_server_names_and_refits_for_free(
    server, make_labeler, tmp_path, caplog
):
    caplog.set_level(logging.ERROR)  # open_clip: weights are random; restored after the test
    colours = list(COLOURS)[:4]
    images = [colour_image(colour, size=32, seed=seed) for seed in range(4) for colour in colours]
    truth = [f"{colour} test bird" for seed in range(4) for colour in colours]
    fake = FakeVLM(text_answer=lambda prompt: json.dumps({"groups": []}))
    labeler = make_labeler(server(fake), cache=tmp_path / "answers")

    clf = _classifier(labeler, tmp_path / "memory").fit(images)
    # One name per image, and one text request: which of the 4 names are synonyms
    # (4 images per name over 4 names: the label filter's predicted rule applies).
    assert clf.synonyms_asked_ and clf.synonym_merges_ == {}
    assert fake.answered == len(images) + 1
    assert list(clf.labeler_names_["normalized"]) == truth
    assert list(clf.vocabulary_) == sorted(set(truth))
    assert set(clf.predict(images)) <= set(clf.classes_)
    assert clf.llm_usage_["calls"] == clf.n_labeler_calls_ == len(images) + 1
    # Each answer is stored once: in the labeler's cache, not again in memory.
    assert len(list((tmp_path / "answers").rglob("*.json"))) == len(images) + 1
    assert [path.name for path in (tmp_path / "memory").iterdir()] == [
        path.name for path in (tmp_path / "memory").glob("features-*")
    ]

    again = _classifier(labeler, tmp_path / "memory").fit(images[::2])
    # Every name came from the cache; the synonym question is about other names (2 of
    # the 4), so it is asked.
    assert fake.answered == len(images) + 2
    assert again.llm_usage_["cache_hits"] == len(images[::2])
    assert again.n_labeler_calls_ == 1 and again.n_images_encoded_ == 0

    same = _classifier(labeler, tmp_path / "memory").fit(images)
    assert fake.answered == len(images) + 2  # the same names: nothing is sent
    assert same.n_labeler_calls_ == 0 and same.n_images_encoded_ == 0
