"""The prior correction: the tuned model's prior over its names and predict's offsets."""

import numpy as np
import pytest
from scipy.special import softmax as scipy_softmax
from sklearn.base import clone
from sklearn.preprocessing import FunctionTransformer

from skvf import NeaRClassifier
from skvf._prior import PRIOR_PSEUDO_COUNT, name_prior, prior_offsets
from skvf._sklearn_compat import InvalidParameterError
from skvf_bench.demo import TINY_BACKBONE_PARAMS as TINY
from skvf_bench.simulation import NoisyOracleLabeler, make_oracle


def test_name_prior_renormalises_rows_and_bounds_unpredicted_names():
    # Rows over a filtered vocabulary no longer sum to one; the third name is never drawn.
    probabilities = np.array([[0.6, 0.2, 0.0], [0.3, 0.3, 0.0]])
    prior = name_prior(probabilities)
    rows = probabilities / probabilities.sum(axis=1, keepdims=True)
    mass = rows.sum(axis=0) + PRIOR_PSEUDO_COUNT
    np.testing.assert_allclose(prior, mass / mass.sum())
    assert prior.sum() == pytest.approx(1.0)
    assert 0 < prior[2] < prior[1] < prior[0]


def softmax(scores):
    return scipy_softmax(scores, axis=1)


def test_offsets_divide_probabilities_by_the_prior():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(5, 4)) * 3
    prior = np.array([0.55, 0.25, 0.15, 0.05])
    corrected = softmax(scores + prior_offsets(prior, 1.0))
    expected = softmax(scores) / prior
    np.testing.assert_allclose(corrected, expected / expected.sum(axis=1, keepdims=True))
    half = softmax(scores + prior_offsets(prior, 0.5))
    expected = softmax(scores) / np.sqrt(prior)
    np.testing.assert_allclose(half, expected / expected.sum(axis=1, keepdims=True))
    np.testing.assert_array_equal(prior_offsets(prior, 0.0), 0.0)
    assert prior_offsets(prior, 1.0).mean() == pytest.approx(0.0)


@pytest.fixture
def unbalanced():
    """Three classes of 2-D rows, 20 / 6 / 6 images: the first name draws the most."""
    rng = np.random.default_rng(1)
    centres = np.array([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0]])
    labels = np.repeat(np.arange(3), [20, 6, 6])
    X = centres[labels] + rng.normal(scale=1.2, size=(len(labels), 2))
    names = np.array(["red", "green", "blue"], dtype=object)[labels]
    return X, names


def test_predict_adds_the_offsets_of_the_training_prior(unbalanced):
    X, names = unbalanced
    labeler = NoisyOracleLabeler(make_oracle(X, names), noise_rate=0.2, random_state=0)
    params = dict(
        image_encoder=FunctionTransformer(),
        label_filter="passthrough",
        max_epochs=20,
        random_state=0,
        calibrate_probabilities=False,  # the prior divides the untempered softmax
        **TINY,
    )
    plain = NeaRClassifier(labeler, prior_correction=0.0, **params).fit(X)
    corrected = clone(plain).set_params(prior_correction=1.0).fit(X)
    # The correction changes predict only: the same training, the same names.
    assert corrected.classes_.tolist() == plain.classes_.tolist()
    np.testing.assert_allclose(corrected.context_, plain.context_)
    np.testing.assert_array_equal(plain.score_offsets_, 0.0)
    # The prior is the plain model's mean probability on the training images (smoothed).
    mass = plain.predict_proba(X).sum(axis=0) + PRIOR_PSEUDO_COUNT
    np.testing.assert_allclose(corrected.name_prior_, mass / mass.sum(), rtol=1e-4)
    assert corrected.name_prior_.argmax() == corrected.classes_.tolist().index("red")
    np.testing.assert_allclose(
        corrected.decision_function(X),
        plain.decision_function(X) + prior_offsets(corrected.name_prior_, 1.0),
        rtol=1e-4,
        atol=1e-4,
    )
    divided = plain.predict_proba(X) / corrected.name_prior_
    np.testing.assert_allclose(
        corrected.predict_proba(X), divided / divided.sum(axis=1, keepdims=True), rtol=1e-4
    )
    # The most drawn name never gains an image.
    red_plain = plain.predict(X) == "red"
    red_corrected = corrected.predict(X) == "red"
    assert red_corrected.any() and not (red_corrected & ~red_plain).any()


def test_prior_correction_is_validated():
    with pytest.raises(InvalidParameterError, match="prior_correction"):
        NeaRClassifier(prior_correction=-1.0, image_encoder=FunctionTransformer(), **TINY).fit(
            np.zeros((4, 2))
        )
