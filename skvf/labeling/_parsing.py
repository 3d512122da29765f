"""From a model's answer to one class name, or a reason why there is none.

Models are asked for ``{"name": ...}`` JSON, but local models and providers without a JSON
mode answer in many shapes: JSON in a markdown fence, JSON cut short, ``Name: X`` after a
list of attributes, a bare name, a refusal. :func:`parse_name` accepts all of those that
hold one name and returns it normalised by :func:`skvf.names.normalize_name`; every other
answer raises :class:`UnusableAnswer` with a reason, which the labeler's ``on_error``
policy handles. A class name is never empty, never longer than the labeler's bounds and
never an instruction aimed at the model ("Ignore previous instructions and ..."); the
parser reads at most :data:`MAX_ANSWER_CHARS` characters and raises nothing but
:class:`UnusableAnswer`, whatever the answer (deeply nested JSON included).
:func:`parse_naming_context` reads the answer to the context question of
``prompt="expert"`` by the same rules, since every field it returns goes into every
naming prompt. :func:`parse_choice` reads the answer to a choice question
(``MLLMLabeler.choose``): one of the names offered, or none of them.
"""

from __future__ import annotations

import json
import re

from ..names import normalize_name
from ._prompts import CONTEXT_FIELDS

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_CONTEXT_FIELD_CHARS",
    "MAX_CONTEXT_FIELD_WORDS",
    "NONE_OF_THESE",
    "REASONS",
    "UnusableAnswer",
    "parse_choice",
    "parse_name",
    "parse_naming_context",
    "parse_synonym_groups",
]

#: Longer answers are "overlong" without being parsed: no class name needs them, and the
#: parser's work stays bounded.
MAX_ANSWER_CHARS = 20_000
#: Longer fields of a naming context are "overlong": a persona or a level of naming, not a text.
MAX_CONTEXT_FIELD_WORDS = 12
MAX_CONTEXT_FIELD_CHARS = 100
#: Why an answer can be unusable ("malformed": the reply itself had the wrong shape).
REASONS = ("empty", "refusal", "overlong", "unparsable", "malformed")

#: Answers to a choice question that say no name offered fits, once normalised.
NONE_OF_THESE = frozenset(
    {
        "none of these",
        "none of the above",
        "none of them",
        "none of the names",
        "none of the options",
        "none of the choices",
        "none",
        "neither",
        "neither of these",
        "neither of them",
    }
)

_NAME_KEYS = ("name", "category", "label", "class", "species")
# The keys each field of a naming context may come under, the asked one first.
_CONTEXT_KEYS = {
    "category": ("category", "domain", "object", "subject"),
    "granularity": ("granularity", "level"),
    "expert": ("expert", "persona", "role"),
}
_CONTEXT_KEY = "(" + "|".join(key for keys in _CONTEXT_KEYS.values() for key in keys) + ")"
_CONTEXT_IN_BROKEN_JSON = re.compile(rf'"{_CONTEXT_KEY}"\s*:\s*"([^"\n]+)"', re.IGNORECASE)
_CONTEXT_LINE = re.compile(
    rf"^[\s*#>\-]*{_CONTEXT_KEY}[\s*]*[:=\-]\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE
)
_CONTEXT_CHARACTERS = re.compile(r"[\w\s\-'.,&/()]+")
_NOT_JSON = object()
_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```$", re.DOTALL)
_NAME_IN_BROKEN_JSON = re.compile(r'"(?:name|category|label)"\s*:\s*"([^"\n]+)"')
_NAME_LINE = re.compile(
    r"^[\s*#>\-]*(?:final\s+)?(?:name|category|answer|species|label)[\s*]*[:=\-]\s*(.+?)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_REFUSAL = re.compile(
    r"\b(?:i\s*am\s+sorry|i'm\s+sorry|sorry,|i\s+can\s*not|i\s+can't|i\s+am\s+unable|i'm\s+unable"
    r"|i\s+am\s+not\s+able|i'm\s+not\s+able|unable\s+to\s+(?:identify|determine|tell|help)"
    r"|as\s+an\s+ai|cannot\s+be\s+(?:determined|identified)"
    r"|not\s+possible\s+to\s+(?:identify|determine|tell))",
    re.IGNORECASE,
)
# Instructions aimed at the model (prompt injection from the image or a proxy), not names.
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\b(?:\W+\w+){0,4}?\W+"
    r"(?:instructions?|prompts?|rules|directions|guidelines|previous|above|prior|system)\b"
    r"|\b(?:system\s+prompt|you\s+are\s+now|new\s+instructions?|jailbreak)\b",
    re.IGNORECASE,
)
# Names that say "I don't know" rather than name something.
_NON_NAMES = frozenset(
    {
        "unknown",
        "none",
        "n a",
        "na",
        "null",
        "not sure",
        "unsure",
        "unidentified",
        "unidentifiable",
        "unclear",
        "undetermined",
        "cannot determine",
        "uncertain",
    }
)


class UnusableAnswer(ValueError):
    """An answer that holds no usable class name.

    Parameters
    ----------
    reason : {"empty", "refusal", "overlong", "unparsable", "malformed"}
        Why the answer is unusable.
    answer : str or None
        The raw answer (or the provider's refusal message, or what was wrong with a
        malformed reply).
    """

    def __init__(self, reason: str, answer: str | None):
        self.reason = reason
        self.answer = answer
        excerpt = (answer or "").strip().replace("\n", " ")
        excerpt = excerpt if len(excerpt) <= 120 else excerpt[:117] + "..."
        super().__init__(f"{reason} answer: {excerpt!r}")


def _strip_fence(text: str) -> str:
    match = _FENCE.match(text)
    return match.group(1).strip() if match else text


def _json_value(text: str):
    """The JSON value the answer is, or holds between its outer braces; else ``_NOT_JSON``."""
    start, end = text.find("{"), text.rfind("}")
    candidates = [text] + ([text[start : end + 1]] if 0 <= start < end else [])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deeply
            continue
    return _NOT_JSON


def _name_from_json(text: str) -> str | None:
    """The name in a JSON answer; ``None`` when the answer is not JSON at all."""
    value = _json_value(text)
    if value is not _NOT_JSON:
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            for key in _NAME_KEYS:
                if isinstance(value.get(key), str):
                    return value[key]
            raise UnusableAnswer("unparsable", text)
        raise UnusableAnswer("unparsable", text)
    if text.lstrip().startswith("{"):
        # JSON cut short (a token limit) or slightly wrong: rescue a complete name field.
        match = _NAME_IN_BROKEN_JSON.search(text)
        if match:
            return match.group(1)
        raise UnusableAnswer("unparsable", text)
    return None


def _name_from_text(text: str) -> str:
    lines = _NAME_LINE.findall(text)
    if lines:
        return lines[-1]  # attribute-first answers end with the name
    if _REFUSAL.search(text):
        raise UnusableAnswer("refusal", text)
    non_empty = [line for line in text.splitlines() if line.strip()]
    if len(non_empty) == 1:
        return non_empty[0]
    raise UnusableAnswer("unparsable", text)


def parse_name(
    answer: str | None,
    max_words: int = 8,
    max_chars: int = 80,
    refusal: str | None = None,
) -> str:
    """Extract one normalised class name from a model's answer.

    Parameters
    ----------
    answer : str or None
        The text of the answer.
    max_words, max_chars : int
        Longer names are rejected as ``"overlong"`` (a sentence is not a class name).
    refusal : str or None
        The provider's refusal message, when it reports one apart from the text.

    Returns
    -------
    str
        A non-empty name, normalised by :func:`skvf.names.normalize_name`.

    Raises
    ------
    UnusableAnswer
        The answer is empty, a refusal, overlong (beyond the bounds, or longer than
        :data:`MAX_ANSWER_CHARS`), unparsable (an instruction aimed at the model
        included), or not text at all ("malformed"). Nothing else is ever raised.

    Examples
    --------
    >>> parse_name('```json\\n{"name": "The Painted Bunting."}\\n```')
    'painted bunting'
    >>> parse_name("Attributes: red crest, black mask\\nName: Northern Cardinal")
    'northern cardinal'
    """
    return _parse_guarded(_parse, answer, refusal, max_words, max_chars)


def _parse_guarded(parse, answer, refusal, *args):
    """``parse(answer, *args)`` on a text answer; every other outcome an unusable answer."""
    if refusal is not None and not isinstance(refusal, str):
        raise UnusableAnswer("malformed", f"a refusal of type {type(refusal).__name__}")
    if refusal and refusal.strip():
        raise UnusableAnswer("refusal", refusal)
    if answer is not None and not isinstance(answer, str):
        raise UnusableAnswer("malformed", f"an answer of type {type(answer).__name__}")
    if answer is None or not answer.strip():
        raise UnusableAnswer("empty", answer)
    if len(answer) > MAX_ANSWER_CHARS:
        raise UnusableAnswer("overlong", answer)
    try:
        return parse(answer, *args)
    except UnusableAnswer:
        raise
    except (ValueError, TypeError, RecursionError, IndexError, KeyError):
        # No answer may crash the labeler; a parser bug reads as an unparsable answer.
        raise UnusableAnswer("unparsable", answer) from None


def _parse(answer: str, max_words: int, max_chars: int) -> str:
    text = _strip_fence(answer.strip().replace("\u2019", "'"))
    raw_name = _name_from_json(text)
    if raw_name is None:
        raw_name = _name_from_text(text)
    raw_name = raw_name.strip()
    if _REFUSAL.search(raw_name):
        raise UnusableAnswer("refusal", answer)
    if _INSTRUCTION.search(raw_name):
        raise UnusableAnswer("unparsable", answer)
    # The raw name is bounded too (with room for quotes, an article, punctuation), so
    # that normalisation never cuts a long text down to a name.
    if len(raw_name) > max_chars + 16 or len(raw_name.split()) > max_words + 1:
        raise UnusableAnswer("overlong", answer)
    name = normalize_name(raw_name)
    if not name:
        raise UnusableAnswer("empty", answer)
    if name in _NON_NAMES:
        raise UnusableAnswer("refusal", answer)
    if len(name.split()) > max_words or len(name) > max_chars:
        raise UnusableAnswer("overlong", answer)
    return name


def parse_choice(
    answer: str | None,
    choices,
    max_words: int = 8,
    max_chars: int = 80,
    refusal: str | None = None,
) -> str | None:
    """Read which of ``choices`` a model's answer to a choice question picks.

    The answer is read as :func:`parse_name` reads a name; one of :data:`NONE_OF_THESE`
    (also ``{"name": null}``) says that no name offered fits.

    Parameters
    ----------
    answer : str or None
        The text of the answer.
    choices : sequence of str
        The names offered; the answer matches one when both are equal after
        :func:`skvf.names.normalize_name`.
    max_words, max_chars : int
        As :func:`parse_name`.
    refusal : str or None
        The provider's refusal message, when it reports one apart from the text.

    Returns
    -------
    str or None
        The matching choice, as offered; ``None`` when the answer picks none of them,
        or names something that was not offered.

    Raises
    ------
    UnusableAnswer
        As :func:`parse_name`: the answer holds no name. Nothing else is ever raised.

    Examples
    --------
    >>> parse_choice('{"name": "Blue Jay"}', ["blue jay", "steller's jay"])
    'blue jay'
    >>> parse_choice('{"name": "None of these."}', ["blue jay", "steller's jay"]) is None
    True
    """
    return _parse_guarded(_parse_choice, answer, refusal, tuple(choices), max_words, max_chars)


def _parse_choice(answer: str, choices: tuple, max_words: int, max_chars: int) -> str | None:
    if _picks_none(answer):
        return None
    name = _parse(answer, max_words, max_chars)
    offered = {normalize_name(choice): choice for choice in choices}
    return offered.get(name)


def _picks_none(answer: str) -> bool:
    """Whether an answer says that no name offered fits ("none" is a refusal elsewhere)."""
    text = _strip_fence(answer.strip().replace("\u2019", "'"))
    value = _json_value(text)
    if isinstance(value, dict) and "name" in value and value["name"] is None:
        return True
    try:
        raw_name = _name_from_json(text)
        if raw_name is None:
            raw_name = _name_from_text(text)
    except UnusableAnswer:
        return False
    return normalize_name(raw_name) in NONE_OF_THESE


def parse_naming_context(answer: str | None, refusal: str | None = None) -> dict:
    """Read the naming context of ``prompt="expert"`` from a model's answer.

    Accepts a JSON object (also inside a markdown fence, around other text, or cut short
    after complete fields) and ``Category: ...`` lines, with a few synonyms of each key
    (``level`` for granularity, ``persona`` or ``role`` for expert). Each field goes into
    every naming prompt, so each must be a short plain phrase: at most
    :data:`MAX_CONTEXT_FIELD_WORDS` words and :data:`MAX_CONTEXT_FIELD_CHARS` characters
    of letters, digits, spaces and ``-'.,&/()``, never an instruction aimed at the model.

    Parameters
    ----------
    answer : str or None
        The text of the answer.
    refusal : str or None
        The provider's refusal message, when it reports one apart from the text.

    Returns
    -------
    dict
        ``category``, ``granularity`` and ``expert``, each a non-empty phrase with its
        spaces collapsed and surrounding quotes and punctuation removed.

    Raises
    ------
    UnusableAnswer
        A field is missing, empty, a refusal, overlong or unparsable, or the answer is
        (see :func:`parse_name`). Nothing else is ever raised.

    Examples
    --------
    >>> answer = '{"category": "birds", "granularity": "species", "expert": "an ornithologist"}'
    >>> parse_naming_context(answer)["expert"]
    'an ornithologist'
    >>> parse_naming_context("Category: cars\\nLevel: make and model\\nExpert: a car dealer")
    {'category': 'cars', 'granularity': 'make and model', 'expert': 'a car dealer'}
    """
    return _parse_guarded(_parse_context, answer, refusal)


def _parse_context(answer: str) -> dict:
    text = _strip_fence(answer.strip().replace("\u2019", "'"))
    value = _json_value(text)
    found: dict[str, str | None] = {}
    if isinstance(value, dict):
        fields = {str(key).strip().lower(): item for key, item in value.items()}
        pairs = [(key, item) for key, item in fields.items() if isinstance(item, str)]
    elif value is _NOT_JSON:
        # JSON cut short keeps its complete "key": "value" pairs; otherwise key: value lines.
        pattern = _CONTEXT_IN_BROKEN_JSON if text.lstrip().startswith("{") else _CONTEXT_LINE
        pairs = [(key.lower(), item) for key, item in pattern.findall(text)]
    else:
        raise UnusableAnswer("unparsable", answer)
    for field, keys in _CONTEXT_KEYS.items():
        # The asked key wins over its synonyms; the first of equal keys wins.
        found[field] = next((item for key in keys for name, item in pairs if name == key), None)
    if any(item is None for item in found.values()):
        raise UnusableAnswer("refusal" if _REFUSAL.search(text) else "unparsable", answer)
    return {field: _context_field(found[field], answer) for field in CONTEXT_FIELDS}


def _context_field(raw: str, answer: str) -> str:
    """One field of a naming context, cleaned; raises :class:`UnusableAnswer`."""
    value = " ".join(raw.split()).strip(" \"'`.,;:")
    if not value:
        raise UnusableAnswer("empty", answer)
    if _REFUSAL.search(value) or normalize_name(value) in _NON_NAMES:
        raise UnusableAnswer("refusal", answer)
    if _INSTRUCTION.search(value) or not _CONTEXT_CHARACTERS.fullmatch(value):
        raise UnusableAnswer("unparsable", answer)
    if len(value) > MAX_CONTEXT_FIELD_CHARS or len(value.split()) > MAX_CONTEXT_FIELD_WORDS:
        raise UnusableAnswer("overlong", answer)
    return value


def parse_synonym_groups(
    answer: str | None, names, refusal: str | None = None
) -> list[tuple[str, ...]]:
    """Read the groups of names that mean one kind from a model's answer.

    Accepts a JSON object ``{"groups": [[...], ...]}`` (also inside a markdown fence or
    around other text) or a bare JSON list of groups. Only the names offered count:
    each is matched after :func:`skvf.names.normalize_name`, anything else in a group is
    ignored, a name already in an earlier group is left out of later ones, and a group
    left with fewer than two names is dropped. So the answer can only join offered
    names, never bring in a new one.

    Parameters
    ----------
    answer : str or None
        The text of the answer.
    names : sequence of str
        The names offered, normalised.
    refusal : str or None
        The provider's refusal message, when it reports one apart from the text.

    Returns
    -------
    list of tuple of str
        The groups, each of two or more offered names, in the answer's order; empty
        when the answer groups nothing.

    Raises
    ------
    UnusableAnswer
        The answer holds no list of groups, or is empty, a refusal or overlong (see
        :func:`parse_name`). Nothing else is ever raised.

    Examples
    --------
    >>> names = ["blue jay", "jay blue", "crow", "raven"]
    >>> parse_synonym_groups('{"groups": [["Blue Jay", "jay blue"], ["crow", "rook"]]}', names)
    [('blue jay', 'jay blue')]
    """
    return _parse_guarded(_parse_synonym_groups, answer, refusal, tuple(names))


def _parse_synonym_groups(answer: str, names: tuple) -> list[tuple[str, ...]]:
    text = _strip_fence(answer.strip())
    value = _json_value(text)
    if value is _NOT_JSON:
        start, end = text.find("["), text.rfind("]")
        value = json.loads(text[start : end + 1]) if 0 <= start < end else None
    if isinstance(value, dict):
        value = {str(key).strip().lower(): item for key, item in value.items()}.get("groups")
    if not isinstance(value, list):
        raise UnusableAnswer("unparsable", answer)
    offered = set(names)
    placed: set[str] = set()
    groups = []
    for group in value:
        if not isinstance(group, list):
            continue
        members = []
        for member in group:
            name = normalize_name(member) if isinstance(member, str) else ""
            if name in offered and name not in placed and name not in members:
                members.append(name)
        if len(members) >= 2:
            placed.update(members)
            groups.append(tuple(members))
    return groups
