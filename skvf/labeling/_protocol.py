"""What skvf asks of a labeler, and how it calls one.

A labeler is a scikit-learn estimator with ``fit(X)`` and ``transform(X) -> names``;
optionally ``label(X) -> (names, valid_mask)`` when some images may get no usable name,
a class attribute ``answer_neutral_params``: the names of its parameters that change
how answers are fetched (concurrency, timeouts, progress bars) but not what they are, so
that a cache of answers stays valid when only those change; and a fitted attribute
``naming_context_``: what ``fit`` learned from the training images that every answer
depends on (a JSON-able value, ``None`` when nothing), such as the category, granularity
and expert persona that ``MLLMLabeler(prompt="expert")`` infers.
"""

from __future__ import annotations

import numpy as np

from .._store import ItemStore, cached_values, stable_hash

__all__ = ["answer_determining_params", "cached_labels", "label_items"]


def label_items(labeler, items):
    """Ask a labeler for one name per item; returns ``(names, valid)``.

    Uses the labeler's ``label(X) -> (names, valid)`` when it has one, else its
    ``transform(X)`` (every name valid), and checks that the answer is one ``str`` per
    valid item.

    Parameters
    ----------
    labeler : fitted labeler
    items : list or ndarray
        Images (or feature rows) to name.

    Returns
    -------
    names : ndarray of object, shape (n_items,)
    valid : ndarray of bool, shape (n_items,)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> namer = FunctionTransformer(lambda rows: np.where(rows[:, 0] > 0, "cat", "dog"))
    >>> names, valid = label_items(namer.fit(None), np.array([[1.0], [-1.0]]))
    >>> names.tolist(), valid.tolist()
    (['cat', 'dog'], [True, True])
    """
    if hasattr(labeler, "label"):
        names, valid = labeler.label(items)
    else:
        names = labeler.transform(items)
        valid = np.ones(len(items), dtype=bool)
    names = np.asarray(names, dtype=object).ravel()
    valid = np.asarray(valid, dtype=bool).ravel()
    if len(names) != len(items):
        raise ValueError(
            f"the labeler returned {len(names)} names for {len(items)} images; a labeler "
            "must return exactly one name per image."
        )
    if len(valid) != len(items):
        raise ValueError(
            f"the labeler's label() returned a mask of {len(valid)} values for "
            f"{len(items)} images; it must return (names, valid) with one entry per image."
        )
    for index, name in enumerate(names):
        if valid[index] and not isinstance(name, str):
            raise TypeError(
                f"the labeler returned {name!r} ({type(name).__name__}) for image {index}; "
                "names must be str."
            )
    return names, valid


def answer_determining_params(labeler) -> dict:
    """The labeler's parameters that decide its answers: the key of an answer cache.

    Every parameter (``get_params(deep=True)``) except those the labeler lists in its
    ``answer_neutral_params`` class attribute.

    Parameters
    ----------
    labeler : estimator

    Returns
    -------
    dict

    Examples
    --------
    >>> from skvf import MLLMLabeler
    >>> params = answer_determining_params(MLLMLabeler(model="gpt-4o", verbose=1))
    >>> params["model"], "verbose" in params
    ('gpt-4o', False)
    """
    neutral = frozenset(getattr(labeler, "answer_neutral_params", ()))
    return {
        key: value for key, value in labeler.get_params(deep=True).items() if key not in neutral
    }


def cached_labels(labeler, items, digests, cache_root):
    """Names of ``items`` from a fitted labeler, through a per-image answer cache.

    Parameters
    ----------
    labeler : fitted labeler
    items : list or ndarray
        Images (or feature rows).
    digests : list of str
        Content key of each item.
    cache_root : pathlib.Path or None
        Cache directory (``None``: ask for every item). Answers are stored under a
        namespace hashing the labeler's class, :func:`answer_determining_params` and
        its ``naming_context_`` when it has one that is not ``None``: answers asked in
        another context are other answers.

    Returns
    -------
    names : ndarray of object, shape (n_items,)
        ``None`` where the labeler gave no usable name.
    n_asked : int
        Items the labeler was asked to name (the cache's misses).
    """
    store = None
    if cache_root is not None:
        key = {"labeler": type(labeler).__qualname__, "params": answer_determining_params(labeler)}
        context = getattr(labeler, "naming_context_", None)
        if context is not None:
            key["naming_context"] = context
        store = ItemStore(cache_root, "labels-" + stable_hash(key), "json", _is_label_record)

    def ask(subset):
        names, valid = label_items(labeler, subset)
        return [{"name": name if ok else None} for name, ok in zip(names, valid, strict=True)]

    answers, n_asked = cached_values(ask, items, digests, store)
    return np.asarray([answer["name"] for answer in answers], dtype=object), n_asked


def _is_label_record(record) -> bool:
    """A stored label: ``{"name": <non-empty str or None>}``."""
    if not isinstance(record, dict) or set(record) != {"name"}:
        return False
    name = record["name"]
    return name is None or (isinstance(name, str) and name.strip() != "")
