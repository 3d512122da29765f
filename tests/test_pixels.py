import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from skvf.exceptions import ImageInputError
from skvf_bench.datasets import load_digits_images
from skvf_bench.encoders import HOGFeatures, ImagePixels, RandomConvFeatures


@pytest.fixture(scope="module")
def digits():
    return load_digits_images(scale=4)


def test_image_pixels_shape_range_and_channels():
    images = np.random.default_rng(0).integers(0, 256, (5, 20, 30, 3), dtype=np.uint8)
    grey = ImagePixels(size=8).fit(images)
    features = grey.transform(images)
    assert features.shape == (5, 64) and features.dtype == np.float32
    assert 0.0 <= features.min() and features.max() <= 1.0
    assert ImagePixels(size=8, grayscale=False).fit_transform(images).shape == (5, 192)
    assert len(grey.get_feature_names_out()) == 64

    white_and_black = [np.full((9, 9), 255, np.uint8), np.zeros((40, 12, 3), np.uint8)]
    constant = ImagePixels(size=4).fit_transform(white_and_black)
    assert np.all(constant[0] == 1.0) and np.all(constant[1] == 0.0)


def test_image_pixels_same_picture_in_every_form(tmp_path):
    array = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    path = tmp_path / "picture.png"
    Image.fromarray(array).save(path)
    encoder = ImagePixels(size=8, grayscale=False).fit(None)
    from_array = encoder.transform([array])
    assert np.array_equal(encoder.transform([str(path)]), from_array)
    assert np.array_equal(encoder.transform([Image.open(path)]), from_array)


def test_image_pixels_errors():
    with pytest.raises(NotFittedError):
        ImagePixels().transform([np.zeros((4, 4), np.uint8)])
    with pytest.raises(ValueError, match="'size' parameter of ImagePixels"):
        ImagePixels(size=0).fit(None)
    with pytest.raises(ImageInputError, match=r"X\[1\] \('/missing.png'\): file not found"):
        ImagePixels().fit(None).transform([np.zeros((4, 4), np.uint8), "/missing.png"])


def test_random_conv_features_are_fixed_by_the_seed(digits):
    images, _ = digits
    sample = images[:300]
    encoder = RandomConvFeatures(n_filters=8, random_state=0)
    features = encoder.fit_transform(sample)
    assert features.shape == (300, 8 * 4 * 4) and features.dtype == np.float32
    assert np.array_equal(clone(encoder).fit(None).transform(sample), features)
    assert np.allclose(
        clone(encoder).set_params(batch_size=7).fit(None).transform(sample), features, atol=1e-6
    )
    assert np.array_equal(encoder.transform(sample[::-1]), features[::-1])
    other = clone(encoder).set_params(random_state=1).fit(None).transform(sample)
    assert not np.allclose(other, features)
    assert encoder.get_feature_names_out()[0] == "randomconvfeatures0"


def test_random_conv_features_ignore_brightness():
    # Zero-mean filters: a uniform image of any grey level has no response.
    flat = [np.full((32, 32), level, np.uint8) for level in (0, 90, 255)]
    assert np.allclose(RandomConvFeatures().fit(None).transform(flat), 0.0, atol=1e-5)


def test_random_conv_features_errors():
    with pytest.raises(ValueError, match="kernel_size=9 is larger than the image size=8"):
        RandomConvFeatures(kernel_size=9, size=8).fit(None)
    with pytest.raises(ValueError, match="grid=8 is finer than the 4 response positions"):
        RandomConvFeatures(kernel_size=5, size=8, grid=8).fit(None)
    with pytest.raises(ValueError, match="'n_filters' parameter of RandomConvFeatures"):
        RandomConvFeatures(n_filters=0).fit(None)
    with pytest.raises(NotFittedError):
        RandomConvFeatures().transform([np.zeros((4, 4), np.uint8)])


def test_hog_sees_edge_direction():
    # A vertical edge has a horizontal gradient (orientation 0: bin 0); a horizontal
    # edge a vertical one (90 degrees: the middle bin of 9).
    vertical = np.zeros((32, 32), np.uint8)
    vertical[:, 16:] = 255
    horizontal = vertical.T.copy()
    hog = HOGFeatures(n_bins=9).fit(None)
    by_bin = hog.transform([vertical, horizontal]).reshape(2, -1, 9).sum(axis=1)
    assert by_bin[0].argmax() == 0 and by_bin[0, 1:].sum() < 1e-3 * by_bin[0, 0]
    assert by_bin[1].argmax() == 4 and np.delete(by_bin[1], 4).sum() < 1e-3 * by_bin[1, 4]


def test_hog_ignores_contrast_and_flat_images(digits):
    images, _ = digits
    hog = HOGFeatures().fit(None)
    image = images[0] & 0xFE  # even grey levels, so that halving them is exact
    dimmer = image // 2  # the same shapes at half the contrast
    features = hog.transform([image, dimmer])
    assert np.abs(features[0] - features[1]).max() < 1e-4
    assert np.abs(features[0] - hog.transform(images[1:2])[0]).max() > 0.1
    assert np.allclose(hog.transform([np.full((32, 32), 90, np.uint8)]), 0.0)
    assert features.shape == (2, hog.n_features_out_) == (2, 7 * 7 * 4 * 9)


def test_hog_errors():
    with pytest.raises(ValueError, match="size=8 holds 1 cells of cell_size=8 per side"):
        HOGFeatures(size=8, cell_size=8).fit(None)
    with pytest.raises(ValueError, match="'n_bins' parameter of HOGFeatures"):
        HOGFeatures(n_bins=0).fit(None)
    with pytest.raises(NotFittedError):
        HOGFeatures().transform([np.zeros((4, 4), np.uint8)])


@pytest.mark.parametrize(
    "encoder",
    [make_pipeline(ImagePixels(8), PCA(32, random_state=0)), RandomConvFeatures(), HOGFeatures()],
    ids=["pixels-pca", "random-conv", "hog"],
)
def test_encoders_are_informative(digits, encoder):
    # Nearest neighbours share a class far above chance (0.1) on digits; the DESIGN
    # prototype's candidate sets rely on this.
    images, names = digits
    features = encoder.fit_transform(images)
    accuracy = cross_val_score(KNeighborsClassifier(5, metric="cosine"), features, names, cv=3)
    assert accuracy.mean() > 0.85
