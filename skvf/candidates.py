"""Candidate sets from nearest neighbours in a frozen image-feature space.

Images that look alike usually share a class, so the names the labeler gave to an
image's nearest neighbours are plausible names for the image itself. The candidate set
``S_i`` of image ``i`` is its own name plus the names of its ``n_neighbors`` nearest
neighbours; each member carries a vote count.

The neighbours come from maintained libraries: scikit-learn's brute-force search
(exact), faiss-cpu's inverted-file index (approximate, the optional ``ann`` extra:
``pip install 'skvf[ann]'``), or any scikit-learn neighbours object passed as
``neighbors``.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, clone
from sklearn.preprocessing import normalize
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import check_is_fitted

from ._sklearn_compat import HasMethods, Interval, StrOptions, fit_context
from .serialization import register_trusted_type

__all__ = [
    "NeighborCandidateBuilder",
    "build_candidate_votes",
    "candidate_votes",
    "nearest_neighbors",
    "recount_candidate_votes",
]


# Largest training set searched exactly under algorithm="auto" when faiss-cpu is
# installed. On 2 shared CPU cores and 512-d features exact search took 0.28-0.34 s at
# 2,000 images, where the index was 1.4-1.8x faster; 0.7-1.1 s at 4,000 (the index
# 1.2-1.8x, finding 0.993-1.000 of the neighbours) and 3.0-4.5 s at 8,000 (2.0-2.5x,
# 0.985-1.000): exact while it costs a fraction of a second.
_EXACT_MAX_SAMPLES = 2000
# The index (measured on 2 shared CPU cores, docs/results.md): lists each image searches,
# and lists per square root of the number of images. On N/100 Gaussian blobs at 100,000
# x 64, 8 of 4 sqrt(N) lists found 0.98-1.00 of the exact neighbours (with sqrt(N)
# lists: 0.88 probing 4, 0.95 probing 16); on 70,000 Fashion-MNIST photos (PCA'd
# pixels, 512-d) 0.96, and probing 12 of them 0.98 in 1.5x the time.
_N_PROBE = 8
_LISTS_PER_ROOT = 4
# faiss warns when it trains a list on fewer images than this, so there are at most
# N / 39 lists. Its k-means trains on 16 images per list for 5 iterations: at 100,000 x
# 64 that took 2 s against 11 s for 39 images and faiss's 10 iterations (recall 0.984
# against 0.997 on the blobs, 0.960 against 0.959 on the photos).
_MIN_ROWS_PER_LIST = 39
_TRAINING_ROWS_PER_LIST = 16
_KMEANS_ITERATIONS = 5


def _nearest_first(distances, indices, rows: np.ndarray, n_kept: int):
    """Each row's ``n_kept`` nearest found points other than itself (and the distance of
    the next one): nearer first, equal distances to the lower index."""
    # the row itself, and a place the search left empty (-1), go last
    left_out = (indices == rows[:, None]) | (indices < 0)
    distances = np.where(left_out, np.inf, distances)
    order = np.lexsort((indices, distances))
    ranked = np.take_along_axis(indices, order, axis=1)
    ranked_distances = np.take_along_axis(distances, order, axis=1)
    return ranked[:, :n_kept], ranked_distances[:, : n_kept + 1]


def _exact_neighbors(points: np.ndarray, n_neighbors: int, rows: np.ndarray) -> np.ndarray:
    """The exact neighbours of ``rows`` (sorted, distinct) among all rows of ``points``.

    scikit-learn's brute-force search keeps any ``n`` of the points tied at its ``n``-th
    distance; a row whose last kept neighbour ties with the next point found is searched
    again, four times as wide, until the next point is farther, so that equal distances
    go to the lower index.
    """
    from sklearn.neighbors import NearestNeighbors

    n_samples = len(points)
    search = NearestNeighbors(algorithm="brute", metric="euclidean").fit(points)
    found = np.empty((len(rows), n_neighbors), dtype=np.int64)
    pending = np.arange(len(rows))
    n_asked = n_neighbors + 2  # the row itself, and one to see past the last kept
    while len(pending):
        n_asked = min(n_asked, n_samples)
        queries = rows[pending]
        # every row: the points themselves, not a copy
        query_points = points if len(queries) == n_samples else points[queries]
        distances, indices = search.kneighbors(query_points, n_neighbors=n_asked)
        ranked, ranked_distances = _nearest_first(distances, indices, queries, n_neighbors)
        settled = (ranked_distances[:, -2] < ranked_distances[:, -1]) | (n_asked == n_samples)
        found[pending[settled]] = ranked[settled]
        pending = pending[~settled]
        n_asked *= 4
    return found


def _faiss():
    """The faiss module, or ``None`` where the ``ann`` extra is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _ivf_neighbors(
    faiss, points: np.ndarray, n_neighbors: int, n_lists: int | None, n_probe: int, seed
) -> np.ndarray:
    """Neighbours from faiss's inverted-file index; rows it found too few for, exactly."""
    n_samples, n_features = points.shape
    if n_lists is None:
        n_lists = min(round(_LISTS_PER_ROOT * np.sqrt(n_samples)), n_samples // _MIN_ROWS_PER_LIST)
    n_lists = max(1, min(n_lists, n_samples))
    points32 = np.ascontiguousarray(points, dtype=np.float32)
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(n_features), n_features, n_lists)
    index.cp.max_points_per_centroid = _TRAINING_ROWS_PER_LIST
    index.cp.niter = _KMEANS_ITERATIONS
    if seed is not None:
        index.cp.seed = seed
    index.train(points32)
    index.add(points32)
    index.nprobe = min(n_probe, n_lists)
    distances, indices = index.search(points32, n_neighbors + 1)
    rows = np.arange(n_samples)
    neighbors, _ = _nearest_first(distances, indices, rows, n_neighbors)
    short = np.flatnonzero((neighbors < 0).any(axis=1))
    if len(short):
        neighbors[short] = _exact_neighbors(points, n_neighbors, short)
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

    Exact search is scikit-learn's brute force (``NearestNeighbors(algorithm="brute")``,
    euclidean distance, on rows scaled to unit length for cosine), which works through
    the rows in chunks (``sklearn.set_config(working_memory=...)``): memory grows with
    ``n_samples``, time with its square. Equal distances go to the lower index.
    ``"ivf"`` is approximate: faiss's inverted-file index (``IndexIVFFlat``), each row
    searching the rows of the ``n_probe`` k-means lists nearest to it in float32 (equal
    distances to the lower index among what it finds).

    Parameters
    ----------
    features : ndarray of shape (n_samples, n_features)
    n_neighbors : int
        Neighbours per row, the row itself excluded.
    metric : {"cosine", "euclidean"}
    algorithm : {"auto", "exact", "ivf"}
        ``"auto"`` is exact search up to ``exact_max_samples`` rows and the
        inverted-file index above, or exact search at any size where faiss-cpu is not
        installed. ``"ivf"`` needs faiss-cpu (``pip install 'skvf[ann]'``).
    exact_max_samples : int
    n_lists : int or None
        Lists of the index; ``None`` is 4 times the square root of ``n_samples``,
        rounded, at most one per 39 rows (faiss's minimum to train a list). At most
        ``n_samples`` are used.
    n_probe : int
        Lists each row searches, its own included; ``n_probe >= n_lists`` searches
        every row.
    random_state : int or None
        Seed of the index's k-means; ``None`` is faiss's own fixed seed.

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
    features = np.asarray(features)
    if features.dtype not in (np.float32, np.float64):
        features = features.astype(np.float64)
    # euclidean order on unit rows is cosine order
    points = normalize(features) if metric == "cosine" else features
    small = algorithm == "auto" and len(points) <= exact_max_samples
    faiss = None if algorithm == "exact" or small else _faiss()
    if algorithm == "ivf" and faiss is None:
        raise ImportError(
            "algorithm='ivf' needs faiss-cpu: pip install 'skvf[ann]' (algorithm='auto' "
            "searches exactly without it)."
        )
    if faiss is None:
        return _exact_neighbors(points, n_neighbors, np.arange(len(points)))
    return _ivf_neighbors(faiss, points, n_neighbors, n_lists, n_probe, random_state)


def _given_neighbors(estimator, features: np.ndarray) -> np.ndarray:
    """Each image's neighbours from a scikit-learn neighbours object, nearest first.

    An object with ``kneighbors`` is fitted and asked for the training images' own
    neighbours (``kneighbors()``, which leaves each image out); otherwise its
    ``fit_transform`` graph is read, each image keeping as many neighbours other than
    itself as the image with the fewest. Equal distances go to the lower index.
    """
    n_samples = len(features)
    rows = np.arange(n_samples)
    if hasattr(estimator, "kneighbors"):
        distances, indices = estimator.fit(features).kneighbors()
        neighbors, _ = _nearest_first(distances, indices, rows, indices.shape[1])
        return neighbors.astype(np.int64, copy=False)
    if hasattr(estimator, "fit_transform"):
        graph = estimator.fit_transform(features)
    else:
        graph = estimator.fit(features).transform(features)
    graph = sparse.csr_array(graph)
    if graph.shape != (n_samples, n_samples):
        raise ValueError(
            f"neighbors={estimator!r} gave a graph of shape {graph.shape}; expected "
            f"({n_samples}, {n_samples}), one row and column per image."
        )
    counts = np.diff(graph.indptr)
    owner = np.repeat(rows, counts)
    columns = graph.indices.astype(np.int64)
    itself = columns == owner
    n_kept = int((counts - np.bincount(owner[itself], minlength=n_samples)).min())
    if n_kept < 1:
        raise ValueError(
            f"neighbors={estimator!r} gave an image no neighbour other than itself; "
            "every image needs at least one."
        )
    distances = np.where(itself, np.inf, graph.data)
    order = np.lexsort((columns, distances, owner))
    rank = np.arange(len(order)) - np.repeat(graph.indptr[:-1], counts)
    return columns[order][rank < n_kept].reshape(n_samples, n_kept)


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
        ``"exact"``: scikit-learn's brute-force search (``NearestNeighbors``), in
        chunks: memory linear in the number of images (a unit-length copy of the
        features, for cosine), time growing with its square (on 2 shared CPU cores
        0.3 s at 2,000 images, 3-4.5 s at 8,000, 2.2 minutes at 100,000 x 64 and 7.6
        at 100,000 x 512). Equal distances go to the lower index. ``"ivf"``:
        faiss-cpu's approximate inverted-file index (k-means lists; each image
        searches the images of its ``n_probe`` nearest lists, on faiss's OpenMP
        threads, which ``threadpoolctl.threadpool_limits`` bounds), from the ``ann``
        extra: ``pip install 'skvf[ann]'``; 9 s at 100,000 x 64 and 35 s at 100,000 x
        512, holding a float32 copy of the features. ``"auto"``: exact up to
        ``exact_max_samples`` images, the index above; exact at any size where
        faiss-cpu is not installed.
    exact_max_samples : int, default=2000
        Largest training set searched exactly under ``algorithm="auto"``.
    n_lists : int or None, default=None
        Lists of the index (``"ivf"``); ``None`` is 4 times the square root of the
        number of images, rounded, at most one per 39 images (faiss's minimum to
        train a list). Capped at the number of images.
    n_probe : int, default=8
        Lists each image searches under ``"ivf"``, its own included: more finds more
        of the exact neighbours, for more time; ``n_probe >= n_lists`` searches every
        image.
    self_weight : float, default=1.0
        Votes of an image's own labeler name in its candidate set (positive, so the
        own name is always a candidate).
    random_state : int, RandomState instance or None, default=None
        Seed of the index's k-means; ``None`` is faiss's own fixed seed. The
        neighbours found depend only on it and the features, not on the number of
        threads.
    neighbors : estimator or None, default=None
        Neighbours from an object of your own instead, cloned and fitted on the
        features: a ``NearestNeighbors``-like object (its ``kneighbors()`` gives each
        image's neighbours, the image left out) or a ``KNeighborsTransformer``-like one
        (its ``fit_transform`` gives a sparse distance graph; each image keeps as many
        neighbours other than itself as the image with the fewest), as ``Isomap`` and
        ``SpectralEmbedding`` users precompute neighbours. The object's own settings
        (number of neighbours, metric) are used; ``n_neighbors``, ``metric``,
        ``algorithm``, ``exact_max_samples``, ``n_lists``, ``n_probe`` and
        ``random_state`` are not. ``None``: the search above.

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

    See Also
    --------
    sklearn.neighbors.NearestNeighbors, sklearn.neighbors.KNeighborsTransformer :
        objects ``neighbors`` accepts.

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

    Neighbours from a scikit-learn transformer, here by euclidean distance:

    >>> from sklearn.neighbors import KNeighborsTransformer
    >>> builder = NeighborCandidateBuilder(neighbors=KNeighborsTransformer(n_neighbors=2))
    >>> builder.fit(features, [0, 1, 1, 1]).neighbors_
    array([[1, 3],
           [0, 3],
           [3, 1],
           [2, 1]])
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
        "neighbors": [HasMethods(["fit", "kneighbors"]), HasMethods(["fit", "transform"]), None],
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
        neighbors=None,
    ):
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.algorithm = algorithm
        self.exact_max_samples = exact_max_samples
        self.n_lists = n_lists
        self.n_probe = n_probe
        self.self_weight = self_weight
        self.random_state = random_state
        self.neighbors = neighbors

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
        n_samples = len(features)
        labels = _check_label_shape(labels, n_samples)
        if self.neighbors is None and n_samples <= self.n_neighbors:
            raise ValueError(
                f"n_neighbors={self.n_neighbors} needs at least {self.n_neighbors + 1} images, "
                f"got {n_samples}; pass more images or lower candidate_builder__n_neighbors."
            )
        n_classes = _check_label_range(labels, n_classes)
        if self.neighbors is not None:
            self.neighbors_ = _given_neighbors(clone(self.neighbors), features)
        else:
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
        return self._count(labels, n_classes)

    def recount(self, labels, n_classes: int | None = None):
        """Count the votes of new names over the neighbours ``fit`` found.

        What ``fit`` on the same features with these ``labels`` gives, without searching
        for the neighbours again: for names that changed after ``fit`` (merged
        synonyms, answers asked again).

        Parameters
        ----------
        labels : array-like of int, shape (n_samples,)
            Index of each image's name, one per image ``fit`` saw.
        n_classes : int or None
            Vocabulary size; defaults to ``max(labels) + 1``.

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> builder = NeighborCandidateBuilder(n_neighbors=1).fit(features, [0, 1, 1, 1])
        >>> builder.recount([0, 0, 1, 1]).candidate_sets_.astype(int)
        array([[1, 0],
               [1, 0],
               [0, 1],
               [0, 1]])
        """
        check_is_fitted(self, "neighbors_")
        labels = _check_label_shape(labels, len(self.neighbors_))
        return self._count(labels, _check_label_range(labels, n_classes))

    def _count(self, labels: np.ndarray, n_classes: int):
        """The votes, candidate sets and name agreement of ``labels`` over ``neighbors_``."""
        self.candidate_votes_ = candidate_votes(
            labels, self.neighbors_, n_classes, self_weight=self.self_weight
        )
        self.candidate_sets_ = self.candidate_votes_ > 0
        self.name_agreement_ = (labels[self.neighbors_] == labels[:, None]).mean(axis=1)
        return self


def _check_label_shape(labels, n_samples: int) -> np.ndarray:
    """``labels`` as int64, one per image."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (n_samples,):
        raise ValueError(
            f"labels has shape {labels.shape}; expected ({n_samples},), one per image."
        )
    return labels


def _check_label_range(labels: np.ndarray, n_classes: int | None) -> int:
    """The vocabulary size (``max(labels) + 1`` when ``None``), every label within it."""
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(
            f"labels must be class indices in [0, {n_classes}), got values from "
            f"{labels.min()} to {labels.max()}."
        )
    return n_classes


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
    return _fitted_votes(builder)


def recount_candidate_votes(builder, features, labels, n_classes: int):
    """:func:`build_candidate_votes` for names that changed since the builder was fitted.

    A builder with ``recount`` (:meth:`NeighborCandidateBuilder.recount`) counts the new
    names over the neighbours it found, with no second search (minutes for 100,000
    images searched exactly); any other builder is fitted again on ``features``.

    Parameters
    ----------
    builder : NeighborCandidateBuilder, estimator with ``candidate_votes_``, or None
        Fitted by :func:`build_candidate_votes` on ``features``.
    features : ndarray of shape (n_samples, n_features)
    labels : ndarray of int, shape (n_samples,)
    n_classes : int

    Returns
    -------
    votes, agreement
        As :func:`build_candidate_votes`.
    """
    if not callable(getattr(builder, "recount", None)):
        return build_candidate_votes(builder, features, labels, n_classes)
    builder.recount(labels, n_classes=n_classes)
    return _fitted_votes(builder)


def _fitted_votes(builder):
    """A fitted builder's votes and its mean name agreement (``None`` if not reported)."""
    agreement = getattr(builder, "name_agreement_", None)
    votes = np.asarray(builder.candidate_votes_, dtype=np.float64)
    return votes, None if agreement is None else float(np.mean(agreement))
