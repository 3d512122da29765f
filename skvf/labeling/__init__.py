"""Labelling images with a vision language model: one free-form class name per image.

:class:`MLLMLabeler` is a scikit-learn transformer; LiteLLM is imported only when it sends
its first request, so importing this package stays fast and offline. Any estimator with ``fit`` and
``transform`` can stand in for it: :func:`label_items` is how skvf calls a labeler (and
:func:`choose_items` how it asks one to choose among names), :func:`keeps_answers`
whether it stores its own answers, :func:`labeler_requests` how many requests it
answered, and :func:`answer_determining_params` what keys the classifier's store of them
when it does not.
"""

from ._errors import BudgetExceededError, LabelingError, LabelingWarning, UnusableAnswerError
from ._mllm import MLLMLabeler
from ._protocol import (
    answer_determining_params,
    cached_choices,
    cached_labels,
    choose_items,
    keeps_answers,
    label_items,
    labeler_requests,
)

__all__ = [
    "BudgetExceededError",
    "LabelingError",
    "LabelingWarning",
    "MLLMLabeler",
    "UnusableAnswerError",
    "answer_determining_params",
    "cached_choices",
    "cached_labels",
    "choose_items",
    "keeps_answers",
    "label_items",
    "labeler_requests",
]
