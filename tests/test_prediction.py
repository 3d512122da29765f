"""predict's loading pipeline: batched preprocessing and chunks loaded ahead in threads."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from skvf import _prediction
from skvf._features import preprocess_images
from skvf._images import iter_image_chunks, load_image
from skvf.exceptions import ImageInputError
from skvf_bench.datasets import load_digits_images


@pytest.fixture(autouse=True)
def _quiet_open_clip(caplog):
    caplog.set_level(logging.ERROR)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """40 digit images as PNG and JPEG files, of two sizes."""
    folder = tmp_path_factory.mktemp("images")
    images, _ = load_digits_images(scale=5)
    paths = []
    for index in range(40):
        path = folder / f"{index:02d}.{'png' if index % 2 else 'jpg'}"
        pixels = images[index] if index % 3 else np.kron(images[index], np.ones((2, 2, 1)))
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def classifier(digit_zero_shot):
    return copy.deepcopy(digit_zero_shot).set_params(batch_size=8)


def test_batched_preprocessing_equals_open_clip_image_by_image(backbone, files):
    images = [load_image(path) for path in files[:12]]
    expected = torch.stack([backbone.preprocess(image) for image in images])
    assert torch.equal(preprocess_images(backbone, images), expected)


def test_unknown_preprocessing_runs_image_by_image(backbone, files):
    class Custom:
        preprocess = staticmethod(lambda image: torch.full((3, 2, 2), float(image.size[0])))

    images = [load_image(path) for path in files[:3]]
    batch = preprocess_images(Custom(), images)
    assert batch.shape == (3, 3, 2, 2) and batch[:, 0, 0, 0].tolist() == [80.0, 40.0, 40.0]


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_chunks_loaded_ahead_keep_order_and_skipped_items(files, tmp_path, prefetch):
    items = list(files[:7]) + [str(tmp_path / "gone.png")] + list(files[7:10])
    chunks = list(iter_image_chunks(items, "skip", 3, prepare=len, prefetch=prefetch))
    assert [positions.tolist() for positions, _, _ in chunks] == [
        [0, 1, 2],
        [3, 4, 5],
        [6, 8],
        [9, 10],
    ]
    assert [prepared for _, prepared, _ in chunks] == [3, 3, 2, 2]
    assert [errors for _, _, errors in chunks][2][0].startswith("X[7] (")


def test_chunks_loaded_ahead_raise_the_first_bad_item(files, tmp_path):
    items = list(files[:5]) + [str(tmp_path / "first.png")] + [str(tmp_path / "second.png")]
    with pytest.raises(ImageInputError, match=r"X\[5\] \('.*first.png'\): file not found"):
        list(iter_image_chunks(items, "raise", 2, prefetch=3))


def test_predict_in_threads_equals_predict_in_one_thread(classifier, files, monkeypatch):
    threaded = classifier.decision_function(files)
    monkeypatch.setattr(_prediction, "LOADING_THREADS", 0)
    serial = classifier.decision_function(files)
    np.testing.assert_allclose(threaded, serial, rtol=1e-5, atol=1e-5)
    backbone = classifier._runtime_backbone()
    device = backbone.device
    cuda = device.startswith("cuda")
    with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=cuda):
        batch = torch.stack([backbone.preprocess(Image.open(path)) for path in files])
        features = backbone.model.encode_image(batch.to(device)).float().cpu().numpy()
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    expected = classifier.logit_scale_ * features @ classifier.class_text_features_.T
    # On CUDA the tower runs in bfloat16, whose results depend on the batch's shape.
    tolerance = 5e-2 if cuda else 1e-4
    np.testing.assert_allclose(threaded, expected, rtol=tolerance, atol=tolerance)
