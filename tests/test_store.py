"""Tests of skvf._store: atomic per-item files, cache-directory resolution, stable hashes."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.decomposition import PCA

from skvf._store import ItemStore, resolve_memory, stable_hash

KEY = "ab0123456789cdef"


def test_npy_round_trip_is_exact(tmp_path):
    store = ItemStore(tmp_path, "features", kind="npy")
    value = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    store.put(KEY, value)
    loaded = store.get(KEY)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, value)
    # one file per key, sharded by the key's first two characters
    assert (tmp_path / "features" / "ab" / f"{KEY}.npy").is_file()


def test_json_round_trip(tmp_path):
    store = ItemStore(tmp_path, "answers", kind="json")
    value = {"name": "blue jay", "raw": "A \u201cBlue Jay\u201d.", "tokens": [12, 3], "ok": True}
    store.put(KEY, value)
    assert store.get(KEY) == value
    assert (tmp_path / "answers" / "ab" / f"{KEY}.json").is_file()


def test_put_overwrites(tmp_path):
    store = ItemStore(tmp_path, "answers", kind="json")
    store.put(KEY, "old")
    store.put(KEY, "new")
    assert store.get(KEY) == "new"


def test_missing_key_gives_none(tmp_path):
    assert ItemStore(tmp_path, "features").get(KEY) is None
    assert ItemStore(tmp_path / "never-created", "x", kind="json").get(KEY) is None


def test_namespaces_are_separate(tmp_path):
    ItemStore(tmp_path, "model-a", kind="json").put(KEY, "a")
    assert ItemStore(tmp_path, "model-b", kind="json").get(KEY) is None


def test_unknown_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="kind must be 'npy' or 'json', got 'pickle'"):
        ItemStore(tmp_path, "x", kind="pickle")


def test_torn_temporary_file_does_not_break_get(tmp_path):
    store = ItemStore(tmp_path, "features")
    store.put(KEY, np.arange(3))
    # A writer killed mid-write leaves a partial temporary file beside the value.
    shard = tmp_path / "features" / "ab"
    (shard / "tmpXYZ.tmp").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr'")
    np.testing.assert_array_equal(store.get(KEY), np.arange(3))
    # and a later put still works
    store.put(KEY, np.arange(4))
    np.testing.assert_array_equal(store.get(KEY), np.arange(4))


@pytest.mark.parametrize(
    ("kind", "torn"),
    [("npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'"), ("json", b'{"name": "blue')],
)
def test_torn_value_file_reads_as_missing(tmp_path, kind, torn):
    store = ItemStore(tmp_path, "x", kind=kind)
    path = tmp_path / "x" / "ab" / f"{KEY}.{kind}"
    path.parent.mkdir(parents=True)
    path.write_bytes(torn)
    assert store.get(KEY) is None


def test_failed_put_leaves_no_temporary_file_and_keeps_the_old_value(tmp_path):
    store = ItemStore(tmp_path, "answers", kind="json")
    store.put(KEY, {"name": "crow"})
    with pytest.raises(TypeError):
        store.put(KEY, {"name": object()})  # not JSON-serialisable
    assert store.get(KEY) == {"name": "crow"}
    assert list((tmp_path / "answers" / "ab").glob("*.tmp")) == []


def test_npy_refuses_object_arrays_without_leaving_files(tmp_path):
    store = ItemStore(tmp_path, "features")
    with pytest.raises(ValueError):
        store.put(KEY, np.array([{"a": 1}], dtype=object))
    assert store.get(KEY) is None
    assert list((tmp_path / "features" / "ab").iterdir()) == []


def test_concurrent_writers_and_readers_never_see_a_torn_value(tmp_path):
    store = ItemStore(tmp_path, "features")
    values = [np.full(20_000, float(writer)) for writer in range(6)]
    other_keys = [f"{writer:02d}other{writer}" for writer in range(6)]
    seen_bad = []
    start = threading.Barrier(8)

    def write(writer):
        start.wait()
        for _ in range(15):
            store.put(KEY, values[writer])
            store.put(other_keys[writer], values[writer])

    def read():
        start.wait()
        for _ in range(60):
            value = store.get(KEY)
            if value is not None and not (
                value.shape == (20_000,) and np.all(value == value[0]) and value[0] in range(6)
            ):
                seen_bad.append(value)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(6)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen_bad == []
    final = store.get(KEY)
    assert any(np.array_equal(final, value) for value in values)
    for writer, key in enumerate(other_keys):
        np.testing.assert_array_equal(store.get(key), values[writer])
    assert list((tmp_path / "features").rglob("*.tmp")) == []


# ----------------------------------------------------------------------------- memory


def test_resolve_memory_none_disables_caching():
    assert resolve_memory(None) is None


def test_resolve_memory_paths(tmp_path):
    assert resolve_memory(str(tmp_path)) == tmp_path
    assert resolve_memory(tmp_path) == tmp_path
    assert isinstance(resolve_memory(str(tmp_path)), Path)


def test_resolve_memory_expands_user(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_memory("~/skvf-cache") == tmp_path / "skvf-cache"


def test_resolve_memory_joblib(tmp_path):
    assert resolve_memory(joblib.Memory(location=None, verbose=0)) is None
    assert resolve_memory(joblib.Memory(location=tmp_path, verbose=0)) == tmp_path


@pytest.mark.parametrize("bad", [3, ["/tmp"], {"location": "/tmp"}])
def test_resolve_memory_bad_type_names_the_type(bad):
    expected = (
        f"memory must be None, a directory path or a joblib.Memory, got {type(bad).__name__}."
    )
    with pytest.raises(TypeError, match=expected.replace(".", r"\.")):
        resolve_memory(bad)


# ----------------------------------------------------------------------------- hashing


def test_stable_hash_ignores_dict_order():
    first = {"model": "gpt-4o-mini", "prompt": {"domain": "bird", "attributes": True}, "k": 5}
    second = {"k": 5, "prompt": {"attributes": True, "domain": "bird"}, "model": "gpt-4o-mini"}
    assert stable_hash(first) == stable_hash(second)


def test_stable_hash_distinguishes_values():
    base = {"model": "gpt-4o-mini", "domain": "bird"}
    hashes = {
        stable_hash(base),
        stable_hash({**base, "domain": "dog"}),
        stable_hash({**base, "domain": None}),
        stable_hash({"model": "gpt-4o-mini"}),
        stable_hash([1, 2]),
        stable_hash([2, 1]),  # list order matters
        stable_hash("1"),
        stable_hash(1),
    }
    assert len(hashes) == 8


def test_stable_hash_is_a_fixed_hex_string():
    value = stable_hash({"a": 1})
    assert len(value) == 16
    int(value, 16)
    assert stable_hash({"a": 1}) == value  # deterministic
    assert len(stable_hash({"a": 1}, length=32)) == 32
    # a pinned value, so a change of the hashing scheme (which orphans caches) is noticed
    assert value == "1f8c00645b7df6ce"


def module_level_namer(image):
    """A labeler oracle defined at module level: it has an import path."""
    return "cat"


def test_stable_hash_is_the_same_in_another_process():
    # Estimators, paths, arrays, sets and module-level functions are keyed by content:
    # the key computed in a fresh interpreter equals this one (with repr, an address
    # in a function's or object's repr changed it in every process).
    value = {
        "encoder": PCA(n_components=3),
        "path": Path("/tmp/cache"),
        "array": np.arange(4, dtype=np.float32),
        "set": {"b", "a"},
        "function": np.mean,
    }
    script = (
        "import numpy as np; from pathlib import Path; from sklearn.decomposition import PCA;"
        "from skvf._store import stable_hash;"
        "print(stable_hash({'encoder': PCA(n_components=3), 'path': Path('/tmp/cache'),"
        "'array': np.arange(4, dtype=np.float32), 'set': {'a', 'b'}, 'function': np.mean}))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == stable_hash(value)
    assert stable_hash({**value, "encoder": PCA(n_components=4)}) != stable_hash(value)
    assert stable_hash({**value, "function": module_level_namer}) != stable_hash(value)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"labeler": {"oracle": lambda image: "cat"}}, "value['labeler']['oracle']"),
        ({"items": [1, object()]}, "value['items'][1]"),
    ],
    ids=["lambda", "object"],
)
def test_stable_hash_refuses_what_it_cannot_key(value, where):
    with pytest.raises(TypeError, match=re.escape(f"cannot key a cache on {where}")):
        stable_hash(value)


def test_memory_refuses_a_labeler_it_cannot_key(tmp_path):
    # A labeler whose parameters hold a lambda cannot key an answer cache: fit says so
    # instead of writing answers under a key that no later process would find.
    from skvf import NeaRClassifier
    from skvf_bench.demo import TINY_BACKBONE_PARAMS
    from skvf_bench.simulation import NoisyOracleLabeler

    images = [np.full((8, 8), value, dtype=np.uint8) for value in (0, 80, 160, 240)]
    labeler = NoisyOracleLabeler(lambda image: "dark", noise_rate=0.0)
    clf = NeaRClassifier(labeler=labeler, memory=tmp_path, max_epochs=1, **TINY_BACKBONE_PARAMS)
    with pytest.raises(TypeError, match=r"cannot key a cache on value\['params'\]\['oracle'\]"):
        clf.fit(images)
