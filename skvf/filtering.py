"""The final vocabulary: names the tuned model predicts and the candidate sets support."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval

__all__ = ["LabelFilter"]


class LabelFilter(BaseEstimator):
    """Keep the names that are predicted on training images *and* top candidates.

    A name survives when it is the tuned model's argmax on at least ``min_predicted``
    training images and the top-voted candidate of at least ``min_supported`` images.
    Names only the noisy labeler produced, which neither the model nor the neighbours
    back, are dropped from the vocabulary ``predict`` chooses from.

    Parameters
    ----------
    min_predicted : int, default=1
        Training images on which the name must be the model's prediction.
    min_supported : int, default=1
        Images whose top candidate the name must be.

    Attributes
    ----------
    keep_mask_ : ndarray of bool, shape (n_classes,)
        Names kept.
    predicted_counts_ : ndarray of int, shape (n_classes,)
        Training images predicted as each name.
    supported_counts_ : ndarray of int, shape (n_classes,)
        Images whose top candidate is each name.

    Examples
    --------
    >>> import numpy as np
    >>> proba = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    >>> votes = np.array([[3, 0, 1], [0, 4, 0], [2, 1, 0]])
    >>> LabelFilter().fit(proba, votes).keep_mask_
    array([ True,  True, False])
    """

    _parameter_constraints = {
        "min_predicted": [Interval(numbers.Integral, 1, None, closed="left")],
        "min_supported": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, min_predicted: int = 1, min_supported: int = 1):
        self.min_predicted = min_predicted
        self.min_supported = min_supported

    def fit(self, probabilities, candidate_votes):
        """Decide which names to keep.

        Parameters
        ----------
        probabilities : array-like of shape (n_samples, n_classes)
            The tuned model's probabilities on the training images.
        candidate_votes : array-like of shape (n_samples, n_classes)
            Candidate votes (see :class:`skvf.NeighborCandidateBuilder`).

        Returns
        -------
        self
        """
        self._validate_params()
        probabilities = np.asarray(probabilities)
        candidate_votes = np.asarray(candidate_votes)
        n_classes = probabilities.shape[1]
        self.predicted_counts_ = np.bincount(probabilities.argmax(axis=1), minlength=n_classes)
        # Every name tied for an image's top vote counts as its top candidate: argmax
        # would hand ties to the lowest class index, i.e. to the alphabetically first name.
        top = candidate_votes == candidate_votes.max(axis=1, keepdims=True)
        self.supported_counts_ = top.sum(axis=0)
        self.keep_mask_ = (self.predicted_counts_ >= self.min_predicted) & (
            self.supported_counts_ >= self.min_supported
        )
        return self
