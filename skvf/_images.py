"""Image input: paths, PIL images and arrays in, validated RGB PIL images out.

Every stage that looks at pixels (the CLIP image tower, the labelers, pixel encoders)
goes through :func:`load_image`, so an image is decoded, converted and bounded in memory
the same way everywhere, and a bad item is reported with its index and its path.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import warnings
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from .exceptions import ImageInputError

__all__ = [
    "check_feature_rows",
    "iter_image_chunks",
    "load_training_items",
    "LoadedImages",
    "as_image_list",
    "describe_item",
    "image_digest",
    "is_feature_matrix",
    "load_image",
    "load_images",
    "row_digest",
]

#: Longest side an image keeps after loading; larger images are downscaled on load.
DEFAULT_MAX_SIDE = 1024

#: Most pixels an image may have, read from its header before it is decoded: a 17 KB
#: PNG can declare 12000x12000 pixels and take gigabytes to decode (a decompression
#: bomb). 64 million pixels is a 9200x7000 photo.
DEFAULT_MAX_PIXELS = 64_000_000


@dataclass
class LoadedImages:
    """The result of :func:`load_images`.

    Attributes
    ----------
    images : list of PIL.Image.Image
        The valid items, as RGB images.
    indices : ndarray of int
        Position in the input of each image in ``images``.
    errors : list of str
        One message per skipped item (empty unless ``on_error="skip"``).
    """

    images: list
    indices: np.ndarray
    errors: list


def is_feature_matrix(X) -> bool:
    """Tell whether ``X`` is a 2-D numeric array of precomputed sample vectors.

    Such input is not a collection of images: an image collection given as one array has
    3 (grayscale) or 4 (colour) dimensions.
    """
    return (
        isinstance(X, np.ndarray)
        and X.ndim == 2
        and (np.issubdtype(X.dtype, np.number) or X.dtype == bool)
    )


def as_image_list(X) -> list:
    """Turn a collection of images into a list of items, one per image.

    Parameters
    ----------
    X : sequence of (str, os.PathLike, PIL.Image.Image, ndarray) or ndarray
        Paths, PIL images, HxW / HxWxC arrays, or one array of shape (n, H, W) or
        (n, H, W, C); a pandas Series or one-column DataFrame of them.

    Returns
    -------
    list
        The items of ``X``.
    """
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise ImageInputError(
            f"X is a sparse {type(X).__name__}; sparse input is not supported. Pass images, "
            "or a dense 2-D numeric array (X.toarray()) with an image_encoder."
        )
    if hasattr(X, "columns") and hasattr(X, "iloc"):  # a pandas DataFrame
        columns = list(X.columns)
        if len(columns) != 1:
            raise ImageInputError(
                f"X is a DataFrame with {len(columns)} columns {columns[:5]}; pass the one "
                f"column that holds the images, e.g. X[{columns[0] if columns else 'path'!r}]."
            )
        return list(X.iloc[:, 0].tolist())
    if isinstance(X, (str, os.PathLike, Image.Image)):
        raise ImageInputError(
            "X must be a collection of images, got a single "
            f"{type(X).__name__}; wrap it in a list: [X]."
        )
    if isinstance(X, np.ndarray):
        if X.ndim in (3, 4) and X.dtype != object:
            return list(X)
        if X.ndim == 1:
            return list(X)
        raise ImageInputError(
            f"X is an array of shape {X.shape}; expected a 1-D array of paths or images, "
            "or an image stack of shape (n, H, W) or (n, H, W, C)."
        )
    if hasattr(X, "tolist") and not isinstance(X, list):  # pandas Series and friends
        return list(X.tolist())
    if isinstance(X, Sequence):
        return list(X)
    try:
        return list(X)
    except TypeError:
        raise ImageInputError(
            f"X must be a sequence of images (paths, PIL images or arrays), got {type(X).__name__}."
        ) from None


def describe_item(index: int, item) -> str:
    """Name an input item for an error message: its index, and its path when it has one."""
    if isinstance(item, (str, os.PathLike)):
        return f"X[{index}] ({os.fspath(item)!r})"
    filename = getattr(item, "filename", "") if isinstance(item, Image.Image) else ""
    if filename:
        return f"X[{index}] (PIL image from {filename!r})"
    return f"X[{index}] ({type(item).__name__})"


def _array_to_image(array: np.ndarray) -> Image.Image:
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ImageInputError(f"array of dtype {array.dtype} is not an image")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ImageInputError(
            f"array of shape {array.shape} is not an image; expected HxW, HxWx1, HxWx3 or HxWx4"
        )
    if array.size == 0:
        raise ImageInputError(f"array of shape {array.shape} is empty")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ImageInputError("float array holds NaN or infinite values")
        top = 1.0 if array.max() <= 1.0 else 255.0
        array = np.clip(array / top * 255.0, 0, 255).round().astype(np.uint8)
    elif array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        if array.min() < 0:
            raise ImageInputError(f"integer array of dtype {array.dtype} holds negative values")
        top = 255 if array.max() <= 255 else (65535 if array.max() <= 65535 else array.max())
        array = (array.astype(np.float64) / top * 255.0).round().astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":  # callers pass an image of their own: no copy needed
        return image
    if image.mode in ("I;16", "I;16B", "I;16L"):
        # 16-bit data has a known range: scale by it, not by the image's own maximum.
        scaled = np.asarray(image, dtype=np.float64) / 65535.0 * 255.0
        return Image.fromarray(scaled.round().astype(np.uint8)).convert("RGB")
    if image.mode in ("I", "F"):
        # Wide grayscale: PIL's own convert clips at 255, so rescale instead.
        return _array_to_image(np.asarray(image)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


#: The transposition that shows an image upright, for each EXIF orientation (tag 0x0112)
#: other than 1, "as stored".
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _upright(image: Image.Image) -> Image.Image:
    """A copy of ``image`` turned as its EXIF orientation says; as stored if that cannot be read.

    Only the orientation tag is read. ``ImageOps.exif_transpose`` also rewrites the
    whole EXIF block, and fails on any wrongly typed tag (text in ``XResolution``), which
    cameras and editors do write; the pixels do not depend on those tags. A copy, so that
    it outlives the file it was read from.
    """
    try:
        transpose = _UPRIGHT.get(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # unreadable metadata: any error of PIL's parser, for any malformed block
        transpose = None
    return image.copy() if transpose is None else image.transpose(transpose)


def _reason(error: Exception) -> str:
    """Why decoding failed, in words: the error's message, led by its type where needed.

    PIL's errors for bad data (``OSError``, ``SyntaxError``, ``ValueError``) say what is
    wrong; others, such as a ``TypeError`` from a tag of the wrong type, need their name.
    """
    if isinstance(error, (OSError, SyntaxError, ValueError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _bound(image: Image.Image, max_side: int | None) -> Image.Image:
    if max_side is not None and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return image


def load_image(
    item, max_side: int | None = DEFAULT_MAX_SIDE, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Load one item as an RGB PIL image.

    Parameters
    ----------
    item : str, os.PathLike, PIL.Image.Image or ndarray
        A path to an image file, a PIL image, or an HxW / HxWxC array (uint8, 16-bit
        integers, or floats in [0, 1] or [0, 255]).
    max_side : int or None, default=1024
        Images whose longest side is larger are downscaled to it (aspect kept), which
        bounds memory for huge photos. ``None`` keeps the full size.
    max_pixels : int or None, default=64_000_000
        Images with more pixels are refused before they are decoded (decompression
        bombs). ``None`` accepts any size.

    Returns
    -------
    PIL.Image.Image
        An RGB image. Grayscale, palette, RGBA (composited on white) and 16-bit
        images are converted; EXIF orientation is applied.

    Raises
    ------
    ImageInputError
        The item is missing, unreadable, not a regular file (a FIFO, a device), empty,
        corrupt, too large, or of a type that is not an image.

    Examples
    --------
    >>> import numpy as np
    >>> load_image(np.zeros((4, 6), dtype=np.uint8)).size
    (6, 4)
    >>> load_image(np.zeros((4000, 4000), dtype=np.uint8), max_pixels=1_000_000)
    Traceback (most recent call last):
    ...
    skvf.exceptions.ImageInputError: 4000x4000 pixels ...
    """
    if isinstance(item, (str, os.PathLike)):
        try:
            with _open_regular_file(os.fspath(item)) as stream, warnings.catch_warnings():
                # The pixel bound below replaces PIL's own decompression-bomb warning.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(stream) as opened:
                    _check_size(opened.size, max_pixels)
                    if max_side is not None:
                        opened.draft("RGB", (max_side, max_side))  # cheap JPEG downscale
                    opened.load()
                    return _bound(_to_rgb(_upright(opened)), max_side)
        except ImageInputError:
            raise
        except UnidentifiedImageError:
            raise ImageInputError("not an image file PIL can read") from None
        except Image.DecompressionBombError as error:
            raise ImageInputError(f"refused as a decompression bomb: {error}") from None
        except Exception as error:  # a malformed file makes PIL raise anything (struct.error, ...)
            raise ImageInputError(f"corrupt or truncated image: {_reason(error)}") from None
    if isinstance(item, Image.Image):
        _check_size(item.size, max_pixels)
        try:
            item.load()
            return _bound(_to_rgb(_upright(item)), max_side)
        except ImageInputError:
            raise
        except Exception as error:  # as above: decoding it lazily is decoding its file
            raise ImageInputError(f"corrupt PIL image: {_reason(error)}") from None
    if isinstance(item, np.ndarray):
        if item.ndim >= 2 and item.size:
            _check_size((item.shape[1], item.shape[0]), max_pixels)
        return _bound(_to_rgb(_array_to_image(item)), max_side)
    raise ImageInputError(
        f"{type(item).__name__} is not an image; pass a path, a PIL image or an array"
    )


def _open_regular_file(path: str):
    """Open ``path`` for reading if it is a non-empty regular file; never blocks.

    The file is opened without blocking (a FIFO would otherwise wait forever for a
    writer) and checked on the open descriptor, so it cannot be swapped in between.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        reason = "broken symbolic link" if os.path.islink(path) else "file not found"
        raise ImageInputError(reason) from None
    except IsADirectoryError:
        raise ImageInputError("is a directory, not an image file") from None
    except PermissionError:
        raise ImageInputError("permission denied") from None
    except OSError as error:
        raise ImageInputError(f"cannot be opened: {error.strerror or error}") from None
    try:
        mode, size = os.fstat(descriptor).st_mode, os.fstat(descriptor).st_size
        if stat.S_ISDIR(mode):
            raise ImageInputError("is a directory, not an image file")
        if not stat.S_ISREG(mode):
            raise ImageInputError(
                "is not a regular file (a FIFO, socket or device); refused without reading it"
            )
        if size == 0:
            raise ImageInputError("is an empty file (0 bytes)")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _check_size(size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageInputError(f"has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageInputError(
            f"{width}x{height} pixels is more than max_image_pixels={max_pixels}; refused "
            "before decoding, as a possible decompression bomb. Downscale the image, or "
            "raise max_image_pixels if you trust it"
        )


def load_images(
    X,
    on_error: str = "raise",
    max_side: int | None = DEFAULT_MAX_SIDE,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> LoadedImages:
    """Load every item of ``X`` as an RGB image.

    Parameters
    ----------
    X : sequence of images or ndarray
        See :func:`as_image_list`.
    on_error : {"raise", "skip"}, default="raise"
        ``"raise"`` stops at the first bad item with an :class:`ImageInputError` naming
        its index, its path and the reason; ``"skip"`` drops bad items and reports
        them in :attr:`LoadedImages.errors`.
    max_side : int or None, default=1024
        See :func:`load_image`.
    max_pixels : int or None, default=64_000_000
        See :func:`load_image`.

    Returns
    -------
    LoadedImages
    """
    items = as_image_list(X)
    images, indices, errors = [], [], []
    for index, item in enumerate(items):
        try:
            images.append(load_image(item, max_side=max_side, max_pixels=max_pixels))
        except ImageInputError as error:
            message = f"{describe_item(index, item)}: {error}"
            if on_error == "raise":
                raise ImageInputError(
                    f"{message}. Fix or remove this item, or pass on_error='skip' to drop "
                    "bad images."
                ) from None
            errors.append(message)
            continue
        indices.append(index)
    return LoadedImages(images=images, indices=np.asarray(indices, dtype=int), errors=errors)


def image_digest(image: Image.Image) -> str:
    """Return a content hash of an RGB image: the same pixels give the same digest.

    The digest is what caches key on, so the same photo given as a path, as a PIL image
    or as an array is recognised as the same image.
    """
    hasher = hashlib.blake2b(digest_size=20)
    hasher.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    hasher.update(image.tobytes())
    return hasher.hexdigest()


def row_digest(row: np.ndarray) -> str:
    """Return a content hash of one row of a 2-D numeric ``X`` (dtype, length and bytes).

    The key of a numeric sample where :func:`image_digest` keys an image: used when a
    classifier is fitted on feature rows (scikit-learn's estimator checks, precomputed
    features).
    """
    hasher = hashlib.blake2b(digest_size=20)
    hasher.update(f"row:{row.dtype.str}:{row.shape[0]}:".encode())
    hasher.update(np.ascontiguousarray(row).tobytes())
    return hasher.hexdigest()


def load_training_items(X, on_error: str, feature_rows: bool, max_pixels=DEFAULT_MAX_PIXELS):
    """The training items of ``X``, each with its content digest.

    Parameters
    ----------
    X : sequence of images, or a 2-D numeric array of sample rows
    on_error : {"raise", "skip"}
        What a bad image does (see :func:`load_images`).
    feature_rows : bool
        ``X`` is a 2-D numeric array of rows for an image encoder, not images.
    max_pixels : int or None, default=64_000_000
        See :func:`load_image`.

    Returns
    -------
    items : list of PIL.Image.Image or ndarray
    digests : list of str
    positions : ndarray of int
        Position of each item in ``X``.
    errors : list of str
        Why each dropped item was dropped.
    n_features : int or None
        Columns of ``X`` when it holds feature rows.
    """
    if X is None:
        raise ValueError("X is None; pass a collection of training images.")
    try:
        n_items = len(X)
    except TypeError:
        X = as_image_list(X)
        n_items = len(X)
    if n_items == 0:
        raise ValueError("X is empty; NeaR needs training images to fit.")
    if feature_rows:
        items = np.asarray(X)
        if not np.all(np.isfinite(items)):
            raise ValueError("X holds NaN or infinite values; impute or drop those rows.")
        digests = [row_digest(row) for row in items]
        positions, errors, n_features = np.arange(len(items)), [], items.shape[1]
    else:
        loaded = load_images(X, on_error=on_error, max_pixels=max_pixels)
        items, positions, errors, n_features = loaded.images, loaded.indices, loaded.errors, None
        digests = [image_digest(image) for image in items]
    if len(positions) == 0:
        raise ValueError(
            f"none of the {n_items} items of X is a usable image: " + "; ".join(errors[:3])
        )
    if len(positions) < 2:
        raise ValueError(
            f"NeaR needs at least two training images; got n_samples={len(positions)}."
        )
    return items, digests, positions, errors, n_features


def iter_image_chunks(
    X,
    on_error: str,
    chunk_size: int,
    max_pixels=DEFAULT_MAX_PIXELS,
    prepare=None,
    prefetch: int = 0,
):
    """Load ``X`` a chunk at a time: yields ``(positions in X, images, errors)`` per chunk.

    Bounds memory on huge inputs; an error (raised, or reported in ``errors`` under
    ``on_error="skip"``) names the item's position in all of ``X``. Chunks come in the
    order of ``X`` and a bad item raises where it would loading one chunk after another,
    whatever ``prefetch`` is.

    Parameters
    ----------
    X : sequence of images
        See :func:`as_image_list`.
    on_error : {"raise", "skip"}
        See :func:`load_images`.
    chunk_size : int
        Items per chunk.
    max_pixels : int or None, default=64_000_000
        See :func:`load_image`.
    prepare : callable or None, default=None
        Applied to each chunk's non-empty list of images where it is loaded (for
        example preprocessing into a tensor); its result is yielded in place of the
        images.
    prefetch : int, default=0
        Chunks loaded (and prepared) ahead in as many threads while the caller works on
        the current one: decoding and resizing release the GIL, so they overlap with,
        say, a torch model. ``0`` loads each chunk in the caller's thread when asked.

    Examples
    --------
    >>> import numpy as np
    >>> stack = np.zeros((5, 4, 4), dtype=np.uint8)
    >>> [(positions.tolist(), len(images)) for positions, images, _ in
    ...  iter_image_chunks(stack, "raise", 2, prefetch=2)]
    [([0, 1], 2), ([2, 3], 2), ([4], 1)]
    """
    entries = as_image_list(X)

    def load(start):
        try:
            chunk = entries[start : start + chunk_size]
            loaded = load_images(chunk, on_error=on_error, max_pixels=max_pixels)
        except ImageInputError as error:
            raise ImageInputError(_shift_index(str(error), start)) from None
        images = loaded.images
        if prepare is not None and images:
            images = prepare(images)
        return start + loaded.indices, images, [_shift_index(e, start) for e in loaded.errors]

    starts = range(0, len(entries), chunk_size)
    if prefetch <= 0 or len(starts) == 0:
        for start in starts:
            yield load(start)
        return
    pool = ThreadPoolExecutor(max_workers=prefetch, thread_name_prefix="skvf-load")
    pending = deque()
    try:
        for start in starts:
            pending.append(pool.submit(load, start))
            if len(pending) > prefetch:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # an error or an abandoned iteration: drop the chunks not started
        pool.shutdown(wait=True, cancel_futures=True)


def _shift_index(message: str, offset: int) -> str:
    """Rewrite ``X[i]`` in a chunk's error message into the position in the whole input."""

    def shifted(match):
        return f"X[{int(match.group(1)) + offset}]"

    return re.sub(r"X\[(\d+)\]", shifted, message, count=1)


def check_feature_rows(X, n_features_in: int | None, model: str) -> np.ndarray:
    """Rows of numeric features for ``model``, fitted on rows of ``n_features_in`` columns."""
    rows = np.asarray(X, dtype=np.float64)
    if n_features_in is None:
        raise ValueError(
            f"X is a 2-D numeric array of shape {rows.shape}, but this model was fitted on "
            "images; pass images."
        )
    if rows.shape[1] != n_features_in:
        raise ValueError(
            f"X has {rows.shape[1]} features, but {model} is expecting "
            f"{n_features_in} features as input."
        )
    return rows
