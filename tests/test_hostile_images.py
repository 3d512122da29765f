"""Hostile and careless image input: refused with a clear error, never a hang or a crash.

Each case here hung, crashed deep in a library or passed silently before it was fixed:
a FIFO among the paths, a zero-size image, a decompression bomb, an empty file, a broken
symbolic link, a pandas DataFrame as X.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image, ImageFile

from skvf import NeaRClassifier
from skvf._images import as_image_list, load_image, load_images
from skvf.exceptions import ImageInputError
from skvf_bench.demo import TINY_BACKBONE_PARAMS

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")


@pytest.fixture
def deadline():
    """Fail the test instead of hanging the suite if the code under test blocks."""

    def expired(signum, frame):
        raise TimeoutError("blocked for 30 s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.jpg"
    os.mkfifo(path)
    return path


@pytest.fixture
def colour_images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8) for _ in range(12)]


def test_a_fifo_is_refused_without_blocking(fifo):
    # In a child process with a timeout, so a regression fails instead of hanging.
    script = textwrap.dedent(
        f"""
        from skvf._images import load_image
        try:
            load_image({str(fifo)!r})
        except ValueError as error:
            print(error)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "is not a regular file (a FIFO, socket or device)" in result.stdout


def test_fit_and_predict_skip_a_fifo(fifo, colour_images, deadline):
    labeler_names = np.asarray(["red", "blue"] * 6, dtype=object)

    class Namer:
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return labeler_names[: len(X)]

        def get_params(self, deep=True):
            return {}

    clf = NeaRClassifier(
        labeler=Namer(), on_error="skip", max_epochs=2, warmup_epochs=1, **TINY_BACKBONE_PARAMS
    )
    train = [*colour_images[:6], str(fifo), *colour_images[6:]]
    with pytest.warns(UserWarning, match="1 training item"):
        clf.fit(train)
    assert any("X[6]" in reason and "not a regular file" in reason for reason in clf.skipped_)
    predictions = clf.predict([colour_images[0], str(fifo)])
    assert predictions[0] in clf.classes_ and predictions[1] is None
    with pytest.raises(ImageInputError, match=r"X\[1\] .*not a regular file"):
        clf.set_params(on_error="raise").predict([colour_images[0], str(fifo)])


def test_zero_size_pil_image_is_a_bad_image():
    with pytest.raises(ImageInputError, match=r"has no pixels \(0x32\)"):
        load_image(Image.new("RGB", (0, 32)))
    loaded = load_images([Image.new("RGB", (0, 32)), np.zeros((4, 4))], on_error="skip")
    assert loaded.indices.tolist() == [1]
    assert "X[0] (Image): has no pixels (0x32)" in loaded.errors[0]


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("1", (12000, 12000)).save(path)  # a few KB on disk
    assert path.stat().st_size < 100_000

    def no_decoding(self):
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageInputError, match="12000x12000 pixels is more than max_image_pixels"):
        load_image(path)
    with pytest.raises(ImageInputError, match="more than max_image_pixels=1000"):
        load_image(Image.new("L", (40, 40)), max_pixels=1000)


def test_max_image_pixels_reaches_fit_and_predict(colour_images, tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 300)).save(big)
    clf = NeaRClassifier(
        labeler=_FirstPixelNamer(),
        max_image_pixels=50_000,
        on_error="skip",
        max_epochs=2,
        warmup_epochs=1,
        **TINY_BACKBONE_PARAMS,
    )
    with pytest.warns(UserWarning, match="1 training item"):
        clf.fit([*colour_images, str(big)])
    assert "300x300 pixels is more than max_image_pixels=50000" in clf.skipped_[0]
    assert clf.predict([str(big)])[0] is None
    assert clf.set_params(max_image_pixels=None).predict([str(big)])[0] in clf.classes_


class _FirstPixelNamer:
    """Names an image "bright" or "dark" from its first pixel."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray(
            ["bright" if np.asarray(image)[0, 0].mean() > 127 else "dark" for image in X],
            dtype=object,
        )

    def get_params(self, deep=True):
        return {}


def empty_file(folder):
    (folder / "empty.png").write_bytes(b"")
    return folder / "empty.png"


def broken_symlink(folder):
    os.symlink(folder / "gone.png", folder / "link.png")
    return folder / "link.png"


@pytest.mark.parametrize(
    ("make", "reason"),
    [(empty_file, "is an empty file"), (broken_symlink, "broken symbolic link")],
    ids=["empty-file", "broken-symlink"],
)
def test_unusable_files_get_their_reason(tmp_path, make, reason):
    with pytest.raises(ImageInputError, match=reason):
        load_image(make(tmp_path))


def test_dataframe_of_paths_is_its_column(tmp_path, colour_images):
    pandas = pytest.importorskip("pandas")
    paths = []
    for index, array in enumerate(colour_images[:3]):
        paths.append(str(tmp_path / f"{index}.png"))
        Image.fromarray(array).save(paths[-1])
    frame = pandas.DataFrame({"path": paths})
    assert as_image_list(frame) == paths
    assert as_image_list(frame["path"]) == paths
    with pytest.raises(ImageInputError, match=r"DataFrame with 2 columns.*X\['path'\]"):
        as_image_list(frame.assign(label=["a", "b", "c"]))


def test_predict_on_a_dataframe_equals_predict_on_its_paths(tmp_path, colour_images):
    pandas = pytest.importorskip("pandas")
    paths = []
    for index, array in enumerate(colour_images):
        paths.append(str(tmp_path / f"{index}.png"))
        Image.fromarray(array).save(paths[-1])
    clf = NeaRClassifier(
        labeler=_FirstPixelNamer(), max_epochs=2, warmup_epochs=1, **TINY_BACKBONE_PARAMS
    ).fit(paths)
    expected = clf.predict(paths)
    frame = pandas.DataFrame({"path": paths})
    assert len(clf.predict(frame)) == len(paths)
    np.testing.assert_array_equal(clf.predict(frame), expected)
    np.testing.assert_array_equal(clf.predict(frame["path"]), expected)
