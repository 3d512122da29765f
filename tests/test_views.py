"""Augmented views of the training images in the prototypes (``prototype_views``)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.preprocessing import StandardScaler

import skvf._views
from skvf import NeaRClassifier
from skvf._features import to_embedding_space
from skvf._openset import leave_one_out_prototype_similarity
from skvf._prototypes import image_prototypes, refine_prototypes
from skvf._views import augmented_view, view_averaged_features, view_key, view_seed
from skvf_bench.datasets import load_digits_images
from skvf_bench.demo import TINY_BACKBONE_PARAMS, offline_demo_classifier

N_VIEWS = 3


@pytest.fixture(scope="module")
def digits():
    images, names = load_digits_images(scale=4)  # 32x32, the tiny tower's input
    index = np.concatenate([np.flatnonzero(names == name)[:4] for name in np.unique(names)])
    return images[index], names[index]


def make(digits, **params):
    images, names = digits
    params = {"max_epochs": 5, "warmup_epochs": 1, "image_encoder": None, **params}
    return offline_demo_classifier(images, names, noise_rate=0.3, random_state=0, **params)


@pytest.fixture(scope="module")
def without_views(digits):
    return make(digits).fit(digits[0])


@pytest.fixture(scope="module")
def with_views(digits):
    return make(digits, prototype_views=N_VIEWS).fit(digits[0])


def _embedded(clf, images):
    from skvf._backbone import build_backbone
    from skvf._features import encode_images

    backbone = build_backbone(clf.backbone, clf.pretrained, clf.backbone_kwargs, device="cpu")
    pil = [Image.fromarray(image) for image in images]
    features = encode_images(backbone, pil, batch_size=clf.batch_size)
    return to_embedding_space(features, clf.feature_mean_, clf.projection_)


def test_no_views_is_the_prototypes_of_the_images_alone_bit_for_bit(digits, without_views):
    clf = without_views
    assert clf.prototype_views == 0 and clf.n_views_encoded_ == 0
    embedded = _embedded(clf, digits[0])
    start = clf.refined_targets_[:, np.isin(clf.vocabulary_, clf.classes_)]
    expected, _ = refine_prototypes(  # as fit built them before views existed
        embedded,
        clf.class_text_features_,
        image_prototypes(embedded, start),
        clf.prototype_weight_,
        clf.logit_scale_,
        clf.score_offsets_,
        clf.prototype_iterations,
        start,
    )
    assert np.array_equal(clf.class_image_prototypes_, expected)


def test_views_change_the_prototypes_and_nothing_drawn_before_them(without_views, with_views):
    assert with_views.n_views_encoded_ == N_VIEWS * len(with_views.train_indices_)
    # the views' seed is drawn from a copy of the random state: every other seed is kept
    assert np.array_equal(with_views.context_, without_views.context_)
    assert np.array_equal(with_views.class_text_features_, without_views.class_text_features_)
    assert np.array_equal(with_views.classes_, without_views.classes_)
    difference = np.abs(with_views.class_image_prototypes_ - without_views.class_image_prototypes_)
    assert difference.max() > 1e-3


def test_views_are_reproducible_with_a_fixed_random_state(digits, with_views):
    again = make(digits, prototype_views=N_VIEWS).fit(digits[0])
    assert np.array_equal(again.class_image_prototypes_, with_views.class_image_prototypes_)
    assert again.unknown_threshold_ == with_views.unknown_threshold_


def test_predict_reads_no_views(digits, with_views):
    embedded = _embedded(with_views, digits[0][:8])
    text = embedded @ with_views.class_text_features_.T
    prototype = embedded @ with_views.class_image_prototypes_.T
    weight = with_views.prototype_weight_
    scores = with_views.logit_scale_ * ((1 - weight) * text + weight * prototype)
    np.testing.assert_allclose(
        with_views.decision_function(digits[0][:8]),
        scores + with_views.score_offsets_,
        atol=1e-5,
    )


def test_views_are_cached_and_keyed_apart_from_the_images(digits, tmp_path, monkeypatch):
    calls = []
    encode = skvf._views.encode_images

    def counting(backbone, images, *args, **kwargs):
        calls.append(len(images))
        return encode(backbone, images, *args, **kwargs)

    monkeypatch.setattr(skvf._views, "encode_images", counting)
    images = digits[0]
    first = make(digits, prototype_views=N_VIEWS, memory=tmp_path).fit(images)
    assert sum(calls) == first.n_views_encoded_ == N_VIEWS * len(images)
    (store,) = [path for path in tmp_path.iterdir() if path.name.startswith("features-")]
    # the images' vectors and their views' side by side, none overwriting another
    assert len(list(store.glob("*/*.npy"))) == (1 + N_VIEWS) * len(images)

    again = make(digits, prototype_views=N_VIEWS, memory=tmp_path).fit(images)
    fold = make(digits, prototype_views=N_VIEWS, memory=tmp_path).fit(images[::2])
    assert sum(calls) == N_VIEWS * len(images)  # no view encoded again, in any subset
    assert (again.n_images_encoded_, again.n_views_encoded_) == (0, 0)
    assert (fold.n_images_encoded_, fold.n_views_encoded_) == (0, 0)
    np.testing.assert_allclose(again.class_image_prototypes_, first.class_image_prototypes_)
    more = make(digits, prototype_views=N_VIEWS + 1, memory=tmp_path).fit(images)
    assert more.n_views_encoded_ == len(images)  # only each image's new view


def test_views_need_images():
    rows = np.random.default_rng(0).normal(size=(20, 4))
    clf = NeaRClassifier(image_encoder=StandardScaler(), prototype_views=2, **TINY_BACKBONE_PARAMS)
    with pytest.raises(ValueError, match=r"prototype_views=2 needs images: X is a 2-D numeric"):
        clf.fit(rows)


def test_views_need_the_backbones_image_tower(digits):
    clf = make(digits, prototype_views=2, image_encoder=StandardScaler())
    with pytest.raises(ValueError, match="Set prototype_views=0, or image_encoder=None"):
        clf.fit(digits[0])


def test_leave_one_out_with_view_averaged_features_matches_brute_force():
    rng = np.random.default_rng(0)

    def unit(rows):
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    features, built = unit(rng.normal(size=(9, 5))), unit(rng.normal(size=(9, 5)))
    weights = rng.random((9, 3)) * (rng.random((9, 3)) > 0.3)
    closed = leave_one_out_prototype_similarity(features, weights, built)
    for i in range(9):
        others = np.arange(9) != i
        prototypes = image_prototypes(built[others], weights[others])
        np.testing.assert_allclose(closed[i], prototypes @ features[i], atol=1e-5)
    np.testing.assert_array_equal(  # the features themselves: the path without views
        leave_one_out_prototype_similarity(features, weights, features).round(12),
        leave_one_out_prototype_similarity(features, weights).round(12),
    )


def test_a_view_is_a_function_of_the_image_its_index_and_the_seed():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8))
    digest = "ab" * 20
    first = augmented_view(image, skvf._views._view_rng(digest, 0, 7))
    again = augmented_view(image, skvf._views._view_rng(digest, 0, 7))
    assert np.array_equal(np.asarray(first), np.asarray(again))
    views = [
        np.asarray(augmented_view(image, skvf._views._view_rng(digest, j, 7))) for j in range(8)
    ]
    assert len({view.tobytes() for view in views}) == 8
    reseeded = [
        np.asarray(augmented_view(image, skvf._views._view_rng(digest, j, 8))) for j in range(8)
    ]
    assert any(not np.array_equal(a, b) for a, b in zip(views, reseeded, strict=True))
    assert all(26 <= side <= 32 for view in views for side in view.shape[:2])
    assert view_key(digest, 0, 7) != view_key(digest, 0, 8) != view_key(digest, 1, 7)
    state = np.random.RandomState(3)
    assert view_seed(state) == view_seed(state)  # a copy: the state does not move
    assert view_averaged_features(np.ones((1, 2)), np.zeros((1, 0, 2))).tolist() == [
        [pytest.approx(0.7071, abs=1e-4)] * 2
    ]
