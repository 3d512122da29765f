"""One question to the model: the LiteLLM call, its retries and its failures.

Transient failures (rate limits, timeouts, 5xx, refused connections) are retried with
exponential backoff and full jitter, honouring a ``Retry-After`` header (seconds or an
HTTP date); everything else (authentication, unknown model, bad request) fails at once.
Each request runs under a deadline over the whole of it and a cap on the bytes read
(:mod:`~skvf.labeling._transport`). Messages that leave this module are scrubbed of keys.
LiteLLM is imported here, lazily, and only after ``LITELLM_LOCAL_MODEL_COST_MAP`` is set,
so that importing it never touches the network.
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import random
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from numbers import Integral, Real

from ._secrets import scrub
from ._usage import UsageMeter, price_of_call

__all__ = ["Answer", "Cancelled", "ProviderError", "Requester", "import_litellm"]

logger = logging.getLogger("skvf.labeling")

#: Longest wait between two attempts, in seconds, whatever the backoff or Retry-After say.
MAX_BACKOFF = 60.0
#: More tokens than this in one call is no real count: the usage is treated as unknown.
MAX_TOKENS_PER_CALL = 10_000_000
#: Most bytes read from one reply, headers included. The parser refuses any answer over
#: MAX_ANSWER_CHARS (20,000) characters; with JSON escapes (up to 6 bytes a character),
#: a refusal, reasoning text and the envelope, a usable reply stays far below this. A
#: longer one is refused unread, as malformed, and not asked again.
MAX_REPLY_BYTES = 1_000_000
# LiteLLM's messages for a reply it received but could not read (no JSON, wrong shape).
_MALFORMED_REPLY = re.compile(
    r"Invalid response object|invalid response from LLM endpoint|provider returned 'choices'"
    r"|Received response - <APIResponse \[200",
    re.IGNORECASE,
)
# Providers whose credentials may come from elsewhere than one environment variable
# (profiles, managed identities, ADC): their keys are not checked before the first call.
_CREDENTIALS_NOT_CHECKED = frozenset({"azure", "azure_ai", "bedrock", "sagemaker", "vertex_ai"})
# A response LiteLLM did not price itself: price_of_call prices it.
_UNPRICED_BY_LITELLM = object()


def import_litellm():
    """Import LiteLLM without letting it fetch its price map from the network."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    # Every failure is handled here; LiteLLM's "Give Feedback / Get Help" banner printed
    # on each caught exception would only be noise on stdout.
    litellm.suppress_debug_info = True
    from ._transport import install

    install(litellm)
    return litellm


class ProviderError(RuntimeError):
    """A request failed for good.

    Attributes
    ----------
    retryable : bool
        Whether the failure was transient (and retries ran out) rather than fatal.
    attempts : int
        Requests sent for this question.
    """

    def __init__(self, message: str, retryable: bool, attempts: int):
        super().__init__(message)
        self.retryable = retryable
        self.attempts = attempts


class Cancelled(Exception):
    """The run was stopped before this question was sent (again)."""


@dataclass
class Answer:
    """What the model said, and what it cost."""

    text: str | None
    refusal: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    #: What was wrong with a reply of the wrong shape (no choices, no message, content
    #: that is not text); such a reply holds no answer and is never cached.
    malformed: str | None = None

    def record(self, model: str) -> dict:
        """The JSON record the answer cache stores."""
        return {
            "answer": self.text,
            "refusal": self.refusal,
            "model": model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
        }


def _is_retryable(litellm, error: BaseException) -> bool:
    from ._transport import RequestTimeout

    if isinstance(error, litellm.InternalServerError) and "Missing credentials" in str(error):
        return False  # the OpenAI client found no key: no retry will find one
    transient = (
        RequestTimeout,
        litellm.RateLimitError,
        litellm.Timeout,
        litellm.APIConnectionError,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
        litellm.BadGatewayError,
    )
    if isinstance(error, transient):
        return True
    status = getattr(error, "status_code", None)
    return isinstance(error, litellm.APIError) and isinstance(status, int) and status >= 500


def _retry_after(error: BaseException) -> float | None:
    """Seconds the server asked to wait (``Retry-After``: seconds or an HTTP date), or None."""
    headers = getattr(error, "litellm_response_headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after")
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as HTTP dates are
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _causes(error: BaseException) -> list[BaseException]:
    """The error and those it was raised from or while handling, outermost first."""
    chain: list[BaseException] = []
    while error is not None and all(error is not seen for seen in chain):
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def _connection_failure(error: BaseException) -> str | None:
    """Why no connection was made (``"connection refused"``, ...), or None if one was."""
    import httpx

    chain = _causes(error)
    if any(isinstance(link, ConnectionRefusedError) for link in chain):
        return "connection refused"
    failed = [link for link in chain if isinstance(link, httpx.ConnectError)]
    return None if not failed else str(failed[0]) or "no connection"


class Requester:
    """Asks one model about one image at a time; safe to share between threads.

    Parameters
    ----------
    model, api_base : str
        The LiteLLM model string and server.
    completion_kwargs : dict
        Extra arguments of ``litellm.completion``.
    api_key_env : str or None
        The environment variable holding the key, read at each call.
    timeout : float
        Seconds a request may take in all (:class:`~skvf.labeling._transport.RequestLimits`).
    json_mode : bool
        Whether to ask for ``response_format={"type": "json_object"}``.
    max_retries : int
        Retries of a transient failure.
    backoff_base : float
        Seconds before the first retry; doubled at each further retry.
    price_per_token : tuple or None
        See :func:`~skvf.labeling._usage.price_of_call`.
    meter : UsageMeter
        Receives calls, retries, tokens, cost and bytes.
    stop : threading.Event
        Once set, no further request starts.

    Attributes
    ----------
    attempt_span : float
        The longest time between the starts of two attempts at one question: a request
        to its deadline, then the longest backoff.
    """

    def __init__(
        self,
        *,
        model: str,
        api_base: str | None,
        completion_kwargs: dict,
        api_key_env: str | None,
        timeout: float,
        json_mode: bool,
        max_retries: int,
        backoff_base: float,
        price_per_token,
        meter: UsageMeter,
        stop: threading.Event,
    ):
        self.litellm = import_litellm()
        self.model = model
        self.api_base = api_base
        self.completion_kwargs = completion_kwargs
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.json_mode = json_mode
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.price_per_token = price_per_token
        self.meter = meter
        self.stop = stop
        self._api_key()  # fail before the first request when the variable is missing
        self.missing_credentials = self._missing_credentials()

    @property
    def attempt_span(self) -> float:
        from ._transport import DEADLINE_GRACE

        return self.timeout + DEADLINE_GRACE + MAX_BACKOFF

    def _api_key(self) -> str | None:
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ValueError(
                f"api_key_env names the environment variable {self.api_key_env!r}, which is "
                "not set or empty; set it to the API key (any non-empty value for a local "
                "server that needs none)."
            )
        return key

    def _missing_credentials(self) -> str | None:
        """What to set when the provider's key is missing from the environment, or None.

        Asked of LiteLLM's ``validate_environment`` before the first request, so that a
        missing key is reported at once instead of after LiteLLM's chain of attempts.
        Only variables holding keys count (``*_API_KEY``): a server address such as
        ``OLLAMA_API_BASE`` has a default, and cloud providers with other kinds of
        credentials (AWS, Azure, Vertex) are left to LiteLLM.
        """
        if self.api_key_env is not None:
            return None  # the key comes from the variable the user named, checked above
        try:
            _, provider, _, _ = self.litellm.get_llm_provider(self.model)
            report = self.litellm.validate_environment(model=self.model, api_base=self.api_base)
        except Exception:  # noqa: BLE001 - an unknown model fails on its first request
            return None
        if provider in _CREDENTIALS_NOT_CHECKED or report.get("keys_in_environment"):
            return None
        missing = [
            name
            for name in report.get("missing_keys") or []
            if isinstance(name, str) and name.upper().endswith("API_KEY")
        ]
        if not missing:
            return None
        return " or ".join(missing)

    def _request(self, prompt: str, data_uris: list[str], api_key: str | None, limits):
        images = [{"type": "image_url", "image_url": {"url": uri}} for uri in data_uris]
        messages = [{"role": "user", "content": [{"type": "text", "text": prompt}, *images]}]
        arguments = dict(self.completion_kwargs)
        arguments.update(model=self.model, messages=messages, timeout=self.timeout, max_retries=0)
        if self.api_base is not None:
            arguments["api_base"] = self.api_base
        if api_key is not None:
            arguments["api_key"] = api_key
        if self.json_mode:
            arguments["response_format"] = {"type": "json_object"}
        return limits.call(lambda: self.litellm.completion(**arguments))

    def _server(self, error: BaseException) -> str:
        """The server a failed request went to: ``api_base``, else the failed URL's origin.

        Only the origin (scheme, host, port) of a URL LiteLLM built is shown: some
        providers put the key in the query string.
        """
        if self.api_base is not None:
            return self.api_base
        for link in _causes(error):
            try:
                url = link.request.url
            except (AttributeError, RuntimeError):  # httpx raises when it has no request
                continue
            port = "" if url.port is None else f":{url.port}"
            return f"{url.scheme}://{url.host}{port}"
        return f"the server of {self.model!r}"

    def _usage(self, response) -> tuple[int, int, bool]:
        """Prompt and completion tokens, and whether the server's counts were valid.

        A count that is not a whole number, negative, or more than
        :data:`MAX_TOKENS_PER_CALL` is no count: both are then unknown (0) and the call's
        cost is unknown, never negative (a negative count would be a refund).
        """
        usage = getattr(response, "usage", None)
        counts = []
        for field in ("prompt_tokens", "completion_tokens"):
            value = getattr(usage, field, None)
            if value is None:
                value = 0  # not reported: 0, as before
            if (
                isinstance(value, bool)
                or not isinstance(value, (Integral, Real))
                or not math.isfinite(value)
                or value != int(value)
                or not 0 <= value <= MAX_TOKENS_PER_CALL
            ):
                return 0, 0, False
            counts.append(int(value))
        return counts[0], counts[1], True

    def _litellm_price(self, response):
        """The price LiteLLM computed while answering, or ``_UNPRICED_BY_LITELLM``.

        LiteLLM prices every response it returns (``_hidden_params["response_cost"]``,
        ``None`` for an unmapped model): pricing it again costs about 0.3 ms of CPU per
        request, held under the GIL. ``price_per_token`` wins over it.
        """
        hidden = getattr(response, "_hidden_params", None)
        if self.price_per_token is not None or not isinstance(hidden, dict):
            return _UNPRICED_BY_LITELLM
        return hidden.get("response_cost", _UNPRICED_BY_LITELLM)

    def _answer(self, response, item: str) -> Answer:
        prompt_tokens, completion_tokens, valid_usage = self._usage(response)
        if valid_usage:
            cost = self._litellm_price(response)
            if cost is _UNPRICED_BY_LITELLM:
                cost = price_of_call(
                    self.litellm, response, prompt_tokens, completion_tokens, self.price_per_token
                )
        else:
            cost = None
            logger.warning(
                "%s: the server reported invalid token counts (%s); counted as unknown, "
                "with no cost",
                item,
                scrub(repr(getattr(response, "usage", None))[:200]),
            )
        if cost is not None and not (isinstance(cost, Real) and math.isfinite(cost) and cost >= 0):
            cost = None  # a price can only add to what was spent
        choices = getattr(response, "choices", None)
        message = None
        if isinstance(choices, (list, tuple)) and choices:
            message = getattr(choices[0], "message", None)
        content = getattr(message, "content", None)
        if message is None or not (content is None or isinstance(content, str)):
            what = (
                "no choices"
                if not isinstance(choices, (list, tuple)) or not choices
                else "no message"
                if message is None
                else f"content of type {type(content).__name__}"
            )
            return Answer(
                None, None, prompt_tokens, completion_tokens, cost, malformed=f"a reply with {what}"
            )
        # LiteLLM keeps OpenAI's `refusal` field among the provider-specific ones.
        extra = getattr(message, "provider_specific_fields", None) or {}
        refusal = getattr(message, "refusal", None)
        if not refusal and isinstance(extra, dict):
            refusal = extra.get("refusal")
        return Answer(
            text=content,
            refusal=refusal if isinstance(refusal, str) and refusal else None,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost_usd=cost,
        )

    def ask(
        self,
        prompt: str,
        data_uri: str | Sequence[str],
        item: str,
        on_attempt: Callable[[], None] | None = None,
    ) -> Answer:
        """Send the prompt and one image (or several, in one message); retry transient failures.

        Parameters
        ----------
        prompt : str
            The rendered prompt.
        data_uri : str or sequence of str
            The image, or the images, as data URIs.
        item : str
            The item's description (or the items'), for log messages.
        on_attempt : callable, optional
            Called before each request is sent, retries included.

        Returns
        -------
        Answer
            With ``malformed`` set when the reply had the wrong shape, was over
            :data:`MAX_REPLY_BYTES` or encoded though not asked to be (not asked again),
            or when LiteLLM could not read the reply even after the retries.

        Raises
        ------
        ProviderError
            A fatal failure, or a transient one after the last retry.
        Cancelled
            ``stop`` was set before a request could be sent.
        """
        from ._transport import RequestLimits

        api_key = self._api_key()
        data_uris = [data_uri] if isinstance(data_uri, str) else list(data_uri)
        payload_bytes = len(prompt.encode()) + sum(map(len, data_uris))
        attempt = 0
        while True:
            if self.stop.is_set():
                raise Cancelled(item)
            if on_attempt is not None:
                on_attempt()
            self.meter.add(calls=1, retries=int(attempt > 0), bytes_sent=payload_bytes)
            limits = RequestLimits(self.timeout, MAX_REPLY_BYTES)
            try:
                response = self._request(prompt, data_uris, api_key, limits)
                break
            except Exception as error:  # noqa: BLE001 - classified below, never swallowed
                if limits.refused is not None:
                    # The server answered with what no parse could use: asking again
                    # would pay for the same again.
                    self.meter.add(failures=1)
                    return Answer(None, None, 0, 0, None, malformed=limits.refused)
                message = scrub(f"{item}: {type(error).__name__}: {error}", [api_key])
                if isinstance(error, self.litellm.ContentPolicyViolationError):
                    return Answer(None, message, 0, 0, 0.0)  # the provider's refusal
                if not _is_retryable(self.litellm, error):
                    raise ProviderError(message, retryable=False, attempts=attempt + 1) from None
                if attempt == self.max_retries:
                    failure = _connection_failure(error)
                    if failure is not None:
                        message = scrub(
                            f"{item}: could not connect to {self._server(error)} ({failure}): "
                            "is the server running, and is its address right? "
                            f"({type(error).__name__}: {error})",
                            [api_key],
                        )
                    if _MALFORMED_REPLY.search(str(error)):
                        # The server answered, but never in a readable shape: an unusable
                        # answer for this image (on_error), not the end of the run.
                        self.meter.add(failures=1)
                        excerpt = message if len(message) <= 300 else message[:297] + "..."
                        return Answer(None, None, 0, 0, None, malformed=excerpt)
                    raise ProviderError(message, retryable=True, attempts=attempt + 1) from None
                retry_after = _retry_after(error)
            delay = min(MAX_BACKOFF, self.backoff_base * 2**attempt) * random.uniform(0.5, 1)
            delay = max(delay, min(retry_after or 0.0, MAX_BACKOFF))
            attempt += 1
            logger.info(
                "%s: %s; retry %d of %d in %.2f s", item, message, attempt, self.max_retries, delay
            )
            self.stop.wait(delay)
        answer = self._answer(response, item)
        self.meter.add(
            failures=int(answer.malformed is not None),
            answers=1,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            cost_usd=answer.cost_usd or 0.0,
            unpriced_calls=int(answer.cost_usd is None),
        )
        return answer
