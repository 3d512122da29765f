"""Prediction shared by skvf's CLIP classifiers: images to names through text prompts.

A fitted classifier holds unit-norm text features of its class prompts
(``class_text_features_``), a logit scale, and how image features reach the text
embedding space (``image_encoder_``, ``feature_mean_``, ``projection_``). Prediction is a
pure function of that state: images are loaded a chunk at a time, encoded by the
backbone's frozen image tower (built from the process cache, never stored) or by the
fitted ``image_encoder_``, and scored against every class prompt.
"""

from __future__ import annotations

from numbers import Real

import numpy as np
from scipy.special import softmax
from sklearn import get_config
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from ._backbone import FrozenBackboneMixin
from ._features import (
    check_encoder_output,
    encode_batch,
    preprocess_images,
    to_embedding_space,
)
from ._images import (
    DEFAULT_MAX_PIXELS,
    as_image_list,
    check_feature_rows,
    is_feature_matrix,
    iter_image_chunks,
)
from ._openset import known_scores, nearest_image_similarity
from ._prototypes import mix
from ._sklearn_compat import validate_parameter_constraints
from ._warnings import warn
from .exceptions import SkippedImagesWarning

__all__ = ["LOADING_THREADS", "PREDICT_CHUNK", "PromptClassifierMixin"]


def _is_dask_collection(X) -> bool:
    """A Dask array, Series or DataFrame (told without importing Dask)."""
    return callable(getattr(X, "__dask_graph__", None)) and not isinstance(X, type)


#: Images loaded, encoded and scored at a time by ``predict`` with an ``image_encoder``:
#: bounds memory on huge inputs. With the backbone's own tower a chunk is a batch
#: (``batch_size`` images).
PREDICT_CHUNK = 256

#: Threads loading and preprocessing the next chunks while the current one is encoded.
LOADING_THREADS = 2

#: Parameters prediction reads. ``set_params`` checks nothing and a model file can hold
#: anything, so they are checked against the estimator's constraints at every call.
_PREDICT_PARAMETERS = (
    "batch_size",
    "on_error",
    "max_image_pixels",
    "verbose",
    "device",
    "prototype_weight",
    "unknown_label",
    "known_rate",
    "known_score",
    "calibrate_probabilities",
)

_CHANGED_AFTER_FIT = (
    "the fitted model was changed after fit (by hand, or in its file). Fit it again, or "
    "load the file as it was saved."
)


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
        """Scaled cosine similarity of each image to each class prompt (plus offsets).

        Parameters
        ----------
        X : sequence of images, or a Dask array, Series or one-column DataFrame of them
            As in :meth:`fit`. A Dask collection gives a lazy Dask array, computed block
            by block where the blocks live (on a cluster, by its workers).

        Returns
        -------
        ndarray of shape (n_samples, n_classes), or (n_samples,) with two classes
            Columns follow ``classes_``; with two classes, the score of ``classes_[1]``
            minus that of ``classes_[0]`` (scikit-learn's binary convention). Bad images
            get NaN under ``on_error="skip"``.
        """
        if _is_dask_collection(X):
            return self._map_over_dask(X, "decision_function")
        scores = self._scores(X)
        if len(self.classes_) == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities over ``classes_``.

        Parameters
        ----------
        X : sequence of images, or a Dask collection of them (see :meth:`decision_function`)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Rows sum to one (NaN rows for skipped bad images). With
            ``calibrate_probabilities``, the softmax of the scores divided by the fitted
            ``probability_temperature_``.
        """
        if _is_dask_collection(X):
            return self._map_over_dask(X, "predict_proba")
        return self._probabilities_from_scores(self._scores(X))

    def predict(self, X) -> np.ndarray:
        """Name each image with one of ``classes_``.

        Parameters
        ----------
        X : sequence of images, or a Dask collection of them (see :meth:`decision_function`)

        Returns
        -------
        ndarray of str, shape (n_samples,)
            ``None`` for a bad image under ``on_error="skip"``; ``unknown_label``, when
            set, for an image whose :meth:`score_samples` is below
            ``unknown_threshold_``.
        """
        if _is_dask_collection(X):
            return self._map_over_dask(X, "predict")
        check_is_fitted(self, "class_text_features_")
        unknown = getattr(self, "unknown_label", None)
        self._check_unknown_label(unknown, "unknown_label")
        n_classes = len(self.classes_)
        if unknown is None:
            scores = self._scores(X)
        else:
            both = self._scores(X, self._scores_and_known_from_features, n_classes + 1)
            scores, known = both[:, :n_classes], both[:, n_classes]
        ok = np.isfinite(scores).all(axis=1)
        names = np.full(len(scores), None, dtype=object)
        names[ok] = self.classes_[np.argmax(scores[ok], axis=1)]
        if unknown is not None:
            names[ok & (known < self.unknown_threshold_)] = unknown
        return names

    def _check_unknown_label(self, unknown, given_as: str) -> None:
        """Refuse an unknown label that is also a class name: its answers would be ambiguous.

        ``given_as`` names the setting in the message (``unknown_label``; ``unknown``
        for the CLI, which says it as ``--unknown``).
        """
        if unknown is not None and unknown in {str(name) for name in self.classes_}:
            raise ValueError(
                f"{given_as}={unknown!r} is also one of the model's classes_, so an image "
                f"answered {unknown!r} could be of that class or unlike every class. "
                f"Choose a label that is no class name (e.g. {unknown + ' (unseen)'!r})."
            )

    def _probabilities_and_known(self, X) -> tuple[np.ndarray, np.ndarray]:
        """``predict_proba`` and ``score_samples`` of ``X`` from one pass over the images."""
        n_classes = len(self.classes_)
        both = self._scores(X, self._scores_and_known_from_features, n_classes + 1)
        return self._probabilities_from_scores(both[:, :n_classes]), both[:, n_classes]

    def _probabilities_from_scores(self, scores) -> np.ndarray:
        """Softmax of class scores (tempered with ``calibrate_probabilities``); NaN rows stay."""
        scores = np.asarray(scores, dtype=np.float64)
        if getattr(self, "calibrate_probabilities", False):
            scores = scores / self.probability_temperature_
        probabilities = np.full_like(scores, np.nan)
        ok = np.isfinite(scores).all(axis=1)
        probabilities[ok] = softmax(scores[ok], axis=1)
        return probabilities

    def score_samples(self, X) -> np.ndarray:
        """Known-ness of each image: higher is more like the training classes.

        The score named by ``known_score``; ``predict`` answers ``unknown_label`` below
        ``unknown_threshold_``. Like the ``score_samples`` of scikit-learn's outlier
        detectors.

        Parameters
        ----------
        X : sequence of images, or a Dask collection of them (see :meth:`decision_function`)

        Returns
        -------
        ndarray of shape (n_samples,)
            NaN for skipped bad images.
        """
        if _is_dask_collection(X):
            return self._map_over_dask(X, "score_samples")
        check_is_fitted(self, "class_text_features_")
        return self._scores(X, self._known_from_features, 1)[:, 0]

    def _check_prediction_state(self) -> None:
        """Refuse parameters and fitted values that would make every prediction wrong.

        A batch size of -1 or a NaN logit scale gives no error deep down, only NaN scores
        (``None`` names): checked here, by name, before any image is read.
        """
        check_is_fitted(self, "class_text_features_")
        name = type(self).__name__
        constraints = getattr(self, "_parameter_constraints", {})
        if not get_config()["skip_parameter_validation"]:
            # A file saved before a parameter existed lacks it: its default applies.
            used = [
                parameter
                for parameter in _PREDICT_PARAMETERS
                if parameter in constraints and hasattr(self, parameter)
            ]
            validate_parameter_constraints(
                {parameter: constraints[parameter] for parameter in used},
                {parameter: getattr(self, parameter) for parameter in used},
                caller_name=name,
            )

        def refuse(attribute: str, what: str):
            raise ValueError(f"{name}.{attribute} {what}: {_CHANGED_AFTER_FIT}")

        def finite_array(attribute: str, ndim: int, shape=None):
            value = getattr(self, attribute, None)
            try:
                array = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                refuse(attribute, f"is not an array of numbers (got {type(value).__name__})")
            if array.ndim != ndim or (shape is not None and array.shape != shape):
                expected = f"shape {shape}" if shape is not None else f"{ndim} dimension(s)"
                refuse(attribute, f"has shape {array.shape}, expected {expected}")
            if not np.isfinite(array).all():
                refuse(attribute, "holds NaN or infinite values")
            return array

        classes = np.asarray(self.classes_)
        if classes.ndim != 1 or len(classes) == 0:
            refuse("classes_", f"has shape {classes.shape}, expected one name per class")
        text = finite_array("class_text_features_", 2)
        if len(text) != len(classes):
            refuse(
                "class_text_features_",
                f"has {len(text)} rows for {len(classes)} classes_",
            )

        def positive_number(attribute: str):
            value = getattr(self, attribute, None)
            if (
                isinstance(value, bool)
                or not isinstance(value, (Real, np.number))
                or not np.isfinite(value)
                or value <= 0
            ):
                refuse(attribute, f"is {value!r}, not a finite positive number")

        if getattr(self, "calibrate_probabilities", False):
            positive_number("probability_temperature_")
        if getattr(self, "unknown_label", None) is not None:
            threshold = getattr(self, "unknown_threshold_", None)
            if not isinstance(threshold, (Real, np.number)) or not np.isfinite(threshold):
                refuse("unknown_threshold_", f"is {threshold!r}, not a finite number")
            # A file saved before the parameters were recorded has none to compare.
            fitted_for = getattr(self, "unknown_threshold_params_", None) or {}
            for parameter, value in fitted_for.items():
                if getattr(self, parameter, value) != value:
                    raise ValueError(
                        f"{name}.unknown_threshold_ was fitted for {parameter}={value!r}, "
                        f"not {getattr(self, parameter)!r}: set {parameter}={value!r} back, "
                        "or fit again to change it."
                    )
        positive_number("logit_scale_")
        if getattr(self, "score_offsets_", None) is not None:
            finite_array("score_offsets_", 1, (len(classes),))
        if getattr(self, "projection_", None) is not None:
            projection = finite_array("projection_", 2)
            if projection.shape[1] != text.shape[1]:
                refuse(
                    "projection_",
                    f"maps to {projection.shape[1]} dimensions, the class features have "
                    f"{text.shape[1]}",
                )
        if getattr(self, "feature_mean_", None) is not None:
            finite_array("feature_mean_", 1)
        if getattr(self, "class_image_prototypes_", None) is not None:
            finite_array("class_image_prototypes_", 2, text.shape)
        if getattr(self, "known_score", None) == "knn":
            images = finite_array("known_image_features_", 2)
            if len(images) == 0 or images.shape[1] != text.shape[1]:
                refuse(
                    "known_image_features_",
                    f"has shape {images.shape}, expected rows of {text.shape[1]} features",
                )
        if isinstance(getattr(self, "prototype_weight", None), str):  # "auto": fitted
            weight = getattr(self, "prototype_weight_", None)
            if (
                isinstance(weight, bool)
                or not isinstance(weight, (Real, np.number))
                or not 0 <= weight <= 1
            ):
                refuse("prototype_weight_", f"is {weight!r}, not a number in [0, 1]")

    def _scores(self, X, from_features=None, width=None) -> np.ndarray:
        """Scores of every image for every class, shape (n_samples, n_classes).

        ``from_features`` maps a chunk's image features to ``width`` columns (default:
        :meth:`_scores_from_features`, one column per class).
        """
        self._check_prediction_state()
        from_features = from_features or self._scores_from_features
        width = width or len(self.classes_)
        if self.image_encoder_ is None:
            backbone = self._runtime_backbone()
            # A batch per chunk: the loading threads decode and preprocess the next
            # batches while the tower encodes this one.
            chunk_size = self.batch_size

            def prepare(images):
                return preprocess_images(backbone, images)

            def embed(batch):
                return encode_batch(backbone, batch)
        else:
            # The encoder's width at fit: the projection's input, else the embedding size.
            encoder_width = (
                self.projection_ if self.projection_ is not None else self.class_text_features_.T
            ).shape[0]
            chunk_size, prepare = PREDICT_CHUNK, None

            def embed(items):
                features = self.image_encoder_.transform(items)
                return check_encoder_output(features, len(items), encoder_width)

        def score(items, positions):
            scores = from_features(embed(items))
            broken = ~np.isfinite(scores).all(axis=1)
            if broken.any():
                shown = ", ".join(str(position) for position in np.asarray(positions)[broken][:5])
                raise ValueError(
                    f"{type(self).__name__} got NaN or infinite scores for {broken.sum()} "
                    f"readable image(s) (X[{shown}]"
                    + (", ..." if broken.sum() > 5 else "")
                    + "): the image features are not finite. Check the image_encoder's "
                    "output or the backbone's weights."
                )
            return scores

        if self._uses_feature_rows(X):
            rows = check_feature_rows(X, getattr(self, "n_features_in_", None), type(self).__name__)
            return score(rows, np.arange(len(rows)))
        entries = as_image_list(X)
        scores = np.full((len(entries), width), np.nan, dtype=np.float32)
        chunks = iter_image_chunks(
            entries,
            self.on_error,
            chunk_size,
            self.max_image_pixels,
            prepare=prepare,
            prefetch=LOADING_THREADS,
        )
        with tqdm(
            total=len(entries), desc="predicting", unit="image", disable=not self.verbose
        ) as bar:
            skipped = []
            for positions, items, errors in chunks:
                if len(positions):
                    scores[positions] = score(items, positions)
                skipped += errors
                bar.update(min(chunk_size, len(entries) - bar.n))
        if skipped:
            warn(
                SkippedImagesWarning(
                    f"{len(skipped)} of {len(entries)} image(s) could not be read and get no "
                    f"name: {'; '.join(skipped[:3])}" + ("; ..." if len(skipped) > 3 else ""),
                    skipped,
                )
            )
        return scores

    def _prototype_weight(self) -> float:
        """The image prototypes' share of the scores: the parameter, or for ``"auto"``
        the weight the fit chose (``prototype_weight_``)."""
        weight = getattr(self, "prototype_weight", 0.0)
        if isinstance(weight, str) and weight == "auto":
            return self.prototype_weight_
        return weight

    def _embedded(self, features) -> np.ndarray:
        """Image features as the tower or encoder gives them, in the text embedding space:
        the fitted centring and projection, unit norm."""
        return to_embedding_space(features, getattr(self, "feature_mean_", None), self.projection_)

    def _similarities(self, features):
        """Mixed similarity of image features to every class, and to its prototype.

        Returns
        -------
        similarity : ndarray of shape (n_samples, n_classes)
            Cosine to each class prompt, mixed with that to the class's image prototype
            by the prototype weight.
        prototype_similarity : ndarray of shape (n_samples, n_classes) or None
            Cosine to each image prototype; ``None`` when the model has none.
        """
        return self._embedded_similarities(self._embedded(features))

    def _embedded_similarities(self, embedded):
        """:meth:`_similarities` of features already :meth:`_embedded`."""
        text = embedded @ self.class_text_features_.T
        prototypes = getattr(self, "class_image_prototypes_", None)
        if prototypes is None:
            return text, None
        prototype_similarity = embedded @ prototypes.T
        weight = self._prototype_weight()
        if weight == 0:
            return text, prototype_similarity
        return mix(text, prototype_similarity, weight), prototype_similarity

    def _known_from_features(self, features) -> np.ndarray:
        """Known-ness scores of image features, one column (see :meth:`score_samples`)."""
        return self._scores_and_known_from_features(features)[:, -1:]

    def _scores_and_known_from_features(self, features) -> np.ndarray:
        """Class scores and the known-ness score, side by side: one image pass for both."""
        embedded = self._embedded(features)
        scores = self._embedded_scores(embedded)
        similarity, prototype_similarity = self._embedded_similarities(embedded)
        if prototype_similarity is None:
            prototype_similarity = similarity
        image_similarity = None
        if self.known_score == "knn":
            image_similarity = nearest_image_similarity(embedded, self.known_image_features_)
        known = known_scores(
            scores, similarity, prototype_similarity, self.known_score, image_similarity
        )
        return np.hstack([scores, known[:, None]])

    def _scores_from_features(self, features) -> np.ndarray:
        """Class scores of image features as the image tower or encoder gives them.

        The fitted centring and projection into the text embedding space, then the
        scaled similarity to every class prompt (mixed with that to the class's image
        prototype, ``class_image_prototypes_``, by ``prototype_weight``), plus the
        fitted per-class ``score_offsets_`` where the estimator has them (NeaR's prior
        correction).
        """
        return self._embedded_scores(self._embedded(features))

    def _embedded_scores(self, embedded) -> np.ndarray:
        """:meth:`_scores_from_features` of features already :meth:`_embedded`."""
        prototypes = getattr(self, "class_image_prototypes_", None)
        if prototypes is None or self._prototype_weight() == 0:
            # The text-only model's arithmetic, kept as it was: bit for bit.
            scores = self.logit_scale_ * embedded @ self.class_text_features_.T
        else:
            scores = self.logit_scale_ * self._embedded_similarities(embedded)[0]
        offsets = getattr(self, "score_offsets_", None)
        return scores if offsets is None else scores + offsets

    def _map_over_dask(self, X, method: str):
        """``method`` over a Dask collection of images, block by block: a lazy Dask array.

        Each block (a NumPy array or a pandas partition) goes through ``method`` where it
        lives, with the fitted estimator shipped to it: on a distributed cluster, the
        workers load the images and the backbone. The output's type is given to Dask,
        which therefore never calls ``method`` on made-up data to guess it.
        """
        check_is_fitted(self, "class_text_features_")
        n_classes = len(self.classes_)
        if method == "predict":
            meta, width = np.empty((0,), dtype=object), None
        elif method == "score_samples" or (method == "decision_function" and n_classes == 2):
            meta, width = np.empty((0,), dtype=np.float32), None
        else:
            dtype = np.float64 if method == "predict_proba" else np.float32
            meta, width = np.empty((0, n_classes), dtype=dtype), n_classes
        function = getattr(self, method)
        if not hasattr(X, "map_blocks"):  # a Dask Series or DataFrame
            if hasattr(X, "columns") and len(X.columns) != 1:
                columns = list(X.columns)
                raise ValueError(
                    f"X is a Dask DataFrame with {len(columns)} columns {columns[:5]}; pass the "
                    f"one column that holds the images, e.g. X[{columns[0]!r}]."
                )
            return X.map_partitions(function, meta=meta)
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(
                f"X is a Dask array of shape {X.shape}; pass a 1-D Dask array of image paths, "
                "or map over the blocks of an image stack yourself: "
                f"X.map_blocks(clf.{method}, drop_axis=[...], ...)."
            )
        if width is None:
            return X.map_blocks(function, dtype=meta.dtype, meta=meta)
        return X.map_blocks(
            function, new_axis=1, chunks=(X.chunks[0], (width,)), dtype=meta.dtype, meta=meta
        )

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
