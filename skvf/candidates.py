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

from ._ivf import ivf_neighbors
from ._sklearn_compat import Interval, StrOptions, fit_context
from .serialization import register_trusted_type

__all__ = [
    "NeighborCandidateBuilder",
    "build_candidate_votes",
    "candidate_votes",
    "nearest_neighbors",
]


# Exact search screens with scikit-learn's chunked brute force, then ranks a few more
# candidates than needed by similarities recomputed in float64. A screen in float32 can
# misorder neighbours closer than its rounding error; a row where an unscreened point
# could still beat the kept ones is searched again over every row in float64.
_EXTRA_CANDIDATES = 16
# Below this many rows one float64 block search is faster than the screen (measured
# side by side: 0.39 s against 1.2 s at 2,000 rows, 14 s against 5.7 s at 8,000).
_SCREEN_MIN_SAMPLES = 4000
_BLOCK_BYTES = 32 * 2**20
# Lists each row searches. On 70,000 Fashion-MNIST photos (PCA'd pixels, and random
# convolution features) 4 of sqrt(N) lists found 0.974-0.976 of the exact neighbours
# (3: 0.952-0.954, 6: 0.989-0.991; benchmarks/candidate_scale.py); on its blobs 1.000.
_N_PROBE = 4
# Largest training set searched exactly under algorithm="auto". In one process on 2
# shared CPU cores, exact search took 0.10-0.12 s at 1,000 images (1.5-2.1x the index),
# 0.37-0.39 s at 2,000 (6.2-6.4x) and 1.4-1.9 s at 4,000 (11-13x), where the index found
# 0.99 of the neighbours: exact while it costs a fraction of a second.
_EXACT_MAX_SAMPLES = 2000


def _float_array(features) -> np.ndarray:
    """Float32 features stay float32 (half the memory of a float64 copy)."""
    features = np.asarray(features)
    return features if features.dtype in (np.float32, np.float64) else features.astype(float)


def _unit_rows(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def _similarities(features: np.ndarray, rows: np.ndarray, others: np.ndarray, metric: str):
    """Float64 similarity of each of ``rows`` to its own ``others`` (shape (rows, m))."""
    queries = features[rows].astype(np.float64)
    points = features[others].astype(np.float64)
    if metric == "cosine":
        return np.einsum("id,imd->im", _unit_rows(queries), _unit_rows(points))
    squared_queries = np.einsum("id,id->i", queries, queries)
    squared_points = np.einsum("imd,imd->im", points, points)
    products = np.einsum("id,imd->im", queries, points)
    return -(squared_queries[:, None] + squared_points - 2.0 * products)


def _nearest_first(similarity: np.ndarray, indices: np.ndarray, n_neighbors: int):
    """The ``n_neighbors`` most similar of ``indices``: higher similarity first, ties to
    the lower index; returns the indices and the similarity of the last one kept."""
    order = np.lexsort((indices, -similarity), axis=1)[:, :n_neighbors]
    kept = np.take_along_axis(similarity, order[:, -1:], axis=1)[:, 0]
    return np.take_along_axis(indices, order, axis=1), kept


def _similarity_matrix(queries: np.ndarray, points: np.ndarray, metric: str) -> np.ndarray:
    """Float64 similarity of every query to every point."""
    queries, points = queries.astype(np.float64), points.astype(np.float64)
    if metric == "cosine":
        return _unit_rows(queries) @ _unit_rows(points).T
    squared_queries = np.einsum("ij,ij->i", queries, queries)
    squared_points = np.einsum("ij,ij->i", points, points)
    return -(squared_queries[:, None] + squared_points[None, :] - 2.0 * queries @ points.T)


def _exact_rows(features: np.ndarray, rows: np.ndarray, n_neighbors: int, metric: str):
    """Neighbours of ``rows`` against every row in float64, a block of rows at a time."""
    n_samples, n_features = features.shape
    found = np.empty((len(rows), n_neighbors), dtype=np.int64)
    block = max(1, _BLOCK_BYTES // (8 * max(n_samples, n_features)))
    for start in range(0, len(rows), block):
        queries = rows[start : start + block]
        similarity = np.empty((len(queries), n_samples))
        for first in range(0, n_samples, block):
            similarity[:, first : first + block] = _similarity_matrix(
                features[queries], features[first : first + block], metric
            )
        similarity[np.arange(len(queries)), queries] = -np.inf  # never one's own neighbour
        # One more than needed shows whether the last kept ties with a point left out.
        top = np.argpartition(-similarity, n_neighbors, axis=1)[:, : n_neighbors + 1]
        values = np.take_along_axis(similarity, top, axis=1)
        ranked, _ = _nearest_first(values, top, n_neighbors + 1)
        found[start : start + len(queries)] = ranked[:, :n_neighbors]
        ranked_values = np.take_along_axis(similarity, ranked, axis=1)
        for offset in np.flatnonzero(ranked_values[:, -1] == ranked_values[:, -2]):
            values = similarity[offset]
            close = np.flatnonzero(values >= ranked_values[offset, -1])
            tied, _ = _nearest_first(values[close][None], close[None], n_neighbors)
            found[start + offset] = tied[0]
    return found


def _exact_neighbors(features: np.ndarray, n_neighbors: int, metric: str) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    n_samples, n_features = features.shape
    if n_samples < _SCREEN_MIN_SAMPLES:
        return _exact_rows(features, np.arange(n_samples), n_neighbors, metric)
    n_candidates = min(n_samples - 1, 2 * n_neighbors + _EXTRA_CANDIDATES)
    points = _unit_rows(features) if metric == "cosine" else features
    screen = NearestNeighbors(n_neighbors=n_candidates, algorithm="brute").fit(points)
    distances, candidates = screen.kneighbors()  # euclidean; the query row left out
    neighbors = np.empty((n_samples, n_neighbors), dtype=np.int64)
    kept = np.empty(n_samples)
    block = max(1, _BLOCK_BYTES // (8 * n_candidates * n_features))
    for start in range(0, n_samples, block):
        rows = np.arange(start, min(start + block, n_samples))
        similarity = _similarities(features, rows, candidates[rows], metric)
        neighbors[rows], kept[rows] = _nearest_first(similarity, candidates[rows], n_neighbors)
    if n_candidates == n_samples - 1:
        return neighbors  # every other row was ranked in float64
    # The farthest screened candidate bounds every unscreened point's similarity, up to
    # the screen's rounding error (generously: a float32 dot product of unit vectors
    # errs by less than n_features * eps).
    farthest = distances[:, -1].astype(np.float64) ** 2
    slack = 4.0 * (n_features + 32) * np.finfo(points.dtype).eps
    if metric == "cosine":
        bound = 1.0 - farthest / 2.0 + slack
    else:
        squared = np.einsum("ij,ij->i", features, features, dtype=np.float64)
        bound = -farthest + slack * (farthest + squared + squared.max())
    unsure = np.flatnonzero(bound >= kept)
    if len(unsure):
        neighbors[unsure] = _exact_rows(features, unsure, n_neighbors, metric)
    return neighbors


def _ivf_neighbors(
    features: np.ndarray,
    n_neighbors: int,
    metric: str,
    n_lists: int | None,
    n_probe: int,
    random_state: int | None,
) -> np.ndarray:
    n_samples = len(features)
    n_lists = min(n_samples, n_lists or round(np.sqrt(n_samples)))
    neighbors = ivf_neighbors(
        features,
        n_neighbors,
        metric,
        n_lists=n_lists,
        n_probe=min(n_probe, n_lists),
        seed=random_state,
    )
    # a row whose probed lists held too few other rows is searched exactly
    short = np.flatnonzero(neighbors[:, -1] < 0)
    if len(short):
        neighbors[short] = _exact_rows(features, short, n_neighbors, metric)
    return neighbors


def nearest_neighbors(
    features: np.ndarray,
    n_neighbors: int,
    metric: str = "cosine",
    algorithm: str = "auto",
    exact_max_samples: int = _EXACT_MAX_SAMPLES,
    n_lists: int | None = None,
    n_probe: int = _N_PROBE,
    random_state: int | None = None,
) -> np.ndarray:
    """Return the indices of each row's nearest other rows, nearest first.

    Exact search ranks by similarities computed in float64 (cosine, or minus the
    squared euclidean distance), with equal similarities going to the lower index, in
    memory that grows with ``n_samples`` rather than its square; float32 features are
    not copied to float64. ``"ivf"`` is approximate: an inverted-file index, each row
    searching the rows of the ``n_probe`` k-means lists nearest to it, ranked by
    similarities computed in float32 (equal ones to the lower index).

    Parameters
    ----------
    features : ndarray of shape (n_samples, n_features)
    n_neighbors : int
        Neighbours per row, the row itself excluded.
    metric : {"cosine", "euclidean"}
    algorithm : {"auto", "exact", "ivf"}
        ``"auto"`` is exact search up to ``exact_max_samples`` rows and the
        inverted-file index above.
    exact_max_samples : int
    n_lists : int or None
        Lists of the index; ``None`` is the square root of ``n_samples``, rounded. At
        most ``n_samples`` are used.
    n_probe : int
        Lists each row searches, its own included; ``n_probe >= n_lists`` searches
        every row.
    random_state : int or None
        Seed of the index's k-means.

    Returns
    -------
    ndarray of shape (n_samples, n_neighbors)

    Examples
    --------
    Copies are equally near, so the lower index comes first:

    >>> import numpy as np
    >>> features = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> nearest_neighbors(features, 2)
    array([[1, 2],
           [0, 2],
           [0, 1],
           [0, 1]])
    """
    if algorithm not in ("auto", "exact", "ivf"):
        raise ValueError(f"algorithm must be 'auto', 'exact' or 'ivf', got {algorithm!r}.")
    for name, value, none_allowed in (("n_lists", n_lists, True), ("n_probe", n_probe, False)):
        positive_int = isinstance(value, numbers.Integral) and value >= 1
        if not (positive_int or (value is None and none_allowed)):
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    features = _float_array(features)
    use_exact = algorithm == "exact" or (algorithm == "auto" and len(features) <= exact_max_samples)
    if use_exact:
        return _exact_neighbors(features, n_neighbors, metric)
    return _ivf_neighbors(features, n_neighbors, metric, n_lists, n_probe, random_state)


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
    algorithm : {"auto", "exact", "ivf"}, default="auto"
        ``"exact"``: chunked search, memory linear in the number of images, ties to
        the lower index. ``"ivf"``: an approximate inverted-file index (k-means
        lists; each image searches the images of its ``n_probe`` nearest lists).
        ``"auto"``: exact up to ``exact_max_samples`` images, the index above.
    exact_max_samples : int, default=2000
        Largest training set searched exactly under ``algorithm="auto"``. On 2 CPU
        cores and 512-d features exact search took 0.4 s at 2,000 images (6x the
        index), 1.4-1.9 s at 4,000 (11-13x) and 42-44 s at 30,000 (16-26x): its time
        grows with the square of the number of images, the index's with about the
        power 1.5.
    n_lists : int or None, default=None
        Lists of the index (``"ivf"``); ``None`` is the square root of the number
        of images, rounded. Capped at the number of images.
    n_probe : int, default=4
        Lists each image searches under ``"ivf"``, its own included: more finds
        more of the exact neighbours, for more time. With 4 of sqrt(N) lists the
        index found 0.97 of the exact neighbours on 70,000 Fashion-MNIST photos and
        0.98-1.0 on well-separated clusters; ``n_probe >= n_lists`` searches every
        image.
    self_weight : float, default=1.0
        Votes of an image's own labeler name in its candidate set (positive, so the
        own name is always a candidate).
    random_state : int, RandomState instance or None, default=None
        Seed of the index's k-means (which rows train it, where it starts). The
        neighbours found depend only on it and the features, not on the number of
        threads.

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
        "algorithm": [StrOptions({"auto", "exact", "ivf"})],
        "exact_max_samples": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_lists": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "n_probe": [Interval(numbers.Integral, 1, None, closed="left")],
        "self_weight": [Interval(numbers.Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_neighbors: int = 5,
        metric: str = "cosine",
        algorithm: str = "auto",
        exact_max_samples: int = _EXACT_MAX_SAMPLES,
        n_lists: int | None = None,
        n_probe: int = _N_PROBE,
        self_weight: float = 1.0,
        random_state=None,
    ):
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.algorithm = algorithm
        self.exact_max_samples = exact_max_samples
        self.n_lists = n_lists
        self.n_probe = n_probe
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
        features = check_array(features, dtype=(np.float64, np.float32), ensure_min_samples=0)
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
            n_lists=self.n_lists,
            n_probe=self.n_probe,
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
