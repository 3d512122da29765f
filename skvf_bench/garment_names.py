"""The words of the fine-grained garment classes: names, taxonomy, synonyms, similar values.

The fine-grained garment benchmark (:mod:`skvf_bench.finegrained`) crosses the ten
Fashion-MNIST garment types with a colour shade and a pattern. This module holds its
language, apart from the pixels: how a person names a class ("navy pinstriped
trouser"), the taxonomy from generic to fine ("clothing" -> "trouser" -> "navy
trouser" -> "navy pinstriped trouser"), the words people use for each attribute value,
and which values look alike (the neighbouring shade, a similar pattern), which is what
fine-grained recognisers and labelers get wrong.

Examples
--------
>>> class_name("trouser", "navy", "pinstriped")
'navy pinstriped trouser'
>>> class_name("trouser", "navy", "plain")
'plain navy trouser'
>>> class_taxonomy("trouser", "navy", "pinstriped")
('clothing', 'trouser', 'navy trouser', 'navy pinstriped trouser')
"""

from __future__ import annotations

from .datasets import FASHION_MNIST_NAMES

__all__ = [
    "ATTRIBUTE_AXES",
    "CATEGORY_OF_GARMENT",
    "CATEGORY_WORDS",
    "GARMENTS",
    "GARMENT_WORDS",
    "PATTERNS",
    "PATTERN_WORDS",
    "SHADES",
    "SHADE_COARSE_WORD",
    "SHADE_RGB",
    "SHADE_WORDS",
    "SIMILAR_VALUES",
    "class_name",
    "class_taxonomy",
    "name_variants",
    "taxonomy_variants",
]

#: The garment types, as Fashion-MNIST names them (index = Fashion-MNIST label).
GARMENTS = FASHION_MNIST_NAMES

#: The attribute axes of a class, coarse to fine.
ATTRIBUTE_AXES = ("garment", "shade", "pattern")

#: Colour shades, in two families of two neighbouring shades.
SHADES = ("navy", "royal blue", "burgundy", "crimson")

#: Each shade's colour before lighting: the named colour's own sRGB value (CSS / X11
#: "navy", "royalblue", "crimson"; "burgundy" as commonly given). The darker shade of
#: each pair is about half as bright as the other, so that the pair can be learned
#: from pixels (with closer values a stand-in CLIP pretrained here learned the shade
#: in one of eight runs, with these in both runs).
SHADE_RGB = {
    "navy": (0, 0, 128),
    "royal blue": (65, 105, 225),
    "burgundy": (128, 0, 32),
    "crimson": (220, 20, 60),
}

#: Patterns, in order of similarity: each looks most like its neighbours in the tuple.
PATTERNS = ("plain", "pinstriped", "striped", "checked")

#: The top level of the taxonomy for each garment type.
CATEGORY_OF_GARMENT = {
    "t-shirt": "clothing",
    "trouser": "clothing",
    "pullover": "clothing",
    "dress": "clothing",
    "coat": "clothing",
    "shirt": "clothing",
    "sandal": "footwear",
    "sneaker": "footwear",
    "ankle boot": "footwear",
    "bag": "accessory",
}

#: Words for each category of the taxonomy's top level; the first is the category.
CATEGORY_WORDS = {
    "clothing": ["clothing", "clothes", "apparel", "garment"],
    "footwear": ["footwear", "shoe", "shoes"],
    "accessory": ["accessory", "accessories", "fashion accessory"],
}

#: Values that look alike, per axis: the errors fine-grained recognisers make.
SIMILAR_VALUES = {
    "garment": {},
    "shade": {
        "navy": ["royal blue"],
        "royal blue": ["navy"],
        "burgundy": ["crimson"],
        "crimson": ["burgundy"],
    },
    "pattern": {
        "plain": ["pinstriped"],
        "pinstriped": ["plain", "striped"],
        "striped": ["pinstriped", "checked"],
        "checked": ["striped"],
    },
}

#: Words people use for each garment type; the first is the class name's.
GARMENT_WORDS = {
    "t-shirt": ["t-shirt", "tee", "tee shirt", "T shirt", "top"],
    "trouser": ["trouser", "trousers", "pants", "slacks"],
    "pullover": ["pullover", "sweater", "jumper"],
    "dress": ["dress", "frock", "gown"],
    "coat": ["coat", "jacket", "overcoat"],
    "shirt": ["shirt", "button-up shirt", "blouse"],
    "sandal": ["sandal", "sandals", "flip-flop"],
    "sneaker": ["sneaker", "sneakers", "trainer", "running shoe"],
    "bag": ["bag", "handbag", "purse", "tote"],
    "ankle boot": ["ankle boot", "ankle boots", "boot", "bootie"],
}

#: Words for each shade; the first is the class name's, the others exact synonyms.
SHADE_WORDS = {
    "navy": ["navy", "navy blue", "midnight blue", "dark blue", "indigo"],
    "royal blue": ["royal blue", "cobalt", "sapphire", "bright blue", "cobalt blue"],
    "burgundy": ["burgundy", "maroon", "wine-red", "oxblood", "dark red"],
    "crimson": ["crimson", "scarlet", "cherry red", "bright red", "vermilion"],
}

#: The coarse colour word a casual description uses for each shade.
SHADE_COARSE_WORD = {"navy": "blue", "royal blue": "blue", "burgundy": "red", "crimson": "red"}

#: Words for each pattern; the first is the class name's, the others exact synonyms.
PATTERN_WORDS = {
    "plain": ["plain", "solid", "solid-colour"],
    "pinstriped": ["pinstriped", "pinstripe", "pin-striped"],
    "striped": ["striped", "stripy", "wide-striped"],
    "checked": ["checked", "check", "checkered"],
}

# Garment words that are already plural; the others get an "s" in plural variants.
_PLURAL = {"trousers", "pants", "slacks", "sandals", "sneakers", "ankle boots"}


def _check_value(axis: str, value: str, known) -> None:
    if value not in known:
        raise ValueError(f"{axis} must be one of {list(known)}, got {value!r}.")


def class_name(garment: str, shade: str, pattern: str) -> str:
    """The name a person would write for a class: "navy pinstriped trouser".

    "plain" goes first ("plain navy trouser"), so that the taxonomy level "navy
    trouser" is never itself a class name.

    Parameters
    ----------
    garment : str
        One of :data:`GARMENTS`.
    shade : str
        One of :data:`SHADES`.
    pattern : str
        One of :data:`PATTERNS`.

    Returns
    -------
    str
    """
    _check_value("garment", garment, GARMENTS)
    _check_value("shade", shade, SHADES)
    _check_value("pattern", pattern, PATTERNS)
    if pattern == "plain":
        return f"plain {shade} {garment}"
    return f"{shade} {pattern} {garment}"


def class_taxonomy(garment: str, shade: str, pattern: str) -> tuple[str, str, str, str]:
    """A class's names from generic to fine: category, garment, shade + garment, class.

    Parameters
    ----------
    garment, shade, pattern : str
        As in :func:`class_name`.

    Returns
    -------
    tuple of 4 str
        E.g. ``("clothing", "trouser", "navy trouser", "navy pinstriped trouser")``.
    """
    fine = class_name(garment, shade, pattern)
    return (CATEGORY_OF_GARMENT[garment], garment, f"{shade} {garment}", fine)


def name_variants(garment: str, shade: str | None = None, pattern: str | None = None) -> list[str]:
    """Other ways of writing the same name: synonyms, spellings, plurals, word orders.

    Every variant keeps each given attribute (a synonym of "navy" is still navy), so
    it names the same class, or the same taxonomy level, as the canonical name.

    Parameters
    ----------
    garment : str
        One of :data:`GARMENTS`.
    shade : str or None, default=None
        One of :data:`SHADES`, or None for a name without a shade ("trouser").
    pattern : str or None, default=None
        One of :data:`PATTERNS`, or None for a name without a pattern ("navy trouser").

    Returns
    -------
    list of str
        Distinct variants, the canonical name excluded, in a fixed order.

    Examples
    --------
    >>> name_variants("trouser", "navy", "pinstriped")[:3]
    ['navy pinstripe trouser', 'navy pin-striped trouser', 'navy blue pinstriped trouser']
    """
    _check_value("garment", garment, GARMENTS)
    if shade is not None:
        _check_value("shade", shade, SHADES)
    if pattern is not None:
        _check_value("pattern", pattern, PATTERNS)
    garment_words = GARMENT_WORDS[garment]
    shade_words = SHADE_WORDS[shade] if shade else [""]
    pattern_words = PATTERN_WORDS[pattern] if pattern else [""]
    plural = garment_words[0] if garment_words[0] in _PLURAL else garment_words[0] + "s"
    # "plain" is written before the shade, other patterns after it.
    pattern_first = pattern == "plain"

    def compose(shade_word: str, pattern_word: str, garment_word: str, swap=False) -> str:
        first, second = (
            (pattern_word, shade_word)
            if pattern_first != swap
            else (
                shade_word,
                pattern_word,
            )
        )
        return " ".join(word for word in (first, second, garment_word) if word)

    candidates = []
    # One word changed at a time, then the word order, then the plural.
    for pattern_word in pattern_words[1:]:
        candidates.append(compose(shade_words[0], pattern_word, garment_words[0]))
    for shade_word in shade_words[1:]:
        candidates.append(compose(shade_word, pattern_words[0], garment_words[0]))
    for garment_word in garment_words[1:]:
        candidates.append(compose(shade_words[0], pattern_words[0], garment_word))
    if shade and pattern:
        candidates.append(compose(shade_words[0], pattern_words[0], garment_words[0], swap=True))
        candidates.append(f"{garment_words[0]}, {shade_words[0]}, {pattern_words[0]}")
    candidates.append(compose(shade_words[0], pattern_words[0], plural))
    canonical = compose(shade_words[0], pattern_words[0], garment_words[0])
    variants = []
    for candidate in candidates:
        if candidate != canonical and candidate not in variants:
            variants.append(candidate)
    return variants


def taxonomy_variants(garment: str, shade: str, pattern: str) -> dict[str, list[str]]:
    """The variants of every name in a class's taxonomy (:func:`class_taxonomy`).

    Parameters
    ----------
    garment, shade, pattern : str
        As in :func:`class_name`.

    Returns
    -------
    dict
        ``{name: [variants]}`` for the category, the garment, the shade + garment and
        the class name.

    Examples
    --------
    >>> taxonomy_variants("trouser", "navy", "pinstriped")["clothing"]
    ['clothes', 'apparel', 'garment']
    """
    category, kind, partial, fine = class_taxonomy(garment, shade, pattern)
    return {
        category: CATEGORY_WORDS[category][1:],
        kind: name_variants(garment),
        partial: name_variants(garment, shade),
        fine: name_variants(garment, shade, pattern),
    }
