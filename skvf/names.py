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

__all__ = ["normalize_name", "normalize_names", "merge_near_duplicates"]

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
    spaces and a trailing plural "s" ("blue-jay", "blue jay", "blue jays"). The most
    frequent spelling represents the group (ties: the alphabetically first).

    Parameters
    ----------
    names : iterable of str
        Normalised names, repeated as often as they occur.

    Returns
    -------
    dict
        ``{name: representative}`` for every distinct input name.
    """
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    groups: dict[str, list[str]] = {}
    for name in counts:
        key = re.sub(r"[\s'\-]", "", name)
        key = key[:-1] if key.endswith("s") and len(key) > 3 else key
        groups.setdefault(key, []).append(name)
    mapping = {}
    for members in groups.values():
        representative = min(members, key=lambda member: (-counts[member], member))
        mapping.update({member: representative for member in members})
    return mapping
