"""What labelling cost: a thread-safe meter of calls, tokens, dollars and bytes."""

from __future__ import annotations

import math
import threading

__all__ = ["USAGE_KEYS", "UsageMeter", "empty_usage", "price_of_call"]

#: The entries of ``MLLMLabeler.usage_``, in the order they are documented.
USAGE_KEYS = (
    "calls",
    "answers",
    "cache_hits",
    "retries",
    "failures",
    "unusable_answers",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "unpriced_calls",
    "bytes_sent",
    "wall_time_s",
)
_FLOAT_KEYS = frozenset({"cost_usd", "wall_time_s"})


def empty_usage() -> dict:
    """A usage dict with every entry at zero."""
    return {key: 0.0 if key in _FLOAT_KEYS else 0 for key in USAGE_KEYS}


def price_of_call(
    litellm, response, prompt_tokens: int, completion_tokens: int, price_per_token
) -> float | None:
    """The cost of one answered call in USD, or ``None`` when no price is known.

    Parameters
    ----------
    litellm : module
        The imported LiteLLM (its price map).
    response : litellm.ModelResponse
        The answer.
    prompt_tokens, completion_tokens : int
        The tokens the provider reported.
    price_per_token : tuple of float or None
        ``(prompt, completion)`` USD per token; when given it wins over LiteLLM's map.
    """
    if price_per_token is not None:
        prompt_price, completion_price = price_per_token
        cost = prompt_price * prompt_tokens + completion_price * completion_tokens
    else:
        try:
            cost = float(litellm.completion_cost(completion_response=response))
        except Exception:  # noqa: BLE001 - LiteLLM raises various errors for unmapped models
            return None
    # A price only ever adds to what was spent: anything else is no known price.
    return cost if math.isfinite(cost) and cost >= 0 else None


class UsageMeter:
    """Adds counts to a usage dict from many threads.

    Parameters
    ----------
    usage : dict
        The dict to update in place (the labeler's ``usage_``).
    """

    def __init__(self, usage: dict):
        self.usage = usage
        self._lock = threading.Lock()
        self.most_expensive_call = 0.0

    def add(self, **counts) -> None:
        """Add each count to its entry; a negative or non-finite count adds nothing."""
        with self._lock:
            for key, value in counts.items():
                if math.isfinite(value) and value > 0:
                    self.usage[key] += value
            if counts.get("cost_usd", 0.0) > self.most_expensive_call:
                self.most_expensive_call = counts["cost_usd"]

    def spent(self) -> float:
        """The USD spent so far."""
        with self._lock:
            return self.usage["cost_usd"]
