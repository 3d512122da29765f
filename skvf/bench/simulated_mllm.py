"""Simulated vision LLMs that name fine-grained images the way real ones fail.

**These are simulations**, for offline work: like :class:`~skvf.bench.simulation.
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

Examples
--------
>>> from skvf.bench.finegrained import load_fine_garments
>>> data = load_fine_garments(n_per_class=2, garments=["trouser"], image_size=16)
>>> labeler = make_simulated_mllm(data, profile="weak").fit(data.images)
>>> answers = labeler.transform(data.images)
>>> len(answers), labeler.rates_["generic_rate"]
(32, 0.7)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from .._sklearn_compat import Interval, StrOptions, fit_context
from ..serialization import register_trusted_type
from .finegrained import FineGarments
from .garment_names import taxonomy_variants
from .simulation import OracleLabelerMixin, make_oracle

__all__ = ["MLLM_PROFILES", "SimulatedMLLM", "make_simulated_mllm"]

#: The rates of each profile. Each answer is one of: a generic name, a partial name,
#: a sibling one attribute off, a random other class, or the right fine name (the
#: rest); then, with ``variant_rate``, written differently.
MLLM_PROFILES = {
    "strong": {
        "generic_rate": 0.05,
        "partial_rate": 0.05,
        "sibling_rate": 0.25,
        "random_rate": 0.05,
        "variant_rate": 0.3,
    },
    "weak": {
        "generic_rate": 0.7,
        "partial_rate": 0.15,
        "sibling_rate": 0.05,
        "random_rate": 0.05,
        "variant_rate": 0.3,
    },
}

_OUTCOME_RATES = ("generic_rate", "partial_rate", "sibling_rate", "random_rate")
# Taxonomy levels before this index are generic (category, kind); the levels from it
# up to the class name itself are partial ("navy trouser").
_FIRST_PARTIAL_LEVEL = 2


@register_trusted_type
class SimulatedMLLM(OracleLabelerMixin, TransformerMixin, BaseEstimator):
    """A simulated vision LLM: fine names, generic names and near misses, per profile.

    **A simulation that knows the truth.** Each image's answer is exactly one of:

    - with probability ``generic_rate``, a generic name: one of the two most generic
      levels of its class's taxonomy ("clothing", "trouser"), drawn uniformly;
    - with ``partial_rate``, a partial name: a level between those and the class name
      ("navy trouser");
    - with ``sibling_rate``, a sibling: a class that differs in one attribute, whose
      value is similar to the true one (:data:`~skvf.bench.garment_names.
      SIMILAR_VALUES`); any class one attribute off when there is none;
    - with ``random_rate``, a uniformly random other class;
    - otherwise the true class name.

    Then, with probability ``variant_rate``, the answer is written differently: one of
    its ``variants`` (a synonym, spelling, plural or word order naming the same thing).

    The answer is a deterministic function of the image's content and
    ``random_state`` (as in :class:`~skvf.bench.simulation.NoisyOracleLabeler`): the
    same image gets the same answer in every fit, fold and subset. The realised shares
    are the given rates up to sampling error over the images.

    Parameters
    ----------
    oracle : dict or callable
        The truth: a dict from content key to true class name, built with
        :func:`~skvf.bench.simulation.make_oracle`, or a callable receiving an item
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
        The rates in force: the explicit ones, the profile's for the others.
    siblings_ : dict
        ``{class name: [its siblings]}``.
    skipped_ : list of str
        Why each image of the last :meth:`label` call got no name.

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
        **{rate: [Interval(Real, 0, 1, closed="both"), None] for rate in _OUTCOME_RATES},
        "variant_rate": [Interval(Real, 0, 1, closed="both"), None],
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
                (name, getattr(self, name)) for name in (*_OUTCOME_RATES, "variant_rate")
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
        seed = hashlib.blake2b(f"{self.random_state}:{key}".encode(), digest_size=8).digest()
        # A fixed number of draws in a fixed order, whatever the outcome.
        u_outcome, u_pick, u_variant, u_variant_pick = np.random.default_rng(
            int.from_bytes(seed, "little")
        ).random(4)
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


def make_simulated_mllm(
    data: FineGarments, profile: str = "strong", random_state: int = 0, **rates
) -> SimulatedMLLM:
    """A simulated MLLM that names the images of a fine-grained garment pool.

    Parameters
    ----------
    data : FineGarments
        A pool from :func:`skvf.bench.finegrained.load_fine_garments`; the labeler knows
        the true name of each of its images.
    profile : {"strong", "weak"}, default="strong"
    random_state : int, default=0
    **rates
        Rates overriding the profile's (``sibling_rate=0.4``, ...).

    Returns
    -------
    SimulatedMLLM
        Unfitted; its variants cover every name of each class's taxonomy
        (:func:`skvf.bench.garment_names.taxonomy_variants`).
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
