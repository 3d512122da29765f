"""Labelling images with a vision language model: one free-form class name per image.

:class:`MLLMLabeler` is a scikit-learn transformer; LiteLLM is imported only when it sends
its first request, so importing this package stays fast and offline.
"""

from ._errors import BudgetExceededError, LabelingError, LabelingWarning, UnusableAnswerError
from ._mllm import MLLMLabeler

__all__ = [
    "BudgetExceededError",
    "LabelingError",
    "LabelingWarning",
    "MLLMLabeler",
    "UnusableAnswerError",
]
