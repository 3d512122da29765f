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
"""

from __future__ import annotations

import numpy as np

__all__ = ["image_prototypes", "mix", "mixed_similarity", "refine_prototypes"]


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


def refine_prototypes(
    features: np.ndarray,
    text_features: np.ndarray,
    prototypes: np.ndarray,
    weight: float,
    logit_scale: float,
    offsets: np.ndarray | None,
    iterations: int,
    weights: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Reassign the training images to the names the mixed classifier prefers, and repeat.

    Each round scores every training image as prediction does (mixed similarity, scaled,
    plus the per-name offsets), gives it to its best name and recomputes every
    prototype from the images it was given (:func:`image_prototypes`).

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

    Returns
    -------
    prototypes : ndarray of shape (n_classes, dim), float32
    weights : ndarray of shape (n_samples, n_classes)
        Each image's weight in each returned prototype (one-hot after a round).

    Examples
    --------
    >>> import numpy as np
    >>> features = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> text = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> start = np.array([[1.0, 0.0], [0.6, 0.8]])
    >>> refined, weights = refine_prototypes(features, text, start, 0.5, 10.0, None, 1, None)
    >>> refined.astype(float).round(3).tolist()
    [[0.949, 0.316], [0.0, 1.0]]
    """
    for _ in range(iterations):
        scores = logit_scale * mixed_similarity(features, text_features, prototypes, weight)
        if offsets is not None:
            scores = scores + offsets
        weights = np.eye(len(prototypes))[np.argmax(scores, axis=1)]
        prototypes = image_prototypes(features, weights)
    return np.asarray(prototypes, dtype=np.float32), weights
