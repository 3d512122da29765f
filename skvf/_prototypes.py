"""Image prototypes: each class's mean training image, scored beside its text prompt.

A class's image prototype is the normalised weighted mean of the (centred, unit-norm)
training image features assigned to it. Prediction mixes the cosine similarity of an
image to each class's text feature with its cosine similarity to the class's image
prototype, ``(1 - w) * text + w * image`` (FineR's classifier, ICLR 2024, mixes text and
image prototypes the same way). The text side knows what the name means; the image side
knows what the training images of the name looked like, which a few images per class
and a noisy name leave the text side unable to learn.
"""

from __future__ import annotations

import numpy as np

__all__ = ["image_prototypes", "mixed_similarity"]


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
    >>> image_prototypes(features, np.array([[1, 0], [1, 0], [0, 0]])).round(3).tolist()
    [[0.707, 0.707], [0.0, 0.0]]
    """
    weights = np.asarray(weights, dtype=np.float64)
    sums = weights.T @ np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    prototypes = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0)
    return prototypes.astype(np.float32)


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
    return (1 - weight) * (embedded @ text_features.T) + weight * (embedded @ prototypes.T)
