"""From a model's answer to one class name, or a reason why there is none.

Models are asked for ``{"name": ...}`` JSON, but local models and providers without a JSON
mode answer in many shapes: JSON in a markdown fence, JSON cut short, ``Name: X`` after a
list of attributes, a bare name, a refusal. :func:`parse_name` accepts all of those that
hold one name and returns it normalised by :func:`skvf.names.normalize_name`; every other
answer raises :class:`UnusableAnswer` with one of four reasons, which the labeler's
``on_error`` policy handles. A class name is never empty.
"""

from __future__ import annotations

import json
import re

from ..names import normalize_name

__all__ = ["UnusableAnswer", "parse_name"]

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
    reason : {"empty", "refusal", "overlong", "unparsable"}
        Why the answer is unusable.
    answer : str or None
        The raw answer (or the provider's refusal message).
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
        except ValueError:
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
        The answer is empty, a refusal, overlong or unparsable.

    Examples
    --------
    >>> parse_name('```json\\n{"name": "The Painted Bunting."}\\n```')
    'painted bunting'
    >>> parse_name("Attributes: red crest, black mask\\nName: Northern Cardinal")
    'northern cardinal'
    """
    if refusal and refusal.strip():
        raise UnusableAnswer("refusal", refusal)
    if answer is None or not answer.strip():
        raise UnusableAnswer("empty", answer)
    text = _strip_fence(answer.strip().replace("\u2019", "'"))
    raw_name = _name_from_json(text)
    if raw_name is None:
        raw_name = _name_from_text(text)
    if _REFUSAL.search(raw_name):
        raise UnusableAnswer("refusal", answer)
    name = normalize_name(raw_name)
    if not name:
        raise UnusableAnswer("empty", answer)
    if name in _NON_NAMES:
        raise UnusableAnswer("refusal", answer)
    if len(name.split()) > max_words or len(name) > max_chars:
        raise UnusableAnswer("overlong", answer)
    return name
