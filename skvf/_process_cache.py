"""Small caches shared by a whole process: bounded, thread-safe and clearable.

Building a frozen CLIP backbone or loading a sentence-embedding model takes seconds and
hundreds of megabytes, and every cross-validation fold, refit and ``predict`` asks for
the same one again. A :class:`ProcessCache` keeps the few most recently used, holds a
lock while it builds (two threads asking for one model build it once), and
:func:`clear_caches` empties every such cache to give the memory back.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable

__all__ = ["ProcessCache", "clear_caches"]

_ALL_CACHES: weakref.WeakSet = weakref.WeakSet()


class ProcessCache:
    """A least-recently-used cache of at most ``max_entries`` values.

    Parameters
    ----------
    max_entries : int
        How many values to keep; the least recently used goes first.

    Examples
    --------
    >>> cache = ProcessCache(max_entries=1)
    >>> cache.get_or_create("a", lambda: [1])
    [1]
    >>> cache.get_or_create("b", lambda: [2]) and "a" in cache
    False
    >>> cache.clear(); len(cache)
    0
    """

    def __init__(self, max_entries: int):
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}.")
        self.max_entries = max_entries
        self._values: OrderedDict = OrderedDict()
        self._lock = threading.RLock()
        _ALL_CACHES.add(self)

    def get_or_create(self, key: Hashable, create: Callable[[], object]):
        """The value under ``key``, created by ``create()`` (under the lock) when absent."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            value = create()
            self._values[key] = value
            while len(self._values) > self.max_entries:
                self._values.popitem(last=False)
            return value

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._values.clear()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._values

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)


def clear_caches() -> None:
    """Empty skvf's process-wide caches: built CLIP backbones and embedding models.

    Fitted estimators keep working: the next ``predict`` builds what it needs again.
    The on-disk caches (``memory=``, the labeler's answer cache) are not touched.

    Examples
    --------
    >>> import skvf
    >>> skvf.clear_caches()
    """
    for cache in list(_ALL_CACHES):
        cache.clear()
