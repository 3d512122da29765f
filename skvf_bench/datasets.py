"""Datasets: the real image data sets available offline.

(Image folders on disk, the user's own photos, are read by :mod:`skvf.folders`.)

- :func:`load_digits_images` (scikit-learn's 8x8 digits, upscaled) and
  :func:`load_fashion_mnist` (Debian's ``dataset-fashion-mnist``) are small real image
  data sets with class names, for offline experiments and tests.
- :func:`few_shot_split` draws m images per class for fitting and holds out the rest.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.utils import check_random_state

__all__ = [
    "DIGIT_NAMES",
    "FASHION_MNIST_HOME",
    "FASHION_MNIST_NAMES",
    "few_shot_split",
    "load_digits_images",
    "load_fashion_mnist",
]

#: Class names of :func:`load_digits_images`, by digit.
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: Class names of :func:`load_fashion_mnist`, by label index of the original data set.
FASHION_MNIST_NAMES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)

#: Where Debian's ``dataset-fashion-mnist`` package installs the data.
FASHION_MNIST_HOME = "/usr/share/datasets/fashion-mnist"


def load_digits_images(scale: int = 4, n_class: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits as small RGB images with class names.

    The 1797 8x8 images of :func:`sklearn.datasets.load_digits` (16 grey levels,
    bright strokes on black) are scaled to 0-255 and upscaled bilinearly.

    Parameters
    ----------
    scale : int, default=4
        Upscaling factor: images are ``8 * scale`` pixels square (32x32 by default).
    n_class : int, default=10
        Keep the digits 0 to ``n_class - 1``.

    Returns
    -------
    images : ndarray of uint8, shape (n_images, 8 * scale, 8 * scale, 3)
        An image stack, accepted wherever skvf takes images.
    names : ndarray of str, shape (n_images,), dtype object
        "zero" ... "nine" (:data:`DIGIT_NAMES`).

    Examples
    --------
    >>> images, names = load_digits_images(scale=2)
    >>> images.shape, names[:3].tolist()
    ((1797, 16, 16, 3), ['zero', 'one', 'two'])
    """
    from sklearn.datasets import load_digits

    if not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}.")
    if not isinstance(n_class, (int, np.integer)) or not 1 <= n_class <= 10:
        raise ValueError(f"n_class must be an int between 1 and 10, got {n_class!r}.")
    digits = load_digits(n_class=n_class)
    grey = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    side = 8 * scale
    upscaled = np.stack(
        [
            np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BILINEAR))
            for image in grey
        ]
    )
    images = np.repeat(upscaled[..., None], 3, axis=-1)
    names = np.asarray([DIGIT_NAMES[label] for label in digits.target], dtype=object)
    return images, names


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        data = stream.read()
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise ValueError(
            f"{path} is not an IDX file of the expected kind (magic number {magic}, "
            f"expected {expected_magic}); the file may be corrupt."
        )
    n_dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * n_dims)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: {values.size} values for shape {shape}.")
    return values.reshape(shape)


def _find_idx(home: Path, stem: str) -> Path:
    for candidate in (home / f"{stem}.gz", home / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}(.gz) not found in {os.fspath(home)!r}. On Debian or "
        "Ubuntu install the data with `apt-get install dataset-fashion-mnist` (it lands in "
        f"{FASHION_MNIST_HOME}), or pass data_home= a folder holding the four IDX files "
        "of https://github.com/zalandoresearch/fashion-mnist."
    )


def load_fashion_mnist(
    subset: str = "train",
    max_per_class: int | None = None,
    data_home: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Zalando's Fashion-MNIST: 28x28 grey photos of 10 kinds of clothing, with names.

    Reads the IDX files (gzip-compressed or not) of Debian's ``dataset-fashion-mnist``
    package: 60,000 training and 10,000 test images, several classes confusable
    (t-shirt / shirt / pullover / coat; sneaker / sandal / ankle boot).

    Parameters
    ----------
    subset : {"train", "test", "all"}, default="train"
        Which split to read; "all" is train then test.
    max_per_class : int or None, default=None
        Keep at most this many images per class (the first ones, in file order), for
        fast experiments.
    data_home : str, os.PathLike or None, default=None
        Folder holding the IDX files; default :data:`FASHION_MNIST_HOME`.

    Returns
    -------
    images : ndarray of uint8, shape (n_images, 28, 28)
        A grayscale image stack (dark background), accepted wherever skvf takes images.
    names : ndarray of str, shape (n_images,), dtype object
        Class names from :data:`FASHION_MNIST_NAMES`.

    Raises
    ------
    FileNotFoundError
        The data is not installed; the message says how to install it.
    """
    if subset not in ("train", "test", "all"):
        raise ValueError(f"subset must be 'train', 'test' or 'all', got {subset!r}.")
    if max_per_class is not None and (
        not isinstance(max_per_class, (int, np.integer)) or max_per_class < 1
    ):
        raise ValueError(f"max_per_class must be a positive int or None, got {max_per_class!r}.")
    home = Path(data_home if data_home is not None else FASHION_MNIST_HOME).expanduser()
    prefixes = {"train": ["train"], "test": ["t10k"], "all": ["train", "t10k"]}[subset]
    images, labels = [], []
    for prefix in prefixes:
        labels_path = _find_idx(home, f"{prefix}-labels-idx1-ubyte")
        images_path = _find_idx(home, f"{prefix}-images-idx3-ubyte")
        split_labels = _read_idx(labels_path, 2049)
        split_images = _read_idx(images_path, 2051)
        if len(split_labels) != len(split_images):
            raise ValueError(
                f"{images_path} holds {len(split_images)} images but {labels_path} "
                f"{len(split_labels)} labels."
            )
        images.append(split_images)
        labels.append(split_labels)
    images_array, labels_array = np.concatenate(images), np.concatenate(labels)
    if max_per_class is not None:
        keep = np.concatenate(
            [np.flatnonzero(labels_array == label)[:max_per_class] for label in range(10)]
        )
        keep.sort()
        images_array, labels_array = images_array[keep], labels_array[keep]
    names = np.asarray(FASHION_MNIST_NAMES, dtype=object)[labels_array]
    return images_array, names


def few_shot_split(
    names,
    m: int,
    random_state=None,
    max_test_per_class: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into m images per class for fitting and held-out images for testing.

    Parameters
    ----------
    names : array-like of shape (n_images,)
        The class of each image.
    m : int
        Images per class drawn for fitting ("shots").
    random_state : int, RandomState instance or None, default=None
        Controls the draw.
    max_test_per_class : int or None, default=None
        Hold out at most this many of the remaining images per class (drawn at random);
        ``None`` holds out all of them. A class with exactly ``m`` images has none held out.

    Returns
    -------
    fit_indices : ndarray of int
        Sorted indices of the fitting images: ``m`` per class.
    test_indices : ndarray of int
        Sorted indices of the held-out images, disjoint from ``fit_indices``.

    Raises
    ------
    ValueError
        A class has fewer than ``m`` images.

    Examples
    --------
    >>> fit_idx, test_idx = few_shot_split(["a", "a", "a", "b", "b"], m=2, random_state=0)
    >>> len(fit_idx), len(test_idx)
    (4, 1)
    """
    labels = np.asarray(names, dtype=object).ravel()
    if not isinstance(m, (int, np.integer)) or m < 1:
        raise ValueError(f"m must be a positive int, got {m!r}.")
    if max_test_per_class is not None and (
        not isinstance(max_test_per_class, (int, np.integer)) or max_test_per_class < 0
    ):
        raise ValueError(
            f"max_test_per_class must be a non-negative int or None, got {max_test_per_class!r}."
        )
    rng = check_random_state(random_state)
    fit_parts, test_parts = [], []
    for label in sorted(set(labels.tolist()), key=str):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < m:
            raise ValueError(f"class {label!r} has {len(members)} images, fewer than m={m} shots.")
        fit_parts.append(members[:m])
        held_out = members[m:]
        test_parts.append(held_out if max_test_per_class is None else held_out[:max_test_per_class])
    return np.sort(np.concatenate(fit_parts)), np.sort(np.concatenate(test_parts))
