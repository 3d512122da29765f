"""Saying "unknown" and calibrated probabilities: the maths and the estimator."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.preprocessing import StandardScaler

from skvf import NeaRClassifier
from skvf._openset import (
    calibration_rows,
    expected_calibration_error,
    fit_temperature,
    known_images,
    known_scores,
    leave_one_out_image_similarity,
    leave_one_out_prototype_similarity,
    nearest_image_similarity,
    temperature_targets,
)
from skvf._prototypes import image_prototypes
from skvf.serialization import dump, load, trusted_types
from skvf_bench.demo import TINY_BACKBONE_PARAMS

CENTRES = 4.0 * np.eye(4)
NAMES = np.array(["north", "east", "south", "west"], dtype=object)


def _reference_ece(confidence, correct, n_bins=15):
    """ECE written the textbook way: bins (k/n, (k+1)/n], the first closed at 0."""
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        members = (confidence > low) & (confidence <= high)
        if low == 0:
            members |= confidence == 0
        if members.any():
            gap = abs(correct[members].mean() - confidence[members].mean())
            total += members.mean() * gap
    return total


def test_ece_equals_a_reference_implementation_on_fixed_inputs():
    rng = np.random.default_rng(0)
    confidence = np.concatenate([rng.random(500), [0.0, 1.0, 1 / 15, 2 / 15]])
    correct = rng.random(len(confidence)) < confidence**2
    assert expected_calibration_error(confidence, correct) == pytest.approx(
        _reference_ece(confidence, correct), abs=1e-12
    )
    assert expected_calibration_error(confidence, correct, n_bins=10) == pytest.approx(
        _reference_ece(confidence, correct, n_bins=10), abs=1e-12
    )


def test_a_perfectly_calibrated_model_has_no_error_and_a_sure_wrong_one_all():
    assert expected_calibration_error([0.5, 0.5], [True, False]) == 0.0
    assert expected_calibration_error([1.0, 1.0], [False, False]) == 1.0


def test_leave_one_out_similarity_equals_prototypes_rebuilt_without_the_image():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(12, 5))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    weights = rng.random((12, 3)) * (rng.random((12, 3)) > 0.3)
    fast = leave_one_out_prototype_similarity(features, weights)
    for i in range(12):
        others = weights.copy()
        others[i] = 0
        slow = features[i] @ image_prototypes(features, others).T
        np.testing.assert_allclose(fast[i], slow, atol=1e-5)


def _unit_rows(n, dim, seed):
    rows = np.random.default_rng(seed).normal(size=(n, dim))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_the_knn_score_is_the_mean_cosine_to_the_three_nearest_training_images():
    images, new = _unit_rows(30, 6, seed=0), _unit_rows(7, 6, seed=1)
    expected = np.sort(new @ images.T, axis=1)[:, -3:].mean(axis=1)
    np.testing.assert_allclose(nearest_image_similarity(new, images), expected, atol=1e-12)
    np.testing.assert_allclose(
        known_scores(np.zeros((7, 2)), np.zeros((7, 2)), np.zeros((7, 2)), "knn", expected),
        expected,
    )
    # Left out, each training image is scored by the three nearest *other* images.
    others = images @ images.T
    np.fill_diagonal(others, -np.inf)
    left_out = np.sort(others, axis=1)[:, -3:].mean(axis=1)
    np.testing.assert_allclose(leave_one_out_image_similarity(images), left_out, atol=1e-12)
    with pytest.raises(ValueError, match="needs the images' image_similarity"):
        known_scores(np.zeros((7, 2)), np.zeros((7, 2)), np.zeros((7, 2)), "knn")
    # The threshold's scores are those left-out scores, the images kept as they are.
    kept, at_fit = known_images(images, np.random.RandomState(0))
    np.testing.assert_array_equal(kept, images.astype(np.float32))
    np.testing.assert_allclose(at_fit, left_out, atol=1e-6)


def test_the_knn_score_keeps_a_random_subset_of_many_training_images(monkeypatch):
    import skvf._openset

    monkeypatch.setattr(skvf._openset, "MAX_KNOWN_IMAGES", 25)
    rows, _ = _rows([0, 1, 2], 20, seed=0)
    clf = _quadrant_classifier(unknown_label="unknown").fit(rows)
    kept = clf.known_image_features_
    assert kept.shape == (25, clf.class_text_features_.shape[1]) and kept.dtype == np.float32
    # Each kept row is one training image's feature, none twice.
    from skvf._features import to_embedding_space

    encoded = clf.image_encoder_.transform(rows)
    features = to_embedding_space(encoded, clf.feature_mean_, clf.projection_)
    matches = np.isclose(kept @ features.T, 1.0, atol=1e-5)
    assert (matches.sum(axis=1) == 1).all() and len(set(matches.argmax(axis=1))) == 25
    np.testing.assert_allclose(
        clf.score_samples(rows[:5]),
        nearest_image_similarity(features[:5], kept),
        atol=1e-5,
    )


def test_images_alone_under_their_name_do_not_calibrate():
    hard = np.eye(4)[[0, 0, 0, 1, 2, 2, 3]]  # names 1 and 3 are carried by one image
    assert calibration_rows(hard, minimum=3).tolist() == [1, 1, 1, 0, 1, 1, 0]
    assert calibration_rows(hard, minimum=6).all()  # too few left: every image
    soft = np.array([[0.8, 0.2], [0.3, 0.7], [0.1, 0.9]])
    # Image 0's name keeps 0.4 of the others' weight, under half an image: left out.
    assert calibration_rows(soft, minimum=1).tolist() == [False, True, True]


def test_temperature_fits_soft_targets_too():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(4000, 4))
    targets = softmax(z, axis=1)  # scores 3 * z need a temperature of 3
    assert fit_temperature(3 * z, targets) == pytest.approx(3.0, rel=1e-3)


def _pairs():
    """Three tight pairs of images far apart; names and assignments chosen per test."""
    angles = np.array([0.0, 0.05, 2.0, 2.05, 4.0, 4.05])
    return np.column_stack([np.cos(angles), np.sin(angles)])


def test_temperature_targets_take_the_name_at_the_text_share():
    names = np.array([0, 0, 1, 1, 2, 2])
    assignment = np.array([1, 2, 0, 2, 0, 1])  # every neighbour was moved elsewhere
    only_names = temperature_targets(_pairs(), names, assignment, 0.0, 3)
    np.testing.assert_array_equal(only_names, np.eye(3)[names])
    mixed = temperature_targets(_pairs(), names, assignment, 0.3, 3, n_neighbors=1)
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0)
    np.testing.assert_allclose(mixed[np.arange(6), names], 0.7)


def test_temperature_targets_read_the_neighbours_assignment_not_the_images_own():
    names = np.zeros(6, dtype=int)
    # Each image sits alone in its name; its partner in the pair was given another.
    assignment = np.array([0, 1, 1, 2, 2, 0])
    targets = temperature_targets(_pairs(), names, assignment, 1.0, 3, n_neighbors=1)
    partner = np.array([1, 0, 3, 2, 5, 4])
    np.testing.assert_array_equal(targets, np.eye(3)[assignment[partner]])
    # Two neighbours: the partner and the nearest image of the next pair, half each.
    two = temperature_targets(_pairs(), names, assignment, 1.0, 3)
    assert np.count_nonzero(two[0]) in (1, 2) and two[0, assignment[1]] >= 0.5


def test_one_training_image_is_its_own_target():
    targets = temperature_targets(np.array([[1.0, 0.0]]), np.array([1]), np.array([0]), 0.8, 2)
    np.testing.assert_array_equal(targets, [[0.0, 1.0]])


def test_neighbours_that_agree_ask_for_a_lower_temperature_than_names_that_do_not():
    # Logits that pick each image's assignment: where the neighbours' assignments back
    # it the fitted temperature is lower than against names the prototypes left.
    names = np.array([0, 0, 1, 1, 2, 2])
    assignment = np.array([1, 1, 2, 2, 0, 0])
    logits = 2.0 * np.eye(3)[assignment]  # softmax .79 on the assignment
    backed = fit_temperature(logits, temperature_targets(_pairs(), names, assignment, 0.9, 3, 1))
    left = fit_temperature(logits, temperature_targets(_pairs(), names, assignment, 0.1, 3, 1))
    assert backed < 1.0 < left


@pytest.mark.parametrize("score", ["msp", "max_logit", "energy", "mcm", "prototype"])
def test_every_score_is_higher_for_a_confident_match(score):
    logits = np.array([[9.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    similarity = logits / 30
    known = known_scores(logits, similarity, similarity, score)
    assert known[0] > known[1]


def test_an_unknown_score_is_refused():
    with pytest.raises(ValueError, match="score must be one of"):
        known_scores(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)), "entropy")


class QuadrantNamer(BaseEstimator, TransformerMixin):
    """Names a row by its largest coordinate."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return NAMES[np.argmax(np.asarray(X), axis=1)]


def _rows(classes, n_per_class, seed):
    rng = np.random.default_rng(seed)
    rows = np.repeat(CENTRES[classes], n_per_class, axis=0)
    return rows + rng.normal(size=rows.shape), np.repeat(NAMES[classes], n_per_class)


def _quadrant_classifier(**params):
    """NeaR on rows named by their quadrant (by default), briefly tuned; ``params`` on top."""
    defaults = dict(
        labeler=QuadrantNamer(),
        image_encoder=StandardScaler(),
        **TINY_BACKBONE_PARAMS,
        max_epochs=5,
        warmup_epochs=1,
        random_state=0,
        label_filter="passthrough",
    )
    return NeaRClassifier(**{**defaults, **params})


@pytest.fixture(scope="module")
def fitted():
    rows, _ = _rows([0, 1, 2], 20, seed=0)  # "west" is never seen
    clf = _quadrant_classifier(
        max_epochs=20, warmup_epochs=5, unknown_label="unknown", known_rate=0.9
    )
    return clf.fit(rows)


def test_a_held_out_class_is_mostly_unknown_and_known_ones_at_the_target_rate(fitted):
    unseen, _ = _rows([3], 200, seed=1)
    seen, truth = _rows([0, 1, 2], 200, seed=2)
    assert np.mean(fitted.predict(unseen) == "unknown") > 0.9
    named = fitted.predict(seen)
    accepted = named != "unknown"
    assert 0.82 < accepted.mean() < 0.97  # the 0.9 asked for, give or take sampling
    assert np.mean(named[accepted] == truth[accepted]) > 0.95
    assert fitted.score_samples(seen).mean() > fitted.score_samples(unseen).mean()


@pytest.mark.parametrize(
    ("parameter", "value"), [("known_score", "prototype"), ("known_rate", 0.5)]
)
def test_a_threshold_parameter_changed_after_fit_is_refused(fitted, parameter, value):
    rows, _ = _rows([0, 3], 5, seed=4)
    changed = copy.deepcopy(fitted).set_params(**{parameter: value})
    fitted_value = fitted.get_params()[parameter]
    with pytest.raises(ValueError, match=f"fitted for {parameter}={fitted_value!r}, not"):
        changed.predict(rows)
    # Without an unknown answer the threshold is not used, and the scores stay available.
    changed.set_params(unknown_label=None).predict(rows)
    restored = changed.set_params(unknown_label="unknown", **{parameter: fitted_value})
    assert np.array_equal(restored.predict(rows), fitted.predict(rows))


def test_without_unknown_label_predict_is_unchanged_bit_for_bit(fitted):
    rows, _ = _rows([0, 1, 2, 3], 30, seed=3)
    plain = copy.deepcopy(fitted).set_params(unknown_label=None)
    names, plain_names = fitted.predict(rows), plain.predict(rows)
    kept = names != "unknown"
    assert np.array_equal(names[kept], plain_names[kept])
    assert set(plain_names) <= set(fitted.classes_)
    best = fitted.classes_[np.argmax(fitted.decision_function(rows), axis=1)]
    assert np.array_equal(plain_names, best)


def test_an_unknown_label_that_is_a_class_name_is_refused(fitted):
    rows, _ = _rows([0, 3], 5, seed=4)
    ambiguous = copy.deepcopy(fitted).set_params(unknown_label="north")
    with pytest.raises(ValueError, match=r"unknown_label='north' is also one of the model"):
        ambiguous.predict(rows)
    # The probabilities and scores do not answer the label: they stay available.
    np.testing.assert_array_equal(ambiguous.predict_proba(rows), fitted.predict_proba(rows))
    renamed = ambiguous.set_params(unknown_label="north (unseen)").predict(rows)
    assert np.array_equal(renamed == "north (unseen)", fitted.predict(rows) == "unknown")


class RowNamer(BaseEstimator, TransformerMixin):
    """Names each row by a lookup of its first coordinate."""

    def __init__(self, names=None):
        self.names = names

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray([self.names[round(row[0] * 1e6)] for row in np.asarray(X)], object)


def test_with_one_image_per_name_unseen_kinds_are_still_unknown():
    # 40 kinds seen once each, 5 seen three times: scored without itself, an image alone
    # under its name looks like an unknown, so only the 15 others set the prototype
    # score's threshold.
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(60, 24))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(kinds):
        rows = 4 * centres[kinds] + 0.3 * rng.normal(size=(len(kinds), 24))
        rows[:, 0] = rng.random(len(kinds))  # a key for the labeler, not a feature
        return rows

    kinds = np.r_[np.arange(40), np.repeat(np.arange(40, 45), 3)]
    rows = draw(kinds)
    names = {round(key * 1e6): f"kind {kind}" for key, kind in zip(rows[:, 0], kinds, strict=True)}
    clf = NeaRClassifier(
        labeler=RowNamer(names),
        image_encoder=StandardScaler(),
        **TINY_BACKBONE_PARAMS,
        max_epochs=5,
        warmup_epochs=1,
        random_state=0,
        label_filter="passthrough",
        prototype_weight=0.5,
        unknown_label="unknown",
        known_score="prototype",
    ).fit(rows)
    seen = clf.predict(draw(np.repeat(np.arange(45), 4)))
    unseen = clf.predict(draw(np.repeat(np.arange(45, 60), 8)))
    assert np.mean(unseen == "unknown") > 0.8  # 0.075 when every image calibrated
    assert np.mean(seen == "unknown") < 0.15


def test_a_higher_known_rate_lowers_the_threshold():
    rows, _ = _rows([0, 1, 2], 20, seed=0)
    strict = _quadrant_classifier(known_rate=0.5).fit(rows).unknown_threshold_
    lenient = _quadrant_classifier(known_rate=0.99).fit(rows).unknown_threshold_
    assert lenient < strict


def test_without_prototypes_the_temperature_is_one(fitted):
    # An image_encoder sets the prototype weight to 0: the scores are the prompts alone,
    # tuned on the training images, which cannot judge them.
    assert fitted.prototype_weight_ == 0.0
    assert fitted.probability_temperature_ == 1.0


def test_calibrated_probabilities_are_the_tempered_softmax(fitted):
    rows, _ = _rows([0, 1, 2], 10, seed=4)
    fitted = clone(fitted).set_params(prototype_weight=0.5).fit(_rows([0, 1, 2], 20, seed=0)[0])
    calibrated = copy.deepcopy(fitted)  # the default
    assert calibrated.calibrate_probabilities
    expected = softmax(fitted.decision_function(rows) / fitted.probability_temperature_, axis=1)
    np.testing.assert_allclose(calibrated.predict_proba(rows), expected, rtol=1e-6)
    raw = copy.deepcopy(fitted).set_params(calibrate_probabilities=False)
    assert fitted.probability_temperature_ != pytest.approx(1.0)
    np.testing.assert_allclose(
        raw.predict_proba(rows), softmax(fitted.decision_function(rows), axis=1), rtol=1e-6
    )


def test_the_abstaining_model_survives_a_skops_round_trip(fitted, tmp_path):
    dump(fitted, tmp_path / "m.skops")
    loaded = load(tmp_path / "m.skops", trusted=trusted_types() + [__name__ + ".QuadrantNamer"])
    rows, _ = _rows([0, 3], 20, seed=5)
    assert np.array_equal(loaded.predict(rows), fitted.predict(rows))
    assert loaded.unknown_threshold_ == fitted.unknown_threshold_


class HalfNamer(BaseEstimator, TransformerMixin):
    """One generic name for kinds 0 and 1 ("thing"), "other" for kind 2: by coordinate."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.where(np.argmax(np.asarray(X)[:, :3], axis=1) == 2, "other", "thing")


@pytest.mark.parametrize(("score", "caught"), [("knn", 0.6), ("prototype", None)])
def test_a_kind_between_two_under_one_generic_name_is_unknown_to_the_knn_score(score, caught):
    # The generic name's prototype is the mean of kinds 0 and 1, where the unseen kind
    # lies: the prototype score takes it for known, the nearest training images do not.
    rng = np.random.default_rng(7)
    centres = 4.0 * np.eye(3, 8)
    between = 4.0 * (np.eye(8)[0] + np.eye(8)[1]) / np.sqrt(2)
    rows = np.repeat(centres, 20, axis=0) + 0.3 * rng.normal(size=(60, 8))
    clf = _quadrant_classifier(
        labeler=HalfNamer(), prototype_weight=0.5, unknown_label="unknown", known_score=score
    ).fit(rows)
    unseen = clf.predict(between + 0.3 * rng.normal(size=(100, 8)))
    seen = clf.predict(np.repeat(centres, 30, axis=0) + 0.3 * rng.normal(size=(90, 8)))
    assert np.mean(seen == "unknown") < 0.2
    if caught is None:
        assert np.mean(unseen == "unknown") < 0.2
    else:
        assert np.mean(unseen == "unknown") > caught
