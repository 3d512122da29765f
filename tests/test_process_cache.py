"""The process-wide caches of built models: bounded, locked, clearable."""

from __future__ import annotations

import threading
import time

import pytest

import skvf
from skvf import _backbone, metrics
from skvf._process_cache import ProcessCache


def test_cache_keeps_the_most_recently_used():
    cache = ProcessCache(max_entries=2)
    made = []

    def make(key):
        made.append(key)
        return key.upper()

    assert cache.get_or_create("a", lambda: make("a")) == "A"
    cache.get_or_create("b", lambda: make("b"))
    assert cache.get_or_create("a", lambda: make("a")) == "A"  # a hit, and now most recent
    cache.get_or_create("c", lambda: make("c"))  # evicts b, the least recently used
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert made == ["a", "b", "c"]
    assert len(cache) == 2


def test_concurrent_requests_for_one_key_build_it_once():
    cache = ProcessCache(max_entries=2)
    builds = []

    def slow_build():
        builds.append(threading.get_ident())
        time.sleep(0.05)
        return object()

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_create("k", slow_build)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert all(result is results[0] for result in results)


def test_failed_build_caches_nothing():
    cache = ProcessCache(max_entries=2)
    with pytest.raises(RuntimeError, match="boom"):
        cache.get_or_create("k", lambda: (_ for _ in ()).throw(RuntimeError("boom")))
    assert "k" not in cache
    assert cache.get_or_create("k", lambda: 1) == 1


def test_clear_caches_empties_every_process_cache():
    _backbone._BUILT.get_or_create("test-key", object)
    metrics._loaded_models.get_or_create("test-model", object)
    skvf.clear_caches()
    assert len(_backbone._BUILT) == 0
    assert len(metrics._loaded_models) == 0


def test_max_entries_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        ProcessCache(max_entries=0)
