"""Re-asking the labeler: images whose first name their neighbours contradict choose again.

Choosing among a few named candidates is easier for a multimodal LLM than naming an
image from scratch: DiVE-k (ICLR 2026) builds its multiple-choice questions on the
model's own top-k answers, which often hold the right name when the first does not, and
nlg2choice (WACV 2026) gains on fine-grained sets by constraining answers to a list of
names. NeaR's candidate sets give such a list for free. After they are built, the images
whose own name the candidate votes contradict, or whose name is generic, are shown to
the labeler again with a few names of their neighbourhood and "none of these"
(``choose(X, choices) -> (names, valid)``, as :meth:`skvf.MLLMLabeler.choose`); an
answer among the choices replaces the first name.

- :func:`contradiction`, :func:`generic_names`, :func:`select_for_reasking`: which
  images, ranked, within a budget (pure numpy);
- :func:`choice_indices`: the names offered to each (pure numpy);
- :func:`check_reask_labeler`, :func:`reask_contradicted`: the round as
  :class:`~skvf.NeaRClassifier` runs it, through the labeler's ``choose`` and the
  ``memory`` store (:func:`skvf.labeling.cached_choices`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .labeling import cached_choices

__all__ = [
    "GENERIC_COVERAGE",
    "Reasking",
    "check_reask_labeler",
    "choice_indices",
    "contradiction",
    "generic_names",
    "reask_contradicted",
    "select_for_reasking",
]

#: A name given to more than this many times the median name's images is generic.
GENERIC_COVERAGE = 4.0


def contradiction(labels: np.ndarray, votes: np.ndarray) -> np.ndarray:
    """How strongly each image's candidate votes contradict its own name.

    The votes of the strongest other name minus those of the image's own name, as a
    share of all its votes: positive when another name out-votes its own, 0 at a tie,
    -1 when no other name has a vote.

    Parameters
    ----------
    labels : ndarray of int, shape (n_samples,)
        Index of each image's own name.
    votes : ndarray of shape (n_samples, n_names)
        Candidate votes (:func:`skvf.candidates.build_candidate_votes`): the own name's
        self weight plus one per neighbour carrying a name.

    Returns
    -------
    ndarray of shape (n_samples,)
        In [-1, 1).

    Examples
    --------
    >>> import numpy as np
    >>> votes = np.array([[1.0, 3.0, 2.0], [4.0, 1.0, 1.0]])
    >>> contradiction(np.array([0, 0]), votes)
    array([ 0.33333333, -0.5       ])
    """
    labels = np.asarray(labels, dtype=np.int64)
    votes = np.asarray(votes, dtype=np.float64)
    rows = np.arange(len(labels))
    own = votes[rows, labels]
    others = votes.copy()
    others[rows, labels] = 0.0
    return (others.max(axis=1, initial=0.0) - own) / votes.sum(axis=1)


def generic_names(labels: np.ndarray, n_names: int, coverage: float = GENERIC_COVERAGE):
    """Which names are generic: given to many more images than the median name.

    A generic name ("shirt", "bird") covers the images of several fine classes, so it
    is given far more often than a fine one; a fine class with more images than most
    does not reach ``coverage`` times the median unless the set is very unbalanced.

    Parameters
    ----------
    labels : ndarray of int, shape (n_samples,)
        Index of each image's name.
    n_names : int
        Names in the vocabulary.
    coverage : float, default=GENERIC_COVERAGE
        A name is generic when it names more than ``coverage`` times the median
        number of images per name (over the names given at least once).

    Returns
    -------
    ndarray of bool, shape (n_names,)

    Examples
    --------
    >>> import numpy as np
    >>> generic_names(np.array([0] * 9 + [1, 2, 2, 3]), 4)
    array([ True, False, False, False])
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_names)
    given = counts[counts > 0]
    if len(given) == 0:
        return np.zeros(n_names, dtype=bool)
    return counts > coverage * np.median(given)


def select_for_reasking(
    labels: np.ndarray,
    votes: np.ndarray,
    budget: float,
    coverage: float = GENERIC_COVERAGE,
) -> np.ndarray:
    """The images to ask again, most contradicted first, at most a share of them.

    An image is a candidate when another name has at least as many candidate votes as
    its own (:func:`contradiction` at least 0), or when its name is generic
    (:func:`generic_names`) and some other name has a vote. Candidates are ranked by
    :func:`contradiction`, then by the share of their votes that go to other names,
    then by position; the first ``floor(budget * n_samples)`` are kept.

    Parameters
    ----------
    labels : ndarray of int, shape (n_samples,)
    votes : ndarray of shape (n_samples, n_names)
    budget : float
        Largest share of the images to select, in [0, 1].
    coverage : float, default=GENERIC_COVERAGE
        See :func:`generic_names`.

    Returns
    -------
    ndarray of int
        Positions of the selected images, in rank order.

    Examples
    --------
    The second image's neighbours all carry another name, the first's its own:

    >>> import numpy as np
    >>> votes = np.array([[4.0, 2.0], [1.0, 5.0], [3.0, 3.0], [5.0, 1.0]])
    >>> select_for_reasking(np.array([0, 0, 1, 0]), votes, budget=0.5)
    array([1, 2])
    """
    if not 0 <= budget <= 1:
        raise ValueError(f"budget must be a share of the images in [0, 1], got {budget!r}.")
    labels = np.asarray(labels, dtype=np.int64)
    votes = np.asarray(votes, dtype=np.float64)
    n_samples = len(labels)
    limit = int(np.floor(budget * n_samples + 1e-9))
    if limit == 0 or n_samples == 0:
        return np.zeros(0, dtype=np.int64)
    score = contradiction(labels, votes)
    own_share = votes[np.arange(n_samples), labels] / votes.sum(axis=1)
    has_rival = own_share < 1.0
    generic = generic_names(labels, votes.shape[1], coverage)[labels]
    eligible = np.flatnonzero((score >= 0) | (generic & has_rival))
    order = np.lexsort((eligible, own_share[eligible], -score[eligible]))
    return eligible[order][:limit]


def choice_indices(
    labels: np.ndarray, votes: np.ndarray, positions: np.ndarray, n_choices: int
) -> list[np.ndarray]:
    """The names offered to each selected image: its own and its neighbours' top-voted.

    The own name, then the other names with votes, most votes first (ties: the lower
    index), up to ``n_choices`` in all; each list is returned in index order, which
    for a sorted vocabulary is alphabetical, so the order tells the model nothing
    about the votes or about which name came first.

    Parameters
    ----------
    labels : ndarray of int, shape (n_samples,)
    votes : ndarray of shape (n_samples, n_names)
    positions : ndarray of int
        The images to offer names to.
    n_choices : int
        Most names per image, at least 2.

    Returns
    -------
    list of ndarray of int
        One array of name indices per position, increasing.

    Examples
    --------
    >>> import numpy as np
    >>> votes = np.array([[1.0, 0.0, 2.0, 3.0]])
    >>> choice_indices(np.array([0]), votes, np.array([0]), n_choices=3)
    [array([0, 2, 3])]
    """
    if n_choices < 2:
        raise ValueError(
            f"n_choices must be at least 2 (the own name and another), got {n_choices}."
        )
    labels = np.asarray(labels, dtype=np.int64)
    votes = np.asarray(votes, dtype=np.float64)
    offered = []
    for position in np.asarray(positions, dtype=np.int64):
        row = votes[position].copy()
        own = labels[position]
        row[own] = 0.0
        rivals = np.flatnonzero(row > 0)
        rivals = rivals[np.lexsort((rivals, -row[rivals]))][: n_choices - 1]
        offered.append(np.sort(np.append(rivals, own)))
    return offered


@dataclass
class Reasking:
    """What a round of re-asking did.

    Attributes
    ----------
    positions : ndarray of int
        The re-asked images, increasing positions among the training images.
    changed : ndarray of bool, shape (len(positions),)
        Whether each got a new name.
    first_names : ndarray of object, shape (len(positions),)
        Their names before re-asking (names of the vocabulary).
    raw_names : ndarray of object, shape (n_samples,)
        The training names given, with the chosen names in place of the changed ones.
    n_asked : int
        Images the labeler was asked about (the ``memory`` store's misses).
    """

    positions: np.ndarray
    changed: np.ndarray
    first_names: np.ndarray
    raw_names: np.ndarray
    n_asked: int


def check_reask_labeler(labeler, reask: float) -> None:
    """Refuse ``reask > 0`` with a labeler that cannot answer a choice question.

    Parameters
    ----------
    labeler : estimator
    reask : float

    Raises
    ------
    TypeError
        ``reask > 0`` and the labeler has no ``choose`` method.
    """
    if reask > 0 and not callable(getattr(labeler, "choose", None)):
        raise TypeError(
            f"reask={reask} asks the labeler to choose among candidate names, but "
            f"{type(labeler).__name__} has no choose(X, choices) method; use a labeler "
            "that has one (MLLMLabeler), or reask=0."
        )


def reask_contradicted(
    labeler,
    reask: float,
    n_choices: int,
    items,
    digests: list[str],
    item_rows: np.ndarray,
    raw_names: np.ndarray,
    labels: np.ndarray,
    votes: np.ndarray,
    vocabulary: np.ndarray,
    cache_root,
) -> Reasking:
    """Ask the labeler to choose a name for the images the candidate votes contradict.

    Parameters
    ----------
    labeler : fitted labeler with ``choose`` (unless nothing is selected)
    reask : float
        Largest share of the images re-asked (:func:`select_for_reasking`); 0: none.
    n_choices : int
        Most names offered per image (:func:`choice_indices`).
    items : list or ndarray
        The images (or feature rows) loaded for training.
    digests : list of str
        Their content keys.
    item_rows : ndarray of int, shape (n_samples,)
        The position in ``items`` of each training image (row of ``votes``).
    raw_names : ndarray of object, shape (n_samples,)
        The training names as given.
    labels : ndarray of int, shape (n_samples,)
        Index in ``vocabulary`` of each training name.
    votes : ndarray of shape (n_samples, len(vocabulary))
    vocabulary : ndarray of str
    cache_root : pathlib.Path or None
        The ``memory`` directory (:func:`skvf.labeling.cached_choices`).

    Returns
    -------
    Reasking
    """
    positions = np.sort(select_for_reasking(labels, votes, reask))
    first_names = np.asarray(vocabulary, dtype=object)[labels[positions]]
    raw_names = np.asarray(raw_names, dtype=object).copy()
    if len(positions) == 0:
        return Reasking(positions, np.zeros(0, dtype=bool), first_names, raw_names, 0)
    choices = [
        [str(vocabulary[index]) for index in offered]
        for offered in choice_indices(labels, votes, positions, n_choices)
    ]
    rows = np.asarray(item_rows, dtype=np.int64)[positions]
    subset = items[rows] if isinstance(items, np.ndarray) else [items[i] for i in rows]
    chosen, n_asked = cached_choices(
        labeler, subset, [digests[i] for i in rows], choices, cache_root
    )
    changed = np.asarray(
        [
            name is not None and name != first
            for name, first in zip(chosen, first_names, strict=True)
        ],
        dtype=bool,
    )
    raw_names[positions[changed]] = chosen[changed]
    return Reasking(positions, changed, first_names, raw_names, n_asked)
