"""Splitting clean from noisy labeler names by their training loss.

A network fits correct labels before it memorises wrong ones, so early in training the
per-sample loss of a wrong name tends to be high. A two-component Gaussian mixture over
the (min-max normalised) losses separates the two populations (DivideMix); the posterior
of the low-mean component is each sample's probability of being clean.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from sklearn.utils import check_random_state

from ._sklearn_compat import Interval, fit_context
from .serialization import register_trusted_type

__all__ = ["GMMNoiseSplitter", "FixedNoiseSplitter"]


def _two_means_start(values: np.ndarray, reg_covar: float, n_iter: int = 20):
    """Weights, means and precisions of a two-means split of 1-D ``values``.

    Lloyd's algorithm from the median split: each value joins the nearer of the two
    means until the split stops changing. Returns GaussianMixture's ``weights_init``,
    ``means_init`` and ``precisions_init`` (component 0 the lower).
    """
    low = values <= np.median(values)
    if low.all():  # more than half the values tie at the top: split below them
        low = values < values.max()
    for _ in range(n_iter):
        centres = values[low].mean(), values[~low].mean()
        updated = values <= (centres[0] + centres[1]) / 2
        if updated.all() or not updated.any() or np.array_equal(updated, low):
            break
        low = updated
    parts = (values[low], values[~low])
    weights = np.array([len(part) for part in parts], dtype=float) / len(values)
    means = np.array([[part.mean()] for part in parts])
    precisions = np.array([[[1.0 / (part.var() + reg_covar)]] for part in parts])
    return weights, means, precisions


@register_trusted_type
class GMMNoiseSplitter(BaseEstimator):
    """Probability that each sample's name is clean, from a 2-component GMM on its loss.

    Parameters
    ----------
    threshold : float, default=0.5
        A sample is clean when its clean probability exceeds this.
    max_iter : int, default=10
        EM iterations of the mixture.
    tol : float, default=1e-2
        EM convergence tolerance.
    reg_covar : float, default=5e-4
        Added to the variances; keeps a degenerate component from collapsing.
    max_samples : int or None, default=10000
        Fit the mixture on this many losses drawn at random (without replacement)
        when there are more, then compute every sample's posterior: an epoch's split
        then costs about the same at 100,000 images as at 10,000. ``None`` fits on
        every loss. At or below ``max_samples`` losses the split is the full fit.
    random_state : int, RandomState or None, default=None
        Seed of the draw of ``max_samples`` losses and of the mixture.

    Attributes
    ----------
    clean_probability_ : ndarray of shape (n_samples,)
        Posterior of the low-loss component for each sample of the last ``fit``.
    clean_mask_ : ndarray of bool, shape (n_samples,)
        ``clean_probability_ > threshold``.
    means_ : ndarray of shape (2,)
        Component means on the normalised loss, low (clean) first.

    Examples
    --------
    >>> import numpy as np
    >>> losses = np.r_[np.full(8, 0.1), np.full(4, 2.0)] + np.linspace(0, 0.01, 12)
    >>> GMMNoiseSplitter(random_state=0).fit(losses).clean_mask_.astype(int)
    array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
    """

    _parameter_constraints = {
        "threshold": [Interval(numbers.Real, 0, 1, closed="both")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "reg_covar": [Interval(numbers.Real, 0, None, closed="left")],
        "max_samples": [Interval(numbers.Integral, 2, None, closed="left"), None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        threshold: float = 0.5,
        max_iter: int = 10,
        tol: float = 1e-2,
        reg_covar: float = 5e-4,
        max_samples: int | None = 10_000,
        random_state=None,
    ):
        self.threshold = threshold
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_samples = max_samples
        self.random_state = random_state

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, losses, y=None):
        """Fit the mixture to per-sample losses.

        Parameters
        ----------
        losses : array-like of shape (n_samples,)
            Per-sample training loss against the labeler's names.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        losses = np.asarray(losses, dtype=np.float64).ravel()
        if not np.all(np.isfinite(losses)):
            raise ValueError("losses hold NaN or infinite values; the training diverged.")
        spread = losses.max() - losses.min()
        if len(losses) < 2 or spread <= 1e-12:
            # Every loss equal: nothing separates clean from noisy, so trust every name.
            self.clean_probability_ = np.ones(len(losses))
            self.means_ = np.array([0.0, 0.0])
        else:
            normalised = ((losses - losses.min()) / spread).reshape(-1, 1)
            random_state = check_random_state(self.random_state)
            fitted_on = normalised
            if self.max_samples is not None and len(losses) > self.max_samples:
                drawn = random_state.choice(len(losses), self.max_samples, replace=False)
                fitted_on = normalised[drawn]
            # Start EM from a two-means split of the losses (Lloyd's iterations in 1-D,
            # from the median): the k-means start scikit-learn would compute, without
            # its cost, which matters because the GMM is refitted every epoch.
            weights, means, precisions = _two_means_start(fitted_on.ravel(), self.reg_covar)
            mixture = GaussianMixture(
                n_components=2,
                max_iter=self.max_iter,
                tol=self.tol,
                reg_covar=self.reg_covar,
                weights_init=weights,
                means_init=means,
                precisions_init=precisions,
                random_state=random_state,
            )
            with warnings.catch_warnings():
                # A few EM steps per epoch are the point (DivideMix): not converging is fine.
                warnings.simplefilter("ignore", ConvergenceWarning)
                mixture.fit(fitted_on)
            means = mixture.means_.ravel()
            clean_component = int(np.argmin(means))
            self.clean_probability_ = mixture.predict_proba(normalised)[:, clean_component]
            self.means_ = np.sort(means)
        self.clean_mask_ = self.clean_probability_ > self.threshold
        return self


@register_trusted_type
class FixedNoiseSplitter(BaseEstimator):
    """The same clean probability for every sample (an ablation of the GMM split).

    ``clean_probability=1.0`` trusts every name fully (with ``refinement="dividemix"``
    that is plain cross-entropy on the labeler's names, as with
    ``noise_splitter="passthrough"``; the posterior rule still refines with the
    candidate sets); ``0.0`` treats every name as noisy,
    so every target comes from the candidate set and the model's prediction.

    Parameters
    ----------
    clean_probability : float, default=0.0
        Probability given to every sample.

    Attributes
    ----------
    clean_probability_ : ndarray of shape (n_samples,)
    clean_mask_ : ndarray of bool, shape (n_samples,)
    """

    _parameter_constraints = {
        "clean_probability": [Interval(numbers.Real, 0, 1, closed="both")],
    }

    def __init__(self, clean_probability: float = 0.0):
        self.clean_probability = clean_probability

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, losses, y=None):
        """Give every sample ``clean_probability``.

        Parameters
        ----------
        losses : array-like of shape (n_samples,)
            Only their number is used.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        n_samples = len(np.asarray(losses).ravel())
        self.clean_probability_ = np.full(n_samples, float(self.clean_probability))
        self.clean_mask_ = self.clean_probability_ > 0.5
        return self
