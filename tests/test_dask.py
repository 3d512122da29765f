"""predict on Dask collections, on a real two-process cluster, as docs/recipes.md says."""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skvf_bench.datasets import load_digits_images

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")
distributed = pytest.importorskip("distributed")
wrappers = pytest.importorskip("dask_ml.wrappers")

RECIPES = Path(__file__).parents[1] / "docs" / "recipes.md"


@pytest.fixture(autouse=True)
def _quiet_open_clip(caplog):
    caplog.set_level(logging.ERROR)


def _one_torch_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def client():
    """Two worker processes, one thread each: pickling and remote loading for real."""
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.run(_one_torch_thread)
        yield client


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    images, _ = load_digits_images(scale=4)
    result = []
    for index in range(30):
        path = folder / f"{index:02d}.png"
        Image.fromarray(images[index]).save(path)
        result.append(str(path))
    return result


@pytest.fixture(scope="module")
def clf(digit_zero_shot):
    return copy.deepcopy(digit_zero_shot).set_params(batch_size=4)


def _ran_on_workers(client, before):
    """Tasks the workers ran since ``before`` (a count per worker)."""
    counts = client.run(lambda dask_worker: len(dask_worker.state.log))
    return {worker: counts[worker] - before.get(worker, 0) for worker in counts}


def test_dask_array_of_paths_is_named_on_the_workers(client, clf, paths):
    local_names, local_proba = clf.predict(paths), clf.predict_proba(paths)
    array = da.from_array(np.asarray(paths, dtype=object), chunks=7)
    before = client.run(lambda dask_worker: len(dask_worker.state.log))
    names = clf.predict(array)
    assert isinstance(names, da.Array) and names.shape == (30,)
    np.testing.assert_array_equal(names.compute(), local_names)
    assert all(count > 0 for count in _ran_on_workers(client, before).values())
    proba = clf.predict_proba(array[:, None])  # a one-column array too
    assert proba.shape == (30, len(clf.classes_))
    np.testing.assert_allclose(proba.compute(), local_proba, rtol=1e-5, atol=1e-7)


def test_parallel_post_fit_on_a_series_and_a_column(client, clf, paths):
    frame = dd.from_pandas(pd.DataFrame({"path": paths, "n": range(30)}), npartitions=4)
    series = dd.from_pandas(pd.Series(paths, name="path"), npartitions=3)
    big = wrappers.ParallelPostFit(estimator=clf)
    for column in (series, frame["path"]):
        names = big.predict(column)
        assert hasattr(names, "dask")  # lazy: nothing ran on the client
        np.testing.assert_array_equal(names.compute(), clf.predict(paths))
        np.testing.assert_allclose(
            big.predict_proba(column).compute(), clf.predict_proba(paths), rtol=1e-5, atol=1e-7
        )
    np.testing.assert_allclose(
        clf.decision_function(frame[["path"]]).compute(), clf.decision_function(paths), atol=1e-5
    )


def test_map_blocks_and_map_partitions_as_users_write_them(client, clf, paths):
    array = da.from_array(np.asarray(paths, dtype=object), chunks=11)
    names = array.map_blocks(clf.predict, dtype=object).compute()
    series = dd.from_pandas(pd.Series(paths), npartitions=3)
    by_partition = series.map_partitions(clf.predict, meta=np.empty(0, dtype=object)).compute()
    np.testing.assert_array_equal(names, clf.predict(paths))
    np.testing.assert_array_equal(by_partition, clf.predict(paths))


def test_what_cannot_run_is_refused_with_what_to_write(client, clf, paths):
    frame = dd.from_pandas(pd.DataFrame({"path": paths, "n": range(30)}), npartitions=2)
    with pytest.raises(ValueError, match=r"2 columns \['path', 'n'\]; .* X\['path'\]"):
        clf.predict(frame)
    stack = da.zeros((4, 8, 8, 3), dtype=np.uint8, chunks=2)
    with pytest.raises(ValueError, match=r"shape \(4, 8, 8, 3\); pass a 1-D Dask array"):
        clf.predict(stack)


def test_the_recipe_in_the_docs_runs(client, clf, paths):
    section = RECIPES.read_text().split("### With Dask", 1)[1].split("\n### ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace = {"np": np, "clf": clf, "paths": paths}
    exec(code, namespace)
    np.testing.assert_array_equal(namespace["names"], clf.predict(paths))
    np.testing.assert_allclose(namespace["probabilities"], clf.predict_proba(paths), rtol=1e-5)
