"""Corrupt, foreign and orphaned cache files: dropped with a warning and recomputed.

A cache entry that cannot be read or has the wrong form must never be trusted and never
be fatal: the refit warns naming the file, computes that value again and ends with the
same model as a clean refit.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from skvf import NeaRClassifier
from skvf._store import CacheWarning, ItemStore
from skvf_bench.demo import TINY_BACKBONE_PARAMS


class FirstPixelNamer:
    """Names an image "bright" or "dark" from its first pixel; counts its calls."""

    def __init__(self):
        self.asked = 0

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        self.asked += len(X)
        return np.asarray(
            ["bright" if np.asarray(image)[0, 0].mean() > 127 else "dark" for image in X],
            dtype=object,
        )

    def get_params(self, deep=True):
        return {}


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8) for _ in range(10)]


def fit(images, memory):
    clf = NeaRClassifier(
        labeler=FirstPixelNamer(),
        memory=memory,
        max_epochs=2,
        warmup_epochs=1,
        random_state=0,
        **TINY_BACKBONE_PARAMS,
    )
    return clf.fit(images)


def cache_files(memory, prefix, suffix):
    (namespace,) = [p for p in memory.iterdir() if p.name.startswith(prefix)]
    return sorted(namespace.glob(f"*/*{suffix}"))


FEATURE_DAMAGE = {
    "zero-byte": lambda path: path.write_bytes(b""),
    "wrong-shape": lambda path: np.save(path, np.ones(7, dtype=np.float32)),
    "nan": lambda path: np.save(path, np.full(64, np.nan, dtype=np.float32)),
    "not-npy": lambda path: path.write_text("hello"),
}


@pytest.mark.parametrize("damage", FEATURE_DAMAGE, ids=list(FEATURE_DAMAGE))
def test_corrupt_feature_file_is_recomputed(images, tmp_path, damage):
    first = fit(images, tmp_path)
    damaged = cache_files(tmp_path, "features-", ".npy")[:2]
    for path in damaged:
        FEATURE_DAMAGE[damage](path)
    with pytest.warns(CacheWarning) as record:
        second = fit(images, tmp_path)
    assert {str(path) for path in damaged} <= {
        word for warning in record for word in str(warning.message).split()
    }
    assert second.n_images_encoded_ == 2
    assert second.n_labeler_calls_ == 0
    # (encoded in a batch of two, the recomputed features differ from the first in the
    # last float digits only)
    np.testing.assert_allclose(second.class_text_features_, first.class_text_features_, atol=1e-5)
    with_no_warning = fit(images, tmp_path)  # the recomputed entries are good again
    assert with_no_warning.n_images_encoded_ == 0


LABEL_DAMAGE = {
    "name-not-str": {"name": 5},
    "empty-name": {"name": "  "},
    "foreign": {"answer": "blue jay"},
    "list": ["blue jay"],
}


@pytest.mark.parametrize("damage", LABEL_DAMAGE, ids=list(LABEL_DAMAGE))
def test_corrupt_label_file_is_asked_again(images, tmp_path, damage):
    first = fit(images, tmp_path)
    path = cache_files(tmp_path, "labels-", ".json")[0]
    path.write_text(json.dumps(LABEL_DAMAGE[damage]))
    with pytest.warns(CacheWarning, match=str(path)):
        second = fit(images, tmp_path)
    assert second.n_labeler_calls_ == 1
    np.testing.assert_array_equal(second.classes_, first.classes_)


def test_orphaned_temporary_files_are_removed_on_start(tmp_path):
    store = ItemStore(tmp_path, "space", kind="json")
    store.put("ab12", {"name": "x"})
    folder = tmp_path / "space" / "ab"
    stale, fresh = folder / "old.tmp", folder / "new.tmp"
    stale.write_text("{")
    fresh.write_text("{")
    hour_ago = time.time() - 2 * ItemStore.STALE_TEMPORARY_AGE
    os.utime(stale, (hour_ago, hour_ago))
    ItemStore(tmp_path, "space", kind="json")
    assert not stale.exists()
    assert fresh.exists()  # may belong to a writer still at work
    assert store.get("ab12") == {"name": "x"}


def test_memory_that_is_a_file_is_refused(images, tmp_path):
    path = tmp_path / "not-a-directory"
    path.write_text("")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        fit(images, path)
