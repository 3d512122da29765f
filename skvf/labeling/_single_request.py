"""One question per fit, outside the runs over images: sent once, cached, metered.

The naming context of ``prompt="expert"`` and the synonym groups of
``merge_synonyms`` are each one request, not one per image. Both go through the same
client as the names (server checks, key handling, retries, timeout, usage) and are
cached in the answer cache under the model, the server, the whole question and a
``purpose``, so a rerun sends nothing; an unusable answer is stored as an excerpt with
its reason, a malformed reply not at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from ._cache import AnswerCache, bounded_record, parse_record, resolve_cache_dir
from ._client import ProviderError
from ._errors import BudgetExceededError, LabelingError, UnusableAnswerError
from ._parsing import UnusableAnswer
from ._usage import UsageMeter

__all__ = ["SingleAnswer", "ask_once", "attempts"]


def attempts(error: ProviderError) -> str:
    """How many requests a failure took, as its message says: ``"(3 request(s), not retried)"``."""
    how = ", retries exhausted" if error.retryable else ", not retried"
    return f"({error.attempts} request(s){how})"


@dataclass
class SingleAnswer:
    """What :func:`ask_once` read.

    Attributes
    ----------
    value : object or None
        What ``parse`` returned; ``None`` when the answer is unusable.
    problem : UnusableAnswer or None
        Why it is unusable (counted in the labeler's ``usage_``); ``None`` when usable.
    stored : bool
        Whether the answer is in the cache, so that asking again gives it again.
    """

    value: object
    problem: UnusableAnswer | None
    stored: bool

    def unusable_error(self, message: str, instead: str) -> UnusableAnswerError:
        """The error that stops a fit on this unusable answer under ``on_error="raise"``.

        Parameters
        ----------
        message : str
            What was unusable, starting lower-case, without a final full stop.
        instead : str
            What to do instead, after "Pass on_error='warn' or 'skip' to ".

        Returns
        -------
        UnusableAnswerError
            Its message says whether rerunning gives the same answer (it is cached).
        """
        cached = " The answer is cached, so rerunning gives it again." if self.stored else ""
        return UnusableAnswerError(
            f"{message[0].upper()}{message[1:]}.{cached} Pass on_error='warn' or 'skip' to "
            f"{instead}",
            index=None,
            reason=self.problem.reason,
            answer=self.problem.answer,
        )


def ask_once(
    labeler,
    question: str,
    data_uris: list[str],
    *,
    purpose: str,
    key: str,
    item: str,
    parse: Callable,
    budget_message: str,
    failure_message: Callable[[ProviderError], str],
) -> SingleAnswer:
    """Ask ``question`` (with the images ``data_uris``, or none) once, through the cache.

    Parameters
    ----------
    labeler : MLLMLabeler
        Fitted; says where and how to ask, and its ``usage_`` counts the request.
    question : str
    data_uris : list of str
        The images sent with the question, as data URIs; empty for a text question.
    purpose : str
        What the question is for: part of the cache's key, beside the question.
    key : str
        The entry's key within that cache (the digests of the images, the names, ...).
    item : str
        What is asked about, for log messages.
    parse : callable
        ``parse(answer, refusal=None)``, raising :class:`UnusableAnswer`.
    budget_message : str
        The message of the :class:`BudgetExceededError` when ``max_cost`` is spent.
    failure_message : callable
        ``failure_message(error) -> str``, the message of the :class:`LabelingError`
        when the request fails for good.

    Returns
    -------
    SingleAnswer

    Raises
    ------
    LabelingError
        The request failed for good, or the key is missing.
    BudgetExceededError
        ``max_cost`` leaves nothing to spend.
    """
    root = resolve_cache_dir(labeler.cache)
    cache = None
    if root is not None:
        cache = AnswerCache(root, {**labeler._answer_key(question), "purpose": purpose})
    meter = UsageMeter(labeler.usage_)
    record = None if cache is None else cache.get(key)
    fresh = record is None
    if fresh:
        nothing_paid = {
            "answers_paid": 0,
            "answers_cached": 0,
            "cache_dir": None if cache is None else str(cache.directory),
        }
        if labeler.max_cost is not None and meter.spent() >= labeler.max_cost:
            raise BudgetExceededError(budget_message, **nothing_paid)
        requester = labeler._requester(meter, threading.Event(), nothing_paid)
        try:
            answer = requester.ask(question, data_uris, item)
        except ProviderError as error:
            meter.add(failures=1)
            raise LabelingError(failure_message(error), **nothing_paid) from None
        record = answer.record(labeler.model)
        if answer.malformed is not None:  # the reply had the wrong shape: a rerun asks again
            record = dict(record, malformed=answer.malformed)
    problem = None
    try:
        value = parse_record(record, parse)
    except UnusableAnswer as unusable:
        value, problem = None, unusable
        meter.add(unusable_answers=1)
    stored = cache is not None and not record.get("malformed")
    if fresh and stored:
        cache.put(key, bounded_record(record, None if problem is None else problem.reason))
    return SingleAnswer(value, problem, stored)
