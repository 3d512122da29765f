"""Image prototypes: each class's mean training image, scored beside its text prompt.

A class's image prototype is the normalised weighted mean of the (centred, unit-norm)
training image features assigned to it. Prediction mixes the cosine similarity of an
image to each class's text feature with its cosine similarity to the class's image
prototype, ``(1 - w) * text + w * image`` (FineR's classifier, ICLR 2024, mixes text and
image prototypes the same way). The text side knows what the name means; the image side
knows what the training images of the name looked like, which a few images per class
and a noisy name leave the text side unable to learn.

The first prototypes weigh each training image by its refined target; a few rounds of
reassignment (:func:`refine_prototypes`) then give each training image to the name the
mixed classifier prefers and recompute the prototypes, as k-means does, so an image
whose target was spread over generic or wrong names joins the prototype it resembles.

How much of the score the prototypes get depends on how good the names are, which no
parameter can know in advance: with a labeler that names finely, the tuned prompts
carry distinctions the images alone blur (the best weight is about 0.2 on the offline
garment benchmark); with one that names generically, the prompts learn little but the
generic word and the prototypes must carry the images (about 0.85).
:func:`agreement_weight` reads it from the training images: when the tuned prompts and
the prototypes built without each image name it alike, the prompts hold what the
images show; when they disagree, they hold the labeler's words, and the prototypes get
more of the score.
"""

from __future__ import annotations

import numpy as np

from ._openset import MIN_CALIBRATION_IMAGES, calibration_rows, leave_one_out_prototype_similarity

__all__ = [
    "AGREEMENT_WEIGHT_RULE",
    "agreement_weight",
    "image_prototypes",
    "mix",
    "mixed_similarity",
    "refine_prototypes",
    "text_prototype_agreement",
]

#: ``(intercept, slope, lowest, highest, fallback)`` of :func:`agreement_weight`:
#: ``clip(intercept - slope * agreement, lowest, highest)``, ``fallback`` when fewer
#: than :data:`~skvf._openset.MIN_CALIBRATION_IMAGES` images share their name with
#: another. Fitted on
#: the offline garment benchmark (two simulated labelers, m = 1, 2, 3, 5 and the
#: imbalanced draw, 10 seeds each), where the best weight per seed fell from about 0.85
#: at an agreement of .2 to 0.2 at .6; fitted with one setting held out at a time it
#: gained as much on the held-out one.
AGREEMENT_WEIGHT_RULE = (1.3, 1.8, 0.2, 0.9, 0.5)


def image_prototypes(features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Unit-norm weighted mean of image features per class.

    Parameters
    ----------
    features : ndarray of shape (n_samples, dim)
        Image features in the space prediction compares them in (unit-norm rows).
    weights : ndarray of shape (n_samples, n_classes)
        Non-negative weight of each image in each class's prototype (a one-hot name,
        or a probability over the classes).

    Returns
    -------
    ndarray of shape (n_classes, dim), float32
        Unit-norm rows; a class no image weighs in gets a zero row (similarity 0 to
        every image).

    Examples
    --------
    >>> import numpy as np
    >>> features = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    >>> prototypes = image_prototypes(features, np.array([[1, 0], [1, 0], [0, 0]]))
    >>> prototypes.astype(float).round(3).tolist()
    [[0.707, 0.707], [0.0, 0.0]]
    """
    weights = np.asarray(weights, dtype=np.float64)
    sums = weights.T @ np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    prototypes = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0)
    return prototypes.astype(np.float32)


def mix(text_similarity, prototype_similarity, weight: float):
    """``(1 - weight) * text_similarity + weight * prototype_similarity``.

    Examples
    --------
    >>> mix(0.0, 1.0, 0.25)
    0.25
    """
    return (1 - weight) * text_similarity + weight * prototype_similarity


def mixed_similarity(
    embedded: np.ndarray,
    text_features: np.ndarray,
    prototypes: np.ndarray,
    weight: float,
) -> np.ndarray:
    """Cosine similarity to the text features, mixed with that to the image prototypes.

    Parameters
    ----------
    embedded : ndarray of shape (n_samples, dim)
        Unit-norm image features.
    text_features, prototypes : ndarray of shape (n_classes, dim)
        Unit-norm class text features and image prototypes.
    weight : float in [0, 1]
        The image prototypes' share.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)

    Examples
    --------
    >>> import numpy as np
    >>> image = np.array([[1.0, 0.0]])
    >>> text, prototype = np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]])
    >>> mixed_similarity(image, text, prototype, 0.25).tolist()
    [[0.25]]
    """
    return mix(embedded @ text_features.T, embedded @ prototypes.T, weight)


def text_prototype_agreement(
    features: np.ndarray,
    text_features: np.ndarray,
    targets: np.ndarray,
    logit_scale: float,
    offsets: np.ndarray | None,
    prototype_features: np.ndarray | None = None,
) -> tuple[float, int]:
    """How often the tuned prompts and the image prototypes name a training image alike.

    Each training image's name is its largest target; the prototypes are those names'
    mean images, each image left out of its own
    (:func:`~skvf._openset.leave_one_out_prototype_similarity`). The agreement is the
    share of images whose best name by the text features equals their best name by
    those prototypes (both scaled, plus the offsets), over the images whose name keeps
    other images once they are left out (:func:`~skvf._openset.calibration_rows`: alone
    under its name, an image has no prototype of its own to agree on).

    Parameters
    ----------
    features : ndarray of shape (n_samples, dim)
        Unit-norm training image features.
    text_features : ndarray of shape (n_classes, dim)
        Unit-norm class text features.
    targets : ndarray of shape (n_samples, n_classes)
        The refined targets over the kept names; rows without mass are left out.
    logit_scale : float
    offsets : ndarray of shape (n_classes,) or None
    prototype_features : ndarray of shape (n_samples, dim) or None, default=None
        Unit-norm features the prototypes are built from, when not ``features``
        (the view-averaged features of ``prototype_views``).

    Returns
    -------
    agreement : float
        In [0, 1]; NaN when no image shares its name.
    n_images : int
        The images it was measured on.

    Examples
    --------
    >>> import numpy as np
    >>> features = np.array([[1.0, 0.0], [0.9, 0.44], [0.0, 1.0], [0.44, 0.9]])
    >>> targets = np.eye(2)[[0, 0, 1, 1]]
    >>> agreement, n = text_prototype_agreement(features, np.eye(2), targets, 10.0, None)
    >>> float(agreement), n
    (1.0, 4)
    """
    targets = np.asarray(targets, dtype=np.float64)
    named = targets.sum(axis=1) > 0
    names = np.argmax(targets, axis=1)
    one_hot = np.eye(targets.shape[1])[names] * named[:, None]
    shared = named & calibration_rows(one_hot, minimum=0)
    if not shared.any():
        return float("nan"), 0
    offsets = 0.0 if offsets is None else offsets
    text = logit_scale * (features @ np.asarray(text_features).T) + offsets
    prototype = leave_one_out_prototype_similarity(features, one_hot, prototype_features)
    prototype = logit_scale * prototype + offsets
    agree = np.argmax(text, axis=1) == np.argmax(prototype, axis=1)
    return float(agree[shared].mean()), int(shared.sum())


def agreement_weight(agreement: float, n_images: int) -> float:
    """The prototypes' share of the score, from :func:`text_prototype_agreement`.

    ``clip(1.3 - 1.8 * agreement, 0.2, 0.9)`` (:data:`AGREEMENT_WEIGHT_RULE`): the less
    the tuned prompts agree with the images, the more the prototypes weigh; 0.5 when
    fewer than :data:`~skvf._openset.MIN_CALIBRATION_IMAGES` images measured it.

    Parameters
    ----------
    agreement : float
    n_images : int

    Returns
    -------
    float

    Examples
    --------
    >>> agreement_weight(0.25, 100), agreement_weight(0.6, 100), agreement_weight(0.6, 3)
    (0.85, 0.22, 0.5)
    """
    intercept, slope, lowest, highest, fallback = AGREEMENT_WEIGHT_RULE
    if n_images < MIN_CALIBRATION_IMAGES or not np.isfinite(agreement):
        return fallback
    return round(float(np.clip(intercept - slope * agreement, lowest, highest)), 6)


def refine_prototypes(
    features: np.ndarray,
    text_features: np.ndarray,
    prototypes: np.ndarray,
    weight: float,
    logit_scale: float,
    offsets: np.ndarray | None,
    iterations: int,
    weights: np.ndarray,
    prototype_features: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Reassign the training images to the names the mixed classifier prefers, and repeat.

    Each round scores every training image as prediction does (mixed similarity, scaled,
    plus the per-name offsets), gives it to its best name and recomputes every
    prototype from the images it was given (:func:`image_prototypes`). A name no image
    was given keeps its prototype, as k-means keeps the centre of an empty cluster:
    with one image per class many names hold a single image, and one that moved away
    would otherwise leave its name a zero prototype, all but never predicted (on the
    offline garment benchmark that was 14-17 of about 140 names at one image per class;
    keeping them gained .015 cACC there).

    Parameters
    ----------
    features : ndarray of shape (n_samples, dim)
        Unit-norm training image features.
    text_features, prototypes : ndarray of shape (n_classes, dim)
        Unit-norm class text features and the starting image prototypes.
    weight : float in [0, 1]
        The prototypes' share of the mixed similarity.
    logit_scale : float
    offsets : ndarray of shape (n_classes,) or None
        Per-name score offsets (prior correction).
    iterations : int
        Rounds of reassignment; 0 returns ``prototypes`` unchanged.
    weights : ndarray of shape (n_samples, n_classes)
        The weights the starting prototypes were computed with.
    prototype_features : ndarray of shape (n_samples, dim) or None, default=None
        Unit-norm features the prototypes are recomputed from, when not ``features``
        (the view-averaged features of ``prototype_views``); the images are still
        scored by ``features``, as ``predict`` scores new images.

    Returns
    -------
    prototypes : ndarray of shape (n_classes, dim), float32
    weights : ndarray of shape (n_samples, n_classes)
        Each image's weight in each returned prototype (one-hot after a round; a
        prototype kept for a name no image was given weighs no image).

    Examples
    --------
    >>> import numpy as np
    >>> features = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> text = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> start = np.array([[1.0, 0.0], [0.6, 0.8]])
    >>> refined, weights = refine_prototypes(features, text, start, 0.5, 10.0, None, 1, None)
    >>> refined.astype(float).round(3).tolist()
    [[0.949, 0.316], [0.0, 1.0]]

    A name every image left keeps its prototype:

    >>> features, text = np.array([[1.0, 0.0], [0.8, 0.6]]), np.array([[1.0, 0.0], [1.0, 0.0]])
    >>> start = np.array([[0.8, 0.6], [0.0, 1.0]])
    >>> refined, weights = refine_prototypes(features, text, start, 0.5, 10.0, None, 1, None)
    >>> refined.astype(float).round(3).tolist(), weights.sum(axis=0).tolist()
    ([[0.949, 0.316], [0.0, 1.0]], [2.0, 0.0])
    """
    prototypes = np.asarray(prototypes, dtype=np.float32)
    built = features if prototype_features is None else prototype_features
    for _ in range(iterations):
        scores = logit_scale * mixed_similarity(features, text_features, prototypes, weight)
        if offsets is not None:
            scores = scores + offsets
        weights = np.eye(len(prototypes))[np.argmax(scores, axis=1)]
        chosen = image_prototypes(built, weights)
        empty = weights.sum(axis=0) == 0
        chosen[empty] = prototypes[empty]
        prototypes = chosen
    return np.asarray(prototypes, dtype=np.float32), weights
