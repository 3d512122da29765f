"""The errors and warnings a labelling run reports."""

from __future__ import annotations

__all__ = ["BudgetExceededError", "LabelingError", "LabelingWarning", "UnusableAnswerError"]


class LabelingError(RuntimeError):
    """Labelling stopped before every image had an answer.

    Raised when a request failed for good (authentication, unknown model, or a transient
    failure after the last retry). The message says what this run paid for, what is
    cached and where; rerunning requests only the missing answers.

    Attributes
    ----------
    answers_paid : int
        Answers received by this run (each stored in the cache as it arrived).
    answers_cached : int
        Images of the input that now have a cached answer.
    cache_dir : str or None
        Where the answers are stored; ``None`` when the cache is disabled.
    """

    def __init__(self, message: str, answers_paid: int, answers_cached: int, cache_dir):
        super().__init__(message)
        self.answers_paid = answers_paid
        self.answers_cached = answers_cached
        self.cache_dir = cache_dir


class BudgetExceededError(LabelingError):
    """The next requests would have exceeded ``max_cost``; none of them was sent."""


class UnusableAnswerError(ValueError):
    """An answer holds no usable class name (or naming context) and ``on_error="raise"``.

    Attributes
    ----------
    index : int or None
        Position of the image in the input; ``None`` for the answer about several
        training images that ``prompt="expert"`` asks for in ``fit``.
    reason : {"empty", "refusal", "overlong", "unparsable", "malformed"}
    answer : str or None
        The raw answer.
    """

    def __init__(self, message: str, index: int, reason: str, answer: str | None):
        super().__init__(message)
        self.index = index
        self.reason = reason
        self.answer = answer


class LabelingWarning(UserWarning):
    """Some images got no usable name and were left out (``on_error="warn"``)."""
