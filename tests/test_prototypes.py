"""Image prototypes mixed into the text scores: NeaRClassifier and the training-free baseline."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import StandardScaler

from skvf import NeaRClassifier
from skvf._features import to_embedding_space
from skvf._prototypes import (
    agreement_weight,
    image_prototypes,
    mixed_similarity,
    refine_prototypes,
    text_prototype_agreement,
)
from skvf._sklearn_compat import InvalidParameterError
from skvf.serialization import dump, load, trusted_types
from skvf_bench.baselines import ZeroShotCLIP
from skvf_bench.demo import TINY_BACKBONE_PARAMS

CENTRES = np.array([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0], [0, 0, 0, 4.0]])
NAMES = np.array(["north", "east", "south", "west"], dtype=object)


class QuadrantNamer(BaseEstimator, TransformerMixin):
    """Names a row by its largest coordinate, wrongly for every fifth row."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        index = np.argmax(np.asarray(X), axis=1)
        index[::5] = (index[::5] + 1) % len(NAMES)
        return NAMES[index]


def _rows(n_per_class, seed):
    rng = np.random.default_rng(seed)
    rows = np.repeat(CENTRES, n_per_class, axis=0) + rng.normal(size=(4 * n_per_class, 4))
    return rows, np.repeat(NAMES, n_per_class)


@pytest.fixture(scope="module")
def fitted():
    rows, _ = _rows(10, seed=0)
    clf = NeaRClassifier(
        labeler=QuadrantNamer(),
        image_encoder=StandardScaler(),
        **TINY_BACKBONE_PARAMS,
        max_epochs=20,
        warmup_epochs=5,
        random_state=0,
        prototype_weight=0.0,
        label_filter="passthrough",
    )
    return clf.fit(rows)


def _embedded(clf, rows):
    features = clf.image_encoder_.transform(rows)
    return to_embedding_space(features, clf.feature_mean_, clf.projection_)


def test_weight_zero_is_the_text_only_model_bit_for_bit(fitted):
    rows, _ = _rows(5, seed=1)
    text_only = fitted.logit_scale_ * _embedded(fitted, rows) @ fitted.class_text_features_.T
    assert np.array_equal(fitted.decision_function(rows), text_only + fitted.score_offsets_)


@pytest.mark.parametrize("iterations", [0, 1, 3])
def test_prototypes_start_from_the_targets_then_follow_the_mixed_classifier(iterations):
    rows, _ = _rows(10, seed=0)
    clf = NeaRClassifier(
        labeler=QuadrantNamer(),
        image_encoder=StandardScaler(),
        **TINY_BACKBONE_PARAMS,
        max_epochs=20,
        warmup_epochs=5,
        random_state=0,
        label_filter="passthrough",
        prototype_weight=0.5,
        prototype_iterations=iterations,
    ).fit(rows)
    embedded = _embedded(clf, rows)
    prototypes = image_prototypes(embedded, clf.refined_targets_)
    for _ in range(iterations):  # each round: every image to its best name, as predict does
        best = np.argmax(
            clf.logit_scale_ * mixed_similarity(embedded, clf.class_text_features_, prototypes, 0.5)
            + clf.score_offsets_,
            axis=1,
        )
        prototypes = image_prototypes(embedded, np.eye(len(clf.classes_))[best])
    np.testing.assert_allclose(clf.class_image_prototypes_, prototypes, atol=1e-5)
    refined, _ = refine_prototypes(
        embedded,
        clf.class_text_features_,
        image_prototypes(embedded, clf.refined_targets_),
        0.5,
        clf.logit_scale_,
        clf.score_offsets_,
        iterations,
        clf.refined_targets_,
    )
    np.testing.assert_allclose(clf.class_image_prototypes_, refined, atol=1e-6)


@pytest.mark.parametrize("weight", [0.3, 1.0])
def test_the_weight_mixes_text_and_prototype_similarity(fitted, weight):
    rows, _ = _rows(5, seed=1)
    embedded = _embedded(fitted, rows)
    expected = (1 - weight) * embedded @ fitted.class_text_features_.T + weight * (
        embedded @ fitted.class_image_prototypes_.T
    )
    clf = copy.deepcopy(fitted)
    clf.set_params(prototype_weight=weight)  # a predict-time parameter: no refit
    np.testing.assert_allclose(
        clf.decision_function(rows),
        fitted.logit_scale_ * expected + fitted.score_offsets_,
        rtol=1e-5,
        atol=1e-4,
    )


@pytest.mark.parametrize("weight", [-0.1, 1.5, np.nan])
def test_a_weight_outside_zero_one_is_refused_at_predict(fitted, weight):
    clf = copy.deepcopy(fitted)
    clf.set_params(prototype_weight=weight)
    with pytest.raises(InvalidParameterError, match="'prototype_weight' parameter"):
        clf.predict(_rows(2, seed=1)[0])


def test_prototypes_survive_a_skops_round_trip(fitted, tmp_path):
    clf = copy.deepcopy(fitted)
    clf.set_params(prototype_weight=0.5)
    dump(clf, tmp_path / "m.skops")
    loaded = load(tmp_path / "m.skops", trusted=trusted_types() + [__name__ + ".QuadrantNamer"])
    rows, _ = _rows(5, seed=1)
    assert np.array_equal(loaded.decision_function(rows), clf.decision_function(rows))


def test_training_free_baseline_mixes_its_names_prototypes():
    rows, truth = _rows(10, seed=0)
    baseline = ZeroShotCLIP(
        QuadrantNamer(),
        image_encoder=StandardScaler(),
        prototype_weight=0.3,
        random_state=0,
        **TINY_BACKBONE_PARAMS,
    ).fit(rows)
    named = QuadrantNamer().transform(rows)
    embedded = to_embedding_space(
        baseline.image_encoder_.transform(rows), None, baseline.projection_
    )
    for name, prototype in zip(baseline.classes_, baseline.class_image_prototypes_, strict=True):
        mean = embedded[named == name].mean(axis=0)
        np.testing.assert_allclose(prototype, mean / np.linalg.norm(mean), atol=1e-6)
    test, _ = _rows(5, seed=1)
    embedded_test = to_embedding_space(
        baseline.image_encoder_.transform(test), None, baseline.projection_
    )
    expected = mixed_similarity(
        embedded_test, baseline.class_text_features_, baseline.class_image_prototypes_, 0.3
    )
    np.testing.assert_allclose(
        baseline.decision_function(test), baseline.logit_scale_ * expected, rtol=1e-5, atol=1e-4
    )
    plain = ZeroShotCLIP(
        QuadrantNamer(), image_encoder=StandardScaler(), random_state=0, **TINY_BACKBONE_PARAMS
    ).fit(rows)
    assert plain.class_image_prototypes_ is None


def test_a_model_saved_before_prototypes_existed_predicts_text_only(fitted):
    rows, _ = _rows(5, seed=1)
    old = copy.deepcopy(fitted)
    old.set_params(prototype_weight=0.5)
    del old.prototype_weight, old.class_image_prototypes_  # what such a file holds
    assert np.array_equal(old.decision_function(rows), fitted.decision_function(rows))


def test_auto_weight_is_off_with_an_image_encoder(fitted):
    rows, _ = _rows(5, seed=1)
    auto = copy.deepcopy(fitted).set_params(prototype_weight="auto")
    assert np.array_equal(auto.decision_function(rows), fitted.decision_function(rows))


def test_auto_weight_is_read_from_the_agreement_with_the_backbones_own_tower():
    rng = np.random.default_rng(0)
    levels = np.where(np.arange(12) % 2 == 0, 40, 210)
    images = np.clip(levels[:, None, None, None] + rng.integers(-30, 30, (12, 32, 32, 3)), 0, 255)
    images = images.astype(np.uint8)

    class Brightness(BaseEstimator, TransformerMixin):
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            means = np.array([np.asarray(image, dtype=float).mean() for image in X])
            return np.where(means > 127, "bright", "dark").astype(object)

    clf = NeaRClassifier(
        labeler=Brightness(),
        **TINY_BACKBONE_PARAMS,
        max_epochs=2,
        warmup_epochs=1,
        random_state=0,
        label_filter="passthrough",
    ).fit(images)
    # 12 images under two names: enough to measure the agreement on.
    assert 0 <= clf.prototype_agreement_ <= 1
    assert clf.prototype_weight_ == agreement_weight(clf.prototype_agreement_, 12)
    chosen = clf.prototype_weight_
    auto = clf.decision_function(images[:4])
    fixed = copy.deepcopy(clf).set_params(prototype_weight=chosen).decision_function(images[:4])
    text = copy.deepcopy(clf).set_params(prototype_weight=0.0).decision_function(images[:4])
    assert np.array_equal(auto, fixed) and not np.allclose(auto, text)


def test_a_name_every_image_left_keeps_its_prototype():
    # Two names share a text feature; the second's only image joins the first. Its
    # prototype stays, so an image like it is still given the second name.
    features = np.array([[1.0, 0.0], [0.8, 0.6]])
    text = np.array([[1.0, 0.0], [1.0, 0.0]])
    start = np.array([[0.8, 0.6], [0.0, 1.0]])
    refined, weights = refine_prototypes(features, text, start, 0.5, 10.0, None, 3, None)
    assert weights[:, 1].sum() == 0
    np.testing.assert_allclose(refined[1], [0.0, 1.0])
    like_it = np.array([[0.0, 1.0]])
    assert np.argmax(mixed_similarity(like_it, text, refined, 0.5), axis=1).tolist() == [1]


def test_prompts_that_disagree_with_the_images_give_the_prototypes_more_weight():
    rng = np.random.default_rng(3)
    centres = np.eye(3, 8)
    features = np.repeat(centres, 6, axis=0) + 0.1 * rng.normal(size=(18, 8))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    targets = np.repeat(np.eye(3), 6, axis=0)
    agreeing, n = text_prototype_agreement(features, centres, targets, 20.0, None)
    crossed, _ = text_prototype_agreement(features, centres[[1, 2, 0]], targets, 20.0, None)
    assert (agreeing, crossed, n) == (1.0, 0.0, 18)
    assert agreement_weight(agreeing, n) == 0.2 and agreement_weight(crossed, n) == 0.9
    # Alone under its name, an image has nothing to agree on; too few images: 0.5.
    alone, none = text_prototype_agreement(features[::6], centres, np.eye(3), 20.0, None)
    assert np.isnan(alone) and none == 0 and agreement_weight(alone, none) == 0.5
