"""Keeping API keys out of parameters, messages and logs.

Keys are read from the environment at call time and handed to LiteLLM, nothing else. A
parameter that holds a key would travel into ``get_params()``, ``repr``, pickles and skops
files, so :func:`check_no_secrets` refuses one; provider messages quote keys (``Incorrect
API key provided: sk-...``), so :func:`scrub` redacts them before they reach an exception
or a log record.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

__all__ = ["check_no_secrets", "scrub"]

_SECRET_ARGUMENTS = frozenset(
    {
        "api_key",
        "azure_ad_token",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_access_key_id",
        "vertex_credentials",
        "password",
        "token",
    }
)
_SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "x-goog-api-key"})
_SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
_SECRET_PATTERNS = (
    re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{8,}"),
    re.compile(r"(?i)\bBearer\s+\S+"),
    re.compile(r"(?i)(api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
)
_REDACTED = "[redacted]"


def check_no_secrets(completion_kwargs: dict) -> None:
    """Refuse secrets in ``completion_kwargs``; the message names the parameter.

    Raises
    ------
    ValueError
        A key such as ``api_key`` or an ``Authorization`` header is present.
    """
    found = sorted(key for key in completion_kwargs if key.lower() in _SECRET_ARGUMENTS)
    for header_argument in ("extra_headers", "headers"):
        headers = completion_kwargs.get(header_argument) or {}
        found += [
            f"{header_argument}[{name!r}]"
            for name in headers
            if isinstance(name, str) and name.lower() in _SECRET_HEADERS
        ]
    if found:
        raise ValueError(
            f"completion_kwargs must not hold secrets, got {', '.join(found)}: parameters end "
            "up in get_params(), repr, pickles and skops files. Put the key in an environment "
            "variable instead: the provider's own (OPENAI_API_KEY, ANTHROPIC_API_KEY, ...) or "
            "one you name with api_key_env='MY_KEY_VARIABLE', read at call time."
        )


def _environment_secrets() -> list[str]:
    return [
        value
        for name, value in os.environ.items()
        if _SECRET_ENV_NAME.search(name) and len(value) >= 8
    ]


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Redact API keys from a message.

    Parameters
    ----------
    text : str
        A provider's message, an exception text.
    secrets : iterable of str
        Known secret values (the key used for the call); the values of environment
        variables whose names look like keys are redacted too, as are ``sk-...`` tokens,
        ``Bearer`` credentials and ``api_key=...`` pairs.

    Returns
    -------
    str
    """
    values = {value for value in (*secrets, *_environment_secrets()) if value}
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, _REDACTED)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(
            lambda match: (match.group(1) if match.re.groups else "") + _REDACTED, text
        )
    return text
