"""A fine-grained benchmark from real photos: 160 garment classes at 1-10 shots.

NeaR is meant for 100-200 fine-grained classes (birds, cars, dogs, flowers) with about
three unlabeled images per class. No such data set can be downloaded here, so this
module builds one from the real product photos of Fashion-MNIST (Debian's
``dataset-fashion-mnist``): every photo of a garment type is given a colour shade and a
pattern, painted onto the garment (the photo's non-background pixels, keeping its folds
and outline), and placed on a cluttered background under varied lighting. The ten
garment types x four shades x four patterns make 160 classes named as a person would
("navy pinstriped trouser", :mod:`skvf_bench.garment_names`).

As on real fine-grained sets, the siblings of one type are what gets confused: the
shades come in neighbouring pairs (navy / royal blue, burgundy / crimson) that lighting
and colour casts push into each other, and the patterns shade into each other at this
resolution (plain / pinstriped / striped / checked), while the garment type keeps its
photo's shape. The nuisance (position, scale, lighting, colour cast, noise, clutter) is
set by parameters, so that the difficulty can be tuned to the encoder at hand.

Two pools come from disjoint photos: ``"pretraining"`` from Fashion-MNIST's training
file (for pretraining a stand-in CLIP) and ``"benchmark"`` from its test file (for
measuring). Each photo is used at most once per pool. Everything is a deterministic
function of ``random_state``.

- :func:`load_fine_garments` builds a pool: images, true names, each class's
  attributes and taxonomy.
- :func:`few_shot_draws` draws m = 1, 2, 3, 5 images per class for fitting;
  :func:`imbalanced_split` draws between 1 and 10 per class.

Examples
--------
>>> data = load_fine_garments("benchmark", n_per_class=2, image_size=32)
>>> data.images.shape, len(data.classes)
((320, 32, 32, 3), 160)
>>> data.attributes["navy pinstriped trouser"]
{'garment': 'trouser', 'shade': 'navy', 'pattern': 'pinstriped'}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.utils import check_random_state

from .datasets import few_shot_split, load_fashion_mnist
from .garment_names import (
    GARMENTS,
    PATTERNS,
    SHADE_RGB,
    SHADES,
    SIMILAR_VALUES,
    class_name,
    class_taxonomy,
)

__all__ = [
    "FineGarments",
    "few_shot_draws",
    "imbalanced_split",
    "load_fine_garments",
    "nearest_neighbour_agreement",
]

_POOL_SUBSET = {"pretraining": "train", "benchmark": "test"}
# Offsets of each pool's photos in load_fashion_mnist("all") (train then test).
_POOL_OFFSET = {"pretraining": 0, "benchmark": 60_000}
_SOURCE_SIDE = 28
_CHUNK = 512


@dataclass(frozen=True)
class FineGarments:
    """One pool of the fine-grained garment benchmark, as :func:`load_fine_garments` builds it.

    Attributes
    ----------
    images : ndarray of uint8, shape (n_images, image_size, image_size, 3)
        RGB images, grouped by class.
    names : ndarray of str, shape (n_images,), dtype object
        Each image's true class name.
    classes : ndarray of str, shape (n_classes,), dtype object
        The class names, sorted.
    attributes : dict
        ``{class name: {"garment": ..., "shade": ..., "pattern": ...}}``.
    taxonomy : dict
        ``{class name: (category, garment, shade + garment, class name)}``, generic to
        fine (:func:`skvf_bench.garment_names.class_taxonomy`).
    similar_values : dict
        ``{axis: {value: [values that look alike]}}``
        (:data:`skvf_bench.garment_names.SIMILAR_VALUES`).
    source_indices : ndarray of int, shape (n_images,)
        Each image's photo, as an index into ``load_fashion_mnist("all")`` (the training
        file's 60,000 photos, then the test file's 10,000).
    pool : str
        ``"pretraining"`` or ``"benchmark"``.
    """

    images: np.ndarray
    names: np.ndarray
    classes: np.ndarray
    attributes: dict
    taxonomy: dict
    similar_values: dict = field(repr=False)
    source_indices: np.ndarray = field(repr=False)
    pool: str = "benchmark"

    def __repr__(self) -> str:
        return (
            f"FineGarments(pool={self.pool!r}, n_images={len(self.names)}, "
            f"n_classes={len(self.classes)}, image_size={self.images.shape[1]})"
        )


def load_fine_garments(
    pool: str = "benchmark",
    n_per_class: int = 40,
    image_size: int = 48,
    garments: Sequence[str] | None = None,
    random_state: int = 0,
    scale: tuple[float, float] = (0.6, 0.9),
    lighting: float = 0.12,
    colour_cast: float = 0.05,
    pattern_contrast: tuple[float, float] = (0.25, 0.7),
    noise: float = 0.05,
    clutter: int = 4,
    data_home: str | os.PathLike | None = None,
) -> FineGarments:
    """Build a pool of the fine-grained garment benchmark: images, names, attributes.

    Each class is a garment type x shade x pattern (:mod:`skvf_bench.garment_names`).
    Its images are distinct real photos of that garment type, drawn without
    replacement, recoloured with the shade (the photo's grey levels kept as shading),
    overprinted with the pattern (in the garment's own coordinates, so it moves and
    scales with it), and composed onto a background of soft colour blobs, some in the
    benchmark's own shades. Per image: the garment's size and position, a lighting
    gain, a colour cast, the pattern's contrast and phase, and pixel noise are drawn at
    random.

    Parameters
    ----------
    pool : {"benchmark", "pretraining"}, default="benchmark"
        Which photos to use: Fashion-MNIST's test file (1,000 photos per type, so
        ``n_per_class`` up to 62 with all 16 shade x pattern variants) or its training
        file (6,000 per type: up to 375). The two pools share no photo.
    n_per_class : int, default=40
        Images per class.
    image_size : int, default=48
        Side of the square images, in pixels.
    garments : sequence of str or None, default=None
        Keep only these garment types (16 classes each); ``None``: all ten.
    random_state : int, default=0
        Seed of the photo draw and of the nuisance.
    scale : (float, float), default=(0.6, 0.9)
        Range of the garment's side as a share of the image side.
    lighting : float, default=0.12
        Standard deviation of the log lighting gain; the neighbouring shades of a pair
        differ by 0.6-1.1 in log mean level (:data:`~skvf_bench.garment_names.SHADE_RGB`).
    colour_cast : float, default=0.05
        Standard deviation of each channel's log gain (white balance).
    pattern_contrast : (float, float), default=(0.25, 0.7)
        Range of the pattern's contrast (its share of a lighter tone of the shade).
    noise : float, default=0.05
        Standard deviation of the pixel noise, on a 0-1 scale.
    clutter : int, default=4
        Colour blobs in the background.
    data_home : str, os.PathLike or None, default=None
        Where the Fashion-MNIST files are (:func:`skvf_bench.datasets.load_fashion_mnist`).

    Returns
    -------
    FineGarments
        Images grouped by class, in the order of ``classes``.

    Raises
    ------
    ValueError
        A parameter is out of range, or the pool has too few photos of a garment type
        for ``n_per_class``.

    Examples
    --------
    >>> data = load_fine_garments(n_per_class=1, garments=["trouser"], image_size=32)
    >>> data.taxonomy["plain crimson trouser"]
    ('clothing', 'trouser', 'crimson trouser', 'plain crimson trouser')
    """
    if pool not in _POOL_SUBSET:
        raise ValueError(f"pool must be 'benchmark' or 'pretraining', got {pool!r}.")
    garments = list(GARMENTS) if garments is None else list(garments)
    unknown = sorted(set(garments) - set(GARMENTS))
    if unknown or not garments:
        raise ValueError(
            f"garments must be a non-empty list of {list(GARMENTS)}; got unknown {unknown}."
        )
    _check_positive_int(n_per_class, "n_per_class")
    _check_positive_int(image_size, "image_size")
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8, got {image_size}.")
    _check_range(scale, "scale", 0.05, 1.5)
    _check_range(pattern_contrast, "pattern_contrast", 0.0, 1.0)
    for value, label in ((lighting, "lighting"), (colour_cast, "colour_cast"), (noise, "noise")):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"{label} must be a non-negative number, got {value!r}.")
    if not isinstance(clutter, (int, np.integer)) or clutter < 0:
        raise ValueError(f"clutter must be a non-negative int, got {clutter!r}.")

    photos, photo_names = load_fashion_mnist(_POOL_SUBSET[pool], data_home=data_home)
    rng = np.random.default_rng([random_state, list(_POOL_SUBSET).index(pool)])
    variants = [(shade, pattern) for shade in SHADES for pattern in PATTERNS]
    class_rows, source_parts = [], []
    for garment in sorted(garments):
        available = np.flatnonzero(photo_names == garment)
        needed = n_per_class * len(variants)
        if needed > len(available):
            raise ValueError(
                f"the {pool} pool has {len(available)} photos of {garment!r}, fewer than "
                f"n_per_class * {len(variants)} = {needed}; lower n_per_class to at most "
                f"{len(available) // len(variants)}."
            )
        drawn = rng.permutation(available)[:needed].reshape(len(variants), n_per_class)
        for (shade, pattern), photos_of_class in zip(variants, drawn, strict=True):
            class_rows.append((garment, shade, pattern))
            source_parts.append(np.sort(photos_of_class))
    order = np.argsort([class_name(*row) for row in class_rows], kind="stable")
    class_rows = [class_rows[i] for i in order]
    sources = np.concatenate([source_parts[i] for i in order])
    class_of_image = np.repeat(np.arange(len(class_rows)), n_per_class)

    shade_rgb = np.array([SHADE_RGB[shade] for _, shade, _ in class_rows], np.float32) / 255
    pattern_index = np.array([PATTERNS.index(pattern) for _, _, pattern in class_rows])
    nuisance = _draw_nuisance(
        rng, len(sources), image_size, scale, lighting, colour_cast, pattern_contrast, clutter
    )
    noise_seed = int(rng.integers(2**63))
    images = np.empty((len(sources), image_size, image_size, 3), dtype=np.uint8)
    for start in range(0, len(sources), _CHUNK):
        rows = slice(start, start + _CHUNK)
        images[rows] = _render(
            photos[sources[rows]],
            shade_rgb[class_of_image[rows]],
            pattern_index[class_of_image[rows]],
            {key: value[rows] for key, value in nuisance.items()},
            image_size,
            noise,
            np.random.default_rng([noise_seed, start]),
        )
    names_of_classes = [class_name(*row) for row in class_rows]
    return FineGarments(
        images=images,
        names=np.asarray(names_of_classes, dtype=object)[class_of_image],
        classes=np.asarray(names_of_classes, dtype=object),
        attributes={
            name: dict(zip(("garment", "shade", "pattern"), row, strict=True))
            for name, row in zip(names_of_classes, class_rows, strict=True)
        },
        taxonomy={
            name: class_taxonomy(*row)
            for name, row in zip(names_of_classes, class_rows, strict=True)
        },
        similar_values={axis: dict(values) for axis, values in SIMILAR_VALUES.items()},
        source_indices=sources + _POOL_OFFSET[pool],
        pool=pool,
    )


def _check_positive_int(value, label: str) -> None:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{label} must be a positive int, got {value!r}.")


def _check_range(value, label: str, low: float, high: float) -> None:
    try:
        first, second = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be a pair (low, high), got {value!r}.") from None
    if not low <= first <= second <= high:
        raise ValueError(
            f"{label} must be a pair (low, high) with {low} <= low <= high <= {high}, "
            f"got {value!r}."
        )


def _draw_nuisance(rng, n, size, scale, lighting, colour_cast, pattern_contrast, clutter):
    """Every per-image random choice, drawn at once so that chunking changes nothing."""
    side = rng.uniform(*scale, n) * size
    nuisance = {
        "side": side,
        "left": rng.uniform(-0.1, 1.1, n) * (size - side),
        "top": rng.uniform(-0.1, 1.1, n) * (size - side),
        "gain": np.exp(rng.normal(0.0, lighting, n)),
        "cast": np.exp(rng.normal(0.0, colour_cast, (n, 3))),
        "contrast": rng.uniform(*pattern_contrast, n),
        "phase": rng.uniform(0.0, 8.0, (n, 2)),
        "background": rng.uniform(0.35, 0.75, (n, 1)) + rng.normal(0.0, 0.06, (n, 3)),
        "gradient": rng.normal(0.0, 0.15, (n, 2)),
        # Blobs: centre (2), radii (2) as shares of the side, opacity, colour (3).
        "blob_geometry": rng.uniform(0.0, 1.0, (n, clutter, 4)) * [1, 1, 0.3, 0.3]
        + [0, 0, 0.1, 0.1],
        "blob_opacity": rng.uniform(0.3, 0.9, (n, clutter)),
        "blob_colour": _blob_colours(rng, n, clutter),
    }
    # float32 halves the rendering time against numpy's default float64.
    return {key: value.astype(np.float32) for key, value in nuisance.items()}


def _blob_colours(rng, n, clutter):
    # Half the blobs take a benchmark shade, so that the shade of the background is no
    # clue to the class; the others a random colour.
    shades = np.array([SHADE_RGB[shade] for shade in SHADES], np.float32) / 255
    palette = shades[rng.integers(len(SHADES), size=(n, clutter))]
    random_colours = rng.uniform(0.1, 0.9, (n, clutter, 3))
    return np.where(rng.random((n, clutter, 1)) < 0.5, palette, random_colours)


def _pattern(index: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The pattern's strength (0-1) at garment coordinates (u, v), in source pixels.

    Smooth bands, not hard edges, so that the pattern survives resampling without
    aliasing; pinstripes are narrow bright lines, stripes wide bands, checks the mean
    of stripes both ways.
    """
    strength = np.zeros(u.shape, dtype=np.float32)
    for value, pattern in ((1, _pinstripes), (2, _stripes), (3, _checks)):
        rows = index == value
        if rows.any():
            strength[rows] = pattern(u[rows], v[rows])
    return strength


def _pinstripes(u, v):
    return np.clip((np.cos(u * np.float32(2 * np.pi / 4.0)) - 0.55) / 0.45, 0, 1)


def _stripes(u, v):
    return np.clip(np.cos(u * np.float32(2 * np.pi / 7.0)) * 2.5, -1, 1) * 0.5 + 0.5


def _checks(u, v):
    return 0.5 * (_stripes(u, v) + _stripes(v, u))


def _render(photos, shade_rgb, pattern_index, nuisance, size, noise, rng) -> np.ndarray:
    n = len(photos)
    grid = np.arange(size, dtype=np.float32) + 0.5
    # Garment coordinates of each output pixel, in source pixels.
    to_source = (_SOURCE_SIDE / nuisance["side"])[:, None, None]
    u = (grid[None, None, :] - nuisance["left"][:, None, None]) * to_source
    v = (grid[None, :, None] - nuisance["top"][:, None, None]) * to_source
    u, v = np.broadcast_to(u, (n, size, size)), np.broadcast_to(v, (n, size, size))
    grey = _bilinear(photos.astype(np.float32) / 255, u - 0.5, v - 0.5)

    # The photo's grey levels as shading of the shade (75-100%, less than the factor of
    # about 2-3 between the shades of a pair); its non-background as the mask.
    peak = np.maximum(grey.reshape(n, -1).max(axis=1), 1e-3)[:, None, None]
    shading = (0.75 + 0.25 * grey / peak)[..., None]
    base = shade_rgb[:, None, None, :] * shading
    lighter = base * 0.4 + 0.6
    strength = (
        _pattern(pattern_index, u + nuisance["phase"][:, :1, None], v)
        * nuisance["contrast"][:, None, None]
    )[..., None]
    garment = base * (1 - strength) + lighter * strength
    alpha = np.clip(grey * 6.0, 0.0, 1.0)[..., None]

    background = _background(nuisance, max(8, size // 4), size)
    image = garment * alpha + background * (1 - alpha)
    image = image * (nuisance["gain"][:, None, None, None] * nuisance["cast"][:, None, None, :])
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(noise)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _background(nuisance, low: int, size: int) -> np.ndarray:
    """The cluttered background: a tinted gradient under soft colour blobs.

    Drawn on a ``low`` x ``low`` grid and interpolated up to ``size``: it is smooth, and
    this makes it ten times cheaper than drawing it at full size.
    """
    grid = (np.arange(low, dtype=np.float32) + 0.5) / low
    x, y = grid[None, None, :, None], grid[None, :, None, None]
    gradient = nuisance["gradient"]
    background = (
        nuisance["background"][:, None, None, :]
        + gradient[:, 0, None, None, None] * (x - 0.5)
        + gradient[:, 1, None, None, None] * (y - 0.5)
    )
    geometry = nuisance["blob_geometry"]
    for blob in range(geometry.shape[1]):
        centre_x, centre_y, radius_x, radius_y = (
            geometry[:, blob, k, None, None] for k in range(4)
        )
        inside = ((grid[None, None, :] - centre_x) / radius_x) ** 2 + (
            (grid[None, :, None] - centre_y) / radius_y
        ) ** 2
        weight = np.clip(1.5 - inside, 0, 1) * nuisance["blob_opacity"][:, blob, None, None]
        colour = nuisance["blob_colour"][:, blob, None, None, :]
        background = background + (colour - background) * weight[..., None]
    # Linear interpolation from the low grid to the full one, as one matrix per axis.
    positions = (np.arange(size, dtype=np.float32) + 0.5) * (low / size) - 0.5
    upsample = np.stack(
        [np.interp(positions, np.arange(low), np.eye(low)[k]) for k in range(low)], axis=1
    ).astype(np.float32)
    rows = np.einsum("ij,njkc->nikc", upsample, background)
    return np.ascontiguousarray(np.einsum("nikc,lk->nilc", rows, upsample))


def _bilinear(photos: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample each photo at (u, v) (columns, rows), zero outside."""
    n, side = len(photos), photos.shape[1]
    padded = np.zeros((n, side + 2, side + 2), dtype=np.float32)
    padded[:, 1:-1, 1:-1] = photos
    u = np.clip(u + 1, 0, side + 0.999)
    v = np.clip(v + 1, 0, side + 0.999)
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    fu, fv = (u - u0).astype(np.float32), (v - v0).astype(np.float32)
    flat = padded.reshape(n, -1)
    width = side + 2
    rows = np.arange(n)[:, None, None]

    def at(r, c):
        return flat[rows, r * width + c]

    return (
        at(v0, u0) * (1 - fu) * (1 - fv)
        + at(v0, u0 + 1) * fu * (1 - fv)
        + at(v0 + 1, u0) * (1 - fu) * fv
        + at(v0 + 1, u0 + 1) * fu * fv
    )


def few_shot_draws(
    names, shots: Sequence[int] = (1, 2, 3, 5), random_state=None, max_test_per_class=None
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Few-shot draws for several m: m images per class for fitting, the rest held out.

    Each m is drawn with :func:`skvf_bench.datasets.few_shot_split` from the same seed,
    so the held-out images of different m come from the same permutation of each class.

    Parameters
    ----------
    names : array-like of shape (n_images,)
        The class of each image.
    shots : sequence of int, default=(1, 2, 3, 5)
        The values of m.
    random_state : int, RandomState instance or None, default=None
    max_test_per_class : int or None, default=None
        As in :func:`skvf_bench.datasets.few_shot_split`.

    Returns
    -------
    dict
        ``{m: (fit_indices, test_indices)}``.

    Examples
    --------
    >>> draws = few_shot_draws(["a"] * 6 + ["b"] * 6, shots=(1, 3), random_state=0)
    >>> [len(draws[m][0]) for m in (1, 3)]
    [2, 6]
    """
    seed = check_random_state(random_state).randint(2**31)
    return {
        m: few_shot_split(names, m, random_state=seed, max_test_per_class=max_test_per_class)
        for m in shots
    }


def imbalanced_split(
    names, low: int = 1, high: int = 10, random_state=None, max_test_per_class=None
) -> tuple[np.ndarray, np.ndarray]:
    """An imbalanced draw: between ``low`` and ``high`` images per class for fitting.

    Each class's count is drawn uniformly from ``low`` to ``high`` (both included), as
    an unlabeled folder of real photos would hold more of some kinds than of others.

    Parameters
    ----------
    names : array-like of shape (n_images,)
        The class of each image.
    low, high : int, default=1, 10
        The range of images per class.
    random_state : int, RandomState instance or None, default=None
    max_test_per_class : int or None, default=None
        Hold out at most this many of each class's other images; ``None``: all of them.

    Returns
    -------
    fit_indices, test_indices : ndarray of int
        Sorted and disjoint.

    Raises
    ------
    ValueError
        ``low`` or ``high`` is out of range, or a class has fewer than ``high`` images.

    Examples
    --------
    >>> fit_idx, test_idx = imbalanced_split(["a"] * 12 + ["b"] * 12, random_state=0)
    >>> len(fit_idx) + len(test_idx)
    24
    """
    if not isinstance(low, (int, np.integer)) or not isinstance(high, (int, np.integer)):
        raise ValueError(f"low and high must be ints, got {low!r} and {high!r}.")
    if not 1 <= low <= high:
        raise ValueError(f"need 1 <= low <= high, got low={low} and high={high}.")
    labels = np.asarray(names, dtype=object).ravel()
    rng = check_random_state(random_state)
    fit_parts, test_parts = [], []
    for label in sorted(set(labels.tolist()), key=str):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < high:
            raise ValueError(
                f"class {label!r} has {len(members)} images, fewer than high={high}; lower "
                "high or give more images per class."
            )
        count = rng.randint(low, high + 1)
        fit_parts.append(members[:count])
        held_out = members[count:]
        test_parts.append(held_out if max_test_per_class is None else held_out[:max_test_per_class])
    return np.sort(np.concatenate(fit_parts)), np.sort(np.concatenate(test_parts))


def nearest_neighbour_agreement(features, data: FineGarments) -> dict[str, float]:
    """How often an image's nearest neighbour shares its class, and each attribute.

    The difficulty gauge of the benchmark: NeaR's candidate sets are its neighbours'
    names, so this says how often they hold the truth. Leave-one-out 1-NN by cosine
    similarity over ``features``.

    Parameters
    ----------
    features : array-like of shape (n_images, n_features)
        One row per image of ``data``.
    data : FineGarments
        The pool the features were computed on.

    Returns
    -------
    dict
        ``{"class": ..., "garment": ..., "shade": ..., "pattern": ...}``: the share of
        images whose nearest other image has the same class, garment type, shade or
        pattern.

    Examples
    --------
    >>> data = load_fine_garments(n_per_class=2, garments=["bag"], image_size=16)
    >>> agreement = nearest_neighbour_agreement(data.images.reshape(32, -1), data)
    >>> sorted(agreement)
    ['class', 'garment', 'pattern', 'shade']
    """
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or len(features) != len(data.names):
        raise ValueError(
            f"features must have shape (n_images, n_features) with n_images = "
            f"{len(data.names)}, got shape {features.shape}."
        )
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    nearest = np.empty(len(unit), dtype=int)
    for start in range(0, len(unit), 1024):
        similarity = unit[start : start + 1024] @ unit.T
        rows = np.arange(len(similarity))
        similarity[rows, start + rows] = -np.inf
        nearest[start : start + 1024] = similarity.argmax(axis=1)
    agreement = {"class": float(np.mean(data.names == data.names[nearest]))}
    for axis in ("garment", "shade", "pattern"):
        values = np.asarray([data.attributes[name][axis] for name in data.names], dtype=object)
        agreement[axis] = float(np.mean(values == values[nearest]))
    return agreement
