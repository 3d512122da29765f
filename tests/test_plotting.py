"""Diagnostic plots of a fitted NeaRClassifier."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline

from skvf import NeaRClassifier
from skvf_bench.datasets import few_shot_split, load_digits_images
from skvf_bench.demo import TINY_BACKBONE_PARAMS
from skvf_bench.encoders import ImagePixels
from skvf_bench.simulation import NoisyOracleLabeler, make_oracle

matplotlib = pytest.importorskip("matplotlib")
plt = pytest.importorskip("matplotlib.pyplot")

from skvf.plotting import (  # noqa: E402 - after matplotlib is known to be installed
    plot_name_frequencies,
    plot_name_mapping,
    plot_training_history,
)


@pytest.fixture(scope="module", autouse=True)
def _agg_backend():
    """Draw with the non-interactive Agg backend in this module; the backend is restored."""
    backend = matplotlib.get_backend()
    plt.switch_backend("Agg")
    yield
    plt.close("all")
    plt.switch_backend(backend)


@pytest.fixture(scope="module")
def fitted():
    """NeaR on 6 digits per class named with 40% noise; returns (classifier, X)."""
    images, names = load_digits_images(scale=4, n_class=5)
    index, _ = few_shot_split(names, 6, random_state=0)
    X = images[index]
    labeler = NoisyOracleLabeler(make_oracle(X, names[index]), noise_rate=0.4, random_state=0)
    clf = NeaRClassifier(
        labeler=labeler,
        **TINY_BACKBONE_PARAMS,
        image_encoder=make_pipeline(ImagePixels(size=8), PCA(8, random_state=0)),
        max_epochs=8,
        warmup_epochs=3,
        random_state=0,
    )
    return clf.fit(X), X


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_training_history_plots_loss_and_clean_fraction(fitted):
    clf, _ = fitted
    figure = plot_training_history(clf)
    loss_ax, clean_ax = figure.axes
    (loss_line,) = loss_ax.get_lines()
    (clean_line,) = clean_ax.get_lines()
    np.testing.assert_allclose(loss_line.get_ydata(), [e["loss"] for e in clf.history_])
    np.testing.assert_allclose(clean_line.get_ydata(), [e["clean_fraction"] for e in clf.history_])
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == [
        "warm-up",
        "loss",
        "clean fraction",
    ]


def test_name_frequencies_count_every_training_image(fitted):
    clf, _ = fitted
    figure = plot_name_frequencies(clf)
    (ax,) = figure.axes
    bars = ax.patches
    assert len(bars) == len(clf.vocabulary_)
    assert sum(bar.get_width() for bar in bars) == len(clf.train_indices_)
    widths = [bar.get_width() for bar in bars]
    assert widths == sorted(widths, reverse=True)
    assert len(plot_name_frequencies(clf, max_names=2).axes[0].patches) == 2


@pytest.mark.parametrize("use_images", [False, True])
def test_name_mapping_has_a_row_per_name_and_a_column_per_class(fitted, use_images):
    clf, X = fitted
    figure = plot_name_mapping(clf, X=X if use_images else None)
    ax = figure.axes[0]
    shares = ax.get_images()[0].get_array()
    assert shares.shape == (len(clf.vocabulary_), len(clf.classes_))
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    annotated = sum(int(text.get_text()) for text in ax.texts)
    assert annotated == len(clf.train_indices_)


def test_draws_on_given_axes(fitted):
    clf, _ = fitted
    figure, axes = plt.subplots(1, 2)
    assert plot_name_frequencies(clf, ax=axes[0]) is figure
    assert plot_name_mapping(clf, ax=axes[1]) is figure


def test_mapping_refuses_other_images(fitted):
    clf, X = fitted
    with pytest.raises(ValueError, match="pass the images given to fit"):
        plot_name_mapping(clf, X=X[:3])


def test_unfitted_classifier_is_refused():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        plot_training_history(NeaRClassifier())


def test_missing_matplotlib_names_the_extra(monkeypatch, fitted):
    clf, _ = fitted
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "skvf\[plot\]"'):
        plot_training_history(clf)
