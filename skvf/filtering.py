"""The final vocabulary: names the tuned model predicts and the candidate sets support."""

from __future__ import annotations

import inspect
import numbers

import numpy as np
from sklearn.base import BaseEstimator

from ._sklearn_compat import Interval, fit_context
from ._warnings import warn
from .serialization import register_trusted_type

__all__ = ["LabelFilter", "filter_vocabulary"]


@register_trusted_type
class LabelFilter(BaseEstimator):
    """Keep the names that are predicted on training images *and* top candidates.

    Two rules, each a reason to drop a name:

    - **predicted**: the name must be the tuned model's argmax on at least
      ``min_predicted`` training images;
    - **supported**: the name must carry enough top-candidate support: be the
      most-voted name in the candidate sets of at least ``min_supported`` images (an
      image whose top vote is tied between names gives each of them an equal share),
      and at least ``min_support_share`` times the mean support of the names that have
      any.

    Names only the noisy labeler produced, which neither the model nor the neighbours
    back, are dropped from the vocabulary ``predict`` chooses from: spelling variants
    and synonyms that never lead a neighbourhood, and names given to a handful of images.

    Each rule applies only where it is evidence. Support is evidence when neighbours
    share names. With a few images per class among many fine classes, an image's
    neighbours seldom carry its own name (7% on the 160-class garment benchmark at 3
    images per class, against 40% on digits at 30): most candidate sets are then
    one-vote ties, true names lead too few of them, and the support rule dropped half
    the true classes (cACC .34 against .41 without it). Below ``min_name_agreement``
    the support rule is off. The predicted rule is evidence when names recur: with
    several training images per name, a name the model never predicts is a variant or
    a near miss whose images another name describes better (on that benchmark, at 3
    images per class, 1.65 per name, dropping them gains cACC .017 and at 5 per class
    .020, 10 of 10 seeds each); with about one image per name, it is mostly a class's
    only name and dropping it loses the class (at 1 image per class, .047). So it
    applies when neighbours share names or when there are at least
    ``min_images_per_name`` training images per name.

    The predicted rule is no evidence either when a few names take most of the
    labeler's answers, as a generic-naming labeler's "shirt" and "clothing" do: the
    model, trained mostly toward those names, gives them the argmax of nearly every
    training image, so the rule drops the fine names the labeler gave to one or two
    images, which are the names worth keeping. It applies only when the answers'
    effective number of names (``1 / sum(share ** 2)``, the shares of the training
    images each name was given) is at least ``min_answer_spread`` of the vocabulary. On
    the garment benchmark (simulated labelers, 10 seeds each) a weak labeler's answers
    spread over .11-.36 of the vocabulary at 1, 3 and 5 images per class, where the rule
    cost .029, .030 and .030 cACC (10 of 10 seeds each); a strong one's over .85-.94,
    .70-.76, .64-.68 and .49-.51 at 1, 3, 5 and 10 images per class, where the rule
    (from 3 per class) gains .053, .064 and .077 (10 of 10 each).

    The support rule needs names that fill neighbourhoods as well: a name given to
    three images leads no neighbourhood of five once its neighbours carry other names,
    however well names agree elsewhere. It applies only when the training images number
    at least ``min_images_per_supported_name`` per name. On digits and Fashion-MNIST (30
    images per name, agreement .24-.43) it applies as before; on the garment benchmark
    with the imbalanced draw (1 to 10 images per class, 4.2 per name once the labeler's
    synonyms are merged) the merge lifted agreement over 0.2; on 7 of 10 seeds the rule
    came on and dropped about 40% of the names (on one seed 94 of 211, agreement .16 to
    .22, cACC .553 against .666); with the condition, merging the synonyms gains cACC
    .024 there instead of losing .044 (10 seeds, paired).

    Parameters
    ----------
    min_predicted : int, default=1
        Training images on which the name must be the model's prediction.
    min_supported : float, default=1.0
        Images whose top candidate the name must be (ties shared).
    min_support_share : float, default=0.25
        Support the name needs relative to the mean support of the supported names; a
        scale-free threshold (it works for 3 images per class as for 300). 0 turns it
        off.
    min_name_agreement : float, default=0.2
        Both rules apply when the share of neighbours carrying an image's own name
        (``fit``'s ``name_agreement``, the classifier's ``neighbor_agreement_``) is at
        least this, or unknown. 0 applies them always.
    min_images_per_name : float or None, default=1.5
        Below ``min_name_agreement``, the predicted rule still applies when the
        training images number at least this many per name (images / names);
        ``None``: never.
    min_answer_spread : float or None, default=0.4
        The predicted rule applies only when the labeler's answers spread over at least
        this share of the vocabulary (their effective number of names over the number
        of names); ``None``: whatever the answers.
    min_images_per_supported_name : float or None, default=10.0
        The support rule applies only when the training images number at least this
        many per name (images / names); ``None``: whatever their number.

    Attributes
    ----------
    keep_mask_ : ndarray of bool, shape (n_classes,)
        Names kept.
    predicted_counts_ : ndarray of int, shape (n_classes,)
        Training images predicted as each name.
    answer_spread_ : float
        The labeler's answers' effective number of names as a share of the vocabulary;
        NaN when ``fit`` was not given the ``labels``.
    supported_counts_ : ndarray of float, shape (n_classes,)
        Images whose top candidate is each name, ties shared; sums to n_samples.
    rules_applied_ : tuple of str
        The rules applied: ``("predicted", "supported")``, ``("predicted",)``,
        ``("supported",)`` or ``()`` (every name kept).

    Examples
    --------
    >>> import numpy as np
    >>> proba = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    >>> votes = np.array([[3, 0, 1], [0, 4, 0], [2, 1, 0]])
    >>> LabelFilter().fit(proba, votes).keep_mask_
    array([ True,  True, False])

    Neighbours that seldom share names leave the predicted rule, when names recur
    (here 2 images per name):

    >>> label_filter = LabelFilter().fit(np.repeat(proba, 2, axis=0),
    ...                                  np.repeat(votes, 2, axis=0), name_agreement=0.05)
    >>> label_filter.rules_applied_, label_filter.keep_mask_
    (('predicted',), array([ True,  True, False]))
    """

    _parameter_constraints = {
        "min_predicted": [Interval(numbers.Integral, 1, None, closed="left")],
        "min_supported": [Interval(numbers.Real, 0, None, closed="neither")],
        "min_support_share": [Interval(numbers.Real, 0, 1, closed="left")],
        "min_name_agreement": [Interval(numbers.Real, 0, 1, closed="both")],
        "min_images_per_name": [Interval(numbers.Real, 0, None, closed="left"), None],
        "min_answer_spread": [Interval(numbers.Real, 0, 1, closed="both"), None],
        "min_images_per_supported_name": [Interval(numbers.Real, 0, None, closed="left"), None],
    }

    def __init__(
        self,
        min_predicted: int = 1,
        min_supported: float = 1.0,
        min_support_share: float = 0.25,
        min_name_agreement: float = 0.2,
        min_images_per_name: float | None = 1.5,
        min_answer_spread: float | None = 0.4,
        min_images_per_supported_name: float | None = 10.0,
    ):
        self.min_predicted = min_predicted
        self.min_supported = min_supported
        self.min_support_share = min_support_share
        self.min_name_agreement = min_name_agreement
        self.min_images_per_name = min_images_per_name
        self.min_answer_spread = min_answer_spread
        self.min_images_per_supported_name = min_images_per_supported_name

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, probabilities, candidate_votes, name_agreement=None, labels=None):
        """Decide which names to keep.

        Parameters
        ----------
        probabilities : array-like of shape (n_samples, n_classes)
            The tuned model's probabilities on the training images.
        candidate_votes : array-like of shape (n_samples, n_classes)
            Candidate votes (see :class:`skvf.NeighborCandidateBuilder`).
        name_agreement : float or None, default=None
            Mean share of an image's neighbours carrying its own name; ``None``:
            unknown (the rules apply).
        labels : array-like of int, shape (n_samples,), default=None
            The labeler's name of each training image, as an index into the
            vocabulary; ``None``: unknown (the predicted rule does not look at the
            answers' spread).

        Returns
        -------
        self
        """
        probabilities = np.asarray(probabilities, dtype=np.float64)
        candidate_votes = np.asarray(candidate_votes, dtype=np.float64)
        n_classes = probabilities.shape[1]
        self.answer_spread_ = _answer_spread(labels, len(probabilities), n_classes)
        self.predicted_counts_ = np.bincount(probabilities.argmax(axis=1), minlength=n_classes)
        # Names tied for an image's top vote share it: argmax would hand ties to the
        # lowest class index, i.e. to the alphabetically first name.
        top = candidate_votes == candidate_votes.max(axis=1, keepdims=True)
        self.supported_counts_ = (top / top.sum(axis=1, keepdims=True)).sum(axis=0)
        supported = self.supported_counts_[self.supported_counts_ > 0]
        needed = max(self.min_supported, self.min_support_share * supported.mean())
        self.rules_applied_ = self._rules(
            len(probabilities), n_classes, name_agreement, self.answer_spread_
        )
        self.keep_mask_ = np.ones(n_classes, dtype=bool)
        if "predicted" in self.rules_applied_:
            self.keep_mask_ &= self.predicted_counts_ >= self.min_predicted
        if "supported" in self.rules_applied_:
            # A tiny tolerance: shares of ties summed in floating point (1/3 + 1/3 + 1/3).
            self.keep_mask_ &= self.supported_counts_ >= needed - 1e-9
        return self

    def rules_for(self, labels, n_classes: int, name_agreement=None) -> tuple[str, ...]:
        """The rules ``fit`` would apply to training images named ``labels``.

        Decided from the names alone, before any model is tuned: whether neighbours
        share names, names recur, the answers spread and names fill neighbourhoods.

        Parameters
        ----------
        labels : array-like of int, shape (n_samples,)
            Each training image's name, as an index into the vocabulary.
        n_classes : int
            The vocabulary's size.
        name_agreement : float or None, default=None
            As for :meth:`fit`.

        Returns
        -------
        tuple of str
            As ``rules_applied_``.

        Examples
        --------
        >>> LabelFilter().rules_for([0, 0, 1, 1, 2, 2], 3, name_agreement=0.05)
        ('predicted',)

        One name taking most answers leaves the predicted rule off:

        >>> LabelFilter().rules_for([0] * 17 + [1, 2, 3], 4, name_agreement=0.05)
        ()
        """
        self._validate_params()
        labels = np.asarray(labels)
        spread = _answer_spread(labels, len(labels), n_classes)
        return self._rules(len(labels), n_classes, name_agreement, spread)

    def _rules(self, n_samples: int, n_classes: int, name_agreement, answer_spread) -> tuple:
        """The rules that are evidence for ``n_samples`` images over ``n_classes`` names."""
        shared = name_agreement is None or name_agreement >= self.min_name_agreement
        recurring = (
            self.min_images_per_name is not None
            and n_samples >= self.min_images_per_name * n_classes
        )
        broad = (
            self.min_answer_spread is not None
            and answer_spread < self.min_answer_spread  # False when NaN
        )
        filled = (
            self.min_images_per_supported_name is None
            or n_samples >= self.min_images_per_supported_name * n_classes
        )
        rules = []
        if (shared or recurring) and not broad:
            rules.append("predicted")
        if shared and filled:
            rules.append("supported")
        return tuple(rules)


def _answer_spread(labels, n_samples: int, n_classes: int) -> float:
    """The answers' effective number of names over the vocabulary's size; NaN if unknown."""
    if labels is None or n_samples == 0:
        return float("nan")
    labels = np.asarray(labels)
    if labels.shape != (n_samples,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must hold one vocabulary index per training image ({n_samples}), "
            f"got an array of shape {labels.shape} and dtype {labels.dtype}."
        )
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must be vocabulary indices in [0, {n_classes}).")
    shares = np.bincount(labels, minlength=n_classes) / n_samples
    return float(1.0 / np.sum(shares**2) / n_classes)


def filter_vocabulary(
    label_filter, probabilities, votes, name_agreement=None, labels=None
) -> np.ndarray:
    """The keep mask over the vocabulary: ``label_filter``'s, every name when it is ``None``.

    ``name_agreement`` and ``labels`` go to a filter whose ``fit`` takes them
    (:class:`LabelFilter`). When the filter keeps nothing, the names the model predicts
    on the training images are kept instead (with a warning).
    """
    if label_filter is None:
        return np.ones(votes.shape[1], dtype=bool)
    extra = {}
    parameters = inspect.signature(label_filter.fit).parameters
    if "name_agreement" in parameters:
        extra["name_agreement"] = name_agreement
    if "labels" in parameters:
        extra["labels"] = labels
    keep = np.asarray(label_filter.fit(probabilities, votes, **extra).keep_mask_, dtype=bool)
    if not keep.any():
        warn(
            "the label filter kept no name; keeping every name the model predicts on "
            "the training images instead."
        )
        keep = np.bincount(probabilities.argmax(axis=1), minlength=len(keep)) > 0
    return keep
