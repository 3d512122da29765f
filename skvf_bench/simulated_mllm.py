"""Simulated vision LLMs that name fine-grained images the way real ones fail.

**These are simulations**, for offline work: like :class:`~skvf_bench.simulation.
NoisyOracleLabeler` they are handed each image's true class and corrupt it, here along
a class taxonomy and its attributes, as the NeaR paper (arXiv 2505.01064) reports real
models do on fine-grained sets:

- a **strong** profile (GPT-4o-like) mostly answers the fine name; its errors miss one
  attribute (the neighbouring shade, a similar pattern), and its right answers come in
  several wordings (synonyms, spellings, plurals, word orders);
- a **weak** profile (LLaVA- or BLIP-2-like) mostly answers generic names ("shirt",
  "clothing"), the failure that leaves such models below 10% cluster accuracy.

Scores obtained with them say how NeaR copes with noise of that kind and amount, not
how any real model names these images.

They also answer a multiple-choice question (``choose``, as
:meth:`skvf.MLLMLabeler.choose` does for ``NeaRClassifier(reask=...)``): which of a few
names an image shows, or none of them. How well a model chooses is **an assumption**,
set apart from how well it names (``choice_accuracy``, per profile): with the true name
among the choices it is picked with that probability; without it, "none of these" is
answered with that probability. The assumption rests on reports that choosing among a
few named options is easier for vision LLMs than naming from scratch on fine-grained
sets: DiVE-k (ICLR 2026) finds the right name often among a model's top-k answers when
its first answer is wrong, and builds multiple-choice questions on that gap;
nlg2choice (WACV 2026) gains on seven fine-grained sets by constraining a free answer
to a list of names. The values are deliberately conservative: 0.75 for the strong
profile, a little above the 0.6 at which it names the fine class outright, and 0.45 for
the weak one, about twice chance among five names. What re-asking gains in a benchmark
with these simulators depends on those values; which images it selects does not.

They also say which of a list of names are wordings of one kind (``group_synonyms``,
as :meth:`skvf.MLLMLabeler.group_synonyms` does for ``NeaRClassifier(merge_synonyms=
True)``), again **an assumption**: each wording joins its name with probability
``synonym_recall`` (0.9 strong, 0.7 weak), and names that differ in any detail are never
joined. Telling a synonym from a different attribute value is a language task rather
than a visual one, which is why both profiles are given more for it than for naming;
wrong joins are assumed away. A benchmark that uses it reports the gain at other values
too.

Examples
--------
>>> from skvf_bench.finegrained import load_fine_garments
>>> data = load_fine_garments(n_per_class=2, garments=["trouser"], image_size=16)
>>> labeler = make_simulated_mllm(data, profile="weak").fit(data.images)
>>> answers = labeler.transform(data.images)
>>> len(answers), labeler.rates_["generic_rate"]
(32, 0.7)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from skvf._sklearn_compat import Interval, StrOptions, fit_context
from skvf.names import normalize_name

from .finegrained import FineGarments
from .garment_names import taxonomy_variants
from .simulation import OracleLabelerMixin, _items, item_keys, make_oracle, seeded_uniforms

__all__ = ["MLLM_PROFILES", "SimulatedMLLM", "make_simulated_mllm"]

#: The rates of each profile. Each answer is one of: a generic name, a partial name,
#: a sibling one attribute off, a random other class, or the right fine name (the
#: rest); then, with ``variant_rate``, written differently. ``choice_accuracy`` is how
#: well it answers a multiple-choice question (an assumption: see the module's notes).
MLLM_PROFILES = {
    "strong": {
        "generic_rate": 0.05,
        "partial_rate": 0.05,
        "sibling_rate": 0.25,
        "random_rate": 0.05,
        "variant_rate": 0.3,
        "choice_accuracy": 0.75,
        "synonym_recall": 0.9,
    },
    "weak": {
        "generic_rate": 0.7,
        "partial_rate": 0.15,
        "sibling_rate": 0.05,
        "random_rate": 0.05,
        "variant_rate": 0.3,
        "choice_accuracy": 0.45,
        "synonym_recall": 0.7,
    },
}

_OUTCOME_RATES = ("generic_rate", "partial_rate", "sibling_rate", "random_rate")
# The rates that are not outcomes of a naming answer.
_OTHER_RATES = ("variant_rate", "choice_accuracy", "synonym_recall")
# Taxonomy levels before this index are generic (category, kind); the levels from it
# up to the class name itself are partial ("navy trouser").
_FIRST_PARTIAL_LEVEL = 2


class SimulatedMLLM(OracleLabelerMixin, TransformerMixin, BaseEstimator):
    """A simulated vision LLM: fine names, generic names and near misses, per profile.

    **A simulation that knows the truth.** Each image's answer is exactly one of:

    - with probability ``generic_rate``, a generic name: one of the two most generic
      levels of its class's taxonomy ("clothing", "trouser"), drawn uniformly;
    - with ``partial_rate``, a partial name: a level between those and the class name
      ("navy trouser");
    - with ``sibling_rate``, a sibling: a class that differs in one attribute, whose
      value is similar to the true one (:data:`~skvf_bench.garment_names.
      SIMILAR_VALUES`); any class one attribute off when there is none;
    - with ``random_rate``, a uniformly random other class;
    - otherwise the true class name.

    Then, with probability ``variant_rate``, the answer is written differently: one of
    its ``variants`` (a synonym, spelling, plural or word order naming the same thing).

    The answer is a deterministic function of the image's content and
    ``random_state`` (as in :class:`~skvf_bench.simulation.NoisyOracleLabeler`): the
    same image gets the same answer in every fit, fold and subset. The realised shares
    are the given rates up to sampling error over the images.

    :meth:`choose` answers a multiple-choice question: which of a few names the image
    shows, or none of them. A name counts as the true one when it is the class name or
    one of its ``variants``. With the true name among the choices, it is picked with
    probability ``choice_accuracy``, and otherwise one of the other choices or "none
    of these", uniformly; without it, "none of these" is answered with probability
    ``choice_accuracy``, and otherwise a uniformly drawn choice. That accuracy is an
    assumption (see the module's notes), set apart from the naming rates.

    Parameters
    ----------
    oracle : dict or callable
        The truth: a dict from content key to true class name, built with
        :func:`~skvf_bench.simulation.make_oracle`, or a callable receiving an item
        and returning its true class name.
    taxonomy : dict
        ``{class name: [names from generic to fine]}``, each list ending with the class
        name and holding at least the two generic levels, e.g. ``FineGarments.taxonomy``.
        Its keys are the classes.
    attributes : dict
        ``{class name: {axis: value}}``, the same axes for every class, e.g.
        ``FineGarments.attributes``.
    similar_values : dict or None, default=None
        ``{axis: {value: [similar values]}}``, e.g. ``FineGarments.similar_values``.
        ``None``: siblings are any class one attribute off.
    variants : dict or None, default=None
        ``{name: [other ways of writing it]}`` for any name an answer can be; required
        when the variant rate is above 0. Names without an entry are kept.
    profile : {"strong", "weak"}, default="strong"
        The rates not given explicitly (:data:`MLLM_PROFILES`).
    generic_rate, partial_rate, sibling_rate, random_rate : float or None, default=None
        The share of each kind of answer; ``None``: the profile's. Their sum must not
        exceed 1.
    variant_rate : float or None, default=None
        Probability that an answer is written as one of its variants; ``None``: the
        profile's.
    choice_accuracy : float or None, default=None
        Probability that :meth:`choose` answers right: the true name when it is among
        the choices, "none of these" when it is not; ``None``: the profile's.
    synonym_recall : float or None, default=None
        Probability that :meth:`group_synonyms` puts a wording with the name it is a
        wording of (an assumption, like ``choice_accuracy``); ``None``: the profile's.
    random_state : int, default=0
        Seed of the simulated answers; with the content key it determines each answer.
    on_error : {"raise", "warn", "skip"}, default="raise"
        What :meth:`label` does with an unreadable image (as ``MLLMLabeler``);
        :meth:`transform` always raises.

    Attributes
    ----------
    classes_ : ndarray of str
        The sorted class names (the keys of ``taxonomy``).
    rates_ : dict
        The rates in force (``choice_accuracy`` among them): the explicit ones, the
        profile's for the others.
    siblings_ : dict
        ``{class name: [its siblings]}``.

    See Also
    --------
    make_simulated_mllm : Build one for a pool of the fine-grained garment benchmark.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8)
    >>> oracle = make_oracle(images, ["dark cat", "pale cat"])
    >>> taxonomy = {
    ...     "dark cat": ["animal", "cat", "dark cat"],
    ...     "pale cat": ["animal", "cat", "pale cat"],
    ... }
    >>> attributes = {"dark cat": {"coat": "dark"}, "pale cat": {"coat": "pale"}}
    >>> labeler = SimulatedMLLM(oracle, taxonomy, attributes, variant_rate=0.0)
    >>> labeler.fit(images).siblings_["dark cat"]
    ['pale cat']
    """

    _parameter_constraints: dict = {
        "oracle": [dict, callable],
        "taxonomy": [dict],
        "attributes": [dict],
        "similar_values": [dict, None],
        "variants": [dict, None],
        "profile": [StrOptions(set(MLLM_PROFILES))],
        **{
            rate: [Interval(Real, 0, 1, closed="both"), None]
            for rate in (*_OUTCOME_RATES, *_OTHER_RATES)
        },
        "random_state": [Interval(Integral, None, None, closed="neither")],
        "on_error": [StrOptions({"raise", "warn", "skip"})],
    }

    def __init__(
        self,
        oracle: dict[str, str] | Callable,
        taxonomy: Mapping[str, Sequence[str]],
        attributes: Mapping[str, Mapping[str, str]],
        similar_values: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
        variants: Mapping[str, Sequence[str]] | None = None,
        profile: str = "strong",
        generic_rate: float | None = None,
        partial_rate: float | None = None,
        sibling_rate: float | None = None,
        random_rate: float | None = None,
        variant_rate: float | None = None,
        choice_accuracy: float | None = None,
        synonym_recall: float | None = None,
        random_state: int = 0,
        on_error: str = "raise",
    ):
        self.oracle = oracle
        self.taxonomy = taxonomy
        self.attributes = attributes
        self.similar_values = similar_values
        self.variants = variants
        self.profile = profile
        self.generic_rate = generic_rate
        self.partial_rate = partial_rate
        self.sibling_rate = sibling_rate
        self.random_rate = random_rate
        self.variant_rate = variant_rate
        self.choice_accuracy = choice_accuracy
        self.synonym_recall = synonym_recall
        self.random_state = random_state
        self.on_error = on_error

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Check the taxonomy and attributes, settle the rates and each class's siblings.

        Parameters
        ----------
        X : ignored
            The classes come from ``taxonomy``.
        y : None
            Ignored: the oracle is the truth.

        Returns
        -------
        self
        """
        rates = {
            name: (MLLM_PROFILES[self.profile][name] if value is None else float(value))
            for name, value in (
                (name, getattr(self, name)) for name in (*_OUTCOME_RATES, *_OTHER_RATES)
            )
        }
        total = sum(rates[name] for name in _OUTCOME_RATES)
        if total > 1 + 1e-9:
            raise ValueError(
                f"generic_rate + partial_rate + sibling_rate + random_rate must be at most 1, "
                f"got {total:g} ({', '.join(f'{n}={rates[n]:g}' for n in _OUTCOME_RATES)}); "
                "lower some of them."
            )
        self._check_taxonomy()
        if rates["variant_rate"] > 0 and self.variants is None:
            raise ValueError(
                "variant_rate > 0 needs variants: {name: [other ways of writing it]}, e.g. "
                "from make_simulated_mllm; or pass variant_rate=0."
            )
        self.rates_ = rates
        self.classes_ = np.asarray(sorted(self.taxonomy), dtype=object)
        self.siblings_ = {name: self._siblings(name) for name in self.classes_}
        return self

    def _check_taxonomy(self) -> None:
        if not self.taxonomy:
            raise ValueError("taxonomy is empty: give {class name: [generic, ..., class name]}.")
        axes = None
        for name, levels in self.taxonomy.items():
            levels = list(levels)
            if len(levels) < _FIRST_PARTIAL_LEVEL + 1 or levels[-1] != name:
                raise ValueError(
                    f"taxonomy[{name!r}] must list at least {_FIRST_PARTIAL_LEVEL + 1} names "
                    f"from generic to fine, ending with {name!r}; got {levels!r}."
                )
            if name not in self.attributes:
                raise ValueError(f"attributes has no entry for the class {name!r}.")
            if axes is None:
                axes = set(self.attributes[name])
            if set(self.attributes[name]) != axes:
                raise ValueError(
                    f"attributes[{name!r}] has the axes {sorted(self.attributes[name])}, "
                    f"the other classes {sorted(axes)}; give every class the same axes."
                )

    def _siblings(self, name: str) -> list[str]:
        own = self.attributes[name]
        similar = self.similar_values or {}
        one_off, near = [], []
        for other in sorted(self.taxonomy):
            differing = [axis for axis in own if self.attributes[other][axis] != own[axis]]
            if len(differing) != 1:
                continue
            one_off.append(other)
            axis = differing[0]
            if self.attributes[other][axis] in similar.get(axis, {}).get(own[axis], []):
                near.append(other)
        return near or one_off

    def _answer(self, true_name: str, key: str) -> str:
        if true_name not in self.taxonomy:
            raise ValueError(
                f"the oracle's name {true_name!r} is not a class of the taxonomy; give a "
                "taxonomy entry for every class the oracle returns."
            )
        # A fixed number of draws in a fixed order, whatever the outcome.
        u_outcome, u_pick, u_variant, u_variant_pick = seeded_uniforms(
            f"{self.random_state}:{key}", 4
        )
        levels = list(self.taxonomy[true_name])
        candidates = {
            "generic_rate": levels[:_FIRST_PARTIAL_LEVEL],
            "partial_rate": levels[_FIRST_PARTIAL_LEVEL:-1],
            "sibling_rate": self.siblings_[true_name],
            "random_rate": [name for name in self.classes_ if name != true_name],
        }
        answer, threshold = true_name, 0.0
        for outcome in _OUTCOME_RATES:
            threshold += self.rates_[outcome]
            if u_outcome < threshold:
                if candidates[outcome]:
                    answer = candidates[outcome][int(u_pick * len(candidates[outcome]))]
                break
        variants = list((self.variants or {}).get(answer, []))
        if variants and u_variant < self.rates_["variant_rate"]:
            return variants[int(u_variant_pick * len(variants))]
        return answer

    def choose(self, X, choices) -> tuple[np.ndarray, np.ndarray]:
        """Answer which of a few names each item shows, or none of them (simulated).

        Parameters
        ----------
        X : sequence of images, image stack, or 2-D numeric ndarray
            Every item must be readable (as for :meth:`transform`).
        choices : sequence of sequence of str
            The names offered for each item.

        Returns
        -------
        names : ndarray of object, shape (n_items,)
            The name chosen, as offered; ``None`` for "none of these".
        valid : ndarray of bool, shape (n_items,)
            Where a name was chosen.

        Examples
        --------
        >>> from skvf_bench.finegrained import load_fine_garments
        >>> data = load_fine_garments(n_per_class=1, garments=["trouser"], image_size=16)
        >>> labeler = make_simulated_mllm(data, choice_accuracy=1.0).fit(data.images)
        >>> true_name, other = data.names[0], data.names[1]
        >>> names, valid = labeler.choose(data.images[:2], [[other, true_name], [true_name]])
        >>> names[0] == true_name, valid.tolist()
        (True, [True, False])
        """
        check_is_fitted(self, "classes_")
        items, keys = _items(X), item_keys(X)
        if len(choices) != len(keys):
            raise ValueError(f"{len(choices)} lists of choices for {len(keys)} items.")
        names = np.asarray(
            [
                self._choice(self._true_name(item, index, key), key, list(options))
                for index, (item, key, options) in enumerate(zip(items, keys, choices, strict=True))
            ],
            dtype=object,
        )
        return names, names != None  # noqa: E711

    def names_the_truth(self, names, true_names) -> np.ndarray:
        """Whether each name names its true class: the class name or one of its variants.

        Parameters
        ----------
        names : sequence of str
            Names given (the labeler's answers, normalised or not).
        true_names : sequence of str
            The class of each.

        Returns
        -------
        ndarray of bool
        """
        return np.asarray(
            [
                normalize_name(name) in self._spellings(true_name)
                for name, true_name in zip(names, true_names, strict=True)
            ],
            dtype=bool,
        )

    def group_synonyms(self, names) -> list[tuple[str, ...]]:
        """Group the names that are wordings of one name, as ``MLLMLabeler`` asks a model to.

        A name that is one of ``variants``' wordings of another joins the group of that
        name with probability ``synonym_recall`` (drawn per name and ``random_state``);
        the name itself always belongs to it. Names of different classes or taxonomy
        levels are never grouped: the simulation assumes a model that keeps names that
        differ in any detail apart, as it is asked to.

        Parameters
        ----------
        names : sequence of str
            Distinct names.

        Returns
        -------
        list of tuple of str
            Groups of two or more of ``names``, as given.
        """
        check_is_fitted(self, "rates_")
        meaning = {}
        for name, wordings in (self.variants or {}).items():
            for wording in (name, *wordings):
                meaning.setdefault(normalize_name(wording), normalize_name(name))
        groups: dict[str, list[str]] = {}
        for name in sorted(set(names)):
            written = normalize_name(name)
            meant = meaning.get(written)
            if meant is None:
                continue
            if written != meant:
                (draw,) = seeded_uniforms(f"{self.random_state}:synonym:{written}", 1)
                if draw >= self.rates_["synonym_recall"]:
                    continue
            groups.setdefault(meant, []).append(name)
        return [tuple(group) for group in groups.values() if len(group) >= 2]

    def _spellings(self, true_name: str) -> set[str]:
        """The normalised ways of writing a class name."""
        written = [true_name, *(self.variants or {}).get(true_name, [])]
        return {normalize_name(name) for name in written}

    def _choice(self, true_name: str, key: str, options: list[str]) -> str | None:
        u_right, u_pick = seeded_uniforms(
            f"{self.random_state}:choice:{key}:{json.dumps(options)}", 2
        )
        spellings = self._spellings(true_name)
        right = [option for option in options if normalize_name(option) in spellings]
        accurate = u_right < self.rates_["choice_accuracy"]
        if right:
            if accurate:
                return right[0]
            mistakes = [option for option in options if option not in right] + [None]
            return mistakes[int(u_pick * len(mistakes))]
        return None if accurate else options[int(u_pick * len(options))]


def make_simulated_mllm(
    data: FineGarments, profile: str = "strong", random_state: int = 0, **rates
) -> SimulatedMLLM:
    """A simulated MLLM that names the images of a fine-grained garment pool.

    Parameters
    ----------
    data : FineGarments
        A pool from :func:`skvf_bench.finegrained.load_fine_garments`; the labeler knows
        the true name of each of its images.
    profile : {"strong", "weak"}, default="strong"
    random_state : int, default=0
    **rates
        Rates overriding the profile's (``sibling_rate=0.4``, ...).

    Returns
    -------
    SimulatedMLLM
        Unfitted; its variants cover every name of each class's taxonomy
        (:func:`skvf_bench.garment_names.taxonomy_variants`).
    """
    variants: dict[str, list[str]] = {}
    for attributes in data.attributes.values():
        variants.update(taxonomy_variants(**attributes))
    return SimulatedMLLM(
        make_oracle(data.images, data.names),
        taxonomy={name: list(levels) for name, levels in data.taxonomy.items()},
        attributes={name: dict(values) for name, values in data.attributes.items()},
        similar_values=data.similar_values,
        variants=variants,
        profile=profile,
        random_state=random_state,
        **rates,
    )
