import gzip
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from skvf_bench.datasets import (
    DIGIT_NAMES,
    FASHION_MNIST_HOME,
    FASHION_MNIST_NAMES,
    few_shot_split,
    load_digits_images,
    load_fashion_mnist,
)

HAS_FASHION_MNIST = Path(FASHION_MNIST_HOME, "train-images-idx3-ubyte.gz").is_file()
needs_fashion_mnist = pytest.mark.skipif(
    not HAS_FASHION_MNIST,
    reason=f"Fashion-MNIST not in {FASHION_MNIST_HOME}: apt-get install dataset-fashion-mnist",
)


def test_load_digits_images():
    images, names = load_digits_images(scale=4)
    digits = load_digits()
    assert images.shape == (1797, 32, 32, 3) and images.dtype == np.uint8
    assert names.tolist() == [DIGIT_NAMES[t] for t in digits.target]
    assert np.array_equal(images[..., 0], images[..., 2])  # grey
    # Block means of the upscaled image follow the original 8x8 grey levels.
    blocks = images[0, :, :, 0].reshape(8, 4, 8, 4).mean(axis=(1, 3))
    assert np.corrcoef(blocks.ravel(), digits.images[0].ravel())[0, 1] > 0.9
    assert images.max() > 200

    small, small_names = load_digits_images(scale=1, n_class=3)
    assert small.shape[1:] == (8, 8, 3)
    assert set(small_names) == {"zero", "one", "two"}
    with pytest.raises(ValueError, match="scale must be a positive int"):
        load_digits_images(scale=0)
    with pytest.raises(ValueError, match="n_class must be an int between 1 and 10"):
        load_digits_images(n_class=11)


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    magic = (0x08 << 8 | array.ndim).to_bytes(4, "big")
    header = magic + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def _fake_fashion_home(tmp_path: Path, compress: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.tile(np.arange(10), 3)
    images = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte", images, compress)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", labels, compress)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images[:10], compress)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels[:10], compress)
    return images, labels


@pytest.mark.parametrize("compress", [True, False])
def test_load_fashion_mnist_reads_idx_files(tmp_path, compress):
    images, labels = _fake_fashion_home(tmp_path, compress)
    loaded, names = load_fashion_mnist(data_home=tmp_path)
    assert np.array_equal(loaded, images)
    assert names.tolist() == [FASHION_MNIST_NAMES[label] for label in labels]
    everything, _ = load_fashion_mnist("all", data_home=tmp_path)
    assert len(everything) == 40
    capped, capped_names = load_fashion_mnist(max_per_class=2, data_home=tmp_path)
    assert np.array_equal(capped, images[:20])  # the first two of each class, in file order
    assert sorted(capped_names) == sorted(FASHION_MNIST_NAMES * 2)


def test_load_fashion_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(data_home=tmp_path)
    _fake_fashion_home(tmp_path, compress=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 20)
    with pytest.raises(ValueError, match="not an IDX file of the expected kind"):
        load_fashion_mnist(data_home=tmp_path)
    with pytest.raises(ValueError, match="subset must be"):
        load_fashion_mnist("validation", data_home=tmp_path)
    with pytest.raises(ValueError, match="max_per_class must be a positive int"):
        load_fashion_mnist(max_per_class=0, data_home=tmp_path)


@needs_fashion_mnist
def test_load_fashion_mnist_from_the_debian_package():
    test_images, test_names = load_fashion_mnist("test")
    assert test_images.shape == (10000, 28, 28) and test_images.dtype == np.uint8
    assert set(test_names) == set(FASHION_MNIST_NAMES)
    assert np.all(np.unique(test_names, return_counts=True)[1] == 1000)
    capped, capped_names = load_fashion_mnist("train", max_per_class=5)
    assert capped.shape == (50, 28, 28)
    # Trousers are tall and narrow: more ink in the middle column than at the sides.
    trousers = capped[capped_names == "trouser"].astype(float)
    assert trousers[:, :, 12:16].mean() > trousers[:, :, :4].mean()


def test_few_shot_split():
    names = np.array(["a"] * 10 + ["b"] * 6 + ["c"] * 3, dtype=object)
    fit_idx, test_idx = few_shot_split(names, m=3, random_state=0)
    assert np.all(np.unique(names[fit_idx], return_counts=True)[1] == 3)
    assert np.intersect1d(fit_idx, test_idx).size == 0
    assert np.array_equal(np.union1d(fit_idx, test_idx), np.arange(len(names)))
    assert np.all(np.diff(fit_idx) > 0) and np.all(np.diff(test_idx) > 0)
    assert "c" not in set(names[test_idx])  # exactly m images: none held out

    again, _ = few_shot_split(names, m=3, random_state=0)
    other, _ = few_shot_split(names, m=3, random_state=1)
    assert np.array_equal(again, fit_idx) and not np.array_equal(other, fit_idx)

    _, capped = few_shot_split(names, m=2, random_state=0, max_test_per_class=2)
    assert np.unique(names[capped], return_counts=True)[1].tolist() == [2, 2, 1]


def test_few_shot_split_errors():
    with pytest.raises(ValueError, match="class 'c' has 1 images, fewer than m=2"):
        few_shot_split(["a", "a", "c"], m=2)
    with pytest.raises(ValueError, match="m must be a positive int"):
        few_shot_split(["a"], m=0)
    with pytest.raises(ValueError, match="max_test_per_class must be"):
        few_shot_split(["a"], m=1, max_test_per_class=-1)
