"""Which of the labeler's names are wordings of one kind: one text request per fit.

A vision LLM names the same kind in several wordings ("pullover", "sweater", "jumper";
"navy", "midnight blue"). Each wording becomes a class of its own, and with a few images
per class the wordings of one kind split its images between them until the label filter
drops them all. Spelling variants and word orders are merged by rule
(:func:`skvf.names.merge_near_duplicates`); synonyms need the language knowledge of the
model itself. The labeler's model is shown the distinct names, as text, and asked which
of them mean exactly the same kind.

The request goes through the same client as the names (server checks, key handling,
retries, timeout, budget, usage) and is cached in the answer cache under the model, the
server and the whole question, the names included, so a rerun on the same names sends
nothing. The answer can only join names that were offered
(:func:`~skvf.labeling._parsing.parse_synonym_groups`).
"""

from __future__ import annotations

import threading

from .._store import stable_hash
from .._warnings import warn
from ._cache import AnswerCache, bounded_record, parse_record, resolve_cache_dir
from ._client import ProviderError
from ._errors import BudgetExceededError, LabelingError, LabelingWarning, UnusableAnswerError
from ._parsing import UnusableAnswer, parse_synonym_groups
from ._prompts import render_synonym_question
from ._usage import UsageMeter

__all__ = ["ask_synonym_groups"]


def ask_synonym_groups(labeler, names) -> list[tuple[str, ...]]:
    """Ask the labeler's model which of ``names`` are wordings of one kind.

    Parameters
    ----------
    labeler : MLLMLabeler
        Fitted; its parameters say where and how to ask, its ``usage_`` counts the
        request and its naming context, when it has one, says what the names are.
    names : sequence of str
        The distinct names, normalised.

    Returns
    -------
    list of tuple of str
        The groups of two or more names that mean one kind; empty when fewer than two
        names are given (nothing is sent), and when the answer is unusable and
        ``on_error`` is ``"warn"`` or ``"skip"`` (a :class:`LabelingWarning` says so).

    Raises
    ------
    UnusableAnswerError
        The answer is unusable and ``on_error="raise"``.
    LabelingError
        The request failed for good, or the key is missing.
    BudgetExceededError
        ``max_cost`` leaves nothing to spend.
    """
    names = sorted(set(names))
    if len(names) < 2:
        return []
    question = render_synonym_question(
        names, labeler.domain, getattr(labeler, "naming_context_", None)
    )
    root = resolve_cache_dir(labeler.cache)
    cache = None
    if root is not None:
        cache = AnswerCache(root, {**labeler._answer_key(question), "purpose": "synonyms"})
    key = stable_hash(names, length=40)
    meter = UsageMeter(labeler.usage_)
    record = None if cache is None else cache.get(key)
    fresh = record is None
    if fresh:
        record = _ask(labeler, question, len(names), meter, cache)
    problem = None
    try:
        groups = parse_record(
            record, lambda answer, refusal=None: parse_synonym_groups(answer, names, refusal)
        )
    except UnusableAnswer as unusable:
        groups, problem = [], unusable
    if fresh and cache is not None and not record.get("malformed"):
        cache.put(key, bounded_record(record, None if problem is None else problem.reason))
    if problem is None:
        return groups
    meter.add(unusable_answers=1)
    message = f"the answer to which of the {len(names)} names mean one kind is unusable: {problem}"
    if labeler.on_error == "raise":
        raise UnusableAnswerError(
            f"{message[0].upper()}{message[1:]}. Pass on_error='warn' or 'skip' to keep "
            "every name apart instead, merge_synonyms=False not to ask, or change the model.",
            index=None,
            reason=problem.reason,
            answer=problem.answer,
        )
    warn(f"{message}; no names are merged as synonyms.", LabelingWarning)
    return []


def _ask(labeler, question, n_names, meter, cache) -> dict:
    """Send the question, text only; the answer record (``"malformed"`` when so)."""
    nothing_paid = {
        "answers_paid": 0,
        "answers_cached": 0,
        "cache_dir": None if cache is None else str(cache.directory),
    }
    if labeler.max_cost is not None and meter.spent() >= labeler.max_cost:
        raise BudgetExceededError(
            f"max_cost={labeler.max_cost} USD leaves nothing to spend on asking which names "
            "mean one kind; no request was sent. Raise max_cost, or pass "
            "merge_synonyms=False.",
            **nothing_paid,
        )
    requester = labeler._requester(meter, threading.Event(), nothing_paid)
    try:
        answer = requester.ask(question, [], f"synonyms of {n_names} names")
    except ProviderError as error:
        meter.add(failures=1)
        raise LabelingError(
            f"Asking which of the {n_names} names mean one kind stopped: {error} "
            f"({error.attempts} request(s)"
            f"{', retries exhausted' if error.retryable else ', not retried'}). The images' "
            "names were had before it; running again asks this question again.",
            **nothing_paid,
        ) from None
    record = answer.record(labeler.model)
    if answer.malformed is not None:
        return dict(record, malformed=answer.malformed)
    return record
