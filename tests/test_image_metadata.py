"""Camera images with broken metadata: EXIF and TIFF tags of the wrong type.

Cameras and photo editors write tags of the wrong type (text where a number belongs).
Such a tag used to escape the image loader as ``TypeError`` or ``struct.error``, which
``on_error="skip"`` could not skip. Now an image whose pixels decode loads (upright when
its orientation tag can be read), and one whose pixels do not is a bad image like any
other. The files here are built byte by byte: a real JPEG or TIFF, one tag retyped.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageOps

from skvf import NeaRClassifier
from skvf._images import load_image, load_images
from skvf.exceptions import ImageInputError
from skvf_bench.demo import TINY_BACKBONE_PARAMS

ORIENTATION, STRIP_OFFSETS, X_RESOLUTION, RESOLUTION_UNIT = 0x0112, 0x0111, 0x011A, 0x0128
SHORT, ASCII, LONG = 3, 2, 4  # TIFF field types


def tiff_block(entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """A little-endian TIFF header and one IFD of ``(tag, type, count, 4-byte value)``.

    This is the layout of an EXIF block; values of four bytes or less sit in the entry.
    """
    block = b"II" + struct.pack("<HI", 42, 8) + struct.pack("<H", len(entries))
    for tag, kind, count, value in sorted(entries):
        block += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
    return block + struct.pack("<I", 0)  # no next IFD


def photo() -> np.ndarray:
    """8x12 pixels: a white left half and a black right half, so a turn shows."""
    pixels = np.zeros((8, 12, 3), dtype=np.uint8)
    pixels[:, :6] = 255
    return pixels


def jpeg_with_exif(path, entries) -> None:
    Image.fromarray(photo()).save(path, "JPEG", quality=95, exif=b"Exif\0\0" + tiff_block(entries))


def retyped_tiff(path, tag: int, kind: int, count: int, value: bytes, orientation=None) -> None:
    """A TIFF of :func:`photo` whose entry for ``tag`` is rewritten in place."""
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[ORIENTATION] = orientation
    Image.fromarray(photo()).save(buffer, "TIFF", dpi=(72, 72), exif=exif)
    data = bytearray(buffer.getvalue())
    assert data[:2] == b"II"
    (start,) = struct.unpack_from("<I", data, 4)
    (n_entries,) = struct.unpack_from("<H", data, start)
    for entry in range(start + 2, start + 2 + 12 * n_entries, 12):
        if struct.unpack_from("<H", data, entry)[0] == tag:
            data[entry : entry + 12] = struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
            path.write_bytes(bytes(data))
            return
    raise AssertionError(f"PIL wrote no tag {tag:#06x}")


def pixels_of(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=int)


TURNED = (ORIENTATION, SHORT, 1, struct.pack("<H", 6))  # shown turned 90 degrees clockwise


@pytest.mark.parametrize(
    "bad_tag",
    [(X_RESOLUTION, ASCII, 3, b"72\0"), (RESOLUTION_UNIT, ASCII, 3, b"in\0")],
    ids=["text-resolution", "text-resolution-unit"],
)
def test_a_jpeg_with_a_wrongly_typed_exif_tag_loads_upright(tmp_path, bad_tag):
    clean, broken = tmp_path / "clean.jpg", tmp_path / "broken.jpg"
    jpeg_with_exif(clean, [TURNED])
    jpeg_with_exif(broken, [TURNED, bad_tag])
    expected = pixels_of(load_image(clean))
    assert expected.shape == (12, 8, 3)  # the clean file's orientation is applied
    np.testing.assert_array_equal(pixels_of(load_image(broken)), expected)
    with Image.open(broken) as opened:  # an opened PIL image goes the same way
        np.testing.assert_array_equal(pixels_of(load_image(opened)), expected)
    assert len(load_images([str(broken)], on_error="raise").images) == 1


def test_a_tiff_with_a_wrongly_typed_tag_loads_upright(tmp_path):
    path = tmp_path / "broken.tif"
    retyped_tiff(path, X_RESOLUTION, ASCII, 3, b"72\0", orientation=6)
    np.testing.assert_array_equal(pixels_of(load_image(path)), np.rot90(photo(), k=-1))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_turns_as_pil_does(tmp_path, orientation):
    path = tmp_path / "turned.png"  # lossless: the pixels compare exactly
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(np.arange(8 * 12 * 3, dtype=np.uint8).reshape(8, 12, 3)).save(path, exif=exif)
    with Image.open(path) as opened:
        expected = pixels_of(ImageOps.exif_transpose(opened))
    np.testing.assert_array_equal(pixels_of(load_image(path)), expected)


@pytest.fixture
def undecodable(tmp_path):
    """A TIFF whose strip offsets are text: PIL opens it, then fails to decode it."""
    path = tmp_path / "strips.tif"
    retyped_tiff(path, STRIP_OFFSETS, ASCII, 4, b"abc\0")
    return path


def test_a_tiff_that_cannot_be_decoded_is_named(undecodable):
    with pytest.raises(ImageInputError) as raised:
        load_images([photo(), str(undecodable)], on_error="raise")
    assert str(raised.value).startswith(
        f"X[1] ({str(undecodable)!r}): corrupt or truncated image: TypeError: "
    )
    assert str(raised.value).endswith("or pass on_error='skip' to drop bad images.")


def test_a_tiff_that_cannot_be_decoded_is_skipped(undecodable):
    loaded = load_images([photo(), str(undecodable), photo()], on_error="skip")
    assert loaded.indices.tolist() == [0, 2]
    [reason] = loaded.errors
    assert reason.startswith(f"X[1] ({str(undecodable)!r}): corrupt or truncated image: TypeError")


def test_fit_skips_an_image_that_cannot_be_decoded(undecodable):
    class Namer:  # the labeler's answers: two names
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return np.asarray(["white", "black"] * len(X), dtype=object)[: len(X)]

        def get_params(self, deep=True):
            return {}

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(6)]
    clf = NeaRClassifier(
        labeler=Namer(), on_error="skip", max_epochs=2, warmup_epochs=1, **TINY_BACKBONE_PARAMS
    )
    with pytest.warns(UserWarning, match="1 training item"):
        clf.fit([*images[:3], str(undecodable), *images[3:]])
    assert [reason.split(":")[0] for reason in clf.skipped_] == [f"X[3] ({str(undecodable)!r})"]
