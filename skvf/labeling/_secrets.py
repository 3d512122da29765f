"""Keeping API keys out of parameters, messages and logs.

Keys are read from the environment at call time and handed to LiteLLM, nothing else. A
parameter that holds a key would travel into ``get_params()``, ``repr``, pickles and skops
files, so :func:`check_no_secrets` refuses one (by the field's name, at any depth, and in
URLs), as :func:`check_api_base` refuses credentials in the server's URL. Provider
messages quote keys (``Incorrect API key provided: sk-...``), so :func:`scrub` redacts
them before they reach an exception or a log record.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit

__all__ = ["check_api_base", "check_no_secrets", "is_secret_field", "scrub", "url_credentials"]

# A field whose name says it holds a credential, at any depth of completion_kwargs.
_SECRET_FIELD = re.compile(
    r"key|secret|passw|pwd|credential|auth|cookie|signature|bearer|session"
    r"|token(?!s|_?ids?\b|_?count|_?limit|_?budget)",
    re.IGNORECASE,
)
# Harmless names the broad pattern would catch.
_HARMLESS_FIELDS = frozenset({"author", "authors", "keep_alive"})
_SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
_SECRET_PATTERNS = (
    re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{8,}"),
    re.compile(r"(?i)\bBearer\s+\S+"),
    re.compile(r"(?i)(api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
)
_URL = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)
_REDACTED = "[redacted]"
_FIX = (
    "Parameters end up in get_params(), repr, pickles and skops files, so they must hold "
    "no secret. Put the key in an environment variable instead: the provider's own "
    "(OPENAI_API_KEY, ANTHROPIC_API_KEY, ...) or one you name with "
    "api_key_env='MY_KEY_VARIABLE', read at call time."
)


def is_secret_field(name: str) -> bool:
    """Whether a field's name says it holds a credential (``max_tokens`` does not).

    Examples
    --------
    >>> [is_secret_field(name) for name in ("client_secret", "Authorization", "max_tokens")]
    [True, True, False]
    """
    return name.lower() not in _HARMLESS_FIELDS and bool(_SECRET_FIELD.search(name))


def url_credentials(url: str) -> str | None:
    """What in a URL is a credential (its user-info, a secret query parameter), or None.

    Examples
    --------
    >>> url_credentials("http://user:pw@host:8000/v1")
    'a user name or password before the host'
    >>> url_credentials("https://host/v1?api_key=abc") is not None
    True
    >>> url_credentials("http://localhost:8000/v1") is None
    True
    """
    if not isinstance(url, str) or not _URL.match(url.strip()):
        return None
    try:
        parts = urlsplit(url.strip())
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return "a URL that cannot be read"
    if "@" in parts.netloc:
        return "a user name or password before the host"
    secret = sorted({name for name, _ in query if is_secret_field(name)})
    if secret:
        return f"the query parameter(s) {', '.join(secret)}"
    return None


def _findings(value, where: str) -> list[str]:
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{where}[{key!r}]" if where else str(key)
            if isinstance(key, str) and is_secret_field(key):
                found.append(inner)
            else:
                found += _findings(item, inner)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for index, item in enumerate(value):
            found += _findings(item, f"{where}[{index}]")
    elif isinstance(value, str):
        problem = url_credentials(value)
        if problem is not None:
            found.append(f"{where} (a URL with {problem})")
        elif any(pattern.search(value) for pattern in _SECRET_PATTERNS):
            found.append(f"{where} (a value shaped like a key)")
    return found


def check_no_secrets(completion_kwargs: dict) -> None:
    """Refuse secrets in ``completion_kwargs``; the message names the field, not the value.

    Every field whose name says it holds a credential (``api_key``, ``client_secret``,
    ``azure_password``, ``Authorization``, ``x-api-key``, ...; not ``max_tokens``) is
    refused at any depth of dicts and lists, as are URLs carrying a user name, a password
    or a secret query parameter, and values shaped like keys (``sk-...``, ``Bearer ...``).

    Raises
    ------
    ValueError
        Some field holds a secret; the message names every such field and the fix.
    """
    found = _findings(completion_kwargs, "")
    if found:
        raise ValueError(f"completion_kwargs must not hold secrets, got {', '.join(found)}. {_FIX}")


def check_api_base(api_base: str | None) -> None:
    """Refuse an ``api_base`` that carries credentials (``http://user:pw@host``, ``?key=``).

    Raises
    ------
    ValueError
        The URL holds a credential; the message does not quote it.
    """
    if api_base is None:
        return
    problem = url_credentials(api_base)
    if problem is not None:
        raise ValueError(f"api_base must not hold secrets, got a URL with {problem}. {_FIX}")


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
