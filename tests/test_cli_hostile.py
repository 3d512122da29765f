"""The command line as a careless or new user meets it: bad files among the images, the
wrong file as a model, two mistakes at once. Each ends with one clear line and the
documented exit status, in flags the user typed (not Python parameter names)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skvf.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main

TINY = ["--tiny", "--max-epochs", "2", "--warmup-epochs", "1", "--n-neighbors", "2"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """ROOT/<class>/<i>.png for two classes, plus one corrupt and one broken-link image."""
    root = tmp_path_factory.mktemp("classes")
    rng = np.random.default_rng(0)
    for name, base in (("dark", 40), ("light", 210)):
        (root / name).mkdir()
        for index in range(4):
            pixels = np.clip(base + rng.normal(0, 10, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    (root / "dark" / "corrupt.png").write_bytes(b"not a png at all")
    os.symlink(root / "nowhere.png", root / "light" / "link.png")
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory, folders):
    path = tmp_path_factory.mktemp("model") / "m.skops"
    status = main(
        ["fit", str(folders), "-o", str(path), "--labeler", "simulated", "--simulated-noise",
         "0", "--on-error", "skip", "--image-encoder", "pixels", "-q", *TINY]
    )  # fmt: skip
    assert status == EXIT_OK
    return path


def test_fit_with_a_simulated_labeler_skips_bad_images(model):
    # (15) the simulated labeler used to key every image first, so one bad file stopped it.
    assert model.is_file()


def test_label_with_a_simulated_labeler_skips_and_says_why(folders, capsys):
    status = main(["label", str(folders), "--labeler", "simulated", "--on-error", "skip"])
    captured = capsys.readouterr()
    assert status == EXIT_OK, captured.err
    rows = {
        Path(row["path"]).name: row["name"] for row in csv.DictReader(io.StringIO(captured.out))
    }
    assert rows["corrupt.png"] == "" and rows["link.png"] == ""
    assert rows["0.png"] in {"dark", "light"}
    assert "skvf: skipped X[" in captured.err and "corrupt.png" in captured.err
    assert "broken symbolic link" in captured.err


def test_predict_says_why_each_image_was_unreadable(model, folders, capsys):
    # (21) including broken links, which used to be left out of the listing silently.
    status = main(["predict", str(model), str(folders), "--on-error", "skip", "--trust-harness"])
    captured = capsys.readouterr()
    assert status == EXIT_OK, captured.err
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert len(rows) == 10
    assert {Path(r["path"]).name for r in rows if not r["name"]} == {"corrupt.png", "link.png"}
    skipped = [line for line in captured.err.splitlines() if line.startswith("skvf: skipped")]
    assert len(skipped) == 2
    assert any("link.png" in line and "broken symbolic link" in line for line in skipped)
    assert any("corrupt.png" in line and "not an image file" in line for line in skipped)


def test_predict_error_names_the_flag_not_the_parameter(model, folders, capsys):
    # (17) the library says on_error='skip'; the user typed flags.
    status = main(["predict", str(model), str(folders), "--trust-harness"])
    err = capsys.readouterr().err
    assert status == EXIT_FAILURE
    assert "pass --on-error skip" in err and "on_error=" not in err
    assert "ImageInputError" not in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "content", [b"plain text\n", b"\x89PNG\r\n\x1a\n" + bytes(32)], ids=["text", "png"]
)
def test_a_model_that_is_not_a_skops_file_is_named(tmp_path, folders, content, capsys):
    # (16)
    path = tmp_path / "model.skops"
    path.write_bytes(content)
    status = main(["predict", str(path), str(folders)])
    err = capsys.readouterr().err
    assert status == EXIT_FAILURE
    assert (
        err == f"skvf predict: error: {str(path)!r} is not a skops file (a skops file is a zip "
        "archive; this one is another kind of file, or truncated). Pass a model saved with "
        "skvf.serialization.dump or skops.io.dump.\n"
    )


def test_a_skops_file_of_another_estimator_is_named(tmp_path, folders, capsys):
    # (16) it used to pass the model check and fail later with kilobytes of stderr.
    import skops.io
    from sklearn.preprocessing import StandardScaler

    path = tmp_path / "scaler.skops"
    skops.io.dump(StandardScaler().fit(np.eye(3)), path)
    status = main(["predict", str(path), str(folders)])
    err = capsys.readouterr().err
    assert status == EXIT_FAILURE
    assert err.strip() == (
        f"skvf predict: error: {str(path)!r} holds a StandardScaler, not a fitted classifier."
    )


def test_two_mistakes_are_reported_at_once(tmp_path, capsys):
    # (17) the image folder used to be checked before the model, one mistake per run.
    status = main(["predict", str(tmp_path / "no.skops"), str(tmp_path / "no-folder")])
    err = capsys.readouterr().err
    assert status == EXIT_USAGE
    assert "no.skops' is not a file" in err and "no-folder' does not exist" in err


def test_too_few_images_is_a_usage_error(tmp_path, capsys):
    # (19) documented: missing input exits 2.
    (tmp_path / "one").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "one" / "a.png")
    status = main(["fit", str(tmp_path / "one"), "-o", str(tmp_path / "m.skops"), "--tiny"])
    assert status == EXIT_USAGE
    assert "fit needs two or more" in capsys.readouterr().err
