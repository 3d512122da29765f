"""The offline benchmark (benchmarks/fgvr.py): its table, paired comparison and options."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fgvr():
    yield _load("fgvr")
    del sys.modules["fgvr"]


def _rows(method, scores):
    return [{"method": method, "seed": seed, "cacc": s} for seed, s in enumerate(scores)]


def test_paired_differences_pair_by_seed(fgvr):
    results = _rows("A", [0.5, 0.7, 0.6]) + _rows("B", [0.4, 0.5, 0.6])
    results.reverse()  # pairing goes by seed, not by order
    paired = fgvr.paired_differences(results, "A", "B")
    assert paired["mean"] == pytest.approx(0.1)
    assert paired["wins"] == 1 + 1  # a tie is not a win
    assert paired["n"] == 3
    # t(0.975, 2) = 4.303; sd of (0.1, 0.2, 0.0) = 0.1; sem = 0.1 / sqrt(3)
    half_width = 4.3027 * 0.1 / np.sqrt(3)
    assert paired["low"] == pytest.approx(0.1 - half_width, abs=1e-3)
    assert paired["high"] == pytest.approx(0.1 + half_width, abs=1e-3)
    assert fgvr.paired_differences(results, "A", "A") is None


def test_paired_table_names_each_reference(fgvr):
    results = _rows("A", [0.5, 0.7]) + _rows("B", [0.4, 0.5])
    table = fgvr.paired_table(results, ["A", "B"], ["B", "not run"])
    lines = table.splitlines()
    assert "vs B" in lines[0] and "not run" not in lines[0]
    assert lines[2].startswith("| A | +0.150 (") and lines[2].endswith("2/2 |")
    assert lines[3] == "| B | — |"
    assert fgvr.paired_table(results, ["A"], ["not run"]) == ""


def test_name_variants_reach_the_simulated_labeler(fgvr):
    images, names, name_noise = fgvr.load_data("digits", None)
    assert set(name_noise) == {"confusions", "synonyms", "generic_name"}
    setting = fgvr.Setting(
        images=images,
        names=names,
        frozen_features=np.zeros((len(names), 1)),
        encoder="pca",
        name_noise=name_noise,
        labeler="simulated",
        domain=None,
        backbone="ViT-S-32",
        pretrained=None,
        backbone_kwargs=None,
        max_epochs=1,
        device="cpu",
        test_per_class=None,
        synonym_rate=0.5,
        generic_rate=0.2,
    )
    rows = np.arange(len(names), dtype=float)[:, None]
    labeler = fgvr.make_labeler(setting, rows, np.arange(len(names)), 0.0, seed=0)
    given = np.asarray(labeler.fit(rows).transform(rows))
    assert 0.1 < np.mean(given == "number") < 0.3
    variants = {v for vs in name_noise["synonyms"].values() for v in vs}
    assert 0.25 < np.mean(np.isin(given, list(variants))) < 0.55
    assert np.mean(given == names) > 0.3


@pytest.mark.slow
@pytest.mark.parametrize("encoder", ["pca", "hog"])
def test_benchmark_prints_table_and_paired_comparison(fgvr, capsys, encoder):
    results = fgvr.main(
        [
            "--encoder",
            encoder,
            "--seeds",
            "2",
            "--shots",
            "10",
            "--epochs",
            "30",
            "--threads",
            "1",
            "--no-plots",
            "--no-sacc",
            "--methods",
            "labeler direct,CoOp on raw names,NeaR",
        ]
    )
    out = capsys.readouterr().out
    assert f"digits, encoder {encoder}, labeler simulated (noise 0.4" in out
    assert {r["method"] for r in results} == {"labeler direct", "CoOp on raw names", "NeaR"}
    for r in results:  # cluster accuracy: matched test images over all test images
        assert r["cacc"] * r["n_test"] == pytest.approx(round(r["cacc"] * r["n_test"]))
    for method in ("labeler direct", "CoOp on raw names", "NeaR"):  # the table's cACC cell
        scores = [r["cacc"] for r in results if r["method"] == method]
        assert len(scores) == 2
        assert f"| {method} | {np.mean(scores):.3f} ± {np.std(scores, ddof=1):.3f} |" in out
    assert "Paired by seed" in out
    paired_row = next(
        line
        for line in out.splitlines()
        if line.startswith("| NeaR | +") or line.startswith("| NeaR | -")
    )
    assert paired_row.count("/2") == 2  # against CoOp and against the labeler's names


def test_noise_split_benchmark_scores_both_splits(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # for its shared timing helper
    benchmark = _load("noise_split_speed")
    rows = benchmark.main(["--sizes", "300", "--noise", "0.4", "--repeats", "2"])
    out = capsys.readouterr().out
    (row,) = rows
    assert row["size"] == 300 and row["noise_rate"] == 0.4
    assert row["skvf_ms"] > 0 and row["kmeans_ms"] > 0
    assert row["speedup"] == pytest.approx(row["kmeans_ms"] / row["skvf_ms"])
    assert row["skvf_right"] > 0.9 and 0 <= row["kmeans_right"] <= 1
    assert out.splitlines()[2].startswith("| 300 | 0.4 | ")
    del sys.modules["noise_split_speed"]


@pytest.mark.slow
def test_candidate_scale_benchmark_compares_the_index_with_exact_search(capsys):
    benchmark = _load("candidate_scale")
    rows = benchmark.main(["--sizes", "1500", "--features", "blobs", "--n-probe", "1,4"])
    out = capsys.readouterr().out
    assert [r["search"] for r in rows] == ["exact", "ivf n_probe=1", "ivf n_probe=4"]
    exact, one, four = rows
    assert exact["recall"] == 1.0 and exact["same_sets"] == 1.0 and exact["time_ratio"] == 1.0
    assert four["recall"] > one["recall"]  # probing more lists finds more neighbours
    assert four["recall"] > 0.99  # separated clusters
    for row in rows:
        assert 0 < row["before_mb"] <= row["peak_mb"]
        assert row["seconds"] > 0 and row["imports"] > 0 and row["cpu_seconds"] > 0
        assert row["time_ratio"] == pytest.approx(row["seconds"] / exact["seconds"])
    assert out.splitlines()[3].startswith("| 1500 | blobs | exact | ")
    del sys.modules["candidate_scale"]


def test_candidate_scale_in_process_rows(capsys):
    benchmark = _load("candidate_scale")
    rows = benchmark.main(
        ["--in-process", "--sizes", "800", "--features", "blobs,gaussian", "--repeats", "1"]
    )
    assert [(r["features"], r["n_probe"]) for r in rows] == [("blobs", 4), ("gaussian", 4)]
    blobs, gaussian = rows
    assert blobs["exact_seconds"] > 0 and blobs["seconds"] > 0
    assert blobs["recall"] > 0.95
    assert gaussian["recall"] < blobs["recall"] - 0.2  # no structure: the worst case
    assert capsys.readouterr().out.splitlines()[2].startswith("| 800 | blobs | ")
    del sys.modules["candidate_scale"]
