"""A crash-safe, per-item store on disk, keyed by content digests.

Image features and labeler answers are stored one file per image, under a namespace that
hashes everything the value depends on (model, weights, prompt, ...). Each value is
written to a temporary file and renamed into place, so concurrent writers and a crash at
any moment leave either the complete old state or the complete new one, never a torn
file; a cross-validation fold over a subset of images finds every image it has seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ._warnings import warn

__all__ = ["CacheWarning", "ItemStore", "cached_values", "resolve_memory", "stable_hash"]


class CacheWarning(UserWarning):
    """A cache entry could not be used and is computed again."""


def stable_hash(value, length: int = 16) -> str:
    """Hash a value into a short hex string that is the same in every process.

    JSON types (dicts hashed with sorted keys), tuples, sets, paths, numpy scalars and
    arrays are hashed by content; an estimator by its class and ``get_params``; a
    module-level function or class by its import path. Anything else, whose only
    description is a ``repr`` that may hold a memory address (a lambda, a local function,
    an arbitrary object), is refused: a key that changed from one process to the next
    would make the cache miss silently, every time.

    Parameters
    ----------
    value : object
    length : int, default=16
        Hex digits returned.

    Returns
    -------
    str

    Raises
    ------
    TypeError
        ``value`` holds something without a stable description; the message says where.

    Examples
    --------
    >>> stable_hash({"b": 1, "a": (2, 3)}) == stable_hash({"a": [2, 3], "b": 1})
    True
    >>> stable_hash({"oracle": lambda image: "cat"})
    Traceback (most recent call last):
    ...
    TypeError: cannot key a cache on value['oracle'] ...
    """
    text = json.dumps(_keyable(value, "value"), sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=length // 2).hexdigest()


def _keyable(value, where: str):
    """A JSON form of ``value`` that means the same in every process."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: _keyable(item, f"{where}[{key!r}]") for key, item in value.items()}
        pairs = [
            [_keyable(key, where), _keyable(item, f"{where}[{key!r}]")]
            for key, item in value.items()
        ]
        return {"dict": sorted(pairs, key=json.dumps)}
    if isinstance(value, (list, tuple)):
        return [_keyable(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return {"set": sorted((_keyable(item, where) for item in value), key=json.dumps)}
    if isinstance(value, os.PathLike):
        return {"path": os.fspath(value)}
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return {"array": _keyable(value.tolist(), where), "shape": list(value.shape)}
        digest = hashlib.blake2b(np.ascontiguousarray(value).tobytes(), digest_size=16)
        return {"array": digest.hexdigest(), "dtype": value.dtype.str, "shape": list(value.shape)}
    if hasattr(value, "get_params") and not isinstance(value, type):
        params = value.get_params(deep=False)
        return {"estimator": _import_path(type(value)), "params": _keyable(params, where)}
    if isinstance(value, type) or callable(value):
        path = _import_path(value)
        if "<" not in path:  # "<lambda>" and "<locals>" have no import path
            return {"callable": path}
    raise TypeError(
        f"cannot key a cache on {where} = {value!r} ({type(value).__name__}): it has no "
        "description that stays the same from one process to the next, so cached results "
        "would never be found again. Use plain values, an estimator, or a module-level "
        "function there, or pass memory=None."
    )


def _import_path(value) -> str:
    return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}"


def resolve_memory(memory) -> Path | None:
    """Turn the ``memory`` parameter of an estimator into a cache directory.

    Parameters
    ----------
    memory : None, str, os.PathLike or joblib.Memory
        ``None`` disables caching; a path names the directory; a ``joblib.Memory``
        contributes its ``location`` (``None`` when it does not cache).

    Returns
    -------
    pathlib.Path or None
    """
    if memory is None:
        return None
    if isinstance(memory, (str, os.PathLike)):
        path = Path(memory).expanduser()
        if path.exists() and not path.is_dir():
            raise ValueError(
                f"memory={os.fspath(memory)!r} is a file, not a directory; pass a directory "
                "for the cache (it is created if missing), or memory=None."
            )
        return path
    if hasattr(memory, "location"):
        return None if memory.location is None else Path(memory.location)
    raise TypeError(
        f"memory must be None, a directory path or a joblib.Memory, got {type(memory).__name__}."
    )


class ItemStore:
    """Values stored one file per key under ``root/namespace``.

    A file that cannot be read, or whose value ``check`` refuses (a torn write from
    another tool, a file of the wrong shape, a foreign value), is dropped with a warning
    naming it, and reads as absent, so that the value is computed again: a cache entry
    is never trusted blindly and never fatal. Temporary files left by a writer that was
    killed mid-write are removed when the store is opened.

    Parameters
    ----------
    root : path-like
        Cache directory.
    namespace : str
        Sub-directory; make it a hash of everything the stored values depend on.
    kind : {"npy", "json"}
        How values are stored: numpy arrays or JSON values.
    check : callable or None, default=None
        ``check(value) -> bool``: whether a stored value is usable.
    """

    #: Temporary files older than this (seconds) belong to no live writer.
    STALE_TEMPORARY_AGE = 3600.0

    def __init__(self, root, namespace: str, kind: str = "npy", check=None):
        if kind not in ("npy", "json"):
            raise ValueError(f"kind must be 'npy' or 'json', got {kind!r}")
        self.directory = Path(root) / namespace
        self.kind = kind
        self.check = check
        self._remove_stale_temporaries()

    def path(self, key: str) -> Path:
        """The file that holds (or will hold) the value of ``key``."""
        return self.directory / key[:2] / f"{key}.{self.kind}"

    def get(self, key: str):
        """The stored value for ``key``; ``None`` when absent, unreadable or refused."""
        path = self.path(key)
        try:
            if self.kind == "npy":
                value = np.load(path, allow_pickle=False)
            else:
                value = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as error:
            self._drop(path, f"cannot be read ({type(error).__name__}: {error})")
            return None
        if self.check is not None and not self.check(value):
            self._drop(path, "holds a value of the wrong form")
            return None
        return value

    def _drop(self, path: Path, why: str) -> None:
        warn(
            f"cache file {os.fspath(path)} {why}; it is removed and its value computed again.",
            CacheWarning,
        )
        path.unlink(missing_ok=True)

    def _remove_stale_temporaries(self) -> None:
        if not self.directory.is_dir():
            return
        cutoff = time.time() - self.STALE_TEMPORARY_AGE
        for temporary in self.directory.glob("*/*.tmp"):
            try:
                if temporary.stat().st_mtime < cutoff:
                    temporary.unlink()
            except OSError:  # another process removed or renamed it first
                continue

    def put(self, key: str, value) -> None:
        """Store ``value`` under ``key`` atomically."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                if self.kind == "npy":
                    np.save(stream, np.asarray(value), allow_pickle=False)
                else:
                    stream.write(json.dumps(value).encode("utf-8"))
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def cached_values(compute, items, keys: list[str], store: ItemStore | None):
    """One value per item, read from ``store`` where present and computed where not.

    Parameters
    ----------
    compute : callable
        ``compute(subset_of_items) -> sequence of values``, one per item; called once,
        on the misses only (on every item when ``store`` is None).
    items : list or ndarray
        The items; an ndarray is subset by fancy indexing.
    keys : list of str
        Content key of each item.
    store : ItemStore or None
        ``None`` disables caching.

    Returns
    -------
    values : list
        One value per item, in order.
    n_computed : int
        Items that went through ``compute``.
    """
    values = [None] * len(keys) if store is None else [store.get(key) for key in keys]
    missing = [index for index, value in enumerate(values) if value is None]
    if missing:
        subset = items[missing] if isinstance(items, np.ndarray) else [items[i] for i in missing]
        for index, value in zip(missing, compute(subset), strict=True):
            if store is not None:
                store.put(keys[index], value)
            values[index] = value
    return values, len(missing)
