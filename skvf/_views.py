"""Augmented views of the training images, averaged into the features prototypes are built from.

FineR (ICLR 2024) builds each class's image prototype from several augmented views per
image (a random crop and a horizontal flip), averaging the views' features, so that a
prototype holds what the images show rather than where the camera stood.
``NeaRClassifier(prototype_views=k)`` does the same at fit: each training image gets
``k`` views, encoded by the backbone's image tower, and the feature it lends the
prototypes is the unit-norm mean of its own and its views' (centred, unit-norm)
features. The training images are still scored by their own features, as ``predict``
scores new images, which get no views: ``predict`` costs no extra pass.

A view is a deterministic function of the image's content digest, its index and a
seed (:func:`view_seed`), so the same image gets the same views in every fit with the
same seed, in any order or subset (a cross-validation fold), and the views' features
are stored beside the images' under ``memory``, each under a key no image digest can
take (:func:`view_key`).
"""

from __future__ import annotations

import copy
import math

import numpy as np

from ._features import encode_images, feature_store, to_embedding_space
from ._store import cached_values, stable_hash

__all__ = [
    "VIEW_AUGMENTATION",
    "augmented_view",
    "encode_views",
    "view_averaged_features",
    "view_key",
    "view_seed",
]

#: The augmentation of a view: a random resized crop keeping ``scale`` of the image's
#: area at an aspect ratio in ``ratio`` (torchvision's ``RandomResizedCrop`` sampling),
#: then a horizontal flip with probability ``flip``. Mild, as the garment benchmark's
#: 48-pixel images are resized to the tower's 32: a crop of 80% of the area still
#: shows the whole garment in most images, and its pattern at the resolution the
#: tower sees.
VIEW_AUGMENTATION = {"scale": (0.8, 1.0), "ratio": (3 / 4, 4 / 3), "flip": 0.5}

# Ten tries at a crop that fits, then the whole image, as RandomResizedCrop does.
_CROP_TRIES = 10


def view_seed(random_state: np.random.RandomState) -> int:
    """The seed of every view of a fit, drawn from a copy of the fit's random state.

    A copy, so that the seeds every other stage draws are those of a fit without views:
    switching views on changes the prototypes and nothing else.

    Examples
    --------
    >>> state = np.random.RandomState(0)
    >>> view_seed(state) == view_seed(state)
    True
    """
    return int(copy.deepcopy(random_state).randint(np.iinfo(np.int32).max))


def view_key(digest: str, index: int, seed: int) -> str:
    """The store key of view ``index`` of the image with content digest ``digest``.

    A hash of the digest, the index, the seed and :data:`VIEW_AUGMENTATION`: the
    pixels of the view are a function of these, and an image's own digest (a hash of
    its pixels alone, 40 hex digits) is never one of these keys (48).

    Examples
    --------
    >>> len(view_key("ab" * 20, 0, 1)), view_key("ab" * 20, 0, 1) != view_key("ab" * 20, 1, 1)
    (48, True)
    """
    return stable_hash(
        {"image": digest, "view": int(index), "seed": int(seed), "augmentation": VIEW_AUGMENTATION},
        length=48,
    )


def _view_rng(digest: str, index: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), int(digest, 16)])


def augmented_view(image, rng: np.random.Generator):
    """A random resized crop of an RGB PIL image, flipped left-right half the time.

    The crop keeps its own size: the backbone's preprocessing resizes it, as it does
    the whole image.

    Parameters
    ----------
    image : PIL.Image.Image
    rng : numpy.random.Generator

    Returns
    -------
    PIL.Image.Image

    Examples
    --------
    >>> from PIL import Image
    >>> view = augmented_view(Image.new("RGB", (48, 48)), np.random.default_rng(0))
    >>> 40 <= view.width <= 48 and 40 <= view.height <= 48
    True
    """
    from PIL import Image

    width, height = image.size
    low, high = VIEW_AUGMENTATION["scale"]
    log_ratio = np.log(VIEW_AUGMENTATION["ratio"])
    box = (0, 0, width, height)
    for _ in range(_CROP_TRIES):
        area = width * height * rng.uniform(low, high)
        ratio = math.exp(rng.uniform(*log_ratio))
        crop_width = round(math.sqrt(area * ratio))
        crop_height = round(math.sqrt(area / ratio))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            left = int(rng.integers(0, width - crop_width + 1))
            top = int(rng.integers(0, height - crop_height + 1))
            box = (left, top, left + crop_width, top + crop_height)
            break
    view = image.crop(box)
    if rng.random() < VIEW_AUGMENTATION["flip"]:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return view


def encode_views(
    backbone,
    images: list,
    digests: list[str],
    n_views: int,
    seed: int,
    cache_root,
    batch_size: int,
    verbose: int = 0,
):
    """Image-tower features of ``n_views`` augmented views of every image.

    Read from and written to the backbone's feature store (:func:`~skvf._features.
    feature_store`), each view under its :func:`view_key`; only the views missing there
    are drawn and encoded.

    Parameters
    ----------
    backbone : skvf._backbone.Backbone
    images : list of PIL.Image.Image
    digests : list of str
        Content digest of each image.
    n_views : int
    seed : int
        From :func:`view_seed`.
    cache_root : pathlib.Path or None
    batch_size : int
    verbose : int, default=0

    Returns
    -------
    features : ndarray of shape (n_images, n_views, embed_dim), float32
        Unnormalised, as :func:`~skvf._features.encode_images` returns them.
    n_encoded : int
        Views the tower encoded.
    """
    views = [(i, j) for i in range(len(images)) for j in range(n_views)]
    keys = [view_key(digests[i], j, seed) for i, j in views]

    def encode(subset):
        drawn = [augmented_view(images[i], _view_rng(digests[i], j, seed)) for i, j in subset]
        return encode_images(backbone, drawn, batch_size, verbose)

    width = int(backbone.config["embed_dim"])
    if not views:
        return np.zeros((len(images), 0, width), dtype=np.float32), 0
    vectors, n_encoded = cached_values(encode, views, keys, feature_store(cache_root, backbone))
    features = np.stack(vectors).astype(np.float32, copy=False)
    return features.reshape(len(images), n_views, width), n_encoded


def view_averaged_features(
    features: np.ndarray,
    view_features: np.ndarray,
    mean: np.ndarray | None = None,
    projection: np.ndarray | None = None,
) -> np.ndarray:
    """Unit-norm mean of each image's feature and its views' features.

    Parameters
    ----------
    features : ndarray of shape (n_images, dim)
        Unit-norm image features, in the embedding space.
    view_features : ndarray of shape (n_images, n_views, width)
        Features of each image's views as the image tower gives them
        (:func:`encode_views`); brought into the images' space as the images were
        (:func:`~skvf._features.to_embedding_space` with ``mean`` and ``projection``).
    mean : ndarray of shape (width,) or None, default=None
        The training mean the images were centred on.
    projection : ndarray of shape (width, dim) or None, default=None
        The projection the images went through.

    Returns
    -------
    ndarray of shape (n_images, dim), float32

    Examples
    --------
    >>> image = np.array([[1.0, 0.0]])
    >>> views = np.array([[[0.0, 3.0]]])
    >>> print(view_averaged_features(image, views).round(3))
    [[0.707 0.707]]
    """
    n_images, n_views, width = np.shape(view_features)
    flat = np.reshape(view_features, (n_images * n_views, width))
    embedded = to_embedding_space(flat, mean, projection)
    total = np.asarray(features, dtype=np.float64)
    total = total + embedded.reshape(n_images, n_views, total.shape[1]).sum(axis=1)
    norms = np.linalg.norm(total, axis=1, keepdims=True)
    return np.divide(total, norms, out=np.zeros_like(total), where=norms > 0).astype(np.float32)
