"""Normalisation of free-form class names.

One function, :func:`normalize_name`, turns an answer such as ``'"The Painted Bunting."'``
into the canonical class name ``'painted bunting'``. The labelers, the estimator and the
metrics all use it, so the same answer always maps to the same class.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import numpy as np

__all__ = [
    "training_names",
    "normalize_name",
    "normalize_names",
    "merge_near_duplicates",
    "group_representatives",
]

_LEADING_ARTICLES = re.compile(r"^(?:(?:a|an|the)\s+)+")
# Keep letters, digits, hyphens and apostrophes inside words ("grey-headed", "lady's");
# everything else (quotes, full stops, brackets, asterisks of markdown) becomes a space.
_NON_NAME_CHARS = re.compile(r"[^\w\s'\-]|_")
_SPACES = re.compile(r"\s+")


def normalize_name(name: str) -> str:
    """Return the canonical form of a free-form class name.

    Lowercases, applies Unicode NFKC, strips quotes, punctuation and leading articles
    ("a", "an", "the"), and collapses whitespace.

    Parameters
    ----------
    name : str
        A raw name, e.g. an LLM's answer.

    Returns
    -------
    str
        The normalised name; ``""`` when nothing name-like is left, which callers must
        treat as an invalid answer.

    Examples
    --------
    >>> normalize_name('  "The Painted Bunting." ')
    'painted bunting'
    """
    if not isinstance(name, str):
        raise TypeError(f"a class name must be a str, got {type(name).__name__}: {name!r}")
    text = unicodedata.normalize("NFKC", name).lower()
    text = _NON_NAME_CHARS.sub(" ", text)
    text = _SPACES.sub(" ", text).strip(" '-")
    text = _LEADING_ARTICLES.sub("", text).strip(" '-")
    # A bare article is no name ("a" alone stays: letters are legitimate class names).
    return "" if text in ("an", "the") else text


def normalize_names(names: Iterable[str]) -> np.ndarray:
    """Normalise every name of a sequence with :func:`normalize_name`.

    Parameters
    ----------
    names : iterable of str
        Raw names.

    Returns
    -------
    ndarray of str, shape (n_names,)
        Normalised names, in the input order.
    """
    return np.asarray([normalize_name(name) for name in names], dtype=object)


def merge_near_duplicates(names: Iterable[str]) -> dict[str, str]:
    """Map spelling variants of the same normalised name onto one representative.

    Two names are merged when they are equal after removing hyphens, apostrophes and
    spaces and a trailing plural "s" ("blue-jay", "blue jay", "blue jays"), or when
    they are the same words in another order, each word compared the same way
    ("2012 audi a4 sedan" and "audi a4 sedan 2012"). Merging is transitive. The most
    frequent spelling represents the group (ties: the alphabetically first).

    Parameters
    ----------
    names : iterable of str
        Normalised names, repeated as often as they occur.

    Returns
    -------
    dict
        ``{name: representative}`` for every distinct input name.

    Examples
    --------
    >>> mapping = merge_near_duplicates(["audi a4 2012", "2012 audi a4", "audi a4 2012"])
    >>> mapping["2012 audi a4"]
    'audi a4 2012'
    """
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    # Union-find over the names: each spelling key joins the names that share it.
    parent = {name: name for name in counts}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    first_with_key: dict[tuple[str, str], str] = {}
    for name in counts:
        words = sorted(_spelling_key(word) for word in name.split())
        for key in (("joined", _spelling_key(name)), ("words", " ".join(words))):
            if key in first_with_key:
                parent[root(name)] = root(first_with_key[key])
            else:
                first_with_key[key] = name
    groups: dict[str, list[str]] = {}
    for name in counts:
        groups.setdefault(root(name), []).append(name)
    return group_representatives(groups.values(), counts)


def group_representatives(groups, counts) -> dict[str, str]:
    """Map each member of each group onto the group's most frequent member.

    Ties go to the alphabetically first member.

    Parameters
    ----------
    groups : iterable of sequence of str
        Disjoint groups of names.
    counts : mapping
        ``{name: how often it occurs}``, for every member.

    Returns
    -------
    dict
        ``{member: representative}`` for every member of every group.

    Examples
    --------
    >>> group_representatives([["sweater", "jumper", "pullover"]], {"sweater": 2, "jumper": 1,
    ...                        "pullover": 2})
    {'sweater': 'pullover', 'jumper': 'pullover', 'pullover': 'pullover'}
    """
    mapping = {}
    for members in groups:
        representative = min(members, key=lambda member: (-counts[member], member))
        mapping.update({member: representative for member in members})
    return mapping


def _spelling_key(text: str) -> str:
    """``text`` without spaces, hyphens and apostrophes, and without a trailing plural "s".

    Examples
    --------
    >>> _spelling_key("blue-jays")
    'bluejay'
    """
    key = re.sub(r"[\s'\-]", "", text)
    return key[:-1] if key.endswith("s") and len(key) > 3 else key


def training_names(raw_names, positions, merge_variants: bool = True):
    """The names training starts from: normalised, never empty, variants merged.

    Parameters
    ----------
    raw_names : array-like of str
        The labeler's answers.
    positions : array-like of int
        Position of each answer's image in the caller's input, for error messages.
    merge_variants : bool, default=True
        Map spelling variants onto their most frequent spelling
        (:func:`merge_near_duplicates`).

    Returns
    -------
    names : ndarray of object
    merges : dict
        ``{variant: name}`` for every variant merged into another name.

    Raises
    ------
    ValueError
        A name is empty after normalisation; the message names its image.

    Examples
    --------
    >>> names, merges = training_names(["Blue Jay", "blue-jay", "A blue jay", "Robin"], range(4))
    >>> names.tolist(), merges
    (['blue jay', 'blue jay', 'blue jay', 'robin'], {'blue-jay': 'blue jay'})
    """
    raw_names = np.asarray(raw_names, dtype=object)
    names = normalize_names(raw_names)
    empty = [int(np.asarray(positions)[i]) for i in np.flatnonzero(names == "")]
    if empty:
        raise ValueError(
            f"the labeler's name for X[{empty[0]}] ({raw_names[names == ''][0]!r}) is empty "
            f"after normalisation ({len(empty)} such image(s)); an empty class name is "
            "never allowed. Fix the labeler, or use one with on_error='skip'."
        )
    if not merge_variants:
        return names, {}
    merged = merge_near_duplicates(names)
    merges = {name: into for name, into in merged.items() if name != into}
    return np.asarray([merged[name] for name in names], dtype=object), merges


def check_vocabulary(vocabulary, n_images: int) -> None:
    """Refuse a vocabulary of fewer than two names: there is nothing to classify.

    Parameters
    ----------
    vocabulary : sequence of str
        The distinct training names.
    n_images : int
        Training images they came from, for the message.

    Raises
    ------
    ValueError
        One name for every image.
    """
    if len(vocabulary) < 2:
        raise ValueError(
            f"the labeler gave the same name ({vocabulary[0]!r}) to all {n_images} "
            "training images; NeaR needs at least two distinct names. Use more varied "
            "images, or a more specific labeler prompt or domain."
        )
