"""Tests of skvf._refinement: one-hot, sharpening, candidate and refined targets."""

from __future__ import annotations

import numpy as np
import pytest

from skvf._refinement import (
    candidate_targets,
    one_hot,
    posterior_targets,
    refined_targets,
    sharpen,
)


def _random_probabilities(rng, n_samples, n_classes):
    logits = rng.normal(size=(n_samples, n_classes)) * 2
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_one_hot():
    np.testing.assert_array_equal(
        one_hot(np.array([2, 0, 2]), 4), [[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 1, 0]]
    )
    assert one_hot(np.array([], dtype=int), 3).shape == (0, 3)


# ----------------------------------------------------------------------------- sharpen


def test_sharpen_temperature_one_is_the_identity_on_distributions():
    p = _random_probabilities(np.random.default_rng(0), 5, 4)
    np.testing.assert_allclose(sharpen(p, 1.0), p, rtol=1e-12)


def test_sharpen_by_hand():
    # T = 0.5 squares then renormalises: (0.36, 0.16) / 0.52
    np.testing.assert_allclose(sharpen(np.array([[0.6, 0.4]]), 0.5), [[0.36 / 0.52, 0.16 / 0.52]])
    # T = 2 takes square roots
    expected = np.sqrt([0.64, 0.36]) / np.sqrt([0.64, 0.36]).sum()
    np.testing.assert_allclose(sharpen(np.array([[0.64, 0.36]]), 2.0), [expected])


def test_sharpen_below_one_is_more_peaked():
    p = _random_probabilities(np.random.default_rng(1), 20, 5)
    sharper = sharpen(p, 0.5)
    assert np.all(sharper.max(axis=1) >= p.max(axis=1) - 1e-12)
    np.testing.assert_array_equal(sharper.argmax(axis=1), p.argmax(axis=1))
    np.testing.assert_allclose(sharper.sum(axis=1), 1.0)

    # entropy drops
    def entropy(q):
        return -(q * np.log(np.maximum(q, 1e-300))).sum(axis=1)

    assert np.all(entropy(sharper) <= entropy(p) + 1e-12)


def test_sharpen_keeps_zeros_zero():
    p = np.array([[0.5, 0.0, 0.3, 0.2], [0.0, 0.0, 1.0, 0.0]])
    for temperature in (0.1, 0.5, 1.0, 3.0):
        sharpened = sharpen(p, temperature)
        np.testing.assert_array_equal(sharpened == 0, p == 0)


def test_sharpen_keeps_an_all_zero_row_zero():
    sharpened = sharpen(np.array([[0.0, 0.0], [0.2, 0.8]]), 0.5)
    np.testing.assert_array_equal(sharpened[0], [0.0, 0.0])
    assert np.all(np.isfinite(sharpened))


@pytest.mark.parametrize("temperature", [0.5, 0.1, 0.01])
def test_sharpen_tiny_probabilities_do_not_underflow_to_an_all_zero_row(temperature):
    # 1e-200 ** 2 underflows to 0 in float64: the naive p ** (1 / T) gives a zero row.
    p = np.array([[1e-200, 1e-250, 0.0], [3e-300, 1e-300, 0.0]])
    sharpened = sharpen(p, temperature)
    np.testing.assert_allclose(sharpened.sum(axis=1), 1.0)
    assert sharpened[0, 0] == pytest.approx(1.0)
    assert sharpened[1, 0] > sharpened[1, 1]
    assert np.all(sharpened[:, 2] == 0)


# ----------------------------------------------------------------------------- candidates


def test_candidate_targets_votes_by_hand():
    p = np.array([[0.5, 0.3, 0.2]])
    votes = np.array([[0.0, 2.0, 1.0]])
    # (0, 0.6, 0.2) / 0.8
    np.testing.assert_allclose(candidate_targets(p, votes, "votes", 1.0), [[0.0, 0.75, 0.25]])
    # squared: (0, 0.5625, 0.0625) / 0.625
    np.testing.assert_allclose(candidate_targets(p, votes, "votes", 0.5), [[0.0, 0.9, 0.1]])


def test_candidate_targets_mask_by_hand():
    p = np.array([[0.5, 0.3, 0.2]])
    votes = np.array([[0.0, 2.0, 1.0]])
    np.testing.assert_allclose(candidate_targets(p, votes, "mask", 1.0), [[0.0, 0.6, 0.4]])


def test_candidate_targets_mask_ignores_vote_counts():
    p = np.array([[0.2, 0.3, 0.5]])
    few = candidate_targets(p, np.array([[1.0, 0.0, 1.0]]), "mask", 0.5)
    many = candidate_targets(p, np.array([[9.0, 0.0, 1.0]]), "mask", 0.5)
    np.testing.assert_allclose(few, many)
    assert not np.allclose(
        candidate_targets(p, np.array([[1.0, 0.0, 1.0]]), "votes", 0.5),
        candidate_targets(p, np.array([[9.0, 0.0, 1.0]]), "votes", 0.5),
    )


@pytest.mark.parametrize("weighting", ["votes", "mask"])
@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_candidate_targets_are_zero_outside_the_set_and_rows_sum_to_one(weighting, temperature):
    rng = np.random.default_rng(2)
    p = _random_probabilities(rng, 30, 6)
    votes = rng.integers(0, 3, (30, 6)).astype(float)
    votes[np.arange(30), rng.integers(0, 6, 30)] += 1  # own name: every set non-empty
    targets = candidate_targets(p, votes, weighting, temperature)
    assert np.all(targets[votes == 0] == 0)
    assert np.all(targets[votes > 0] > 0)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0)


def test_candidate_targets_fall_back_to_votes_when_the_prediction_vanishes_on_the_set():
    p = np.array([[1.0, 0.0, 0.0], [0.2, 0.8, 0.0]])
    votes = np.array([[0.0, 2.0, 1.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(
        candidate_targets(p, votes, "votes", 1.0), [[0.0, 2 / 3, 1 / 3], [0.0, 1.0, 0.0]]
    )
    np.testing.assert_allclose(
        candidate_targets(p, votes, "votes", 0.5), [[0.0, 0.8, 0.2], [0.0, 1.0, 0.0]]
    )
    np.testing.assert_allclose(candidate_targets(p, votes, "mask", 1.0)[0], [0.0, 0.5, 0.5])


def test_candidate_targets_do_not_modify_their_inputs():
    p = np.array([[1.0, 0.0, 0.0]])
    votes = np.array([[0.0, 2.0, 1.0]])
    candidate_targets(p, votes, "votes", 0.5)
    np.testing.assert_array_equal(p, [[1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(votes, [[0.0, 2.0, 1.0]])


# ----------------------------------------------------------------------------- posterior


def test_posterior_targets_by_hand():
    labels = np.array([0])
    p = np.array([[0.2, 0.5, 0.3]])
    votes = np.array([[1.0, 1.0, 0.0]])
    # prior = votes + 2 * 0.5 * onehot(0) = (2, 1, 0); p * prior = (0.4, 0.5, 0) / 0.9
    targets = posterior_targets(labels, p, np.array([0.5]), votes, clean_vote_weight=2.0)
    np.testing.assert_allclose(targets, [[4 / 9, 5 / 9, 0.0]])
    # mask weighting ignores the vote counts, not the clean bonus
    targets = posterior_targets(
        labels, p, np.array([0.5]), np.array([[3.0, 1.0, 0.0]]), weighting="mask"
    )
    np.testing.assert_allclose(targets, [[4 / 9, 5 / 9, 0.0]])
    # T = 0.5 squares: (0.16, 0.25) / 0.41
    targets = posterior_targets(labels, p, np.array([0.5]), votes, temperature=0.5)
    np.testing.assert_allclose(targets, [[0.16 / 0.41, 0.25 / 0.41, 0.0]])


def test_posterior_targets_with_zero_clean_probability_are_candidate_targets():
    rng = np.random.default_rng(5)
    p = _random_probabilities(rng, 10, 4)
    labels = rng.integers(0, 4, 10)
    votes = rng.integers(0, 3, (10, 4)).astype(float)
    votes[np.arange(10), labels] += 1
    for weighting in ("votes", "mask"):
        np.testing.assert_allclose(
            posterior_targets(labels, p, np.zeros(10), votes, weighting=weighting, temperature=0.5),
            candidate_targets(p, votes, weighting, 0.5),
        )


def test_posterior_targets_clean_name_gains_mass_monotonically():
    labels = np.array([1])
    p = np.array([[0.5, 0.2, 0.3]])
    votes = np.array([[2.0, 1.0, 1.0]])
    own = [posterior_targets(labels, p, np.array([w]), votes)[0, 1] for w in (0.0, 0.25, 0.5, 1.0)]
    assert own == sorted(own) and own[0] < own[-1]


def test_posterior_targets_fall_back_to_the_prior_when_the_prediction_vanishes():
    labels = np.array([0])
    p = np.array([[0.0, 0.0, 1.0]])
    votes = np.array([[1.0, 1.0, 0.0]])
    # prior (3, 1, 0) with w = 1 and weight 2
    np.testing.assert_allclose(posterior_targets(labels, p, np.ones(1), votes), [[0.75, 0.25, 0.0]])


@pytest.mark.parametrize("weighting", ["votes", "mask"])
def test_posterior_targets_zero_outside_the_set_rows_sum_to_one(weighting):
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 5, 30)
    p = _random_probabilities(rng, 30, 5)
    w = rng.uniform(0, 1, 30)
    votes = rng.integers(0, 3, (30, 5)).astype(float)
    votes[np.arange(30), labels] += 1
    targets = posterior_targets(labels, p, w, votes, weighting=weighting, temperature=0.5)
    assert np.all(targets[votes == 0] == 0)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0)


def test_refined_targets_default_rule_is_posterior():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 4, 12)
    p = _random_probabilities(rng, 12, 4)
    w = rng.uniform(0, 1, 12)
    votes = np.ones((12, 4))
    np.testing.assert_array_equal(
        refined_targets(labels, p, w, votes),
        posterior_targets(labels, p, w, votes, clean_vote_weight=2.0, temperature=1.0),
    )
    np.testing.assert_array_equal(
        refined_targets(labels, p, w, votes, rule="posterior", clean_vote_weight=0.5),
        posterior_targets(labels, p, w, votes, clean_vote_weight=0.5),
    )


# ----------------------------------------------------------------------------- dividemix


def test_refined_targets_by_hand():
    labels = np.array([0, 2])
    p = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    w = np.array([0.9, 0.1])
    votes = np.array([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    targets = refined_targets(labels, p, w, votes, rule="dividemix", threshold=0.5, temperature=1.0)
    # clean row: 0.9 * (1, 0, 0) + 0.1 * p
    np.testing.assert_allclose(targets[0], [0.92, 0.05, 0.03])
    # noisy row: p * votes = (0, 0.6, 0.1) / 0.7
    np.testing.assert_allclose(targets[1], [0.0, 6 / 7, 1 / 7])


def test_refined_targets_clean_and_noisy_rows_in_general():
    rng = np.random.default_rng(3)
    n_samples, n_classes = 40, 5
    labels = rng.integers(0, n_classes, n_samples)
    p = _random_probabilities(rng, n_samples, n_classes)
    w = rng.uniform(0, 1, n_samples)
    votes = rng.integers(0, 3, (n_samples, n_classes)).astype(float)
    votes[np.arange(n_samples), labels] += 1
    targets = refined_targets(
        labels, p, w, votes, rule="dividemix", threshold=0.6, weighting="mask", temperature=0.5
    )
    clean = w > 0.6
    assert 0 < clean.sum() < n_samples
    expected_clean = w[:, None] * one_hot(labels, n_classes) + (1 - w[:, None]) * p
    np.testing.assert_array_equal(targets[clean], expected_clean[clean])
    expected_noisy = candidate_targets(p, votes, "mask", 0.5)
    np.testing.assert_array_equal(targets[~clean], expected_noisy[~clean])
    np.testing.assert_allclose(targets.sum(axis=1), 1.0)
    assert np.all(targets >= 0)


def test_refined_targets_threshold_is_strict():
    labels = np.array([0])
    p = np.array([[0.1, 0.9]])
    votes = np.array([[1.0, 1.0]])
    at_threshold = refined_targets(
        labels, p, np.array([0.5]), votes, rule="dividemix", threshold=0.5, temperature=1.0
    )
    np.testing.assert_allclose(at_threshold, [[0.1, 0.9]])  # treated as noisy: p on the set


def test_refined_targets_all_clean_with_w_one_is_one_hot():
    labels = np.array([1, 0, 2])
    p = _random_probabilities(np.random.default_rng(4), 3, 3)
    targets = refined_targets(labels, p, np.ones(3), np.ones((3, 3)), rule="dividemix")
    np.testing.assert_array_equal(targets, one_hot(labels, 3))
