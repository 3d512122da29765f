"""The persistent answer cache: where it lives and what its key holds.

Answers are stored one JSON file per image under a namespace that hashes everything the
answer depends on: the model, the server (``api_base``: the same model name on another
server is another model), the rendered prompt, the JSON mode, the size and quality of the
image sent, and the completion arguments that change the answer (temperature, seed, ...).
Inside a namespace the key is the image's content digest, so the same photo given as a
path, a PIL image or an array is answered once. Files are written atomically by
:class:`skvf._store.ItemStore` the moment an answer arrives.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .._store import ItemStore, stable_hash

__all__ = ["AnswerCache", "answer_affecting", "default_cache_dir", "resolve_cache_dir"]

# Completion arguments that change how a request travels, not what the model answers.
_TRANSPORT_ARGUMENTS = frozenset(
    {
        "timeout",
        "max_retries",
        "num_retries",
        "metadata",
        "user",
        "extra_headers",
        "headers",
        "drop_params",
        "stream_timeout",
        "ssl_verify",
        "api_version",
        "organization",
    }
)


def default_cache_dir() -> Path:
    """The user's cache directory for skvf.

    ``$XDG_CACHE_HOME/skvf`` (``~/.cache/skvf`` when unset) on Linux and other Unix
    systems, ``~/Library/Caches/skvf`` on macOS and ``%LOCALAPPDATA%\\skvf\\Cache`` on
    Windows: the places ``platformdirs.user_cache_dir("skvf")`` picks.
    """
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "skvf" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "skvf"
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "skvf"


def resolve_cache_dir(cache) -> Path | None:
    """Turn the labeler's ``cache`` parameter into a directory (``None``: no cache)."""
    if cache is None:
        return None
    if isinstance(cache, str) and cache == "default":
        return default_cache_dir() / "labels"
    if isinstance(cache, (str, os.PathLike)):
        return Path(cache).expanduser()
    raise TypeError(
        f"cache must be 'default', a directory path or None, got {type(cache).__name__}: {cache!r}."
    )


def answer_affecting(completion_kwargs: dict) -> dict:
    """The completion arguments that change the answer, for the cache key."""
    return {
        key: value for key, value in completion_kwargs.items() if key not in _TRANSPORT_ARGUMENTS
    }


class AnswerCache:
    """Answers of one model, server and prompt, one file per image digest.

    Parameters
    ----------
    root : pathlib.Path
        The cache directory.
    request : dict
        Everything the answers depend on (JSON-able; never a secret).
    """

    def __init__(self, root: Path, request: dict):
        self._store = ItemStore(root, namespace=f"mllm-{stable_hash(request)}", kind="json")

    @property
    def directory(self) -> Path:
        """Where the answers of this namespace are stored."""
        return self._store.directory

    def get(self, digest: str) -> dict | None:
        """The stored record for an image, or ``None``."""
        record = self._store.get(digest)
        return record if isinstance(record, dict) and "answer" in record else None

    def put(self, digest: str, record: dict) -> None:
        """Store the record of an answer atomically."""
        self._store.put(digest, record)
