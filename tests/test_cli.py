"""The ``skvf`` command, run as a real process against the fake OpenAI-compatible server.

The fake server names each colour image after its colour ("red test bird"), so a folder
of colour images laid out as class folders is both the training set of ``fit`` and the
ground truth of ``evaluate``. Usage errors are checked in-process through ``main``.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skvf._openset import expected_calibration_error
from skvf.candidates import NeighborCandidateBuilder
from skvf.classifier import NeaRClassifier
from skvf.cli import build_parser, main
from skvf.folders import load_image_folder
from skvf.labeling import MLLMLabeler
from skvf.metrics import cluster_accuracy, cluster_matched, semantic_accuracy
from skvf.serialization import dump, load
from skvf_bench import trusted_types as harness_types
from skvf_bench.demo import run_digits_demo
from skvf_bench.encoders import HOGFeatures, ImagePixels
from skvf_bench.simulation import NoisyOracleLabeler

COLOURS = ("red", "green", "blue", "yellow")
KEY_ENV = "SKVF_CLI_TEST_KEY"
TEST_KEY = "sk-cli-test-SECRET-42"
TINY_FIT = ["--tiny", "--max-epochs", "6", "--warmup-epochs", "2", "--n-neighbors", "3"]


def run_skvf(*args: str, env: dict | None = None, timeout: float = 300):
    """Run ``python -m skvf.cli ARGS`` in a child process; return the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "skvf.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def fake_server():
    """tests/labeling/fake_openai_server.py, imported with sys.path left as it was."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(Path(__file__).parent / "labeling"))
        return importlib.import_module("fake_openai_server")


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory, fake_server) -> Path:
    """ROOT/<colour>/<i>.png: four colours, four images each."""
    root = tmp_path_factory.mktemp("colours")
    for colour in COLOURS:
        (root / colour).mkdir()
        for seed in range(4):
            image = fake_server.colour_image(colour, size=32, seed=seed)
            Image.fromarray(image).save(root / colour / f"{seed}.png")
    return root


@pytest.fixture(scope="module")
def child_env(tmp_path_factory) -> dict:
    """The child's environment: a test key, and a user cache directory of its own."""
    env = dict(os.environ)
    env[KEY_ENV] = TEST_KEY
    env["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    env["OMP_NUM_THREADS"] = "1"  # torch on one thread, as in-process (tests/conftest.py)
    env.pop("OPENAI_API_KEY", None)
    return env


@pytest.fixture(scope="module")
def server_url(fake_server):
    with fake_server.serve(fake_server.FakeVLM()) as url:
        yield url


def labeler_options(url: str) -> list[str]:
    return ["--labeler", "openai/fake-vlm", "--api-base", url, "--api-key-env", KEY_ENV]


@pytest.fixture(scope="module")
def fitted_model(tmp_path_factory, colour_folder, server_url, child_env):
    """``skvf fit`` on the colour folder; returns (model path, completed process)."""
    model = tmp_path_factory.mktemp("model") / "colours.skops"
    result = run_skvf(
        "fit", str(colour_folder), "-o", str(model), *labeler_options(server_url), *TINY_FIT,
        env=child_env,
    )  # fmt: skip
    return model, result


def test_label_writes_one_name_per_image_as_csv(colour_folder, server_url, child_env):
    result = run_skvf("label", str(colour_folder), *labeler_options(server_url), env=child_env)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 16
    for row in rows:
        assert row["name"] == f"{Path(row['path']).parent.name} test bird"
    assert "named 16 of 16 image(s)" in result.stderr
    assert "Traceback" not in result.stderr


def test_fit_saves_a_model_and_prints_nothing_on_stdout(fitted_model):
    model, result = fitted_model
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert model.is_file()
    assert f"saved {model}: 4 classes from 16 training image(s)" in result.stderr


def test_predict_jsonl_with_top_k(fitted_model, colour_folder, child_env):
    model, _ = fitted_model
    red_image = colour_folder / "red" / "0.png"
    result = run_skvf(
        "predict", str(model), str(colour_folder / "blue"), str(red_image),
        "--format", "jsonl", "--top-k", "2", "-q",
        env=child_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records][-1] == str(red_image)
    assert len(records) == 5
    for record in records:
        assert len(record["top_k"]) == 2
        assert record["top_k"][0] == {"name": record["name"], "probability": record["probability"]}
        assert record["top_k"][0]["probability"] >= record["top_k"][1]["probability"]
        assert record["name"] in {f"{c} test bird" for c in COLOURS}


def test_predict_csv_to_a_file_in_process(fitted_model, colour_folder, tmp_path, capsys):
    model, _ = fitted_model
    output = tmp_path / "names.csv"
    status = main(["predict", str(model), str(colour_folder), "-o", str(output), "--top-k", "3"])
    result = capsys.readouterr()
    assert status == 0, result.err
    assert result.out == ""
    rows = list(csv.DictReader(output.open()))
    assert len(rows) == 16
    assert list(rows[0]) == [
        "path", "name", "probability", "name_2", "probability_2", "name_3", "probability_3",
    ]  # fmt: skip
    assert "named 16 of 16 image(s) with 4 classes" in result.err


def test_evaluate_reports_cluster_accuracy_in_process(fitted_model, colour_folder, capsys):
    model, _ = fitted_model
    status = main(["evaluate", str(model), str(colour_folder), "--no-semantic", "--format", "json"])
    result = capsys.readouterr()
    assert status == 0, result.err
    scores = json.loads(result.out)
    paths, true_names = load_image_folder(colour_folder)
    fitted = load(model)
    predicted = fitted.predict(paths)
    confidence = fitted.predict_proba(paths).max(axis=1)
    right = cluster_matched(true_names, predicted)
    assert scores == {
        "n_images": 16,
        "n_unreadable": 0,
        "n_true_classes": 4,
        "n_predicted_names": len(set(predicted)),
        "cluster_accuracy": cluster_accuracy(true_names, predicted),
        # the model's own probabilities against the names cACC matches to the folders
        "calibration_error": pytest.approx(expected_calibration_error(confidence, right)),
    }


def test_predict_and_evaluate_run_without_the_harness(fitted_model, colour_folder, child_env):
    # A fresh process: a model fitted with a real labeler is used without importing the
    # evaluation harness, whatever the product imports on the way.
    model, _ = fitted_model
    code = (
        "import sys; from skvf.cli import main; "
        f"predicted = main(['predict', {str(model)!r}, {str(colour_folder)!r}, '-q']); "
        f"scored = main(['evaluate', {str(model)!r}, {str(colour_folder)!r}, '--no-semantic']); "
        "print(predicted, scored, 'skvf_bench' in sys.modules, file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "0 0 False"


def test_labeler_failure_exits_1_with_one_line_and_no_key(colour_folder, child_env, fake_server):
    # The server wants another key: a 401, which fails at once without retries.
    with fake_server.serve(fake_server.FakeVLM(api_key="sk-the-right-one")) as url:
        result = run_skvf(
            "label", str(colour_folder / "red"), *labeler_options(url),
            "--labeler-cache", "none",
            env=child_env,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("skvf label: error: ")
    assert "Traceback" not in result.stderr
    assert TEST_KEY not in result.stderr


def test_demo_exports_folders_for_the_offline_cli_flow(tmp_path, child_env):
    result = run_skvf(
        "demo", "--shots", "3", "--max-epochs", "8", "--export", str(tmp_path / "digits"),
        env=child_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "method\tcluster accuracy"
    assert [line.split("\t")[0] for line in lines[1:]] == [
        "labeler names (training images)",
        "CoOp on raw names (test images)",
        "NeaR (test images)",
    ]
    expected = run_digits_demo(shots=3, max_epochs=8)  # the other arguments at their defaults
    assert [line.split("\t")[1] for line in lines[1:]] == [f"{v:.3f}" for v in expected.values()]
    assert sorted(p.name for p in (tmp_path / "digits" / "train").iterdir())[:2] == [
        "eight",
        "five",
    ]
    assert len(list((tmp_path / "digits" / "train").rglob("*.png"))) == 30


@pytest.mark.parametrize(("encoder", "first_step"), [("pixels", ImagePixels), ("hog", HOGFeatures)])
def test_fit_with_the_simulated_labeler_in_process(
    tmp_path, colour_folder, capsys, encoder, first_step
):
    model = tmp_path / "simulated.skops"
    args = ["fit", str(colour_folder), "-o", str(model), "--labeler", "simulated"]
    status = main([*args, "--simulated-noise", "0", "--image-encoder", encoder, *TINY_FIT])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.out == ""
    assert "classes from 16 training image(s) (4 distinct labeler names)" in captured.err
    steps = load(model, trusted=harness_types()).image_encoder_.steps
    assert isinstance(steps[0][1], first_step) and steps[1][1].n_components_ == 15

    # Its simulated labeler and offline encoder are trusted only when asked for.
    image = str(colour_folder / "red" / "0.png")
    assert main(["predict", str(model), image, "-q"]) == 1
    error = capsys.readouterr().err
    assert "skvf_bench.simulation.NoisyOracleLabeler" in error
    assert "--trust-harness for the evaluation harness's estimators" in error
    assert main(["predict", str(model), image, "-q", "--trust-harness"]) == 0
    assert capsys.readouterr().out.startswith("path,name,probability\n")


def test_import_is_light_and_help_works():
    code = (
        "import sys, skvf.cli; "
        "heavy = {'torch', 'open_clip', 'litellm', 'numpy'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    result = run_skvf("--help", timeout=60)
    assert result.returncode == 0
    for command in ("label", "fit", "predict", "evaluate", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["label", "fit", "predict", "evaluate", "demo"])
def test_help_of_each_command(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: skvf {command}")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["label", "does/not/exist"], "'does/not/exist' does not exist."),
        (["predict", "missing.skops", "."], "'missing.skops' is not a file."),
        (["fit", "{folder}", "-o", "m.skops", "--tiny", "--backbone", "RN50"], "drop --backbone"),
        (["fit", "{folder}", "-o", "no/such/dir/m.skops"], "does not exist"),
        (["fit", "{folder}", "-o", "m.skops", "--labeler", "simulated"], "two folders"),
        (["evaluate", "m.skops", "{folder}"], "no images found in class folders"),
    ],
)
def test_usage_errors_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    argv = [arg.replace("{folder}", str(tmp_path / "flat")) for arg in argv]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"skvf {argv[0]}: error: " in captured.err
    assert message in captured.err


@pytest.mark.parametrize(
    "argv",
    [
        ["fit", "."],  # no -o
        ["predict", "m.skops", ".", "--top-k", "0"],
        ["fit", ".", "-o", "m.skops", "--backbone-kwargs", "{bad"],
        ["demo", "--noise-rate", "2"],
        ["frobnicate"],
    ],
)
def test_argparse_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error:" in captured.err


def test_runtime_errors_exit_1_and_debug_shows_the_traceback(tmp_path, capsys):
    not_a_model = tmp_path / "model.skops"
    not_a_model.write_text("not a zip file")
    assert main(["predict", str(not_a_model), str(tmp_path)]) == 2  # no images: usage
    assert "no images found" in capsys.readouterr().err
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    assert main(["predict", str(not_a_model), str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("skvf predict: error: ")
    assert len(err.strip().splitlines()) == 1
    with pytest.raises(Exception, match="zip"):
        main(["predict", str(not_a_model), str(tmp_path), "--debug"])


def test_defaults_come_from_the_estimators():
    def default(owner, name):
        return inspect.signature(owner).parameters[name].default

    commands = build_parser()._subparsers._group_actions[0].choices
    fit = commands["fit"].parse_args([".", "-o", "m.skops"])
    evaluate = commands["evaluate"].parse_args(["m.skops", "."])
    demo = commands["demo"].parse_args([])
    for option in ("max_epochs", "warmup_epochs", "device", "batch_size"):
        assert getattr(fit, option) == default(NeaRClassifier, option)
    assert fit.n_neighbors == default(NeighborCandidateBuilder, "n_neighbors")
    assert fit.labeler == default(MLLMLabeler, "model")
    assert fit.prompt == default(MLLMLabeler, "prompt")
    assert fit.max_concurrency == default(MLLMLabeler, "max_concurrency")
    assert fit.noise_rate == default(NoisyOracleLabeler, "noise_rate")
    assert evaluate.semantic_model == default(semantic_accuracy, "model")
    for option in ("shots", "noise_rate", "max_epochs", "random_state"):
        assert getattr(demo, option) == default(run_digits_demo, option)
    assert fit.max_epochs == fit.warmup_epochs == "auto"
    chosen = commands["fit"].parse_args([".", "-o", "m.skops", "--max-epochs", "90"])
    assert chosen.max_epochs == 90
    fit_help = commands["fit"].format_help()
    assert f"(default: {default(NeaRClassifier, 'backbone')})" in fit_help
    assert f"(default: {default(NeaRClassifier, 'pretrained')})" in fit_help


def test_every_option_is_documented():
    documented = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    commands = build_parser()._subparsers._group_actions[0].choices
    for name, parser in commands.items():
        assert f"skvf {name}" in documented
        for action in parser._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help":
                    assert option in documented, f"{option} of 'skvf {name}' is not in docs/cli.md"


@pytest.mark.slow
def test_docs_show_what_demo_prints(capsys):
    # docs/cli.md quotes the demo's stdout at its defaults; it must not drift from it.
    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    quoted = docs.split("On stdout, the scores (seed 0):\n\n```\n", 1)[1].split("```", 1)[0]
    assert main(["demo", "-q"]) == 0
    assert capsys.readouterr().out == quoted


def test_predict_unknown_names_the_images_below_the_models_threshold(
    tmp_path, colour_folder, capsys
):
    model, out = tmp_path / "m.skops", tmp_path / "names.csv"
    fit = ["fit", str(colour_folder), "-o", str(model), "--labeler", "simulated"]
    assert main([*fit, "--simulated-noise", "0", *TINY_FIT]) == 0, capsys.readouterr().err
    paths = sorted(str(path) for path in colour_folder.rglob("*.png"))
    fitted = load(model, trusted=harness_types())
    known = fitted.score_samples(paths)
    fitted.unknown_threshold_ = float(np.median(known))  # half the images fall below it
    dump(fitted, model)
    predict = ["predict", str(model), *paths, "--unknown", "not seen", "--trust-harness"]
    status = main([*predict, "-o", str(out)])
    assert status == 0, capsys.readouterr().err
    names = [row["name"] for row in csv.DictReader(out.open())]
    assert names == list(fitted.set_params(unknown_label="not seen").predict(paths))
    assert [name == "not seen" for name in names] == list(known < np.median(known))

    # A class's own name as the unknown answer is refused before any image is read.
    out.unlink()
    clash = str(fitted.classes_[0])
    predict[predict.index("not seen")] = clash
    assert main([*predict, "-o", str(out)]) == 1
    error = capsys.readouterr().err
    assert f"--unknown {clash} is also one of the model's classes_" in error
    assert not out.exists()
