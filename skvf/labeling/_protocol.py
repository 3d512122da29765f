"""What skvf asks of a labeler, and how it calls one.

A labeler is a scikit-learn estimator with ``fit(X)`` and ``transform(X) -> names``;
optionally ``label(X) -> (names, valid_mask)`` when some images may get no usable name,
a class attribute ``answer_neutral_params``: the names of its parameters that change
how answers are fetched (concurrency, timeouts, progress bars) but not what they are, so
that a cache of answers stays valid when only those change; and a fitted attribute
``naming_context_``: what ``fit`` learned from the training images that every answer
depends on (a JSON-able value, ``None`` when nothing), such as the category, granularity
and expert persona that ``MLLMLabeler(prompt="expert")`` infers.

Each answer lives in one store. A labeler that stores its own answers says so with a
class attribute ``keeps_answers = True`` (:class:`~skvf.labeling.MLLMLabeler` does, in
its ``cache``, keyed by what its requests send); ``NeaRClassifier(memory=...)`` then
stores none of them again. The answers of any other labeler are stored under
``memory``, keyed by the labeler's class and :func:`answer_determining_params`: every
parameter but those named in its class attribute ``answer_neutral_params``, the
parameters that change how answers are fetched (a progress bar, a pace) but not what
they are.

A labeler may also answer a multiple-choice question, ``choose(X, choices) -> (names,
valid)``: for each image, which of its list of candidate names it shows, ``valid`` False
where none of them does (or the answer was unusable). ``NeaRClassifier(reask=...)`` asks
it about the images whose name the candidate sets contradict.
"""

from __future__ import annotations

import inspect

import numpy as np

from .._store import ItemStore, cached_values, stable_hash
from ..names import normalize_name

__all__ = [
    "answer_determining_params",
    "cached_choices",
    "cached_labels",
    "choose_items",
    "keeps_answers",
    "label_items",
    "labeler_requests",
]


def label_items(labeler, items, *, return_reasons: bool = False):
    """Ask a labeler for one name per item; returns ``(names, valid)``.

    Uses the labeler's ``label(X) -> (names, valid)`` when it has one, else its
    ``transform(X)`` (every name valid), and checks that the answer is one ``str`` per
    valid item.

    Parameters
    ----------
    labeler : fitted labeler
    items : list or ndarray
        Images (or feature rows) to name.
    return_reasons : bool, default=False
        Also return why each item got no name: the labeler's own messages when its
        ``label`` takes ``return_reasons`` (:class:`MLLMLabeler` does), else a plain one.

    Returns
    -------
    names : ndarray of object, shape (n_items,)
    valid : ndarray of bool, shape (n_items,)
    reasons : ndarray of object, shape (n_items,)
        With ``return_reasons=True``: a message for each item without a name, ``None``
        for the others.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> namer = FunctionTransformer(lambda rows: np.where(rows[:, 0] > 0, "cat", "dog"))
    >>> names, valid = label_items(namer.fit(None), np.array([[1.0], [-1.0]]))
    >>> names.tolist(), valid.tolist()
    (['cat', 'dog'], [True, True])
    """
    reasons = None
    if return_reasons and _takes_return_reasons(labeler):
        names, valid, reasons = labeler.label(items, return_reasons=True)
    elif hasattr(labeler, "label"):
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
    if not return_reasons:
        return names, valid
    reasons = np.full(len(items), None, dtype=object) if reasons is None else reasons
    reasons = np.asarray(reasons, dtype=object).ravel()
    for index in np.flatnonzero(~valid):
        if reasons[index] is None:
            reasons[index] = f"X[{index}]: the labeler gave no usable name"
    return names, valid, reasons


def _takes_return_reasons(labeler) -> bool:
    label = getattr(labeler, "label", None)
    if label is None:
        return False
    try:
        return "return_reasons" in inspect.signature(label).parameters
    except (TypeError, ValueError):  # a builtin or an object without a signature
        return False


def keeps_answers(labeler) -> bool:
    """Whether the labeler stores its own answers (its class attribute ``keeps_answers``).

    Such a labeler's answers are never stored again by :func:`cached_labels` or
    :func:`cached_choices`: every item is handed to it, and its own store answers what
    it has seen.

    Parameters
    ----------
    labeler : estimator

    Returns
    -------
    bool

    Examples
    --------
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> from skvf import MLLMLabeler
    >>> keeps_answers(MLLMLabeler()), keeps_answers(FunctionTransformer())
    (True, False)
    """
    return getattr(type(labeler), "keeps_answers", False) is True


def labeler_requests(labeler, n_asked: int) -> int:
    """Requests a fitted labeler answered: ``n_asked``, or its own meter when it has one.

    A labeler that :func:`keeps_answers` is handed every item, the ones its store
    answers included; when it meters its requests (``usage_`` with ``calls`` and
    ``retries``) that meter, less the retries, is what it answered, requests that no item
    stands for (a naming context) included. Any other labeler was asked exactly the
    ``n_asked`` items skvf's store missed.

    Parameters
    ----------
    labeler : fitted labeler
    n_asked : int
        Items handed to the labeler (to name and to choose among names).

    Returns
    -------
    int

    Examples
    --------
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> labeler_requests(FunctionTransformer(), 12)
    12
    """
    usage = getattr(labeler, "usage_", None)
    if keeps_answers(labeler) and isinstance(usage, dict) and "calls" in usage:
        return int(usage["calls"]) - int(usage.get("retries", 0))
    return n_asked


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
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> class PacedNamer(FunctionTransformer):
    ...     answer_neutral_params = frozenset({"validate"})
    >>> params = answer_determining_params(PacedNamer(func=None))
    >>> "func" in params, "validate" in params
    (True, False)
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
        another context are other answers. Not used for a labeler that
        :func:`keeps_answers` itself.

    Returns
    -------
    names : ndarray of object, shape (n_items,)
        ``None`` where the labeler gave no usable name.
    n_asked : int
        Items the labeler was asked to name (the store's misses; every item for a
        labeler that keeps its own answers).
    """
    store = _answer_store(labeler, cache_root, "labels")

    def ask(subset):
        names, valid = label_items(labeler, subset)
        return [{"name": name if ok else None} for name, ok in zip(names, valid, strict=True)]

    answers, n_asked = cached_values(ask, items, digests, store)
    return np.asarray([answer["name"] for answer in answers], dtype=object), n_asked


def choose_items(labeler, items, choices):
    """Ask a labeler which of its choices each item shows; returns ``(names, valid)``.

    Calls the labeler's ``choose(X, choices) -> (names, valid)`` and checks the answer:
    one entry per item, and each valid name one of the item's choices after
    :func:`skvf.names.normalize_name`.

    Parameters
    ----------
    labeler : fitted labeler with ``choose``
    items : list or ndarray
        Images (or feature rows).
    choices : list of list of str
        The names offered for each item.

    Returns
    -------
    names : ndarray of object, shape (n_items,)
        The choice as offered (the spelling of ``choices``); ``None`` where ``valid`` is
        False.
    valid : ndarray of bool, shape (n_items,)
        False where the labeler chose none of the names.

    Raises
    ------
    ValueError
        The labeler answered a wrong number of entries, or a name that was not offered.

    Examples
    --------
    >>> import numpy as np
    >>> class FirstChoice:
    ...     def choose(self, X, choices):
    ...         return [options[0].upper() for options in choices], [True, False]
    >>> names, valid = choose_items(FirstChoice(), [None, None], [["cat", "dog"], ["owl"]])
    >>> names.tolist(), valid.tolist()
    (['cat', None], [True, False])
    """
    names, valid = labeler.choose(items, choices)
    names = np.asarray(names, dtype=object).ravel()
    valid = np.asarray(valid, dtype=bool).ravel()
    if len(names) != len(items) or len(valid) != len(items):
        raise ValueError(
            f"the labeler's choose() returned {len(names)} names and {len(valid)} mask "
            f"values for {len(items)} images; it must return (names, valid) with one entry "
            "per image."
        )
    chosen = np.full(len(items), None, dtype=object)
    for index in np.flatnonzero(valid):
        name = names[index]
        offered = {normalize_name(option): option for option in choices[index]}
        if not isinstance(name, str) or normalize_name(name) not in offered:
            raise ValueError(
                f"the labeler chose {name!r} for image {index}, which is not one of the "
                f"names offered ({list(choices[index])}); choose() must return one of them, "
                "or mark the image as not valid."
            )
        chosen[index] = offered[normalize_name(name)]
    return chosen, valid


def cached_choices(labeler, items, digests, choices, cache_root):
    """The labeler's choices for ``items``, through a per-image answer store.

    Answers to a choice question are other answers than names: they are stored under
    their own namespace (``choices-`` and the key of :func:`cached_labels`), keyed by
    the image's content and the names offered, so that a first name is never served as
    a chosen one, and a question asked again with the same names is answered from the
    store.

    Parameters
    ----------
    labeler : fitted labeler with ``choose``
    items : list or ndarray
        Images (or feature rows).
    digests : list of str
        Content key of each item.
    choices : list of list of str
        The names offered for each item.
    cache_root : pathlib.Path or None
        Cache directory (``None``: ask about every item); not used for a labeler that
        :func:`keeps_answers` itself.

    Returns
    -------
    names : ndarray of object, shape (n_items,)
        The chosen name, as offered; ``None`` where none was chosen.
    n_asked : int
        Items the labeler was asked about (the store's misses; every item for a
        labeler that keeps its own answers).
    """
    if len(digests) != len(choices):
        raise ValueError(f"{len(choices)} lists of choices for {len(digests)} images.")
    store = _answer_store(labeler, cache_root, "choices")
    keys = [
        stable_hash([digest, list(options)], length=32)
        for digest, options in zip(digests, choices, strict=True)
    ]

    def ask(subset):
        asked_items = [item for item, _ in subset]
        names, valid = choose_items(labeler, asked_items, [options for _, options in subset])
        return [{"name": name if ok else None} for name, ok in zip(names, valid, strict=True)]

    pairs = list(zip(items, choices, strict=True))
    answers, n_asked = cached_values(ask, pairs, keys, store)
    return np.asarray([answer["name"] for answer in answers], dtype=object), n_asked


def _answer_store(labeler, cache_root, kind: str) -> ItemStore | None:
    """The store of a labeler's answers of one kind, keyed by what decides them."""
    if cache_root is None or keeps_answers(labeler):
        return None
    key = {"labeler": type(labeler).__qualname__, "params": answer_determining_params(labeler)}
    context = getattr(labeler, "naming_context_", None)
    if context is not None:
        key["naming_context"] = context
    return ItemStore(cache_root, f"{kind}-" + stable_hash(key), "json", _is_label_record)


def _is_label_record(record) -> bool:
    """A stored label: ``{"name": <non-empty str or None>}``."""
    if not isinstance(record, dict) or set(record) != {"name"}:
        return False
    name = record["name"]
    return name is None or (isinstance(name, str) and name.strip() != "")
