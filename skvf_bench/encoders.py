"""Small frozen image encoders that need no pretrained weights, for offline work.

They stand where a CLIP image tower would in tests and experiments: cheap, deterministic
and informative enough that nearest neighbours tend to share a class on simple images
(digits, Fashion-MNIST). Neither is a substitute for a pretrained encoder on photos.

- :class:`ImagePixels`: resized pixels, flattened; follow it with PCA for a compact code,
  ``make_pipeline(ImagePixels(8), PCA(32))``.
- :class:`RandomConvFeatures`: one layer of fixed random convolution filters, rectified
  and average-pooled on a grid (random features in the sense of Jarrett et al., 2009).
- :class:`HOGFeatures`: histograms of oriented gradients (Dalal and Triggs, 2005):
  local edge directions, normalised over blocks of cells, so shape counts more than
  brightness. On Fashion-MNIST its neighbours share a class more often than pixels'.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from PIL import Image
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from skvf._images import as_image_list, describe_item, load_image
from skvf._sklearn_compat import Interval, fit_context
from skvf.exceptions import ImageInputError

__all__ = ["ImagePixels", "RandomConvFeatures", "HOGFeatures"]


def _resized_pixels(X, size: int, grayscale: bool) -> np.ndarray:
    """Load images, resize them to size x size and stack them as floats in [0, 1].

    Returns an array of shape (n, size, size) for grayscale, (n, size, size, 3) for colour.
    """
    items = as_image_list(X)
    mode = "L" if grayscale else "RGB"
    shape = (size, size) if grayscale else (size, size, 3)
    stack = np.empty((len(items), *shape), dtype=np.float32)
    # One image in memory at a time: only the small resized copies are kept.
    for index, item in enumerate(items):
        try:
            image = load_image(item)
        except ImageInputError as error:
            raise ImageInputError(f"{describe_item(index, item)}: {error}") from None
        # BOX resampling averages the source pixels: an anti-aliased downscale.
        resized = image.convert(mode).resize((size, size), Image.Resampling.BOX)
        stack[index] = np.asarray(resized, dtype=np.float32) / 255.0
    return stack


class _ImageEncoder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """What the encoders share: image input, a ``fit`` that learns nothing, feature names.

    Subclasses implement ``_prepare``: check the parameters, set any fixed state (random
    filters) and return the number of output features.
    """

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the parameters; nothing is learnt from the images.

        Parameters
        ----------
        X : ignored
        y : ignored

        Returns
        -------
        self
        """
        self.n_features_out_ = self._prepare()
        return self

    @property
    def _n_features_out(self) -> int:
        return self.n_features_out_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        return tags


class _BatchedGreyEncoder(_ImageEncoder):
    """Encoders of grey ``size`` x ``size`` images, ``batch_size`` images at a time.

    Subclasses implement ``_encode`` (a batch of pixel arrays to features).
    """

    def transform(self, X) -> np.ndarray:
        """Encode the images.

        Parameters
        ----------
        X : sequence of images or image stack
            Anything :func:`skvf._images.as_image_list` accepts: paths, PIL images,
            arrays, or an image stack.

        Returns
        -------
        ndarray of float32, shape (n_images, n_features_out_)
        """
        check_is_fitted(self, "n_features_out_")
        pixels = _resized_pixels(X, self.size, grayscale=True)
        features = np.empty((len(pixels), self.n_features_out_), dtype=np.float32)
        for start in range(0, len(pixels), self.batch_size):
            stop = start + self.batch_size
            features[start:stop] = self._encode(pixels[start:stop])
        return features


class ImagePixels(_ImageEncoder):
    """Images to their resized pixels, flattened, as float32 in [0, 1].

    Parameters
    ----------
    size : int, default=16
        Images are resized to ``size`` x ``size`` pixels (aspect not kept).
    grayscale : bool, default=True
        Convert to one grey channel; otherwise keep RGB.

    Attributes
    ----------
    n_features_out_ : int
        ``size * size`` (times 3 in colour).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from sklearn.pipeline import make_pipeline
    >>> images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    >>> ImagePixels(size=8).fit_transform(images).shape
    (20, 64)
    >>> make_pipeline(ImagePixels(8), PCA(4)).fit_transform(images).shape
    (20, 4)
    """

    _parameter_constraints: dict = {
        "size": [Interval(Integral, 1, None, closed="left")],
        "grayscale": ["boolean"],
    }

    def __init__(self, size: int = 16, grayscale: bool = True):
        self.size = size
        self.grayscale = grayscale

    def _prepare(self) -> int:
        return self.size * self.size * (1 if self.grayscale else 3)

    def transform(self, X) -> np.ndarray:
        """Resize and flatten the images.

        Parameters
        ----------
        X : sequence of images or image stack
            Anything :func:`skvf._images.as_image_list` accepts: paths, PIL images,
            arrays, or an image stack.

        Returns
        -------
        ndarray of float32, shape (n_images, n_features_out_)
        """
        check_is_fitted(self, "n_features_out_")
        pixels = _resized_pixels(X, self.size, self.grayscale)
        return pixels.reshape(len(pixels), -1)


class RandomConvFeatures(_BatchedGreyEncoder):
    """A fixed, randomly initialised one-layer convolutional image encoder.

    Each image is resized to ``size`` x ``size`` (grayscale), convolved with
    ``n_filters`` random zero-mean unit-norm filters, rectified (absolute value), and
    average-pooled over a ``grid`` x ``grid`` partition of the image. The filters
    depend only on ``random_state``; nothing is learnt from the data, so the encoder is
    frozen and deterministic. Runs on CPU with numpy.

    Parameters
    ----------
    n_filters : int, default=32
        Number of random filters.
    kernel_size : int, default=5
        Filters are ``kernel_size`` x ``kernel_size`` pixels.
    size : int, default=32
        Images are resized to ``size`` x ``size`` before the convolution.
    grid : int, default=4
        Responses are averaged over ``grid`` x ``grid`` cells.
    batch_size : int, default=256
        Images convolved at once; bounds memory.
    random_state : int, RandomState instance or None, default=0
        Seed of the filters; an int makes them reproducible.

    Attributes
    ----------
    filters_ : ndarray of float32, shape (kernel_size * kernel_size, n_filters)
        The filters, one per column.
    n_features_out_ : int
        ``n_filters * grid * grid``.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    >>> RandomConvFeatures(n_filters=8, grid=2).fit_transform(images).shape
    (10, 32)
    """

    _parameter_constraints: dict = {
        "n_filters": [Interval(Integral, 1, None, closed="left")],
        "kernel_size": [Interval(Integral, 1, None, closed="left")],
        "size": [Interval(Integral, 1, None, closed="left")],
        "grid": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_filters: int = 32,
        kernel_size: int = 5,
        size: int = 32,
        grid: int = 4,
        batch_size: int = 256,
        random_state=0,
    ):
        self.n_filters = n_filters
        self.kernel_size = kernel_size
        self.size = size
        self.grid = grid
        self.batch_size = batch_size
        self.random_state = random_state

    def _prepare(self) -> int:
        """Check the sizes and draw the filters (``filters_``)."""
        if self.kernel_size > self.size:
            raise ValueError(
                f"kernel_size={self.kernel_size} is larger than the image size={self.size}."
            )
        if self.grid > self.size - self.kernel_size + 1:
            raise ValueError(
                f"grid={self.grid} is finer than the {self.size - self.kernel_size + 1} "
                "response positions per side; lower grid or kernel_size, or raise size."
            )
        rng = check_random_state(self.random_state)
        filters = rng.standard_normal((self.kernel_size * self.kernel_size, self.n_filters))
        filters -= filters.mean(axis=0)  # zero mean: respond to edges, not to brightness
        norms = np.linalg.norm(filters, axis=0)
        self.filters_ = (filters / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        return self.n_filters * self.grid * self.grid

    def _encode(self, pixels: np.ndarray) -> np.ndarray:
        k = self.kernel_size
        patches = np.lib.stride_tricks.sliding_window_view(pixels, (k, k), axis=(1, 2))
        n, height, width = patches.shape[:3]
        responses = np.abs(patches.reshape(n, height, width, k * k) @ self.filters_)
        # Average over grid cells: split each axis into `grid` nearly equal runs.
        row_cells = np.array_split(np.arange(height), self.grid)
        column_cells = np.array_split(np.arange(width), self.grid)
        pooled = np.stack(
            [
                responses[:, rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].mean(axis=(1, 2))
                for rows in row_cells
                for columns in column_cells
            ],
            axis=1,
        )
        return pooled.reshape(n, -1)


class HOGFeatures(_BatchedGreyEncoder):
    """Histograms of oriented gradients: a fixed, hand-designed shape descriptor.

    Each image is resized to ``size`` x ``size`` (grayscale); every pixel's gradient
    votes with its magnitude into one of ``n_bins`` unsigned orientation bins of its
    ``cell_size`` x ``cell_size`` cell; the histograms of each ``block_size`` x
    ``block_size`` block of cells (blocks overlap, one cell apart) are concatenated and
    scaled to unit L2 norm. The block normalisation makes the features invariant to the
    image's contrast. Nothing is learnt; runs on CPU with numpy.

    Parameters
    ----------
    size : int, default=32
        Images are resized to ``size`` x ``size`` first.
    cell_size : int, default=4
        Pixels per cell side; ``size // cell_size`` cells per side (a remainder is cut).
    n_bins : int, default=9
        Orientation bins over 0-180 degrees.
    block_size : int, default=2
        Cells per block side.
    batch_size : int, default=512
        Images processed at once; bounds memory.

    Attributes
    ----------
    n_features_out_ : int
        ``(cells - block_size + 1) ** 2 * block_size ** 2 * n_bins`` with
        ``cells = size // cell_size``.

    References
    ----------
    .. [1] Dalal and Triggs, "Histograms of Oriented Gradients for Human Detection",
       CVPR 2005.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    >>> HOGFeatures(size=16).fit_transform(images).shape
    (10, 324)
    """

    _parameter_constraints: dict = {
        "size": [Interval(Integral, 2, None, closed="left")],
        "cell_size": [Interval(Integral, 1, None, closed="left")],
        "n_bins": [Interval(Integral, 1, None, closed="left")],
        "block_size": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        size: int = 32,
        cell_size: int = 4,
        n_bins: int = 9,
        block_size: int = 2,
        batch_size: int = 512,
    ):
        self.size = size
        self.cell_size = cell_size
        self.n_bins = n_bins
        self.block_size = block_size
        self.batch_size = batch_size

    def _prepare(self) -> int:
        """Check that a block fits in the image."""
        cells = self.size // self.cell_size
        if cells < self.block_size:
            raise ValueError(
                f"size={self.size} holds {cells} cells of cell_size={self.cell_size} per "
                f"side, fewer than block_size={self.block_size}; raise size or lower "
                "cell_size or block_size."
            )
        blocks = cells - self.block_size + 1
        return blocks * blocks * self.block_size**2 * self.n_bins

    def _cell_histograms(self, pixels: np.ndarray) -> np.ndarray:
        """Magnitude-weighted orientation histograms, shape (n, cells, cells, n_bins)."""
        rows_gradient, columns_gradient = np.gradient(pixels, axis=(1, 2))
        magnitude = np.hypot(rows_gradient, columns_gradient)
        orientation = np.mod(np.arctan2(rows_gradient, columns_gradient), np.pi)
        bins = np.minimum((orientation * (self.n_bins / np.pi)).astype(int), self.n_bins - 1)
        n, cell = len(pixels), self.cell_size
        cells = self.size // cell
        span = cells * cell
        histograms = np.empty((n, cells, cells, self.n_bins), dtype=np.float32)
        for b in range(self.n_bins):
            votes = np.where(bins == b, magnitude, 0.0)[:, :span, :span]
            histograms[..., b] = votes.reshape(n, cells, cell, cells, cell).sum(axis=(2, 4))
        return histograms

    def _encode(self, pixels: np.ndarray) -> np.ndarray:
        histograms = self._cell_histograms(pixels)
        k = self.block_size
        windows = np.lib.stride_tricks.sliding_window_view(histograms, (k, k), axis=(1, 2))
        # windows: (n, blocks, blocks, n_bins, k, k) -> one vector per block
        n, blocks = len(pixels), windows.shape[1]
        vectors = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n, blocks * blocks, -1)
        norms = np.sqrt((vectors**2).sum(axis=2, keepdims=True) + 1e-12)
        return (vectors / norms).reshape(n, -1)
