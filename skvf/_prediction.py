"""Prediction shared by skvf's CLIP classifiers: images to names through text prompts.

A fitted classifier holds unit-norm text features of its class prompts
(``class_text_features_``), a logit scale, and how image features reach the text
embedding space (``image_encoder_``, ``feature_mean_``, ``projection_``). Prediction is a
pure function of that state: images are loaded a chunk at a time, encoded by the
backbone's frozen image tower (built from the process cache, never stored) or by the
fitted ``image_encoder_``, and scored against every class prompt.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ._backbone import FrozenBackboneMixin
from ._features import check_encoder_output, encode_images, to_embedding_space
from ._images import (
    DEFAULT_MAX_PIXELS,
    as_image_list,
    check_feature_rows,
    is_feature_matrix,
    iter_image_chunks,
)
from ._training import softmax
from ._warnings import warn
from .exceptions import SkippedImagesWarning

__all__ = ["PREDICT_CHUNK", "PromptClassifierMixin"]

#: Images loaded, encoded and scored at a time by ``predict``: bounds memory on huge
#: inputs (the command line reports progress in steps of it too).
PREDICT_CHUNK = 256


class PromptClassifierMixin(FrozenBackboneMixin):
    """``decision_function``, ``predict_proba`` and ``predict`` over class prompts.

    For estimators whose ``fit`` sets ``classes_``, ``class_text_features_``,
    ``logit_scale_``, ``image_encoder_`` and ``projection_`` (and optionally
    ``feature_mean_`` and ``n_features_in_``), with parameters ``image_encoder``,
    ``batch_size`` and, optionally, ``on_error``.
    """

    #: Bad images raise, the pixel bound is the default and no progress bar is shown,
    #: unless the estimator has ``on_error``, ``max_image_pixels`` and ``verbose``
    #: parameters.
    on_error = "raise"
    max_image_pixels = DEFAULT_MAX_PIXELS
    verbose = 0

    def decision_function(self, X) -> np.ndarray:
        """Scaled cosine similarity of each image to each class prompt.

        Parameters
        ----------
        X : sequence of images
            As in :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_samples, n_classes), or (n_samples,) with two classes
            Columns follow ``classes_``; with two classes, the score of ``classes_[1]``
            minus that of ``classes_[0]`` (scikit-learn's binary convention). Bad images
            get NaN under ``on_error="skip"``.
        """
        scores = self._scores(X)
        if len(self.classes_) == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities over ``classes_``.

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Rows sum to one (NaN rows for skipped bad images).
        """
        scores = np.asarray(self._scores(X), dtype=np.float64)
        probabilities = np.full_like(scores, np.nan)
        ok = np.isfinite(scores).all(axis=1)
        probabilities[ok] = softmax(scores[ok])
        return probabilities

    def predict(self, X) -> np.ndarray:
        """Name each image with one of ``classes_``.

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        ndarray of str, shape (n_samples,)
            ``None`` for a bad image under ``on_error="skip"``.
        """
        scores = self._scores(X)
        ok = np.isfinite(scores).all(axis=1)
        names = np.full(len(scores), None, dtype=object)
        names[ok] = self.classes_[np.argmax(scores[ok], axis=1)]
        return names

    def _scores(self, X) -> np.ndarray:
        """Scores of every image for every class, shape (n_samples, n_classes)."""
        check_is_fitted(self, "class_text_features_")
        if self.image_encoder_ is None:
            backbone, device = self._runtime_backbone()

            def embed(images):
                return encode_images(backbone, images, device, self.batch_size)
        else:
            # The encoder's width at fit: the projection's input, else the embedding size.
            width = (
                self.projection_ if self.projection_ is not None else self.class_text_features_.T
            ).shape[0]

            def embed(items):
                return check_encoder_output(self.image_encoder_.transform(items), len(items), width)

        def score(items):
            mean = getattr(self, "feature_mean_", None)
            features = to_embedding_space(embed(items), mean, self.projection_)
            return self.logit_scale_ * features @ self.class_text_features_.T

        if self._uses_feature_rows(X):
            return score(
                check_feature_rows(X, getattr(self, "n_features_in_", None), type(self).__name__)
            )
        entries = as_image_list(X)
        scores = np.full((len(entries), len(self.classes_)), np.nan, dtype=np.float32)
        chunks = iter_image_chunks(entries, self.on_error, PREDICT_CHUNK, self.max_image_pixels)
        with tqdm(
            total=len(entries), desc="predicting", unit="image", disable=not self.verbose
        ) as bar:
            skipped = []
            for positions, images, errors in chunks:
                if images:
                    scores[positions] = score(images)
                skipped += errors
                bar.update(min(PREDICT_CHUNK, len(entries) - bar.n))
        if skipped:
            warn(
                SkippedImagesWarning(
                    f"{len(skipped)} of {len(entries)} image(s) could not be read and get no "
                    f"name: {'; '.join(skipped[:3])}" + ("; ..." if len(skipped) > 3 else ""),
                    skipped,
                )
            )
        return scores

    def _uses_feature_rows(self, X) -> bool:
        if not is_feature_matrix(X):
            return False
        if self.image_encoder is None:
            raise ValueError(
                f"X is a 2-D numeric array of shape {X.shape}: sample rows, not images. Pass "
                "images (paths, PIL images or an (n, H, W[, C]) array), or an image_encoder "
                "that turns these rows into features."
            )
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = self.image_encoder is not None
        return tags
