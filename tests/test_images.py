"""Tests of skvf._images: every input form becomes a bounded RGB image, bad items are named."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from skvf._images import (
    DEFAULT_MAX_SIDE,
    ImageInputError,
    as_image_list,
    describe_item,
    image_digest,
    is_feature_matrix,
    load_image,
    load_images,
)


def _pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def _gradient(height=6, width=8) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows * 40, cols * 30, (rows + cols) * 10], axis=-1).astype(np.uint8)


@pytest.fixture
def png_path(tmp_path):
    path = tmp_path / "gradient.png"
    Image.fromarray(_gradient()).save(path)
    return path


# ----------------------------------------------------------------------------- paths


def test_png_path_round_trips_exactly(png_path):
    image = load_image(png_path)
    np.testing.assert_array_equal(_pixels(image), _gradient())
    # str and PathLike give the same result
    np.testing.assert_array_equal(_pixels(load_image(str(png_path))), _gradient())


def test_jpeg_path_loads_as_rgb_close_to_the_original(tmp_path):
    path = tmp_path / "photo.jpg"
    colour = np.full((16, 24, 3), (200, 40, 90), dtype=np.uint8)
    Image.fromarray(colour).save(path, quality=95)
    pixels = _pixels(load_image(path))
    assert pixels.shape == (16, 24, 3)
    assert np.abs(pixels.astype(int) - colour).max() <= 4


def test_grayscale_file_becomes_rgb_with_equal_channels(tmp_path):
    path = tmp_path / "gray.png"
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(gray, mode="L").save(path)
    pixels = _pixels(load_image(path))
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], gray)


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    palette_image = Image.new("P", (4, 4), 0)
    palette_image.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    palette_image.putpixel((0, 0), 1)
    palette_image.info["transparency"] = 0  # index 0 (red) is transparent
    path = tmp_path / "palette.png"
    palette_image.save(path)
    for item in (path, Image.open(path)):
        pixels = _pixels(load_image(item))
        assert pixels[0, 0].tolist() == [0, 0, 255]  # opaque blue stays blue
        assert pixels[1, 1].tolist() == [255, 255, 255]  # transparent red becomes white


def test_rgba_pil_is_composited_on_white():
    rgba = np.zeros((1, 3, 4), dtype=np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]  # opaque red
    rgba[0, 1] = [0, 0, 0, 0]  # fully transparent black
    rgba[0, 2] = [0, 0, 0, 128]  # half-transparent black over white
    pixels = _pixels(load_image(Image.fromarray(rgba, mode="RGBA")))
    assert pixels[0, 0].tolist() == [255, 0, 0]
    assert pixels[0, 1].tolist() == [255, 255, 255]
    assert np.abs(pixels[0, 2].astype(int) - 127).max() <= 1


def test_rgba_png_file_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = [10, 20, 30, 255]
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    pixels = _pixels(load_image(path))
    assert pixels[0, 0].tolist() == [10, 20, 30]
    assert pixels[1, 1].tolist() == [255, 255, 255]


def test_la_image_is_composited_on_white():
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (0, 0))  # transparent
    la.putpixel((1, 0), (0, 255))  # opaque black
    pixels = _pixels(load_image(la))
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[0, 1].tolist() == [0, 0, 0]


def test_16_bit_png_is_rescaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    pixels = _pixels(load_image(path))
    # v / 65535 * 255, rounded; PIL's own convert would clip everything above 255
    assert pixels[0, :, 0].tolist() == [0, 1, 128, 255]
    np.testing.assert_array_equal(pixels[..., 0], pixels[..., 2])


def test_dark_16_bit_png_stays_dark(tmp_path):
    path = tmp_path / "dark.png"
    Image.fromarray(np.full((2, 2), 200, dtype=np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"
    # 200 / 65535 of full scale is black in 8 bits, not 200 / 255.
    assert _pixels(load_image(path)).max() <= 1


def test_huge_image_is_bounded_by_max_side(tmp_path):
    big = Image.new("RGB", (3000, 2000), (10, 20, 30))
    path = tmp_path / "big.jpg"
    big.save(path)
    assert DEFAULT_MAX_SIDE == 1024
    assert load_image(path).size == (1024, 683)
    assert load_image(big).size == (1024, 683)
    assert load_image(path, max_side=300).size == (300, 200)
    assert load_image(big, max_side=None).size == (3000, 2000)
    assert big.size == (3000, 2000)  # the caller's image is not resized in place


def test_small_image_is_not_upscaled():
    assert load_image(Image.new("RGB", (5, 7))).size == (5, 7)


def test_exif_orientation_of_a_file_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 20))  # white left quarter
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.size == (20, 40)
    pixels = _pixels(loaded).astype(int)
    # after a clockwise turn the white left quarter is on top
    assert pixels[:8].mean() > 200
    assert pixels[-8:].mean() < 50


def test_exif_orientation_of_an_opened_pil_image_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_image(Image.open(path)).size == (20, 40)


# ----------------------------------------------------------------------------- arrays


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1)])
def test_gray_arrays_become_rgb(shape):
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5) * 10
    pixels = _pixels(load_image(gray.reshape(shape)))
    assert pixels.shape == (4, 5, 3)
    np.testing.assert_array_equal(pixels[..., 1], gray)


def test_rgb_array_round_trips():
    np.testing.assert_array_equal(_pixels(load_image(_gradient())), _gradient())


def test_rgba_array_is_composited_on_white():
    rgba = np.zeros((1, 2, 4), dtype=np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]
    rgba[0, 1] = [0, 0, 0, 0]
    pixels = _pixels(load_image(rgba))
    assert pixels[0, 0].tolist() == [255, 0, 0]
    assert pixels[0, 1].tolist() == [255, 255, 255]


def test_rgba_array_keeps_opaque_pixels():
    rgba = np.zeros((1, 1, 4), dtype=np.uint8)
    rgba[0, 0] = [12, 34, 56, 255]
    assert _pixels(load_image(rgba))[0, 0].tolist() == [12, 34, 56]


def test_float_array_in_unit_range_is_scaled_to_255():
    values = np.array([[0.0, 0.5, 1.0]])
    pixels = _pixels(load_image(values))
    assert pixels[0, :, 0].tolist() == [0, 128, 255]


def test_float_array_in_byte_range_is_kept():
    values = np.array([[0.0, 100.0, 255.0]], dtype=np.float32)
    assert _pixels(load_image(values))[0, :, 0].tolist() == [0, 100, 255]


def test_uint16_array_is_rescaled():
    values = np.array([[0, 65535]], dtype=np.uint16)
    assert _pixels(load_image(values))[0, :, 0].tolist() == [0, 255]


def test_bool_array_is_black_and_white():
    assert _pixels(load_image(np.array([[False, True]])))[0, :, 0].tolist() == [0, 255]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([[np.nan, 0.5]]), "float array holds NaN or infinite values"),
        (np.array([[-1, 3]], dtype=np.int16), "integer array of dtype int16 holds negative"),
        (np.zeros((0, 4), dtype=np.uint8), r"array of shape \(0, 4\) is empty"),
        (np.zeros((4, 4, 2), dtype=np.uint8), r"array of shape \(4, 4, 2\) is not an image"),
        (np.zeros((2, 2), dtype=object), "array of dtype object is not an image"),
    ],
)
def test_bad_arrays_are_rejected_with_a_reason(array, message):
    with pytest.raises(ImageInputError, match=message):
        load_image(array)


@pytest.mark.parametrize("shape", [(3, 4, 5), (3, 4, 5, 1), (3, 4, 5, 3), (3, 4, 5, 4)])
def test_image_stacks_give_one_image_per_row(shape):
    stack = np.zeros(shape, dtype=np.uint8)
    stack[1] = 200
    if shape[-1] == 4:
        stack[..., 3] = 255  # opaque, so compositing cannot change the colours
    loaded = load_images(stack)
    assert len(loaded.images) == 3
    assert loaded.indices.tolist() == [0, 1, 2]
    assert all(image.size == (5, 4) and image.mode == "RGB" for image in loaded.images)
    assert _pixels(loaded.images[1])[0, 0, 0] == 200
    assert _pixels(loaded.images[0])[0, 0, 0] == 0


def test_one_dimensional_object_array_of_paths(png_path):
    loaded = load_images(np.array([str(png_path), str(png_path)], dtype=object))
    assert len(loaded.images) == 2


def test_generator_input(png_path):
    loaded = load_images(item for item in [png_path])
    assert loaded.indices.tolist() == [0]


# ----------------------------------------------------------------------------- errors


@pytest.fixture
def bad_files(tmp_path, png_path):
    corrupt = tmp_path / "bad.jpg"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 600, dtype=np.uint8).tobytes())
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8))
    full = tmp_path / "full.jpg"
    photo.save(full, quality=90)
    truncated = tmp_path / "truncated.jpg"
    data = full.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    return {
        "missing": tmp_path / "missing.png",
        "directory": tmp_path,
        "corrupt": corrupt,
        "truncated": truncated,
    }


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "file not found"),
        ("directory", "is a directory, not an image file"),
        ("corrupt", "not an image file PIL can read"),
        ("truncated", "corrupt or truncated image"),
    ],
)
def test_bad_file_error_names_index_path_and_reason(bad_files, png_path, kind, reason):
    bad = bad_files[kind]
    X = [png_path, png_path, bad, png_path]
    with pytest.raises(ImageInputError) as info:
        load_images(X)
    message = str(info.value)
    assert message.startswith(f"X[2] ({os.fspath(bad)!r}): {reason}")
    assert "on_error='skip'" in message


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (7, "X[1] (int): int is not an image; pass a path, a PIL image or an array"),
        ({}, "X[1] (dict): dict is not an image"),
        (np.zeros(5, dtype=np.uint8), r"X[1] (ndarray): array of shape (5,) is not an image"),
    ],
)
def test_wrong_item_type_error_names_index_and_type(png_path, item, expected):
    with pytest.raises(ImageInputError) as info:
        load_images([png_path, item])
    assert str(info.value).startswith(expected)


def test_image_input_error_is_a_value_error():
    assert issubclass(ImageInputError, ValueError)


def test_closed_or_truncated_pil_image_names_its_file(bad_files, png_path):
    opened = Image.open(bad_files["truncated"])
    with pytest.raises(ImageInputError) as info:
        load_images([opened])
    assert str(info.value).startswith(
        f"X[0] (PIL image from {os.fspath(bad_files['truncated'])!r}): corrupt PIL image"
    )
    closed = Image.open(png_path)
    closed.close()
    with pytest.raises(ImageInputError, match="corrupt PIL image"):
        load_images([closed])


def test_skip_drops_bad_items_and_keeps_indices_right(bad_files, png_path):
    X = [
        bad_files["missing"],
        png_path,
        bad_files["corrupt"],
        _gradient(),
        7,
        bad_files["truncated"],
        Image.fromarray(_gradient()),
    ]
    loaded = load_images(X, on_error="skip")
    assert loaded.indices.tolist() == [1, 3, 6]
    assert loaded.indices.dtype.kind == "i"
    assert len(loaded.images) == 3
    assert [error.split(":")[0] for error in loaded.errors] == [
        f"X[0] ({os.fspath(bad_files['missing'])!r})",
        f"X[2] ({os.fspath(bad_files['corrupt'])!r})",
        "X[4] (int)",
        f"X[5] ({os.fspath(bad_files['truncated'])!r})",
    ]
    assert loaded.errors[0].endswith("file not found")
    for image in loaded.images:
        np.testing.assert_array_equal(_pixels(image), _gradient())


def test_skip_with_every_item_bad_gives_empty_result(bad_files):
    loaded = load_images([bad_files["missing"]], on_error="skip")
    assert loaded.images == []
    assert loaded.indices.tolist() == []
    assert len(loaded.errors) == 1


def test_raise_mode_reports_no_errors_when_all_good(png_path):
    loaded = load_images([png_path])
    assert loaded.errors == []


@pytest.mark.parametrize("single", ["photo.jpg", "photo"])
def test_single_path_instead_of_list_is_refused(tmp_path, single):
    with pytest.raises(
        ImageInputError,
        match=r"X must be a collection of images, got a single str; wrap it in a list: \[X\]\.",
    ):
        load_images(single)
    with pytest.raises(ImageInputError, match="got a single PosixPath"):
        load_images(tmp_path / single)


def test_single_pil_image_instead_of_list_is_refused():
    with pytest.raises(ImageInputError, match="got a single Image"):
        as_image_list(Image.new("RGB", (2, 2)))


def test_feature_matrix_is_not_an_image_collection():
    with pytest.raises(ImageInputError, match=r"X is an array of shape \(3, 4\)"):
        as_image_list(np.zeros((3, 4)))


def test_non_iterable_x_is_refused():
    with pytest.raises(ImageInputError, match="X must be a sequence of images .* got int"):
        as_image_list(5)


def test_describe_item():
    assert describe_item(3, "/a/b.jpg") == "X[3] ('/a/b.jpg')"
    assert describe_item(0, np.zeros(2)) == "X[0] (ndarray)"
    assert describe_item(1, Image.new("RGB", (1, 1))) == "X[1] (Image)"


# ----------------------------------------------------------------------------- digests


def test_digest_is_equal_for_the_same_pixels_in_any_form(png_path):
    as_path = image_digest(load_image(png_path))
    as_pil = image_digest(load_image(Image.open(png_path)))
    as_array = image_digest(load_image(_gradient()))
    as_float = image_digest(load_image(_gradient() / 255.0))
    assert as_path == as_pil == as_array == as_float


def test_digest_differs_for_different_pixels_and_shapes():
    base = _gradient()
    changed = base.copy()
    changed[0, 0, 0] += 1
    digests = {
        image_digest(load_image(base)),
        image_digest(load_image(changed)),
        # same bytes, other shape
        image_digest(load_image(base.reshape(8, 6, 3))),
    }
    assert len(digests) == 3


# ----------------------------------------------------------------------------- features


@pytest.mark.parametrize(
    ("X", "expected"),
    [
        (np.zeros((3, 4)), True),
        (np.zeros((3, 4), dtype=np.float32), True),
        (np.zeros((3, 4), dtype=np.int64), True),
        (np.zeros((3, 4), dtype=bool), True),
        (np.zeros((3, 4, 5)), False),
        (np.zeros(4), False),
        (np.array([["a.jpg", "b.jpg"]]), False),
        (np.zeros((2, 2), dtype=object), False),
        ([[1.0, 2.0]], False),  # only ndarrays count
    ],
)
def test_is_feature_matrix(X, expected):
    assert is_feature_matrix(X) is expected
