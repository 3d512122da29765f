"""Every script in examples/ runs in its fast mode and prints what it promises."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from skvf.folders import load_image_folder
from skvf.metrics import cluster_accuracy
from skvf.serialization import load
from skvf_bench import trusted_types as harness_types
from skvf_bench.baselines import method_configs
from skvf_bench.datasets import few_shot_split, load_digits_images
from skvf_bench.demo import offline_demo_classifier
from skvf_bench.simulation import NoisyOracleLabeler, digits_confusions, make_oracle

EXAMPLES = Path(__file__).parents[1] / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    env = dict(os.environ, MPLBACKEND="Agg", XDG_CACHE_HOME=str(cwd / "xdg-cache"))
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--fast", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_example_is_tested():
    tested = {
        "quickstart.py",
        "folder_of_photos.py",
        "local_llm_server.py",
        "grid_search.py",
        "plots.py",
    }
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def _labeler_accuracy(images, true_names, noise_rate=0.4, seed=0) -> float:
    """Cluster accuracy of the simulated labeler's names, computed here independently."""
    labeler = NoisyOracleLabeler(
        make_oracle(images, true_names),
        noise_rate=noise_rate,
        confusions=digits_confusions(),
        random_state=seed,
    )
    return cluster_accuracy(true_names, labeler.fit(images).transform(images))


@pytest.mark.slow
def test_quickstart_at_a_small_size(capsys, caplog):
    # Its --fast mode takes minutes on two cores: run its main() on fewer images instead.
    caplog.set_level(logging.ERROR)  # main() quietens the root logger; restored after
    spec = importlib.util.spec_from_file_location("quickstart", EXAMPLES / "quickstart.py")
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    results = quickstart.main(shots=5, max_epochs=15)
    out = capsys.readouterr().out
    assert set(results) == {"labeler names (train)", "CoOp on raw names", "NeaR"}
    for name, value in results.items():  # the printed table is the returned numbers
        assert f"  {name:24s} {value:.3f}" in out

    # The same numbers, computed here with the same seed and settings.
    images, true_names = load_digits_images(scale=4)
    fit_index, test_index = few_shot_split(true_names, 5, random_state=0)
    expected_labeler = _labeler_accuracy(images[fit_index], true_names[fit_index])
    assert results["labeler names (train)"] == pytest.approx(expected_labeler, abs=1e-12)
    near = offline_demo_classifier(
        images, true_names, random_state=0, max_epochs=15, **method_configs()["NeaR"]
    ).fit(images[fit_index])
    expected_near = near.score(images[test_index], true_names[test_index])
    assert results["NeaR"] == pytest.approx(expected_near, abs=1e-12)


@pytest.mark.slow
def test_folder_of_photos(tmp_path):
    workdir = tmp_path / "photos"
    out = run_example("folder_of_photos.py", "--workdir", str(workdir), cwd=tmp_path)
    assert "fitted on 50 unlabeled photos" in out
    assert "saved and loaded digits.skops" in out
    assert (workdir / "digits.skops").is_file()
    scores = dict(re.findall(r"cluster accuracy, (.*): (\d\.\d{3})", out))
    assert set(scores) == {"labeler names (train)", "NeaR predictions (test)"}
    # --fast numbers come with the word that they mean nothing, right after them.
    assert out.rstrip().splitlines()[-1].startswith("(--fast: 5 photos per class")
    assert "accuracies mean nothing" in out

    # The saved model, loaded here, scores on the test folder what the example printed.
    model = load(workdir / "digits.skops", trusted=harness_types())
    test_paths, true_names = load_image_folder(workdir / "test")
    predicted_score = cluster_accuracy(true_names, model.predict(test_paths))
    assert scores["NeaR predictions (test)"] == f"{predicted_score:.3f}"
    # The labeler's accuracy on the training folder, recomputed independently.
    train_paths, train_names = load_image_folder(workdir / "train")
    labeler_score = _labeler_accuracy(train_paths, train_names)
    assert scores["labeler names (train)"] == f"{labeler_score:.3f}"


@pytest.mark.slow
def test_local_llm_server_demo(tmp_path):
    out = run_example("local_llm_server.py", "--demo", cwd=tmp_path)
    assert "the server named 12 of 12 images" in out
    assert "blue-0.png: blue test bird" in out
    assert "answers from the cache during fit: 12" in out


@pytest.mark.slow
def test_grid_search(tmp_path):
    out = run_example("grid_search.py", cwd=tmp_path)
    assert out.count("{'candidate_builder__n_neighbors'") == 3  # two rows and the best
    assert "asked the labeler for 0 new answer(s)" in out


@pytest.mark.slow
def test_plots(tmp_path):
    pytest.importorskip("matplotlib")
    out = run_example("plots.py", "--out", str(tmp_path / "plots"), cwd=tmp_path)
    for name in ("history.png", "name_frequencies.png", "name_mapping.png"):
        path = tmp_path / "plots" / name
        assert f"saved {path}" in out
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
