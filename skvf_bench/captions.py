"""Web-like captions for the fine-grained garments, to pretrain a stand-in CLIP on.

A real CLIP learns from alt-text: a caption names the object in its own words, often
only partly ("blue trousers", "new arrivals"), and seldom in the words of a benchmark's
class names. The fine attributes are the least reliably written: people say "blue"
for navy, or call a pinstripe a stripe. A stand-in pretrained on captions as clean as
its images learns the class names exactly, so zero-shot already does what prompt
tuning would, which real CLIP does not. These captions are therefore built as web
captions are:

- a full description, from templates and synonyms, whose shade is often only the
  coarse colour ("blue") and whose fine attributes are sometimes the similar value's
  (``attribute_noise``);
- the best-known words, which are the class names' own ("navy", "pinstriped"), used
  loosely: a writer calls a royal-blue coat "navy" (``class_word_noise``), while the
  rarer synonyms ("cobalt", "midnight blue") are used as accurately as the rest;
- a partial description: the garment only, the colour only, or the garment with one
  of its fine attributes ("navy trousers", "pinstriped trousers"), so that the full
  combination a class name spells out can be rare, as a species' name is on the web;
- a generic description ("new arrivals", "clothing").

Every caption is a deterministic function of the image's photo, its class, the caption's
index and ``random_state``.

Examples
--------
>>> from skvf_bench.finegrained import load_fine_garments
>>> data = load_fine_garments("pretraining", n_per_class=1, garments=["trouser"])
>>> captions = garment_captions(data, n_captions=2)
>>> captions.shape
(16, 2)
"""

from __future__ import annotations

from numbers import Real

import numpy as np

from .finegrained import FineGarments
from .garment_names import (
    CATEGORY_OF_GARMENT,
    GARMENT_WORDS,
    PATTERN_WORDS,
    SHADE_COARSE_WORD,
    SHADE_WORDS,
)

__all__ = ["CAPTION_KINDS", "garment_captions"]

#: The kinds of caption and their default shares.
CAPTION_KINDS = {
    "full": 0.5,
    "garment": 0.2,
    "colour": 0.1,
    "generic": 0.2,
    "colour and garment": 0.0,
    "pattern and garment": 0.0,
}

_FULL_TEMPLATES = (
    "a photo of a {}.",
    "{} for sale",
    "buy this {} online",
    "my new {}",
    "{}, size M, barely worn",
    "close-up of a {} on a busy background",
    "a {} in the shop window",
    "look at this {}!",
    "{} - free shipping",
)
_GARMENT_TEMPLATES = ("{}", "new {} in stock", "{} on a table", "what do you think of this {}?")
_COLOUR_TEMPLATES = ("something {}", "{} fashion", "all {} today", "in {}")
_GENERIC_CAPTIONS = (
    "new arrivals",
    "product photo",
    "summer collection",
    "sale",
    "image",
    "item for sale",
)


def garment_captions(
    data: FineGarments,
    n_captions: int = 1,
    kind_rates: dict[str, float] | None = None,
    fine_word_rate: float = 0.4,
    attribute_noise: float = 0.2,
    canonical_word_rate: float = 0.5,
    class_word_noise: float = 0.0,
    random_state: int = 0,
) -> np.ndarray:
    """Captions for each image of a pool, as web alt-text would describe it.

    Parameters
    ----------
    data : FineGarments
        A pool from :func:`skvf_bench.finegrained.load_fine_garments`.
    n_captions : int, default=1
        Captions per image (e.g. one per pretraining epoch).
    kind_rates : dict or None, default=None
        Share of each kind of caption (the keys of :data:`CAPTION_KINDS`; a kind left
        out gets none), summing to 1; ``None``: :data:`CAPTION_KINDS`.
    fine_word_rate : float, default=0.4
        Probability that a caption mentioning the colour uses a word of the exact
        shade ("navy", "navy blue") rather than the coarse colour ("blue").
    attribute_noise : float, default=0.2
        Probability that a full description gives the shade, and independently the
        pattern, of a similar value (:data:`skvf_bench.garment_names.SIMILAR_VALUES`):
        the caption's writer saw the garment differently.
    canonical_word_rate : float, default=0.5
        Probability that a word for the garment, the exact shade or the pattern is the
        class name's own word ("trouser"); otherwise a synonym ("pants") is drawn.
    class_word_noise : float, default=0.0
        Probability that the class name's own word for the shade or the pattern, when
        drawn, names a similar value instead ("navy" written for royal blue): the
        caption's image still tells the values apart through the synonyms, but the
        words a zero-shot prompt uses do so only loosely, as a real CLIP knows many
        fine-grained class names.
    random_state : int, default=0

    Returns
    -------
    ndarray of str, shape (n_images, n_captions), dtype object

    Raises
    ------
    ValueError
        A parameter is out of range, or ``kind_rates`` names an unknown kind or does not
        sum to 1.
    """
    if not isinstance(n_captions, (int, np.integer)) or n_captions < 1:
        raise ValueError(f"n_captions must be a positive int, got {n_captions!r}.")
    for value, label in (
        (fine_word_rate, "fine_word_rate"),
        (attribute_noise, "attribute_noise"),
        (canonical_word_rate, "canonical_word_rate"),
        (class_word_noise, "class_word_noise"),
    ):
        if not isinstance(value, Real) or not 0 <= value <= 1:
            raise ValueError(f"{label} must be a number between 0 and 1, got {value!r}.")
    rates = dict(CAPTION_KINDS if kind_rates is None else kind_rates)
    if not set(rates) <= set(CAPTION_KINDS) or not np.isclose(sum(rates.values()), 1.0):
        raise ValueError(
            f"kind_rates must give shares to kinds of {list(CAPTION_KINDS)}, summing to 1; "
            f"got {kind_rates!r}."
        )
    kinds = list(CAPTION_KINDS)
    thresholds = np.cumsum([rates.get(kind, 0.0) for kind in kinds])
    captions = np.empty((len(data.names), n_captions), dtype=object)
    for row, (name, source) in enumerate(zip(data.names, data.source_indices, strict=True)):
        attributes = data.attributes[name]
        for column in range(n_captions):
            rng = np.random.default_rng([random_state, int(source), column])
            drawn = int(np.searchsorted(thresholds, rng.random(), side="right"))
            kind = kinds[min(drawn, len(kinds) - 1)]
            captions[row, column] = _Caption(
                rng,
                data.similar_values,
                fine_word_rate,
                attribute_noise,
                canonical_word_rate,
                class_word_noise,
            ).write(kind, attributes)
    return captions


def _pick(rng, words):
    return words[int(rng.integers(len(words)))]


class _Caption:
    """One caption's random choices."""

    def __init__(
        self,
        rng,
        similar_values,
        fine_word_rate,
        attribute_noise,
        canonical_word_rate,
        class_word_noise,
    ):
        self.rng = rng
        self.similar_values = similar_values
        self.fine_word_rate = fine_word_rate
        self.attribute_noise = attribute_noise
        self.canonical_word_rate = canonical_word_rate
        self.class_word_noise = class_word_noise

    def word(self, words) -> str:
        if len(words) == 1 or self.rng.random() < self.canonical_word_rate:
            return words[0]
        return _pick(self.rng, words[1:])

    def fine_word(self, axis: str, value: str, words_of: dict) -> str:
        """A word for a fine attribute; the class name's own word used loosely."""
        word = self.word(words_of[value])
        similar = self.similar_values[axis].get(value)
        if (
            self.class_word_noise > 0
            and word == words_of[value][0]
            and similar
            and self.rng.random() < self.class_word_noise
        ):
            return words_of[_pick(self.rng, similar)][0]
        return word

    def seen_as(self, axis: str, value: str) -> str:
        similar = self.similar_values[axis].get(value)
        if similar and self.rng.random() < self.attribute_noise:
            return _pick(self.rng, similar)
        return value

    def write(self, kind: str, attributes: dict) -> str:
        rng, garment = self.rng, attributes["garment"]
        if kind == "generic":
            return _pick(rng, (*_GENERIC_CAPTIONS, CATEGORY_OF_GARMENT[garment]))
        if kind == "garment":
            return _pick(rng, _GARMENT_TEMPLATES).format(self.word(GARMENT_WORDS[garment]))
        shade = self.seen_as("shade", attributes["shade"])
        if rng.random() < self.fine_word_rate:
            colour = self.fine_word("shade", shade, SHADE_WORDS)
        else:
            colour = SHADE_COARSE_WORD[shade]
        if kind == "colour":
            return _pick(rng, _COLOUR_TEMPLATES).format(colour)
        pattern = self.seen_as("pattern", attributes["pattern"])
        pattern_word = self.fine_word("pattern", pattern, PATTERN_WORDS)
        words = (pattern_word, colour) if pattern == "plain" else (colour, pattern_word)
        words = {"colour and garment": (colour,), "pattern and garment": (pattern_word,)}.get(
            kind, words
        )
        description = " ".join((*words, self.word(GARMENT_WORDS[garment])))
        return _pick(rng, _FULL_TEMPLATES).format(description)
