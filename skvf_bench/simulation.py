"""Simulated labelers for offline work: an oracle that knows the truth, plus noise.

**These are simulations.** A real labeler (a vision LLM) sees only the image. The
labelers here are given every image's true class name in advance and corrupt it at
chosen rates, which makes it possible to develop, test and measure the method without
network access or API cost, with noise of a known kind and amount: names that are
wrong (a confusable class or any other class), synonyms and spelling variants, and
names that are too generic. Scores obtained with them say how the method copes with
that noise, not how a real model names images.

A labeler is any object with ``fit(X, y=None)`` and ``transform(X)`` returning a 1-D
object array with one name per item of ``X``.

Examples
--------
>>> from skvf_bench.datasets import load_digits_images
>>> images, names = load_digits_images()
>>> labeler = NoisyOracleLabeler(
...     make_oracle(images, names), noise_rate=0.4, confusions=digits_confusions()
... )
>>> simulated = labeler.fit(images).transform(images)
>>> round(float((simulated != names).mean()), 1)
0.4
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from skvf._images import (
    as_image_list,
    describe_item,
    image_digest,
    is_feature_matrix,
    load_image,
    load_images,
    row_digest,
)
from skvf._sklearn_compat import Interval, StrOptions, fit_context
from skvf._warnings import warn
from skvf.exceptions import ImageInputError

from .datasets import DIGIT_NAMES

__all__ = [
    "NoisyOracleLabeler",
    "OracleLabelerMixin",
    "confusions_from_groups",
    "digits_confusions",
    "digits_synonyms",
    "fashion_mnist_confusions",
    "fashion_mnist_synonyms",
    "item_keys",
    "make_oracle",
    "seeded_uniforms",
]


def seeded_uniforms(text: str, n: int) -> np.ndarray:
    """``n`` uniform draws in [0, 1), determined by ``text`` alone.

    The simulated labelers draw each answer from its own seed, made of their
    ``random_state`` and the item's key, so an answer does not depend on the order in
    which items are asked about.

    Examples
    --------
    >>> bool((seeded_uniforms("0:abc", 3) == seeded_uniforms("0:abc", 3)).all())
    True
    """
    seed = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(seed, "little")).random(n)


def item_keys(X) -> list[str]:
    """Content keys of the items of ``X``, as used by :func:`make_oracle`.

    Images (paths, PIL images, arrays) are keyed by
    ``skvf._images.image_digest(skvf._images.load_image(item))``, so the same picture has
    the same key in every form. The rows of a 2-D numeric array (the numeric samples of
    scikit-learn's estimator checks) are keyed by a hash of their dtype and bytes.

    Parameters
    ----------
    X : sequence of images, image stack, or 2-D numeric ndarray

    Returns
    -------
    list of str
        One key per item.
    """
    if is_feature_matrix(X):
        return [row_digest(row) for row in X]
    keys = []
    for index, item in enumerate(as_image_list(X)):
        try:
            keys.append(image_digest(load_image(item)))
        except ImageInputError as error:
            raise ImageInputError(f"{describe_item(index, item)}: {error}") from None
    return keys


def make_oracle(X, names: Sequence[str]) -> dict[str, str]:
    """Map each image's content key to its true name, for :class:`NoisyOracleLabeler`.

    Parameters
    ----------
    X : sequence of images, image stack, or 2-D numeric ndarray
        Every item the labeler will be asked to name (see :func:`item_keys`).
    names : sequence of str, length n_items
        The true name of each item.

    Returns
    -------
    dict
        ``{key: name}``.

    Raises
    ------
    ValueError
        The lengths differ, or the same image appears with two different names.
    """
    names = list(names)
    keys = item_keys(X)
    if len(keys) != len(names):
        raise ValueError(f"X has {len(keys)} items but names has {len(names)}.")
    oracle: dict[str, str] = {}
    first_index: dict[str, int] = {}
    for index, (key, name) in enumerate(zip(keys, names, strict=True)):
        if not isinstance(name, str):
            raise TypeError(f"names[{index}] must be a str, got {type(name).__name__}.")
        if key in oracle and oracle[key] != name:
            raise ValueError(
                f"X[{first_index[key]}] and X[{index}] are the same image with different "
                f"names ({oracle[key]!r} and {name!r}); drop one of them."
            )
        oracle.setdefault(key, name)
        first_index.setdefault(key, index)
    return oracle


def confusions_from_groups(groups: Sequence[Sequence[str]]) -> dict[str, list[str]]:
    """Build a symmetric confusion map: within a group, every name is confused with the others.

    Parameters
    ----------
    groups : sequence of sequences of str
        Groups of mutually confusable class names.

    Returns
    -------
    dict
        ``{name: [the other names of its groups]}``.

    Examples
    --------
    >>> confusions_from_groups([["one", "seven"], ["three", "five", "eight"]])["five"]
    ['three', 'eight']
    """
    confusions: dict[str, list[str]] = {}
    for group in groups:
        for name in group:
            others = confusions.setdefault(name, [])
            others.extend(other for other in group if other != name and other not in others)
    return confusions


def digits_confusions() -> dict[str, list[str]]:
    """Confusable classes of :func:`skvf_bench.datasets.load_digits_images`.

    Groups of digits whose strokes look alike: 3 / 5 / 8, 1 / 7, 4 / 9, 0 / 6.
    Names are those of :func:`skvf_bench.datasets.load_digits_images` ("zero" ... "nine").
    """
    return confusions_from_groups(
        [["three", "five", "eight"], ["one", "seven"], ["four", "nine"], ["zero", "six"]]
    )


def fashion_mnist_confusions() -> dict[str, list[str]]:
    """Confusable classes of :func:`skvf_bench.datasets.load_fashion_mnist`.

    Upper-body garments (t-shirt / shirt / pullover / coat / dress) and footwear
    (sneaker / sandal / ankle boot): the groups in which classifiers confuse
    Fashion-MNIST classes most.
    """
    return confusions_from_groups(
        [["t-shirt", "shirt", "pullover", "coat", "dress"], ["sneaker", "sandal", "ankle boot"]]
    )


def digits_synonyms() -> dict[str, list[str]]:
    """Variant names of the digit classes: the numeral and "digit <name>"."""
    return {name: [str(value), f"digit {name}"] for value, name in enumerate(DIGIT_NAMES)}


def fashion_mnist_synonyms() -> dict[str, list[str]]:
    """Synonyms and spelling variants of the Fashion-MNIST class names."""
    return {
        "t-shirt": ["tee shirt", "T shirt", "top"],
        "trouser": ["trousers", "pants"],
        "pullover": ["sweater", "jumper"],
        "dress": ["gown", "frock"],
        "coat": ["jacket", "overcoat"],
        "sandal": ["sandals", "flip-flop"],
        "shirt": ["button-up shirt", "blouse"],
        "sneaker": ["trainer", "running shoe"],
        "bag": ["handbag", "purse"],
        "ankle boot": ["boot", "ankle boots"],
    }


def _check_name_map(mapping, parameter: str, known: set[str]) -> dict[str, list[str]]:
    checked = {}
    for name, variants in mapping.items():
        if name not in known:
            raise ValueError(
                f"{parameter} has an entry for {name!r}, which is not a class of the oracle; "
                f"classes: {sorted(known)}."
            )
        if isinstance(variants, str) or not all(isinstance(v, str) for v in variants):
            raise ValueError(f"{parameter}[{name!r}] must be a list of str, got {variants!r}.")
        checked[name] = list(variants)
    return checked


class OracleLabelerMixin:
    """What the simulated labelers share: answers from an oracle, per item content.

    A subclass sets ``classes_`` in ``fit`` and defines ``_answer(true_name, key)``,
    the simulated answer for an item of that true name and content key; its
    ``oracle`` parameter is a dict from :func:`make_oracle` or a callable.
    """

    def transform(self, X) -> np.ndarray:
        """Answer one (simulated) name per item.

        Parameters
        ----------
        X : sequence of images, image stack, or 2-D numeric ndarray
            Images (paths, PIL images, arrays) or numeric samples (rows).

        Returns
        -------
        ndarray of str, shape (n_items,), dtype object
        """
        check_is_fitted(self, "classes_")
        items = _items(X)
        keys = item_keys(X)
        return np.asarray(
            [
                self._answer(self._true_name(item, index, key), key)
                for index, (item, key) in enumerate(zip(items, keys, strict=True))
            ],
            dtype=object,
        )

    def label(self, X, *, return_reasons: bool = False):
        """Answer a name per item, and which items got one (as ``MLLMLabeler.label``).

        An unreadable image raises under ``on_error="raise"``; otherwise it gets no name
        (``None``, ``valid`` False) and ``on_error="warn"`` warns. The readable images
        are then named from their decoded pixels (a callable ``oracle`` receives PIL
        images).

        Parameters
        ----------
        X : sequence of images, image stack, or 2-D numeric ndarray
        return_reasons : bool, default=False
            Also return why each item got no name.

        Returns
        -------
        names : ndarray of object, shape (n_items,)
        valid : ndarray of bool, shape (n_items,)
        reasons : ndarray of object, shape (n_items,)
            With ``return_reasons=True``: the error of each unreadable item, ``None``
            for the others.
        """
        check_is_fitted(self, "classes_")
        if self.on_error == "raise" or is_feature_matrix(X):
            names = self.transform(X)
            valid = np.ones(len(names), dtype=bool)
            reasons = np.full(len(names), None, dtype=object)
        else:
            loaded = load_images(X, on_error="skip")
            n_items = len(loaded.indices) + len(loaded.errors)
            names = np.full(n_items, None, dtype=object)
            if len(loaded.indices):
                names[loaded.indices] = self.transform(loaded.images)
            valid = names != None  # noqa: E711
            reasons = np.full(n_items, None, dtype=object)
            reasons[~valid] = loaded.errors
            if loaded.errors and self.on_error == "warn":
                shown = "; ".join(loaded.errors[:3])
                warn(f"{len(loaded.errors)} image(s) got no name: {shown}")
        return (names, valid, reasons) if return_reasons else (names, valid)

    def _true_name(self, item, index: int, key: str | None) -> str:
        if not isinstance(self.oracle, dict):
            name = self.oracle(item)
        else:
            if key not in self.oracle:
                raise ValueError(
                    f"{describe_item(index, item)} is not in the oracle; build it with "
                    "make_oracle over every image the labeler will be asked to name."
                )
            name = self.oracle[key]
        if not isinstance(name, str):
            raise TypeError(
                f"the oracle returned a {type(name).__name__} for {describe_item(index, item)}; "
                "it must return the class name as a str."
            )
        return name


class NoisyOracleLabeler(OracleLabelerMixin, TransformerMixin, BaseEstimator):
    """A simulated labeler: the true name of each image, corrupted at chosen rates.

    **A simulation that knows the truth**, for offline development and controlled
    experiments: it stands where a vision LLM would, answering from an ``oracle`` that
    holds each image's true class name. Each image's answer is:

    1. with probability ``noise_rate``, a wrong class: with probability
       ``confusable_rate`` one of the true class's entries in ``confusions``, otherwise
       (or when it has none) a uniformly random other class;
    2. then, with probability ``generic_rate``, replaced by ``generic_name`` (too
       coarse, like "bird"); otherwise, with probability ``synonym_rate``, replaced by
       one of the chosen class's ``synonyms``.

    The answer is a deterministic function of the image's content and
    ``random_state``, not of its position, of the other images or of the order of
    calls: the same image gets the same name in every fit, cross-validation fold and
    subset, as a cached LLM answer would. The realised rates are therefore the given
    probabilities up to sampling error over the images.

    Parameters
    ----------
    oracle : dict or callable
        The truth. A dict from content key to true name, built with
        :func:`make_oracle`; or a callable receiving an item of ``X`` as given (a
        path, PIL image or array, or a row of a 2-D numeric ``X``) and returning its
        true name.
    noise_rate : float, default=0.4
        Probability that an answer names a wrong class.
    confusable_rate : float, default=0.75
        Probability that a wrong answer is a confusable class, when the true class
        has entries in ``confusions``.
    confusions : dict or None, default=None
        ``{name: [confusable names]}``, e.g. :func:`digits_confusions`. ``None``: wrong
        answers are uniform over the other classes.
    synonym_rate : float, default=0.0
        Probability that an answer is replaced by a synonym of its class.
    synonyms : dict or None, default=None
        ``{name: [synonyms or spelling variants]}``, e.g. :func:`fashion_mnist_synonyms`;
        required when ``synonym_rate > 0``. Classes without an entry keep their name.
    generic_rate : float, default=0.0
        Probability that an answer is replaced by a generic name.
    generic_name : str, dict or None, default=None
        The generic name ("bird", "clothing"), or ``{class name: generic name}``;
        required when ``generic_rate > 0``. With a dict, classes without an entry keep
        their name.
    classes : array-like of str or None, default=None
        Every class name the oracle can return, from which wrong answers are drawn.
        ``None``: the values of a dict oracle, or, for a callable oracle, the names it
        returns on the items given to ``fit`` (pass ``classes`` explicitly when a
        callable oracle is fitted on subsets that may miss a class, so that every fit
        draws from the same classes).
    random_state : int, default=0
        Seed of the simulated noise; with the content key it determines each answer.
    on_error : {"raise", "warn", "skip"}, default="raise"
        What :meth:`label` does with an unreadable image, as ``MLLMLabeler`` does: stop,
        or leave it without a name (``"warn"`` also warns). :meth:`transform` always
        raises.

    Attributes
    ----------
    classes_ : ndarray of str
        The sorted class names wrong answers are drawn from.
    confusions_ : dict
        The checked ``confusions`` (empty when None).
    synonyms_ : dict
        The checked ``synonyms`` (empty when None).

    See Also
    --------
    make_oracle : Build the ``oracle`` dict from images and their true names.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.zeros((4, 8, 8), dtype=np.uint8) + np.arange(4)[:, None, None] * 60
    >>> oracle = make_oracle(images, ["cat", "dog", "cat", "dog"])
    >>> NoisyOracleLabeler(oracle, noise_rate=0.0).fit(images).transform(images)
    array(['cat', 'dog', 'cat', 'dog'], dtype=object)
    """

    _parameter_constraints: dict = {
        "oracle": [dict, callable],
        "noise_rate": [Interval(Real, 0, 1, closed="both")],
        "confusable_rate": [Interval(Real, 0, 1, closed="both")],
        "confusions": [dict, None],
        "synonym_rate": [Interval(Real, 0, 1, closed="both")],
        "synonyms": [dict, None],
        "generic_rate": [Interval(Real, 0, 1, closed="both")],
        "generic_name": [str, dict, None],
        "classes": ["array-like", None],
        "random_state": [Interval(Integral, None, None, closed="neither")],
        "on_error": [StrOptions({"raise", "warn", "skip"})],
    }

    def __init__(
        self,
        oracle: dict[str, str] | Callable,
        noise_rate: float = 0.4,
        confusable_rate: float = 0.75,
        confusions: Mapping[str, Sequence[str]] | None = None,
        synonym_rate: float = 0.0,
        synonyms: Mapping[str, Sequence[str]] | None = None,
        generic_rate: float = 0.0,
        generic_name: str | Mapping[str, str] | None = None,
        classes: Sequence[str] | None = None,
        random_state: int = 0,
        on_error: str = "raise",
    ):
        self.oracle = oracle
        self.noise_rate = noise_rate
        self.confusable_rate = confusable_rate
        self.confusions = confusions
        self.synonym_rate = synonym_rate
        self.synonyms = synonyms
        self.generic_rate = generic_rate
        self.generic_name = generic_name
        self.classes = classes
        self.random_state = random_state
        self.on_error = on_error

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Check the parameters and settle the classes wrong answers are drawn from.

        Parameters
        ----------
        X : sequence of images, image stack, or 2-D numeric ndarray
            Read only when ``oracle`` is callable and ``classes`` is None.
        y : None
            Ignored: the oracle is the truth.

        Returns
        -------
        self
        """
        if self.classes is not None:
            classes = [str(name) for name in np.asarray(self.classes, dtype=object).ravel()]
        elif isinstance(self.oracle, dict):
            classes = list(self.oracle.values())
        else:
            classes = [self._true_name(item, index, None) for index, item in enumerate(_items(X))]
        if not classes:
            raise ValueError("classes is empty: the labeler needs at least one class name.")
        self.classes_ = np.asarray(sorted(set(classes)), dtype=object)
        known = set(self.classes_)

        self.confusions_ = _check_name_map(self.confusions or {}, "confusions", known)
        for name, others in self.confusions_.items():
            unknown = sorted(set(others) - known)
            if unknown:
                raise ValueError(
                    f"confusions[{name!r}] names {unknown}, which are not classes of the "
                    f"oracle; classes: {sorted(known)}."
                )
        if self.synonym_rate > 0 and not self.synonyms:
            raise ValueError("synonym_rate > 0 needs synonyms: {class name: [variants]}.")
        self.synonyms_ = _check_name_map(self.synonyms or {}, "synonyms", known)
        if self.generic_rate > 0 and not self.generic_name:
            raise ValueError(
                "generic_rate > 0 needs generic_name: a str such as 'bird', or "
                "{class name: generic name}."
            )
        return self

    def _answer(self, true_name: str, key: str) -> str:
        # A fixed number of draws in a fixed order, so that each rate moves only its own
        # decision: raising noise_rate keeps the answers that were already wrong.
        u_noise, u_confusable, u_class, u_generic, u_synonym, u_variant = seeded_uniforms(
            f"{self.random_state}:{key}", 6
        )
        name = true_name
        if u_noise < self.noise_rate:
            others = [other for other in self.confusions_.get(name, []) if other != name]
            if not others or u_confusable >= self.confusable_rate:
                others = [other for other in self.classes_ if other != name]
            if others:
                name = others[int(u_class * len(others))]
        if u_generic < self.generic_rate:
            generic = self.generic_name
            return generic if isinstance(generic, str) else generic.get(name, name)
        variants = self.synonyms_.get(name, [])
        if u_synonym < self.synonym_rate and variants:
            return variants[int(u_variant * len(variants))]
        return name


def _items(X) -> list:
    return list(X) if is_feature_matrix(X) else as_image_list(X)


def folder_labeler(paths: Sequence[str], random_state: int = 0, **params) -> NoisyOracleLabeler:
    """A simulated labeler that knows each image's class from its folder.

    For offline trials on ``ROOT/<class>/<image>`` folders (``skvf fit --labeler
    simulated``): the true name of an image is its folder's name
    (:func:`skvf.folders.folder_class_name`), and the labeler answers it with the
    noise of a :class:`NoisyOracleLabeler`.

    Parameters
    ----------
    paths : sequence of str
        Image paths, each inside its class folder.
    random_state : int, default=0
    **params
        Other :class:`NoisyOracleLabeler` parameters (``noise_rate``, ...).

    Returns
    -------
    NoisyOracleLabeler
        Unfitted; it names every image of ``paths`` that can be read.

    Raises
    ------
    ValueError
        The images are in fewer than two folders.
    """
    from pathlib import Path

    from skvf.folders import folder_class_name

    names = [folder_class_name(Path(path).parent.name) for path in paths]
    if len(set(names)) < 2:
        raise ValueError(
            "the simulated labeler names each image after its folder, but the images are in "
            "fewer than two folders; give a folder of class folders (ROOT/<class>/<image>)."
        )
    # An unreadable image has no content key: it is left out, and the classifier's or the
    # labeler's on_error policy decides what happens to it.
    loaded = load_images(list(paths), on_error="skip")
    oracle = make_oracle(loaded.images, [names[i] for i in loaded.indices])
    return NoisyOracleLabeler(oracle, random_state=random_state, **params)
