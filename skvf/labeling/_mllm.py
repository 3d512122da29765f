"""The MLLM labeler: one free-form class name per image from a vision language model."""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from .._images import as_image_list, describe_item, image_digest, load_image
from .._sklearn_compat import Interval, StrOptions, fit_context
from .._store import stable_hash
from .._warnings import warn
from ..exceptions import ImageInputError
from ..names import normalize_name
from ..serialization import register_trusted_type
from ._cache import (
    AnswerCache,
    answer_affecting,
    bounded_record,
    parse_record,
    resolve_cache_dir,
)
from ._client import ProviderError, Requester
from ._context import infer_naming_context
from ._encoding import JPEG_QUALITY, jpeg_data_uri
from ._errors import BudgetExceededError, LabelingError, LabelingWarning, UnusableAnswerError
from ._parsing import NONE_OF_THESE, UnusableAnswer, parse_choice, parse_name
from ._prompts import (
    BUILTIN_PROMPTS,
    CHOICE_QUESTION,
    EXPERT_PROMPT,
    check_template,
    render_choice_question,
    render_prompt,
)
from ._runner import run_bounded
from ._secrets import check_api_base, check_no_secrets
from ._synonyms import ask_synonym_groups
from ._usage import UsageMeter, empty_usage

__all__ = ["MLLMLabeler"]

logger = logging.getLogger("skvf.labeling")

# completion_kwargs entries that a dedicated parameter controls.
_MANAGED_ARGUMENTS = {
    "model": "model",
    "messages": "prompt",
    "api_base": "api_base",
    "base_url": "api_base",
    "timeout": "timeout",
    "max_retries": "max_retries",
    "num_retries": "max_retries",
    "response_format": "json_mode",
    "stream": "(none: answers are read whole)",
    "n": "(none: one answer per image)",
}
_SHOWN_PROBLEMS = 5
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _ConfirmedInProcess:
    """Put in a pickle by a process that trusts the labeler's server.

    Pickles (joblib workers, ``copy.deepcopy``) carry the confirmation of the process that
    made them: unpickling runs arbitrary code anyway, so a pickle is only ever loaded
    from a trusted source. This class is deliberately not a trusted skops type: a skops
    file cannot hold it, so a shared model file can never confirm its own server.
    """


# LiteLLM routing arguments: other deployments, each with its own host and key. One
# labeler asks one model (its answers are cached per model), so these are refused.
_ROUTING_ARGUMENTS = frozenset({"model_list", "router", "deployment", "model_file_id_mapping"})
# Arguments that pick the provider, the proxy or the TLS check, hence where a key goes
# and who can read it: held back, like addresses, when a file sets them.
_DESTINATION_ARGUMENTS = frozenset(
    {"custom_llm_provider", "use_litellm_proxy", "ssl_verify", "github_copilot_host"}
)
_ROUTING_FIX = (
    "one labeler asks one model, whose answers are cached under its name. For routing "
    "or fallbacks, run a LiteLLM proxy and point api_base at it."
)
# A value that names where to connect: a URL, a scheme-less "//host", or "host:port".
_ADDRESS = re.compile(r"://|^\s*//|^\s*[\w.\-]+:\d+(?:/|$)", re.IGNORECASE)


def _holds_address(value) -> bool:
    """Whether a value, at any depth of dicts and lists, names a host to connect to."""
    if isinstance(value, dict):
        return any(_holds_address(key) or _holds_address(item) for key, item in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_holds_address(item) for item in value)
    return isinstance(value, str) and bool(_ADDRESS.search(value))


def _routing_arguments(completion_kwargs) -> list[str]:
    """The ``completion_kwargs`` entries that send requests to other deployments."""
    return sorted(
        key
        for key in (completion_kwargs or {})
        if isinstance(key, str) and (key in _ROUTING_ARGUMENTS or "fallback" in key)
    )


def _server_fields(labeler) -> dict:
    """What decides where a request goes and which key it carries, as the parameters say.

    ``api_base``; every ``completion_kwargs`` entry holding a URL or ``host:port`` at any
    depth, or choosing the provider, a proxy or the TLS check; and ``api_key_env``, since
    a file naming the variable would choose which of the user's secrets is sent.
    """
    fields = {}
    if labeler.api_base is not None:
        fields["api_base"] = labeler.api_base
    if labeler.api_key_env is not None:
        fields["api_key_env"] = labeler.api_key_env
    kwargs = labeler.completion_kwargs if isinstance(labeler.completion_kwargs, dict) else {}
    addresses = {
        key: value
        for key, value in kwargs.items()
        if key in _DESTINATION_ARGUMENTS or _holds_address(value)
    }
    if addresses:
        fields["completion_kwargs"] = addresses
    return fields


@register_trusted_type
class MLLMLabeler(TransformerMixin, BaseEstimator):
    """Name the fine-grained category of each image with a vision language model.

    The labeler is the stage of NeaR that costs money per call, so it never pays twice
    for the same answer, never loses an answer it paid for and never hangs: answers
    are cached on disk the moment they arrive, requests run concurrently under a bound,
    transient failures are retried with backoff, and every request has a timeout.

    Any `LiteLLM <https://docs.litellm.ai/docs/providers>`_ model string works:
    ``"gpt-4o-mini"``, ``"gemini/..."``, ``"anthropic/..."``, ``"ollama_chat/..."``, or
    ``"openai/<name>"`` with ``api_base`` for vLLM, llama.cpp or LM Studio servers.

    Parameters
    ----------
    model : str, default="gpt-4o-mini"
        The LiteLLM model string.
    prompt : str, default="direct"
        ``"direct"`` asks for the fine-grained category of the main object;
        ``"attributes"`` asks for the distinguishing visual attributes first, then the
        name; ``"expert"`` first shows the model ``context_images`` training images in
        one request (in :meth:`fit`) and asks what they show, the granularity of the
        names wanted and the expert who would name them, then asks every image as that
        expert (:attr:`naming_context_`). Any other string is a template whose only
        placeholder is ``{domain}``; an instruction to answer ``{"name": ...}`` in JSON
        is appended to every prompt.
    domain : str, default=None
        What the images show (``"bird"``, ``"car model"``); a hint in the built-in
        prompts (for ``"expert"``, in the question about the images, whose answer still
        gives all three) and the value of ``{domain}`` in templates.
    context_images : int, default=4
        With ``prompt="expert"``, the training images shown to infer the naming
        context: evenly spaced over ``X``, first and last included, each once.
    api_base : str, default=None
        The server's base URL, e.g. ``"http://localhost:8000/v1"``; without credentials
        in it (``user:password@``, ``?api_key=``), which are refused. A labeler loaded
        from a file (skops) does not send requests to the ``api_base`` the file names
        until it is set again in this process (``set_params(api_base=...)``), since the
        API key would go to that server; the same holds for ``api_key_env`` and for any
        ``completion_kwargs`` entry holding a URL or ``host:port``.
    completion_kwargs : dict, default=None
        Extra arguments of ``litellm.completion`` (``temperature``, ``max_tokens``,
        ``seed``, ...). Secrets are refused at any depth: fields named like credentials
        (``api_key``, ``client_secret``, ``*_password``, ``*_token``, ``Authorization``
        headers, ...), URLs with credentials and values shaped like keys. Use
        environment variables. LiteLLM's routing (``model_list``, ``fallbacks``, ...)
        is refused: one labeler asks one model.
    api_key_env : str, default=None
        The name of an environment variable holding the API key, read at each call.
        ``None`` lets LiteLLM read the provider's own variable (``OPENAI_API_KEY``, ...).
    max_concurrency : int, default=8
        Requests in flight at once.
    timeout : float, default=60
        Seconds a request may take in all: connecting, sending, waiting and reading the
        reply. A longer one is abandoned (its connection closed) as a timeout, and retried.
    max_retries : int, default=4
        Retries of a request after a rate limit, timeout, 5xx answer or refused
        connection. Authentication, unknown-model and bad-request errors are not retried.
    backoff_base : float, default=1.0
        Seconds before the first retry; doubled at each retry, with full jitter and at
        least the server's ``Retry-After``, at most 60 s.
    json_mode : "auto" or bool, default="auto"
        Ask for a JSON object answer (``response_format``). ``"auto"`` asks when LiteLLM
        says the provider supports it, and never for a custom ``api_base`` (local
        servers differ); the parser reads plain-text answers either way.
    max_side : int, default=512
        Longest side of the image sent, as a JPEG data URI.
    max_name_words : int, default=8
        Answers with longer names are "overlong".
    max_name_chars : int, default=80
        Answers with longer names are "overlong".
    on_error : {"raise", "warn", "skip"}, default="raise"
        What an unusable image or answer (empty, refused, overlong, unparsable, a
        malformed reply, or an unreadable image) does: raise :class:`UnusableAnswerError` (or
        :class:`~skvf._images.ImageInputError`); or leave the image without a name, with
        a :class:`LabelingWarning` (``"warn"``) or silently (``"skip"``), as reported
        by :meth:`label` (``return_reasons=True`` says why for each). Never an empty
        class name. With ``prompt="expert"``, an unusable answer about the training
        images raises too; under ``"warn"`` and ``"skip"`` every image is then asked
        with the ``"direct"`` prompt, with a :class:`LabelingWarning` either way.
    cache : "default", path or None, default="default"
        Where answers are stored: ``"default"`` is ``labels/`` under the user's cache
        directory (``$XDG_CACHE_HOME/skvf``, ``~/.cache/skvf``, ...), a path names a
        directory, ``None`` disables the cache.
    max_cost : float, default=None
        USD this labeler may spend since :meth:`fit`. A request is not sent when the
        cost so far plus that of the requests in flight and of this one (estimated
        from the most expensive call so far; the first call runs alone to measure it)
        would exceed it; :class:`BudgetExceededError` then reports what was spent and
        what is cached.
    price_per_token : tuple of (float, float), default=None
        ``(prompt, completion)`` USD per token, used instead of LiteLLM's price map
        (where local models are unmapped and count as 0).
    verbose : int, default=0
        A progress bar (tqdm) when positive.

    Attributes
    ----------
    usage_ : dict
        Reset by :meth:`fit`, accumulated over every :meth:`label` / :meth:`transform` /
        :meth:`choose` call since, and over the request of ``prompt="expert"`` in
        :meth:`fit`:
        ``calls`` (requests sent, retries included), ``answers`` (answers
        received and paid for), ``cache_hits`` (distinct images answered from the
        cache), ``retries``, ``failures`` (images whose request failed for good or whose
        reply was malformed),
        ``unusable_answers``, ``prompt_tokens``, ``completion_tokens``, ``cost_usd``,
        ``unpriced_calls`` (answers with no known price or invalid token counts, counted
        as 0 USD, never less),
        ``bytes_sent`` and ``wall_time_s``.
    prompt_text_ : str
        The text sent with every image.
    naming_context_ : dict or None
        With ``prompt="expert"``, what the model answered about the training images:
        ``category`` (``"birds"``), ``granularity`` (``"species"``) and ``expert``
        (``"an ornithologist"``), from which :attr:`prompt_text_` is rendered. ``None``
        for other prompts, and when that answer was unusable under ``on_error`` of
        ``"warn"`` or ``"skip"`` (the ``"direct"`` prompt is then used, with a
        :class:`LabelingWarning`).

    See Also
    --------
    skvf.names.normalize_name : The normalisation applied to every name.

    References
    ----------
    .. [1] NeaR: "Vocabulary-free fine-grained visual recognition via enriched
       contextually grounded vision-language model", arXiv:2505.01064.
    .. [2] M. Liu et al., "Democratizing Fine-grained Visual Recognition with Large
       Language Models" (FineR), ICLR 2024.
    .. [3] FiNDR, CVPR 2026: the naming prompt with an inferred category, granularity
       and expert persona (``prompt="expert"``).

    Examples
    --------
    Fitting checks the parameters and, but for ``prompt="expert"``, sends nothing;
    naming images needs the model provider's API key and the network (and a photo), so
    the last line is not run here:

    >>> from skvf.labeling import MLLMLabeler
    >>> labeler = MLLMLabeler(model="gpt-4o-mini", domain="bird", cache=None).fit(None)
    >>> labeler.prompt_text_ != ""
    True
    >>> names, valid = labeler.label(["photos/0001.jpg"])  # doctest: +SKIP
    """

    #: Its answers are stored in its own ``cache`` (keyed by what each request sends:
    #: model, server, prompt, image size, answer-changing completion arguments), so
    #: ``NeaRClassifier(memory=...)`` does not store them a second time.
    keeps_answers = True

    _parameter_constraints: dict = {
        "model": [str],
        "prompt": [str],
        "domain": [str, None],
        "context_images": [Interval(Integral, 1, None, closed="left")],
        "api_base": [str, None],
        "completion_kwargs": [dict, None],
        "api_key_env": [str, None],
        "max_concurrency": [Interval(Integral, 1, None, closed="left")],
        "timeout": [Interval(Real, 0, None, closed="neither")],
        "max_retries": [Interval(Integral, 0, None, closed="left")],
        "backoff_base": [Interval(Real, 0, None, closed="left")],
        "json_mode": ["boolean", StrOptions({"auto"})],
        "max_side": [Interval(Integral, 16, None, closed="left")],
        "max_name_words": [Interval(Integral, 1, None, closed="left")],
        "max_name_chars": [Interval(Integral, 1, None, closed="left")],
        "on_error": [StrOptions({"raise", "warn", "skip"})],
        "cache": [str, os.PathLike, None],
        "max_cost": [Interval(Real, 0, None, closed="left"), None],
        "price_per_token": [tuple, list, None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model: str = "gpt-4o-mini",
        *,
        prompt: str = "direct",
        domain: str | None = None,
        context_images: int = 4,
        api_base: str | None = None,
        completion_kwargs: dict | None = None,
        api_key_env: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff_base: float = 1.0,
        json_mode: str | bool = "auto",
        max_side: int = 512,
        max_name_words: int = 8,
        max_name_chars: int = 80,
        on_error: str = "raise",
        cache="default",
        max_cost: float | None = None,
        price_per_token: tuple[float, float] | None = None,
        verbose: int = 0,
    ):
        self.model = model
        self.prompt = prompt
        self.domain = domain
        self.context_images = context_images
        self.api_base = api_base
        self.completion_kwargs = completion_kwargs
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.json_mode = json_mode
        self.max_side = max_side
        self.max_name_words = max_name_words
        self.max_name_chars = max_name_chars
        self.on_error = on_error
        self.cache = cache
        self.max_cost = max_cost
        self.price_per_token = price_per_token
        self.verbose = verbose

    # -- trusting the server: a file must never decide where the API key goes ----------

    def set_params(self, **params):
        """Set parameters; setting ``api_base`` confirms a server a loaded file named."""
        super().set_params(**params)
        unconfirmed = self.__dict__.get("_unconfirmed_server")
        if unconfirmed:
            for name in ("api_base", "api_key_env", "completion_kwargs"):
                if name in params:
                    unconfirmed.pop(name, None)
        return self

    def __sklearn_clone__(self):
        # sklearn.base.clone calls the constructor, which cannot tell a user's act from a
        # clone: the clone keeps the servers still to be confirmed.
        params = self.get_params(deep=False)
        twin = type(self)(**{name: clone(value, safe=False) for name, value in params.items()})
        unconfirmed = self.__dict__.get("_unconfirmed_server")
        if unconfirmed:
            twin._unconfirmed_server = dict(unconfirmed)
        return twin

    def __reduce_ex__(self, protocol):
        reduced = super().__reduce_ex__(protocol)
        if self.__dict__.get("_unconfirmed_server") or not isinstance(reduced[2], dict):
            return reduced
        state = dict(reduced[2], _skvf_confirmed=_ConfirmedInProcess())
        return (*reduced[:2], state, *reduced[3:])

    def __setstate__(self, state):
        state = dict(state)
        confirmed = isinstance(state.pop("_skvf_confirmed", None), _ConfirmedInProcess)
        state.pop("_unconfirmed_server", None)
        super().__setstate__(state)
        if not confirmed:
            # Loaded from a file (skops calls __setstate__ too): its servers are not the
            # user's until set again in this process. The default provider host is fine.
            self._unconfirmed_server = _server_fields(self)

    def _check_destinations(self) -> None:
        """Refuse every route a request could take that the user did not name here.

        Called before any request, by :meth:`fit` and again by each labeling run (a
        fitted labeler loaded from a file labels without :meth:`fit`).
        """
        check_api_base(self.api_base)
        routing = _routing_arguments(self.completion_kwargs)
        if routing:
            raise ValueError(
                f"completion_kwargs must not set {', '.join(map(repr, routing))}: LiteLLM "
                f"would send requests, and API keys, to other deployments; {_ROUTING_FIX}"
            )
        unconfirmed = self.__dict__.get("_unconfirmed_server") or {}
        current = _server_fields(self)
        for name, value in unconfirmed.items():
            if current.get(name) == value:
                if name == "completion_kwargs":
                    shown = "{" + ", ".join(f"{key!r}: ..." for key in value) + "} (addresses)"
                    what = "requests (and the API key) could go to a server the file chose"
                elif name == "api_key_env":
                    shown = repr(value)
                    what = "the file would choose which of your secrets is sent"
                else:
                    shown = repr(value)
                    what = "requests (and the API key) would go to a server the file chose"
                raise ValueError(
                    f"this labeler was loaded from a file and names {name}={shown}: {what}. "
                    f"Set it again with set_params({name}=...) (in a NeaRClassifier: "
                    f"set_params(labeler__{name}=...)) to confirm you trust it, or set it to "
                    "None for the provider's own."
                )

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X=None, y=None):
        """Check the parameters; with ``prompt="expert"``, infer the naming context.

        No request is sent, except with ``prompt="expert"``: one request, with a few
        images of ``X``, asks for the naming context (:attr:`naming_context_`), unless
        the answer cache holds its answer.

        Parameters
        ----------
        X : sequence of images or None
            The training images: with ``prompt="expert"`` the naming context is
            inferred from ``context_images`` of them; otherwise ignored.
        y : ignored

        Returns
        -------
        self : MLLMLabeler

        Raises
        ------
        UnusableAnswerError
            With ``prompt="expert"`` and ``on_error="raise"``: the answer about the
            images is unusable (its ``index`` is None).
        LabelingError
            With ``prompt="expert"``: its request failed for good, or ``max_cost``
            leaves nothing to spend (:class:`BudgetExceededError`).
        """
        self._check_parameters()
        self.usage_ = empty_usage()
        self.naming_context_ = None
        if self.prompt == EXPERT_PROMPT:
            started = time.perf_counter()
            try:
                self.naming_context_ = infer_naming_context(self, X)
            finally:
                self.usage_["wall_time_s"] += time.perf_counter() - started
        self.prompt_text_ = render_prompt(self.prompt, self.domain, self.naming_context_)
        return self

    def _check_parameters(self) -> None:
        for name in ("model", "domain", "api_key_env", "api_base"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                raise ValueError(f"{name} must be a non-empty string, got {value!r}.")
        if self.api_key_env is not None and not _VARIABLE_NAME.fullmatch(self.api_key_env):
            # Never quoted: a key pasted here by mistake must not reach the message.
            raise ValueError(
                "api_key_env must be the name of an environment variable (letters, digits "
                "and underscores, e.g. 'MY_VLM_KEY'), not the key itself: put the key in "
                "that variable."
            )
        check_api_base(self.api_base)
        if self.prompt not in BUILTIN_PROMPTS and self.prompt != EXPERT_PROMPT:
            check_template(self.prompt, self.domain)
        kwargs = self.completion_kwargs or {}
        check_no_secrets(kwargs)
        self._check_destinations()
        for key in kwargs:
            if key in _MANAGED_ARGUMENTS:
                raise ValueError(
                    f"completion_kwargs must not set {key!r}; use the parameter "
                    f"{_MANAGED_ARGUMENTS[key]} instead."
                )
        if self.price_per_token is not None and not (
            len(self.price_per_token) == 2
            and all(
                isinstance(price, Real) and math.isfinite(price) and price >= 0
                for price in self.price_per_token
            )
        ):
            raise ValueError(
                "price_per_token must be (prompt, completion) USD per token, two "
                f"non-negative numbers, got {self.price_per_token!r}."
            )
        resolve_cache_dir(self.cache)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.non_deterministic = True
        return tags

    def _answer_key(self, prompt_text: str) -> dict:
        """Everything an answer to ``prompt_text`` with an image depends on (never a secret)."""
        return {
            "model": self.model,
            "api_base": None if self.api_base is None else self.api_base.rstrip("/"),
            "prompt": prompt_text,
            "json_mode": self.json_mode,
            "max_side": self.max_side,
            "jpeg_quality": JPEG_QUALITY,
            "completion_kwargs": answer_affecting(self.completion_kwargs or {}),
        }

    def _requester(self, meter, stop: threading.Event, paid: dict) -> Requester:
        """The client of a run's requests, once the server is trusted and a key is at hand.

        ``paid`` holds the counts of the :class:`LabelingError` raised when the
        provider's key is missing from the environment.
        """
        self._check_destinations()  # no request to a server a file chose
        requester = Requester(
            model=self.model,
            api_base=self.api_base,
            completion_kwargs=dict(self.completion_kwargs or {}),
            api_key_env=self.api_key_env,
            timeout=self.timeout,
            json_mode=self._json_mode(),
            max_retries=self.max_retries,
            backoff_base=self.backoff_base,
            price_per_token=self.price_per_token,
            meter=meter,
            stop=stop,
        )
        if requester.missing_credentials is not None:
            raise LabelingError(
                f"{self.model!r} needs an API key in the environment variable "
                f"{requester.missing_credentials}, which is not set; no request was sent. Set "
                "it, or put the key in a variable of your own and name it with "
                "api_key_env='MY_KEY_VARIABLE' (a local server that needs no key accepts any "
                "non-empty value).",
                **paid,
            )
        return requester

    def _json_mode(self) -> bool:
        """Whether requests ask for a JSON object answer (``json_mode`` resolved)."""
        if self.json_mode != "auto":
            return bool(self.json_mode)
        if self.api_base is not None:
            return False
        from ._client import import_litellm

        litellm = import_litellm()
        try:
            model, provider, _, _ = litellm.get_llm_provider(self.model)
            supported = litellm.get_supported_openai_params(
                model=model, custom_llm_provider=provider
            )
        except Exception:  # noqa: BLE001 - an unknown model fails on its first request
            return False
        return "response_format" in (supported or [])

    def transform(self, X) -> np.ndarray:
        """Name every image.

        Parameters
        ----------
        X : sequence of (path, PIL.Image.Image, ndarray) or ndarray
            The images; see :func:`skvf._images.as_image_list`.

        Returns
        -------
        ndarray of object, shape (n_images,)
            Normalised names, never empty.

        Raises
        ------
        ValueError
            Some image got no name (``on_error`` of ``"warn"`` or ``"skip"``): use
            :meth:`label`, which reports them in a mask.
        """
        names, valid, reasons = self.label(X, return_reasons=True)
        if not valid.all():
            raise ValueError(
                f"{int((~valid).sum())} of {valid.size} images got no usable name "
                f"(on_error={self.on_error!r}), and transform returns one name per image. "
                "Use label(X), which returns the names and a mask of the valid ones, or "
                f"on_error='raise'. First: {reasons[~valid][0]}"
            )
        return names

    def label(self, X, *, return_reasons: bool = False):
        """Name every image, reporting the images left without a name.

        Parameters
        ----------
        X : sequence of (path, PIL.Image.Image, ndarray) or ndarray
            The images; see :func:`skvf._images.as_image_list`.
        return_reasons : bool, default=False
            Also return why each image was left without a name.

        Returns
        -------
        names : ndarray of object, shape (n_images,)
            Normalised names; ``None`` where ``valid`` is False.
        valid : ndarray of bool, shape (n_images,)
            False for the images ``on_error="warn"`` or ``"skip"`` left without a name.
        reasons : ndarray of object, shape (n_images,)
            With ``return_reasons=True``: for each image left without a name, a message
            naming it and what went wrong (``"X[3] ('a.jpg'): empty answer"``);
            ``None`` for the others.

        Raises
        ------
        LabelingError
            A request failed for good; the message says what is paid for and cached.
        BudgetExceededError
            ``max_cost`` would be exceeded.
        UnusableAnswerError
            An answer holds no name and ``on_error="raise"``.
        """
        check_is_fitted(self, "usage_")
        started = time.perf_counter()
        try:
            names, valid, reasons = _Run(self, as_image_list(X)).execute()
        finally:
            self.usage_["wall_time_s"] += time.perf_counter() - started
        return (names, valid, reasons) if return_reasons else (names, valid)

    def choose(self, X, choices, *, return_reasons: bool = False):
        """Ask which of a few names each image shows, or none of them.

        Each image is sent with its list of names and the option "none of these"
        (:func:`~skvf.labeling._prompts.render_choice_question`, as the expert of
        ``prompt="expert"`` when there is a naming context), through the same client,
        answer cache, concurrency bound, retries, budget (``max_cost``), usage counts
        and ``on_error`` policy as :meth:`label`. An answer is cached under the image's
        content and the whole question, names included: the same image asked about
        other names is asked again.

        Parameters
        ----------
        X : sequence of (path, PIL.Image.Image, ndarray) or ndarray
            The images; see :func:`skvf._images.as_image_list`.
        choices : sequence of sequence of str
            The names offered for each image, listed in the question in this order;
            none may be a way of saying "none of these".
        return_reasons : bool, default=False
            Also return why each image was left without a usable answer.

        Returns
        -------
        names : ndarray of object, shape (n_images,)
            The name chosen, as offered; ``None`` where ``valid`` is False.
        valid : ndarray of bool, shape (n_images,)
            False where the model picked none of the names (answered "none of these",
            or a name not offered), and for the images ``on_error="warn"`` or
            ``"skip"`` left without a usable answer.
        reasons : ndarray of object, shape (n_images,)
            With ``return_reasons=True``: for each image left without a usable answer,
            a message naming it and what went wrong; ``None`` for the others (a "none
            of these" answer is an answer).

        Raises
        ------
        ValueError
            ``choices`` does not hold one non-empty list of names per image.
        LabelingError
            A request failed for good; the message says what is paid for and cached.
        BudgetExceededError
            ``max_cost`` would be exceeded.
        UnusableAnswerError
            An answer holds no name and ``on_error="raise"``.

        Examples
        --------
        >>> from skvf.labeling import MLLMLabeler
        >>> labeler = MLLMLabeler(model="gpt-4o-mini", domain="bird", cache=None).fit(None)
        >>> labeler.choose(["photos/0001.jpg"], [["blue jay", "steller's jay"]])  # doctest: +SKIP
        (array(['blue jay'], dtype=object), array([ True]))
        """
        check_is_fitted(self, "usage_")
        items = as_image_list(X)
        choices = _checked_choices(choices, len(items))
        started = time.perf_counter()
        try:
            names, valid, reasons = _ChoiceRun(self, items, choices).execute()
        finally:
            self.usage_["wall_time_s"] += time.perf_counter() - started
        return (names, valid, reasons) if return_reasons else (names, valid)

    def group_synonyms(self, names) -> list[tuple[str, ...]]:
        """Ask which of ``names`` are wordings of one kind (synonyms, spellings, orders).

        One text request shows the model every name and asks it to group those that
        mean exactly the same kind (:func:`~skvf.labeling._prompts.
        render_synonym_question`, about the naming context of ``prompt="expert"`` when
        there is one); names that differ in any detail stay apart. Sent through the
        same client, answer cache (keyed by the question, names included), budget
        (``max_cost``), usage counts and ``on_error`` policy as :meth:`label`.
        ``NeaRClassifier(merge_synonyms=True)`` asks it once per fit.

        Parameters
        ----------
        names : sequence of str
            Distinct normalised names (:func:`skvf.names.normalize_name`).

        Returns
        -------
        list of tuple of str
            Groups of two or more of ``names``; empty when fewer than two names are
            given (nothing is sent) and, under ``on_error="warn"`` or ``"skip"``, when
            the answer is unusable (a :class:`LabelingWarning` says so).

        Raises
        ------
        LabelingError
            The request failed for good.
        BudgetExceededError
            ``max_cost`` leaves nothing to spend.
        UnusableAnswerError
            The answer is unusable and ``on_error="raise"``.

        Examples
        --------
        >>> from skvf.labeling import MLLMLabeler
        >>> labeler = MLLMLabeler(model="gpt-4o-mini", domain="clothing", cache=None).fit(None)
        >>> labeler.group_synonyms(["pullover", "sweater", "cardigan"])  # doctest: +SKIP
        [('pullover', 'sweater')]
        """
        check_is_fitted(self, "usage_")
        started = time.perf_counter()
        try:
            return ask_synonym_groups(self, names)
        finally:
            self.usage_["wall_time_s"] += time.perf_counter() - started


def _checked_choices(choices, n_images: int) -> list[tuple[str, ...]]:
    """The names offered for each image, checked: one non-empty list of names per image."""
    if isinstance(choices, (str, bytes)) or len(choices) != n_images:
        shown = "a string" if isinstance(choices, (str, bytes)) else f"{len(choices)} lists"
        raise ValueError(
            f"choices must hold one list of names per image: got {shown} for {n_images} images."
        )
    checked = []
    for index, options in enumerate(choices):
        if isinstance(options, (str, bytes)) or len(options) == 0:
            raise ValueError(
                f"choices[{index}] must be a non-empty list of names, got {options!r}."
            )
        for option in options:
            if not isinstance(option, str) or not normalize_name(option):
                raise ValueError(
                    f"choices[{index}] holds {option!r}; every choice must be a non-empty name."
                )
            if normalize_name(option) in NONE_OF_THESE:
                raise ValueError(
                    f"choices[{index}] holds {option!r}, which is how the model says that no "
                    "name fits; it cannot be one of the names offered."
                )
        checked.append(tuple(options))
    return checked


class _Run:
    """One call of :meth:`MLLMLabeler.label`: the state it shares between its steps.

    Images are grouped by :meth:`_group_key` (their content digest), one request and one
    cache entry per group; :meth:`_question` is the text sent with a group's image and
    :meth:`_parse` reads its answer. :class:`_ChoiceRun` asks another question.
    """

    progress_label = "labelling"
    problem_outcome = "got no usable name and are left without one"

    def __init__(self, labeler: MLLMLabeler, items: list):
        self.labeler = labeler
        self.items = items
        self.names = np.full(len(items), None, dtype=object)
        self.valid = np.zeros(len(items), dtype=bool)
        self.problems: dict[int, str] = {}
        self.groups: dict[str, list[int]] = {}  # group key -> positions of its images
        self.cached: set[str] = set()  # group keys whose answer is in the cache
        root = resolve_cache_dir(labeler.cache)
        self.cache = None if root is None else AnswerCache(root, self._request_key())
        self.meter = UsageMeter(labeler.usage_)

    def _request_key(self) -> dict:
        return self.labeler._answer_key(self.labeler.prompt_text_)

    def _group_key(self, position: int, digest: str) -> str:
        """The key of the request (and cache entry) that answers the image at ``position``."""
        return digest

    def _question(self, position: int) -> str:
        """The text sent with the image at ``position``."""
        return self.labeler.prompt_text_

    def _parse(self, position: int, answer, refusal=None) -> str | None:
        """The name in an answer about the image at ``position``; raises UnusableAnswer."""
        labeler = self.labeler
        return parse_name(
            answer,
            max_words=labeler.max_name_words,
            max_chars=labeler.max_name_chars,
            refusal=refusal,
        )

    def execute(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ask (or read from the cache) every image: ``(names, valid, reasons)``."""
        self._group_images()
        missing = []
        for key in self.groups:
            record = None if self.cache is None else self.cache.get(key)
            if record is None:
                missing.append(key)
            else:
                self.cached.add(key)
                self.meter.add(cache_hits=1)
                self._accept(key, record)
        if missing:
            self._ask(missing)
        self._report_problems()
        reasons = np.full(len(self.items), None, dtype=object)
        for position, message in self.problems.items():
            reasons[position] = message
        return self.names, self.valid, reasons

    def _group_images(self) -> None:
        def digest(position: int) -> str | None:
            try:
                return image_digest(load_image(self.items[position]))
            except ImageInputError as error:
                message = f"{describe_item(position, self.items[position])}: {error}"
                if self.labeler.on_error == "raise":
                    raise ImageInputError(
                        f"{message}. Fix or remove this item, or pass on_error='skip' to "
                        "leave bad images without a name."
                    ) from None
                self.problems[position] = message
                return None

        workers = min(self.labeler.max_concurrency, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            digests = list(pool.map(digest, range(len(self.items))))
        for position, value in enumerate(digests):
            if value is not None:
                self.groups.setdefault(self._group_key(position, value), []).append(position)

    def _name(self, key: str, record: dict) -> str | None:
        """The name in the answer record of a group; raises :class:`UnusableAnswer` only."""
        return parse_record(record, partial(self._parse, self.groups[key][0]))

    def _accept(self, key: str, record: dict, name: str | None = None) -> None:
        """Give a group's images the record's name; ``name`` when already parsed (else None)."""
        labeler = self.labeler
        positions = self.groups[key]
        try:
            if name is None:
                name = self._name(key, record)
        except UnusableAnswer as problem:
            self.meter.add(unusable_answers=1)
            first = positions[0]
            message = f"{describe_item(first, self.items[first])}: {problem}"
            if labeler.on_error == "raise":
                cached = (
                    " The answer is cached, so rerunning gives it again."
                    if self.cache is not None and not record.get("malformed")
                    else ""
                )
                raise UnusableAnswerError(
                    f"{message}.{cached} Pass on_error='warn' or 'skip' to leave such images "
                    "without a name, or change the prompt or the model.",
                    index=first,
                    reason=problem.reason,
                    answer=problem.answer,
                ) from None
            for position in positions:
                self.problems[position] = message
            return
        self.names[positions] = name
        self.valid[positions] = name is not None

    def _ask(self, missing: list[str]) -> None:
        labeler = self.labeler
        stop = threading.Event()
        usage_before = dict(labeler.usage_)
        requester = labeler._requester(self.meter, stop, self._paid_counts(usage_before))
        progress = self._progress_bar()

        def ask(key: str, on_attempt) -> tuple[dict, str | None]:
            position = self.groups[key][0]
            item = self.items[position]
            data_uri = jpeg_data_uri(load_image(item), labeler.max_side)
            answer = requester.ask(
                self._question(position), data_uri, describe_item(position, item), on_attempt
            )
            record = answer.record(labeler.model)
            if answer.malformed is not None:
                # No answer to keep: the reply had the wrong shape. A rerun asks again.
                return dict(record, malformed=answer.malformed), None
            name = reason = None
            try:
                name = self._name(key, record)
            except UnusableAnswer as problem:
                reason = problem.reason
            record = bounded_record(record, reason)
            if self.cache is not None and self.cache.put(key, record):
                self.cached.add(key)
            return record, name

        def work(key: str) -> tuple[dict, str | None]:
            if self.cache is None:
                return ask(key, None)
            # Another process labelling into this cache may be asking about this image:
            # its answer is waited for, not paid for twice.
            with self.cache.claim(key, stop, requester.attempt_span) as claim:
                if claim.record is None:
                    return ask(key, claim.refresh)
                self.cached.add(key)
                self.meter.add(cache_hits=1)
                return claim.record, None

        def on_done(key: str, answered: tuple[dict, str | None]) -> None:
            progress.update(1)
            self._accept(key, *answered)

        try:
            left = run_bounded(
                missing,
                work,
                on_done,
                max_concurrency=labeler.max_concurrency,
                stop=stop,
                may_start=None if labeler.max_cost is None else self._budget(usage_before),
            )
        except ProviderError as error:
            self.meter.add(failures=1)
            raise LabelingError(
                f"Labelling stopped: {error} ({error.attempts} request(s) for this image"
                f"{', retries exhausted' if error.retryable else ', not retried'}). "
                + self._paid_and_cached(usage_before),
                **self._paid_counts(usage_before),
            ) from None
        finally:
            progress.close()
        if left:
            raise BudgetExceededError(
                f"max_cost={labeler.max_cost} USD reached: ${labeler.usage_['cost_usd']:.6f} "
                f"spent since fit, and the next request would exceed it; {len(left)} "
                "image(s) were not sent. "
                + self._paid_and_cached(usage_before)
                + " Raise max_cost and run again to resume.",
                **self._paid_counts(usage_before),
            )
        if labeler.max_cost is not None and labeler.usage_["unpriced_calls"]:
            logger.warning(
                "max_cost is set but %s has no known price, so its calls count as 0 USD; "
                "pass price_per_token=(prompt, completion) to enforce the budget.",
                labeler.model,
            )

    def _budget(self, usage_before: dict):
        labeler, meter = self.labeler, self.meter

        def may_start(n_running: int) -> bool:
            spent = meter.spent()
            if labeler.usage_["answers"] == usage_before["answers"]:
                # No price measured yet: one request alone, while the budget has room.
                return n_running == 0 and spent < labeler.max_cost
            return spent + (n_running + 1) * meter.most_expensive_call <= labeler.max_cost

        return may_start

    def _paid_counts(self, usage_before: dict) -> dict:
        images_cached = sum(len(self.groups[key]) for key in self.cached)
        return {
            "answers_paid": self.labeler.usage_["answers"] - usage_before["answers"],
            "answers_cached": images_cached,
            "cache_dir": None if self.cache is None else str(self.cache.directory),
        }

    def _paid_and_cached(self, usage_before: dict) -> str:
        counts = self._paid_counts(usage_before)
        cost = self.labeler.usage_["cost_usd"] - usage_before["cost_usd"]
        paid = f"This run paid for {counts['answers_paid']} answer(s) (${cost:.6f})"
        if self.cache is None:
            return f"{paid}, which are lost because cache=None."
        n_images = len(self.items)
        return (
            f"{paid}; every answer received is cached in {counts['cache_dir']}, and "
            f"{counts['answers_cached']} of {n_images} images now have one: running again "
            f"requests only the {n_images - counts['answers_cached']} missing."
        )

    def _progress_bar(self):
        from tqdm.auto import tqdm

        return tqdm(
            total=len(self.groups),
            initial=len(self.cached),
            disable=not self.labeler.verbose,
            desc=self.progress_label,
            unit="image",
        )

    def _report_problems(self) -> None:
        if self.problems and self.labeler.on_error == "warn":
            messages = [self.problems[position] for position in sorted(self.problems)]
            shown = "; ".join(messages[:_SHOWN_PROBLEMS])
            more = len(self.problems) - _SHOWN_PROBLEMS
            warn(
                f"{len(self.problems)} of {len(self.items)} images {self.problem_outcome}: "
                f"{shown}" + (f"; and {more} more" if more > 0 else ""),
                LabelingWarning,
            )


class _ChoiceRun(_Run):
    """One call of :meth:`MLLMLabeler.choose`: each image asked which of its names it shows.

    A group is an image with its question (the names offered); its answers are cached
    under the choice question's own namespace, keyed by the image's digest and the
    question.
    """

    progress_label = "choosing"
    problem_outcome = "got no usable answer to the choice and are left without one"

    def __init__(self, labeler: MLLMLabeler, items: list, choices: list[tuple[str, ...]]):
        self.choices = choices
        context = getattr(labeler, "naming_context_", None)
        self.questions = [
            render_choice_question(options, labeler.domain, context) for options in choices
        ]
        super().__init__(labeler, items)

    def _request_key(self) -> dict:
        return {**self.labeler._answer_key(CHOICE_QUESTION), "purpose": "choice"}

    def _group_key(self, position: int, digest: str) -> str:
        return stable_hash([digest, self.questions[position]], length=40)

    def _question(self, position: int) -> str:
        return self.questions[position]

    def _parse(self, position: int, answer, refusal=None) -> str | None:
        labeler = self.labeler
        return parse_choice(
            answer,
            self.choices[position],
            max_words=labeler.max_name_words,
            max_chars=labeler.max_name_chars,
            refusal=refusal,
        )
