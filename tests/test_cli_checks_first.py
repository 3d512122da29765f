"""The command line is checked before any work: an output that would destroy an input,
an output folder that is missing or read-only, every missing input at once. And results
are written whole when a file name is not UTF-8.

Each mistake used to surface late (after the labeler was paid, after the model had
predicted every image) or to do damage (``skvf predict m.skops ... -o m.skops`` wrote the
names over the model). Real files in ``tmp_path``, the command's ``main(argv)``, and the
offline parts (``--labeler simulated``, ``--tiny``, ``--image-encoder pixels``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import skvf.serialization
import skvf_bench.demo
from skvf.classifier import NeaRClassifier
from skvf.cli import EXIT_OK, EXIT_USAGE, _commands, main
from skvf.folders import IMAGE_EXTENSIONS

SIMULATED = ["--labeler", "simulated", "--simulated-noise", "0"]
OFFLINE = [*SIMULATED, "--image-encoder", "pixels"]  # fit's
TINY = ["--tiny", "--max-epochs", "2", "--warmup-epochs", "1", "--n-neighbors", "2", "-q"]
#: A file name that is not UTF-8 (latin-1 "café"); Python gives it as "caf\udce9.png".
NOT_UTF8 = b"caf\xe9.png"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """ROOT/<class>/<i>.png for two classes."""
    root = tmp_path_factory.mktemp("classes")
    rng = np.random.default_rng(0)
    for name, base in (("dark", 40), ("light", 210)):
        (root / name).mkdir()
        for index in range(3):
            pixels = np.clip(base + rng.normal(0, 10, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    return root


@pytest.fixture(scope="module")
def model(tmp_path_factory, folder) -> Path:
    path = tmp_path_factory.mktemp("model") / "m.skops"
    assert main(["fit", str(folder), "-o", str(path), *OFFLINE, *TINY]) == EXIT_OK
    return path


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command gets as far as its work: a labeler, a model, the demo."""

    def forbidden(*args, **kwargs):
        pytest.fail("the command did work before refusing its command line")

    monkeypatch.setattr(_commands, "_labeler", forbidden)
    monkeypatch.setattr(skvf.serialization, "load", forbidden)
    monkeypatch.setattr(NeaRClassifier, "fit", forbidden)
    monkeypatch.setattr(skvf_bench.demo, "run_digits_demo", forbidden)


def refused(argv: list[str], capsys) -> str:
    """Run ``argv``; check it is refused as a usage error with nothing on stdout; the error."""
    status = main(argv)
    captured = capsys.readouterr()
    assert status == EXIT_USAGE, captured.err
    assert captured.out == ""
    return captured.err


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# -- an output that is an input ----------------------------------------------------------


@pytest.mark.parametrize("alias", ["same", "symlink", "hardlink"])
def test_predict_refuses_to_write_over_its_model(model, folder, tmp_path, alias, capsys, no_work):
    output = {"same": model, "symlink": tmp_path / "link.csv", "hardlink": tmp_path / "hard.csv"}
    output = output[alias]
    if alias == "symlink":
        output.symlink_to(model)
    elif alias == "hardlink":
        os.link(model, output)
    before = model.read_bytes()
    err = refused(["predict", str(model), str(folder), "-o", str(output)], capsys)
    assert err == (
        f"skvf predict: error: -o {str(output)!r} is the same file as the model "
        f"{str(model)!r}; name another file.\n"
    )
    assert model.read_bytes() == before


@pytest.mark.parametrize("command", ["fit", "label"])
def test_fit_and_label_refuse_to_write_over_an_input_image(folder, command, capsys, no_work):
    image = folder / "light" / "2.png"
    before = tree(folder)
    offline = OFFLINE if command == "fit" else SIMULATED
    err = refused([command, str(folder), "-o", str(image), *offline], capsys)
    assert err == (
        f"skvf {command}: error: -o {str(image)!r} is the same file as the image "
        f"{str(image)!r}; name another file.\n"
    )
    assert tree(folder) == before


def test_evaluate_refuses_to_write_over_an_image_named_another_way(
    model, folder, tmp_path, capsys, no_work
):
    image = folder / "dark" / "0.png"
    link = tmp_path / "scores.txt"
    link.symlink_to(image)
    err = refused(["evaluate", str(model), str(folder), "-o", str(link)], capsys)
    assert err == (
        f"skvf evaluate: error: -o {str(link)!r} is the same file as the image "
        f"{str(image)!r}; name another file.\n"
    )


def test_an_output_where_a_broken_link_among_the_inputs_leads_is_refused(
    folder, tmp_path, capsys, no_work
):
    # A folder lists a broken link as an image (loading it says why it is unusable):
    # writing where it leads would turn the link into the output.
    link = tmp_path / "ghost.png"
    link.symlink_to(tmp_path / "nowhere.png")
    output = str(tmp_path / "nowhere.png")
    err = refused(["label", str(tmp_path), "-o", output, *SIMULATED], capsys)
    assert err == (
        f"skvf label: error: -o {output!r} is the same file as the image {str(link)!r}; "
        "name another file.\n"
    )
    assert not (tmp_path / "nowhere.png").exists()


# -- output folders ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["label", "fit", "predict", "evaluate"])
def test_a_missing_output_folder_is_refused_before_any_work(
    model, folder, tmp_path, command, capsys, no_work
):
    output = str(tmp_path / "missing" / "out.csv")
    inputs = [str(folder)] if command in ("label", "fit") else [str(model), str(folder)]
    options = {"label": SIMULATED, "fit": OFFLINE}.get(command, [])
    err = refused([command, *inputs, "-o", output, *options], capsys)
    assert err == f"skvf {command}: error: the folder of -o {output!r} does not exist.\n"
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("command", ["label", "predict"])
def test_a_read_only_output_folder_is_refused_before_any_work(
    model, folder, tmp_path, command, capsys, monkeypatch, no_work
):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root: the permission bits do not bind, so say they do
        real = os.access
        monkeypatch.setattr(
            os, "access", lambda path, mode, **kw: Path(path) != locked and real(path, mode, **kw)
        )
    output = str(locked / "out.csv")
    inputs = [str(folder)] if command == "label" else [str(model), str(folder)]
    err = refused([command, *inputs, "-o", output], capsys)
    assert err == f"skvf {command}: error: the folder of -o {output!r} is not writable.\n"
    locked.chmod(0o755)
    assert list(locked.iterdir()) == []


def test_an_output_that_is_a_folder_is_refused(model, folder, tmp_path, capsys, no_work):
    err = refused(["predict", str(model), str(folder), "-o", str(tmp_path)], capsys)
    assert err == f"skvf predict: error: -o {str(tmp_path)!r} is a folder; name a file.\n"


def test_demo_refuses_an_export_folder_it_cannot_make(tmp_path, capsys, no_work):
    blocker = tmp_path / "digits"
    blocker.write_text("a file where the folder should go")
    err = refused(["demo", "--export", str(blocker)], capsys)
    assert err == f"skvf demo: error: --export {str(blocker)!r} is not a folder.\n"
    err = refused(["demo", "--export", str(blocker / "inner")], capsys)
    assert err == (
        f"skvf demo: error: --export {str(blocker / 'inner')!r} cannot be made: "
        f"{str(blocker)!r} is a file.\n"
    )


# -- every mistake at once ---------------------------------------------------------------


def test_label_names_every_missing_input_at_once(folder, tmp_path, capsys, no_work):
    (tmp_path / "empty").mkdir()
    missing = [str(tmp_path / "nowhere"), str(tmp_path / "gone.png")]
    argv = ["label", missing[0], str(folder), missing[1], str(tmp_path / "empty"), *SIMULATED]
    err = refused(argv, capsys)
    assert err == (
        f"skvf label: error: {missing[0]!r} does not exist. {missing[1]!r} does not exist. "
        f"no images found in {str(tmp_path / 'empty')!r} (extensions "
        f"{', '.join(IMAGE_EXTENSIONS)}).\n"
    )


def test_predict_names_the_model_the_inputs_and_the_output_at_once(tmp_path, capsys, no_work):
    model, images = str(tmp_path / "no.skops"), [str(tmp_path / "a"), str(tmp_path / "b")]
    output = str(tmp_path / "missing" / "names.csv")
    err = refused(["predict", model, *images, "-o", output], capsys)
    assert err == (
        f"skvf predict: error: {model!r} is not a file. {images[0]!r} does not exist. "
        f"{images[1]!r} does not exist. the folder of -o {output!r} does not exist.\n"
    )


def test_fit_names_every_missing_input_and_its_output_at_once(tmp_path, capsys, no_work):
    images, output = [str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "x" / "m.skops")
    err = refused(["fit", *images, "-o", output, *OFFLINE], capsys)
    assert err == (
        f"skvf fit: error: {images[0]!r} does not exist. {images[1]!r} does not exist. "
        f"the folder of -o {output!r} does not exist.\n"
    )


# -- file names that are not UTF-8 ---------------------------------------------------------


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory, folder) -> Path:
    """The classes of ``folder``, with one image under a file name that is not UTF-8."""
    root = tmp_path_factory.mktemp("odd")
    for image in folder.rglob("*.png"):
        (root / image.parent.name).mkdir(exist_ok=True)
        (root / image.parent.name / image.name).write_bytes(image.read_bytes())
    try:
        odd = os.path.join(os.fsencode(root / "dark"), NOT_UTF8)
        with open(odd, "wb") as file:
            file.write((folder / "dark" / "0.png").read_bytes())
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses file names that are not UTF-8")
    return root


def test_predict_csv_keeps_a_file_name_that_is_not_utf8(model, odd_folder, tmp_path, capsys):
    output = tmp_path / "names.csv"
    argv = ["predict", str(model), str(odd_folder), "-o", str(output), "--trust-harness"]
    assert main(argv) == EXIT_OK
    data = output.read_bytes()
    assert os.path.join(os.fsencode(odd_folder / "dark"), NOT_UTF8) + b"," in data
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8", errors="surrogateescape"))))
    assert len(rows) == 7 and all(row["name"] for row in rows)
    assert all(Path(row["path"]).is_file() for row in rows)  # each path opens its file


def test_predict_jsonl_escapes_a_file_name_that_is_not_utf8(model, odd_folder, tmp_path):
    output = tmp_path / "names.jsonl"
    argv = ["predict", str(model), str(odd_folder), "-o", str(output), "--trust-harness"]
    assert main(argv) == EXIT_OK
    records = [json.loads(line) for line in output.read_text("utf-8").splitlines()]  # strict
    assert len(records) == 7
    assert os.fsdecode(NOT_UTF8) in {Path(r["path"]).name for r in records}
    assert all(Path(r["path"]).is_file() for r in records)


def test_label_to_stdout_keeps_a_file_name_that_is_not_utf8(odd_folder, monkeypatch):
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", newline="")  # errors="strict"
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["label", str(odd_folder), *SIMULATED, "-q"]) == EXIT_OK
    stdout.flush()
    data = stdout.buffer.getvalue()
    assert data.count(b"\n") == 8  # the header and seven images
    assert os.path.join(os.fsencode(odd_folder / "dark"), NOT_UTF8) + b",dark\n" in data
    assert stdout.errors == "strict"  # as it was
