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
"""

from __future__ import annotations

import json
import re

from ..names import normalize_name

__all__ = ["MAX_ANSWER_CHARS", "REASONS", "UnusableAnswer", "parse_name"]

#: Longer answers are "overlong" without being parsed: no class name needs them, and the
#: parser's work stays bounded.
MAX_ANSWER_CHARS = 20_000
#: Why an answer can be unusable ("malformed": the reply itself had the wrong shape).
REASONS = ("empty", "refusal", "overlong", "unparsable", "malformed")

_NAME_KEYS = ("name", "category", "label", "class", "species")
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


def _name_from_json(text: str) -> str | None:
    """The name in a JSON answer; ``None`` when the answer is not JSON at all."""
    start, end = text.find("{"), text.rfind("}")
    candidates = [text] + ([text[start : end + 1]] if 0 <= start < end else [])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (ValueError, RecursionError):  # RecursionError: JSON nested too deeply
            continue
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
        name = _parse(answer, max_words, max_chars)
    except UnusableAnswer:
        raise
    except (ValueError, TypeError, RecursionError, IndexError, KeyError):
        # No answer may crash the labeler; a parser bug reads as an unparsable answer.
        raise UnusableAnswer("unparsable", answer) from None
    return name


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
