"""An edited or mis-set fitted model raises at predict; it never names images ``None``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import StandardScaler

from skvf import NeaRClassifier
from skvf._sklearn_compat import InvalidParameterError
from skvf.serialization import dump, load, trusted_types
from skvf_bench.demo import TINY_BACKBONE_PARAMS


class BrightnessNamer(BaseEstimator, TransformerMixin):
    """Names an image "bright" or "dark" by its mean pixel value."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        means = np.array([np.asarray(image, dtype=np.float64).mean() for image in X])
        return np.where(means > 127, "bright", "dark").astype(object)


def _images(n=12, seed=0):
    rng = np.random.default_rng(seed)
    levels = np.where(np.arange(n) % 2 == 0, 40, 210)
    noise = rng.integers(-30, 30, size=(n, 32, 32, 3))
    return np.clip(levels[:, None, None, None] + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def fitted():
    clf = NeaRClassifier(
        labeler=BrightnessNamer(),
        **TINY_BACKBONE_PARAMS,
        max_epochs=2,
        warmup_epochs=1,
        random_state=0,
    )
    return clf.fit(_images())


def _copy(clf, tmp_path):
    dump(clf, tmp_path / "m.skops")
    return load(tmp_path / "m.skops", trusted=trusted_types() + [__name__ + ".BrightnessNamer"])


@pytest.mark.parametrize(
    ("parameter", "value"),
    [("batch_size", -1), ("batch_size", 0), ("on_error", "ignore"), ("max_image_pixels", 0)],
)
def test_a_parameter_set_after_fit_is_checked_at_predict(fitted, tmp_path, parameter, value):
    clf = _copy(fitted, tmp_path)
    assert list(clf.predict(_images(4, seed=1))) == list(fitted.predict(_images(4, seed=1)))
    clf.set_params(**{parameter: value})
    for method in (clf.predict, clf.predict_proba, clf.decision_function):
        with pytest.raises(
            InvalidParameterError, match=f"'{parameter}' parameter of NeaRClassifier"
        ):
            method(_images(4, seed=1))


def test_a_file_holding_a_bad_batch_size_is_refused_at_predict(fitted, tmp_path):
    edited = _copy(fitted, tmp_path)
    edited.batch_size = -1  # what an edited file holds; nothing validates on load
    loaded = _copy(edited, tmp_path)
    with pytest.raises(InvalidParameterError, match="'batch_size' parameter"):
        loaded.predict(_images(4, seed=1))


@pytest.mark.parametrize(
    ("attribute", "edit", "message"),
    [
        ("logit_scale_", lambda value: float("nan"), "is nan, not a finite positive"),
        ("logit_scale_", lambda value: -value, "is -.*not a finite positive"),
        ("logit_scale_", lambda value: "100", "is '100'"),
        ("class_text_features_", lambda v: np.where(np.eye(*v.shape) > 0, np.nan, v), "holds NaN"),
        ("class_text_features_", lambda value: value[:1], "has 1 rows for 2 classes_"),
        ("score_offsets_", lambda value: np.full(5, 0.1), r"has shape \(5,\), expected shape"),
        ("feature_mean_", lambda value: np.full_like(value, np.inf), "holds NaN or infinite"),
        ("classes_", lambda value: value[:0], r"has shape \(0,\), expected one name"),
        ("known_image_features_", lambda value: value * np.nan, "holds NaN or infinite"),
        ("known_image_features_", lambda value: value[:, :3], r"has shape \(12, 3\), expected"),
        ("known_image_features_", lambda value: None, r"has shape \(\), expected 2"),
    ],
)
def test_an_edited_fitted_value_is_refused_at_predict(fitted, tmp_path, attribute, edit, message):
    if getattr(fitted, attribute, None) is None:
        pytest.skip(f"{attribute} is not set by this fit")
    edited = _copy(fitted, tmp_path)
    setattr(edited, attribute, edit(getattr(edited, attribute)))
    loaded = _copy(edited, tmp_path)
    with pytest.raises(ValueError, match=f"NeaRClassifier.{attribute} {message}.*Fit it again"):
        loaded.predict(_images(4, seed=1))


class SignNamer(BaseEstimator, TransformerMixin):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.where(np.asarray(X)[:, 0] > 0, "plus", "minus").astype(object)


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_scores_that_overflow_raise_instead_of_naming_nothing(on_error):
    rows = np.random.default_rng(0).normal(size=(12, 6))
    clf = NeaRClassifier(
        labeler=SignNamer(),
        image_encoder=StandardScaler(),
        **TINY_BACKBONE_PARAMS,
        max_epochs=2,
        warmup_epochs=1,
        on_error=on_error,
    ).fit(rows)
    clf.logit_scale_ = 1e308  # finite, but every score overflows
    with pytest.raises(
        ValueError, match=r"NaN or infinite scores for 3 readable image\(s\) \(X\[0, 1, 2\]\)"
    ):
        clf.predict(rows[:3])


@pytest.mark.parametrize(
    ("attribute", "value", "params", "message"),
    [
        (
            "probability_temperature_",
            float("nan"),
            {"calibrate_probabilities": True},
            "is nan, not a finite positive",
        ),
        (
            "probability_temperature_",
            0.0,
            {"calibrate_probabilities": True},
            "is 0.0, not a finite positive",
        ),
        ("unknown_threshold_", float("inf"), {"unknown_label": "?"}, "is inf, not a finite"),
        (
            "prototype_weight_",
            7.0,
            {"prototype_weight": "auto"},
            r"is 7.0, not a number in \[0, 1\]",
        ),
        ("prototype_weight_", None, {"prototype_weight": "auto"}, "is None, not a number in"),
    ],
)
def test_an_edited_threshold_or_temperature_is_refused(fitted, attribute, value, params, message):
    edited = copy.deepcopy(fitted).set_params(**params)
    setattr(edited, attribute, value)
    with pytest.raises(ValueError, match=f"NeaRClassifier.{attribute} {message}"):
        edited.predict_proba(_images(2, seed=1))
