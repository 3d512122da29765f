"""Which of the labeler's names are wordings of one kind: one text request per fit.

A vision LLM names the same kind in several wordings ("pullover", "sweater", "jumper";
"navy", "midnight blue"). Each wording becomes a class of its own, and with a few images
per class the wordings of one kind split its images between them until the label filter
drops them all. Spelling variants and word orders are merged by rule
(:func:`skvf.names.merge_near_duplicates`); synonyms need the language knowledge of the
model itself. The labeler's model is shown the distinct names, as text, and asked which
of them mean exactly the same kind.

The request is sent once (:func:`~skvf.labeling._single_request.ask_once`: the same
client as the names, cached under the model, the server and the whole question, the
names included), so a rerun on the same names sends nothing. The answer can only join
names that were offered (:func:`~skvf.labeling._parsing.parse_synonym_groups`).
"""

from __future__ import annotations

from .._store import stable_hash
from .._warnings import warn
from ._errors import LabelingWarning
from ._parsing import parse_synonym_groups
from ._prompts import render_synonym_question
from ._single_request import ask_once, attempts

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
    answer = ask_once(
        labeler,
        question,
        [],
        purpose="synonyms",
        key=stable_hash(names, length=40),
        item=f"synonyms of {len(names)} names",
        parse=lambda text, refusal=None: parse_synonym_groups(text, names, refusal),
        budget_message=f"max_cost={labeler.max_cost} USD leaves nothing to spend on asking which "
        "names mean one kind; no request was sent. Raise max_cost, or pass merge_synonyms=False.",
        failure_message=lambda error: (
            f"Asking which of the {len(names)} names mean one kind stopped: {error} "
            f"{attempts(error)}. The images' "
            "names were had before it; running again asks this question again."
        ),
    )
    problem = answer.problem
    if problem is None:
        return answer.value
    message = f"the answer to which of the {len(names)} names mean one kind is unusable: {problem}"
    if labeler.on_error == "raise":
        raise answer.unusable_error(
            message,
            "keep every name apart instead, merge_synonyms=False not to ask, or change the model.",
        )
    warn(f"{message}; no names are merged as synonyms.", LabelingWarning)
    return []
