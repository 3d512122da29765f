"""Known-ness scores, the "unknown" threshold and probability calibration.

A model fitted on a few images per kind is then shown kinds it never saw. Each image gets
a known-ness score, higher for images like the training classes; below a threshold
chosen at ``fit`` (the score that ``known_rate`` of the training images reach),
``predict`` answers the unknown label. The scores are the standard training-free ones
(Hendrycks & Gimpel's maximum softmax probability; MaxLogit; the energy score of Liu et
al.; MCM, Ming et al., NeurIPS 2022), the cosine to the nearest image prototype, and the
mean cosine to the nearest training images (the deep nearest-neighbour score of Sun et
al., ICML 2022, averaged over a few neighbours: :func:`nearest_image_similarity`).

Training images built the prototypes they are scored against, so their scores are
computed leave-one-out: each image against its own name's prototype without itself
(and against the other training images, not itself).
An image alone under its name has no prototype of its own left: it is scored as an image
of a kind never seen would be, so only the images whose name keeps others stand for new
images of known kinds (:func:`calibration_rows`). The same leave-one-out scores fit the
temperature that calibrates ``predict_proba``, against targets that mix what the names
and what the images say (:func:`temperature_targets`).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp, softmax

from .candidates import nearest_neighbors

__all__ = [
    "KNOWN_NEIGHBORS",
    "KNOWN_SCORES",
    "MAX_KNOWN_IMAGES",
    "MIN_CALIBRATION_IMAGES",
    "TEMPERATURE_NEIGHBORS",
    "calibration_rows",
    "expected_calibration_error",
    "fit_temperature",
    "known_image_rows",
    "known_images",
    "known_scores",
    "leave_one_out_image_similarity",
    "leave_one_out_prototype_similarity",
    "nearest_image_similarity",
    "temperature_targets",
]

#: The known-ness scores :func:`known_scores` computes.
KNOWN_SCORES = ("msp", "max_logit", "energy", "mcm", "prototype", "knn")
#: Nearest training images whose mean cosine is the ``"knn"`` known-ness score.
KNOWN_NEIGHBORS = 3
#: Most training images the ``"knn"`` score compares new images with (a random subset
#: above it), which bounds the model's size and the cost of each score.
MAX_KNOWN_IMAGES = 10_000
#: Fewest training images that calibrate on their own (:func:`calibration_rows`).
MIN_CALIBRATION_IMAGES = 10
#: Nearest other training images whose names enter an image's temperature target.
TEMPERATURE_NEIGHBORS = 2


def known_scores(
    logits: np.ndarray,
    similarity: np.ndarray,
    prototype_similarity: np.ndarray,
    score: str,
    image_similarity: np.ndarray | None = None,
) -> np.ndarray:
    """Known-ness of each image: higher is more like the training classes.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_classes)
        The scores ``decision_function`` gives (scaled similarity plus offsets).
    similarity : ndarray of shape (n_samples, n_classes)
        The unscaled similarity the logits come from (cosines, mixed with prototypes).
    prototype_similarity : ndarray of shape (n_samples, n_classes)
        Cosine of each image to each class's image prototype.
    score : {"msp", "max_logit", "energy", "mcm", "prototype", "knn"}
        ``"msp"``: the largest softmax probability; ``"max_logit"``: the largest logit;
        ``"energy"``: log-sum-exp of the logits; ``"mcm"``: the largest softmax of the
        unscaled similarity (temperature 1); ``"prototype"``: the cosine to the nearest
        image prototype; ``"knn"``: ``image_similarity``.
    image_similarity : ndarray of shape (n_samples,) or None, default=None
        Mean cosine of each image to its nearest training images
        (:func:`nearest_image_similarity`); needed by ``"knn"`` only.

    Returns
    -------
    ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> logits = np.array([[4.0, 0.0], [1.0, 1.0]])
    >>> known_scores(logits, logits / 10, logits / 10, "msp").round(3).tolist()
    [0.982, 0.5]
    """
    if score == "msp":
        return softmax(logits, axis=1).max(axis=1)
    if score == "max_logit":
        return logits.max(axis=1)
    if score == "energy":
        return logsumexp(logits, axis=1)
    if score == "mcm":
        return softmax(similarity, axis=1).max(axis=1)
    if score == "prototype":
        return prototype_similarity.max(axis=1)
    if score == "knn":
        if image_similarity is None:
            raise ValueError("score='knn' needs the images' image_similarity.")
        return np.asarray(image_similarity, dtype=np.float64)
    raise ValueError(f"score must be one of {list(KNOWN_SCORES)}, got {score!r}.")


def known_image_rows(n_samples: int, random_state, maximum: int | None = None) -> np.ndarray:
    """The training images the ``"knn"`` score keeps: all, or a random ``maximum`` of them.

    Parameters
    ----------
    n_samples : int
    random_state : numpy.random.RandomState
        Draws the subset when there are more than ``maximum`` images.
    maximum : int or None, default=None
        ``None``: :data:`MAX_KNOWN_IMAGES`.

    Returns
    -------
    ndarray of int
        Increasing row indices.

    Examples
    --------
    >>> import numpy as np
    >>> known_image_rows(4, np.random.RandomState(0)).tolist()
    [0, 1, 2, 3]
    >>> len(known_image_rows(50, np.random.RandomState(0), maximum=10))
    10
    """
    maximum = MAX_KNOWN_IMAGES if maximum is None else maximum
    if n_samples <= maximum:
        return np.arange(n_samples)
    return np.sort(random_state.choice(n_samples, maximum, replace=False))


def known_images(features: np.ndarray, random_state) -> tuple[np.ndarray, np.ndarray]:
    """The training images the ``"knn"`` score keeps, and each image's score at ``fit``.

    Parameters
    ----------
    features : ndarray of shape (n_samples, dim)
        Unit-norm features of the training images, at least two.
    random_state : numpy.random.RandomState
        Draws the images kept when there are more than :data:`MAX_KNOWN_IMAGES`.

    Returns
    -------
    images : ndarray of shape (n_kept, dim)
        The kept images' features, float32 (``known_image_features_``).
    similarity : ndarray of shape (n_samples,)
        Each kept image's :func:`leave_one_out_image_similarity` among the others
        kept; NaN for an image not kept.

    Examples
    --------
    >>> import numpy as np
    >>> features = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    >>> images, similarity = known_images(features, np.random.RandomState(0))
    >>> images.dtype, similarity.round(2).tolist()
    (dtype('float32'), [0.3, 0.7, 0.4])
    """
    kept = known_image_rows(len(features), random_state)
    images = np.asarray(features[kept], dtype=np.float32)
    similarity = np.full(len(features), np.nan)
    # Scored on as many neighbours as a new image, although left out it has one image of
    # its kind fewer to be near: the threshold errs towards rejecting fewer known images.
    # On the garment benchmark, for the 5% asked, it rejected 3-5% from 3 images per kind
    # (1 image: 0.4-1.7%) and 8% with 1 to 10 images per kind, as the prototype score's
    # did; on one neighbour fewer, 6-7% and 11-13%, mostly of the kinds with 1-2 images.
    similarity[kept] = leave_one_out_image_similarity(images)
    return images, similarity


def nearest_image_similarity(
    features: np.ndarray, images: np.ndarray, n_neighbors: int = KNOWN_NEIGHBORS
) -> np.ndarray:
    """Mean cosine of each image to its ``n_neighbors`` most similar training images.

    Unlike the prototype score it does not depend on the names: an image of a kind the
    training set never held is far from every training image, whichever name the
    labeler gave them. Averaging a few neighbours steadies it where a kind has several
    training images.

    Parameters
    ----------
    features : ndarray of shape (n_samples, dim)
        Unit-norm image features.
    images : ndarray of shape (n_images, dim)
        Unit-norm features of the training images (``known_image_features_``).
    n_neighbors : int, default=KNOWN_NEIGHBORS
        At most ``n_images`` are averaged.

    Returns
    -------
    ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> images = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    >>> nearest_image_similarity(np.array([[1.0, 0.0]]), images, n_neighbors=2).tolist()
    [0.8]
    """
    images = np.asarray(images)
    if images.dtype not in (np.float32, np.float64):
        images = images.astype(np.float64)
    # In the kept images' precision (float32 in a fitted model): no copy of them per call.
    similarity = np.asarray(features, dtype=images.dtype) @ images.T
    n_neighbors = min(n_neighbors, similarity.shape[1])
    nearest = np.partition(similarity, similarity.shape[1] - n_neighbors, axis=1)
    return nearest[:, similarity.shape[1] - n_neighbors :].mean(axis=1, dtype=np.float64)


def leave_one_out_image_similarity(
    images: np.ndarray, n_neighbors: int = KNOWN_NEIGHBORS
) -> np.ndarray:
    """Each training image's :func:`nearest_image_similarity` among the others.

    An image's nearest training image is itself; scored without it, it is scored as a
    new image of its kind would be. The neighbours come from
    :func:`skvf.candidates.nearest_neighbors` (exact search, or faiss's index for many
    images).

    Parameters
    ----------
    images : ndarray of shape (n_images, dim)
        Unit-norm features of the training images, at least two.
    n_neighbors : int, default=KNOWN_NEIGHBORS
        At most ``n_images - 1`` are averaged.

    Returns
    -------
    ndarray of shape (n_images,)

    Examples
    --------
    >>> import numpy as np
    >>> images = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    >>> leave_one_out_image_similarity(images, n_neighbors=1).tolist()
    [0.6, 0.8, 0.8]
    """
    images = np.asarray(images, dtype=np.float64)
    n_neighbors = min(n_neighbors, len(images) - 1)
    neighbors = nearest_neighbors(images, n_neighbors)
    return np.einsum("id,ikd->i", images, images[neighbors]) / n_neighbors


def leave_one_out_prototype_similarity(
    features: np.ndarray, weights: np.ndarray, prototype_features: np.ndarray | None = None
) -> np.ndarray:
    """Cosine of each training image to every prototype built without that image.

    Prototype ``c`` is the normalised sum ``S_c`` of the training features weighted by
    ``weights[:, c]``; image ``i`` is scored against ``S_c - weights[i, c] * x_i``, in
    closed form.

    Parameters
    ----------
    features : ndarray of shape (n_samples, dim)
        Unit-norm training image features.
    weights : ndarray of shape (n_samples, n_classes)
        Each image's weight in each prototype (one-hot or soft).
    prototype_features : ndarray of shape (n_samples, dim) or None, default=None
        Unit-norm features the prototypes are built from, when not ``features``
        themselves (the view-averaged features of ``prototype_views``): image ``i`` is
        scored by ``features[i]`` against ``S_c - weights[i, c] * prototype_features[i]``.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        0 where nothing is left of a prototype without the image.

    Examples
    --------
    >>> import numpy as np
    >>> features = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    >>> weights = np.array([[1, 0], [0, 1], [0, 1]])
    >>> leave_one_out_prototype_similarity(features, weights).round(2).tolist()
    [[0.0, 0.32], [0.0, 0.8], [0.6, 0.8]]
    """
    features = np.asarray(features, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    # Built from p_i (x_i itself without views), scored by x_i, |p_i| = 1:
    # x_i . (S_c - w_ic p_i) and |S_c - w_ic p_i|^2 = |S_c|^2 - 2 w_ic p_i . S_c + w_ic^2.
    built = features if prototype_features is None else np.asarray(prototype_features, np.float64)
    sums = weights.T @ built
    scored = features @ sums.T
    if prototype_features is None:
        own, built_dots = 1.0, scored  # x_i . x_i = 1
    else:
        own, built_dots = np.einsum("ij,ij->i", features, built)[:, None], built @ sums.T
    dots = scored - weights * own
    squared = (sums**2).sum(axis=1)[None, :] - 2 * weights * built_dots + weights**2
    norms = np.sqrt(np.clip(squared, 0.0, None))
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 1e-6)


def calibration_rows(weights: np.ndarray, minimum: int = MIN_CALIBRATION_IMAGES) -> np.ndarray:
    """The training images whose leave-one-out scores stand for new images of known kinds.

    Left out of the prototypes, an image keeps a prototype of its own name only when
    other images carry that name (at least half an image's weight of them); an image
    alone under its name is scored against the other names' prototypes only, exactly as
    an image of a kind never seen, and would drag the threshold down to the unknowns'
    scores. With one image per kind most names are alone. When fewer than ``minimum``
    images keep a prototype, every image is used.

    Parameters
    ----------
    weights : ndarray of shape (n_samples, n_classes)
        Each image's weight in each prototype (one-hot or soft); its own name is its
        largest weight.
    minimum : int, default=MIN_CALIBRATION_IMAGES

    Returns
    -------
    ndarray of bool, shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> weights = np.eye(3)[[0, 0, 1, 2, 2]]
    >>> calibration_rows(weights, minimum=2).tolist()
    [True, True, False, True, True]
    >>> calibration_rows(weights, minimum=5).tolist()
    [True, True, True, True, True]
    """
    weights = np.asarray(weights, dtype=np.float64)
    own = np.argmax(weights, axis=1)
    rows = np.arange(len(weights))
    others = weights.sum(axis=0)[own] - weights[rows, own]
    keeps = others >= 0.5
    return keeps if keeps.sum() >= minimum else np.ones(len(weights), dtype=bool)


def temperature_targets(
    features: np.ndarray,
    names: np.ndarray,
    assignment: np.ndarray,
    prototype_weight: float,
    n_classes: int,
    n_neighbors: int = TEMPERATURE_NEIGHBORS,
) -> np.ndarray:
    """What each training image says its class probabilities are, to fit the temperature.

    The classifier mixes text scores (the names) and image prototypes (the images) with
    ``prototype_weight``; the targets mix them alike. At the text scores' share,
    ``1 - prototype_weight``, an image's target is its refined name. At the prototypes'
    share it is the names the prototype refinement gave its ``n_neighbors`` nearest
    other training images, one share each: a new image of a kind is right when it lands
    where the images of its kind landed, and its nearest training images are mostly of
    its kind. The refined names alone ask for too high a temperature where the
    prototypes moved images away from them (a generic-naming labeler); an image's own
    assignment alone for too low a one, since each image helped build its prototype.

    Parameters
    ----------
    features : ndarray of shape (n_samples, dim)
        Training image features.
    names : ndarray of int, shape (n_samples,)
        Each image's refined name.
    assignment : ndarray of int, shape (n_samples,)
        The name the prototype refinement gave each image.
    prototype_weight : float
        The prototypes' share of the scores, in [0, 1].
    n_classes : int
    n_neighbors : int, default=TEMPERATURE_NEIGHBORS
        At most ``n_samples - 1`` are used; with one image the name is the target.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        Rows sum to 1.

    Examples
    --------
    Two tight pairs; the third image was named 0 but given, like its neighbours, to 1:

    >>> import numpy as np
    >>> features = np.array([[1.0, 0.0], [0.99, 0.1], [0.1, 0.99], [0.0, 1.0]])
    >>> names, assignment = np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])
    >>> temperature_targets(features, names, assignment, 0.5, 2, n_neighbors=1).tolist()
    [[1.0, 0.0], [1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    """
    rows = np.arange(len(names))
    targets = np.zeros((len(names), n_classes))
    targets[rows, names] = 1.0 - prototype_weight
    n_neighbors = min(n_neighbors, len(names) - 1)
    if n_neighbors < 1:
        targets[rows, names] = 1.0
        return targets
    neighbors = nearest_neighbors(features, n_neighbors)
    np.add.at(
        targets,
        (np.repeat(rows, n_neighbors), assignment[neighbors].ravel()),
        prototype_weight / n_neighbors,
    )
    return targets


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature that makes ``softmax(logits / T)`` best fit ``targets`` (least NLL).

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_classes)
    targets : ndarray of shape (n_samples, n_classes)
        Rows of target probabilities (one-hot or soft).

    Returns
    -------
    float
        In [0.05, 20].

    Examples
    --------
    Labels drawn from ``softmax(z)``, scored with logits ten times too confident:

    >>> import numpy as np
    >>> from scipy.special import softmax
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(20000, 3))
    >>> true = (rng.random(20000)[:, None] > softmax(z, axis=1).cumsum(axis=1)).sum(axis=1)
    >>> round(fit_temperature(10 * z, np.eye(3)[true]), 1)
    10.0
    """
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)

    def loss(log_temperature):
        scaled = logits / np.exp(log_temperature)
        log_probabilities = scaled - logsumexp(scaled, axis=1, keepdims=True)
        return -(targets * log_probabilities).sum(axis=1).mean()

    result = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def expected_calibration_error(confidence, correct, n_bins: int = 15) -> float:
    """Expected calibration error: the bin-weighted mean gap of accuracy and confidence.

    Confidences fall in ``n_bins`` equal-width bins of (0, 1] (a confidence of exactly
    0 in the first); each bin contributes its share of the samples times
    ``|accuracy - mean confidence|`` (Guo et al., ICML 2017).

    Parameters
    ----------
    confidence : array-like of shape (n_samples,)
        The probability of the predicted class.
    correct : array-like of bool, shape (n_samples,)
    n_bins : int, default=15

    Returns
    -------
    float

    Examples
    --------
    >>> expected_calibration_error([0.9, 0.9, 0.6, 0.6], [True, False, True, True])
    0.4
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    error = 0.0
    for index in np.unique(bins):
        members = bins == index
        error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)
