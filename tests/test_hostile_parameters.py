"""Bad parameters and misbehaving components get a clear skvf error, not a raw one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import StandardScaler

from skvf import NeaRClassifier
from skvf_bench.demo import TINY_BACKBONE_PARAMS

ROWS = np.random.default_rng(0).normal(size=(12, 6))


class SignNamer(BaseEstimator, TransformerMixin):
    """Names a numeric row by the sign of its first feature."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.where(np.asarray(X)[:, 0] > 0, "plus", "minus").astype(object)


def classifier(**params):
    settings = dict(
        labeler=SignNamer(), image_encoder=StandardScaler(), max_epochs=2, warmup_epochs=1
    )
    return NeaRClassifier(**{**TINY_BACKBONE_PARAMS, **settings, **params})


@pytest.mark.parametrize("device", ["tpu", "", "meta", "cuda:x", "CPU"])
def test_unknown_device_is_named(device):
    with pytest.raises(ValueError, match=f"device={device!r} is not a device skvf can use"):
        classifier(device=device).fit(ROWS)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an Apple GPU")
def test_mps_without_an_apple_gpu_is_named():
    with pytest.raises(ValueError, match="device='mps' but torch sees no Apple GPU"):
        classifier(device="mps").fit(ROWS)


@pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has 8 GPUs")
def test_cuda_index_beyond_the_machine_is_named():
    with pytest.raises(ValueError, match="device='cuda:7'"):
        classifier(device="cuda:7").fit(ROWS)


class Widening(BaseEstimator, TransformerMixin):
    """An encoder whose output width changes after fitting (a stateful bug)."""

    def fit(self, X, y=None):
        self.width_ = 6
        return self

    def transform(self, X):
        rows = np.asarray(X, dtype=np.float64)
        return np.hstack([rows] * (self.width_ // rows.shape[1]))


def test_encoder_whose_width_changes_after_fit_is_named():
    clf = classifier(image_encoder=Widening()).fit(ROWS)
    clf.image_encoder_.width_ = 12
    with pytest.raises(
        ValueError, match="returned 12 features per image, but the model was fitted with 6"
    ):
        clf.predict(ROWS)


class ShortMaskLabeler(SignNamer):
    """A labeler whose label() returns one mask value too few."""

    def label(self, X):
        names = self.transform(X)
        return names, np.ones(len(names) - 1, dtype=bool)


def test_label_mask_of_the_wrong_length_is_named():
    with pytest.raises(ValueError, match=r"label\(\) returned a mask of 11 values for 12 images"):
        classifier(labeler=ShortMaskLabeler()).fit(ROWS)
