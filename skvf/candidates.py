"""Candidate sets from nearest neighbours in a frozen image-feature space.

Images that look alike usually share a class, so the names the labeler gave to an
image's nearest neighbours are plausible names for the image itself. The candidate set
``S_i`` of image ``i`` is its own name plus the names of its ``n_neighbors`` nearest
neighbours; each member carries a vote count.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_array, check_random_state

from ._sklearn_compat import Interval, StrOptions, fit_context
from .serialization import register_trusted_type

__all__ = [
    "NeighborCandidateBuilder",
    "build_candidate_votes",
    "candidate_votes",
    "nearest_neighbors",
]


def _unit_rows(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def _exact_neighbors(features: np.ndarray, n_neighbors: int, metric: str) -> np.ndarray:
    if metric == "cosine":
        unit = _unit_rows(features)
        similarity = unit @ unit.T
    else:
        squared = np.einsum("ij,ij->i", features, features)
        similarity = -(squared[:, None] + squared[None, :] - 2.0 * features @ features.T)
    np.fill_diagonal(similarity, -np.inf)  # never one's own neighbour
    top = np.argpartition(-similarity, n_neighbors - 1, axis=1)[:, :n_neighbors]
    order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def _approximate_neighbors(
    features: np.ndarray, n_neighbors: int, metric: str, random_state: int | None
) -> np.ndarray:
    from pynndescent import NNDescent

    index = NNDescent(
        features, n_neighbors=n_neighbors + 1, metric=metric, random_state=random_state
    )
    indices, _ = index.neighbor_graph
    neighbors = np.empty((len(features), n_neighbors), dtype=np.int64)
    for row, found in enumerate(indices):
        others = found[(found != row) & (found >= 0)][:n_neighbors]
        if len(others) < n_neighbors:  # pynndescent occasionally returns too few
            missing = n_neighbors - len(others)
            others = np.concatenate([others, np.full(missing, others[0] if len(others) else row)])
        neighbors[row] = others
    return neighbors


def nearest_neighbors(
    features: np.ndarray,
    n_neighbors: int,
    metric: str = "cosine",
    algorithm: str = "auto",
    exact_max_samples: int = 10_000,
    random_state: int | None = None,
) -> np.ndarray:
    """Return the indices of each row's nearest other rows, nearest first.

    Parameters
    ----------
    features : ndarray of shape (n_samples, n_features)
    n_neighbors : int
        Neighbours per row, the row itself excluded.
    metric : {"cosine", "euclidean"}
    algorithm : {"auto", "exact", "nndescent"}
        ``"auto"`` is exact search up to ``exact_max_samples`` rows and pynndescent's
        approximate search above.
    exact_max_samples : int
    random_state : int or None
        Seed of pynndescent.

    Returns
    -------
    ndarray of shape (n_samples, n_neighbors)
    """
    use_exact = algorithm == "exact" or (algorithm == "auto" and len(features) <= exact_max_samples)
    if use_exact:
        return _exact_neighbors(np.asarray(features, dtype=np.float64), n_neighbors, metric)
    return _approximate_neighbors(
        np.asarray(features, dtype=np.float32), n_neighbors, metric, random_state
    )


def candidate_votes(
    labels: np.ndarray, neighbors: np.ndarray | None, n_classes: int, self_weight: float = 1.0
) -> np.ndarray:
    """Count, for each image, the votes each name gets from itself and its neighbours.

    Parameters
    ----------
    labels : ndarray of int, shape (n_samples,)
        Index of each image's labeler name.
    neighbors : ndarray of int, shape (n_samples, n_neighbors) or None
        Neighbour indices; ``None`` gives singleton candidate sets (own name only).
    n_classes : int
    self_weight : float
        Votes of an image's own name.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        Vote mass per name; the candidate set is where it is positive.
    """
    n_samples = len(labels)
    votes = np.zeros((n_samples, n_classes), dtype=np.float64)
    votes[np.arange(n_samples), labels] += self_weight
    if neighbors is not None:
        rows = np.repeat(np.arange(n_samples), neighbors.shape[1])
        np.add.at(votes, (rows, labels[neighbors].ravel()), 1.0)
    return votes


@register_trusted_type
class NeighborCandidateBuilder(BaseEstimator):
    """Candidate names for each image from its nearest neighbours' names.

    Parameters
    ----------
    n_neighbors : int, default=5
        Neighbours per image (kappa), the image itself excluded.
    metric : {"cosine", "euclidean"}, default="cosine"
        Distance between frozen image features.
    algorithm : {"auto", "exact", "nndescent"}, default="auto"
        Exact search (one matrix product) up to ``exact_max_samples`` images,
        pynndescent's approximate search above.
    exact_max_samples : int, default=10000
        Largest training set searched exactly under ``algorithm="auto"``.
    self_weight : float, default=1.0
        Votes of an image's own labeler name in its candidate set (positive, so the
        own name is always a candidate).
    random_state : int or None, default=None
        Seed of the approximate search.

    Attributes
    ----------
    neighbors_ : ndarray of shape (n_samples, n_neighbors)
        Nearest neighbours of each training image, nearest first.
    candidate_votes_ : ndarray of shape (n_samples, n_classes)
        Votes per name: own name (``self_weight``) plus one per neighbour.
    candidate_sets_ : ndarray of bool, shape (n_samples, n_classes)
        Candidate membership, ``candidate_votes_ > 0``.
    name_agreement_ : ndarray of shape (n_samples,)
        Share of each image's neighbours that carry its own labeler name (see
        ``neighbor_agreement_`` of :class:`skvf.NeaRClassifier` for how to read it).

    Examples
    --------
    >>> import numpy as np
    >>> features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> builder = NeighborCandidateBuilder(n_neighbors=1).fit(features, [0, 1, 1, 1])
    >>> builder.candidate_sets_.astype(int)
    array([[1, 1],
           [1, 1],
           [0, 1],
           [0, 1]])
    """

    _parameter_constraints = {
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
        "metric": [StrOptions({"cosine", "euclidean"})],
        "algorithm": [StrOptions({"auto", "exact", "nndescent"})],
        "exact_max_samples": [Interval(numbers.Integral, 1, None, closed="left")],
        "self_weight": [Interval(numbers.Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_neighbors: int = 5,
        metric: str = "cosine",
        algorithm: str = "auto",
        exact_max_samples: int = 10_000,
        self_weight: float = 1.0,
        random_state=None,
    ):
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.algorithm = algorithm
        self.exact_max_samples = exact_max_samples
        self.self_weight = self_weight
        self.random_state = random_state

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, features, labels, n_classes: int | None = None):
        """Find each image's neighbours and count the names they vote for.

        Parameters
        ----------
        features : array-like of shape (n_samples, n_features)
            Frozen image features.
        labels : array-like of int, shape (n_samples,)
            Index of each image's labeler name.
        n_classes : int or None
            Vocabulary size; defaults to ``max(labels) + 1``.

        Returns
        -------
        self
        """
        features = check_array(features, dtype=np.float64, ensure_min_samples=0)
        labels = np.asarray(labels, dtype=np.int64)
        n_samples = len(features)
        if labels.shape != (n_samples,):
            raise ValueError(
                f"labels has shape {labels.shape}; expected ({n_samples},), one per image."
            )
        if n_samples <= self.n_neighbors:
            raise ValueError(
                f"n_neighbors={self.n_neighbors} needs at least {self.n_neighbors + 1} images, "
                f"got {n_samples}; pass more images or lower candidate_builder__n_neighbors."
            )
        n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
        if labels.min() < 0 or labels.max() >= n_classes:
            raise ValueError(
                f"labels must be class indices in [0, {n_classes}), got values from "
                f"{labels.min()} to {labels.max()}."
            )
        seed = None
        if self.random_state is not None:
            seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        self.neighbors_ = nearest_neighbors(
            features,
            self.n_neighbors,
            metric=self.metric,
            algorithm=self.algorithm,
            exact_max_samples=self.exact_max_samples,
            random_state=seed,
        )
        self.candidate_votes_ = candidate_votes(
            labels, self.neighbors_, n_classes, self_weight=self.self_weight
        )
        self.candidate_sets_ = self.candidate_votes_ > 0
        self.name_agreement_ = (labels[self.neighbors_] == labels[:, None]).mean(axis=1)
        return self


def build_candidate_votes(builder, features, labels, n_classes: int):
    """Candidate votes from a builder, or singleton sets when it is ``None`` (off).

    Parameters
    ----------
    builder : NeighborCandidateBuilder, estimator with ``candidate_votes_``, or None
    features : ndarray of shape (n_samples, n_features)
    labels : ndarray of int, shape (n_samples,)
    n_classes : int

    Returns
    -------
    votes : ndarray of shape (n_samples, n_classes)
    agreement : float or None
        Mean share of an image's neighbours carrying its own name (``None`` when the
        builder does not report it).
    """
    if builder is None:
        return candidate_votes(labels, None, n_classes), None
    builder.fit(features, labels, n_classes=n_classes)
    agreement = getattr(builder, "name_agreement_", None)
    votes = np.asarray(builder.candidate_votes_, dtype=np.float64)
    return votes, None if agreement is None else float(np.mean(agreement))
