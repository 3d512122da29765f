"""Baselines: labeler-direct, zero-shot CLIP, and the NeaR method configurations."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.preprocessing import FunctionTransformer

from skvf import NeaRClassifier
from skvf.noise import FixedNoiseSplitter
from skvf_bench.baselines import LabelerDirect, ZeroShotCLIP, method_configs
from skvf_bench.demo import TINY_BACKBONE, TINY_BACKBONE_KWARGS
from skvf_bench.demo import TINY_BACKBONE_PARAMS as TINY
from skvf_bench.simulation import NoisyOracleLabeler, make_oracle


class CountingLabeler(NoisyOracleLabeler):
    """A simulated labeler that counts the items it is asked to name."""

    def transform(self, X):
        type(self).calls += len(X)
        return super().transform(X)


@pytest.fixture
def blobs():
    """Three well-separated classes of 2-D feature rows, 12 each, with true names."""
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0]])
    labels = np.repeat(np.arange(3), 12)
    X = centres[labels] + rng.normal(scale=0.3, size=(36, 2))
    names = np.array(["red", "green", "blue"], dtype=object)[labels]
    return X, names


def noisy_labeler(X, names, noise_rate=0.3, cls=NoisyOracleLabeler):
    return cls(make_oracle(X, names), noise_rate=noise_rate, random_state=0)


def test_labeler_direct_predicts_the_labelers_names_and_counts_calls(blobs):
    X, names = blobs
    CountingLabeler.calls = 0
    labeler = noisy_labeler(X, names, cls=CountingLabeler)
    model = LabelerDirect(labeler).fit(X)
    assert CountingLabeler.calls == 0  # fitting names nothing
    assert model.n_labeler_calls_ == 0

    predicted = model.predict(X[:10])
    expected = noisy_labeler(X, names).fit(X).transform(X[:10])
    assert predicted.tolist() == expected.tolist()
    assert model.n_labeler_calls_ == 10
    model.predict(X)
    assert model.n_labeler_calls_ == 46
    assert CountingLabeler.calls == 46
    assert model.score(X, names) == pytest.approx(np.mean(model.predict(X) == names), abs=0.1)


def test_labeler_direct_normalises_names_and_keeps_missing_ones_missing():
    class Answers:
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return np.array(["The Cat.", "dog", "x"], dtype=object)[: len(X)]

        def label(self, X):
            return self.transform(X), np.array([True, True, False])[: len(X)]

        def get_params(self, deep=True):
            return {}

    predicted = LabelerDirect(Answers()).fit(np.zeros((3, 2))).predict(np.zeros((3, 2)))
    assert predicted.tolist() == ["cat", "dog", None]


def test_labeler_direct_requires_fit(blobs):
    X, names = blobs
    with pytest.raises(Exception, match="not fitted"):
        LabelerDirect(noisy_labeler(X, names)).predict(X)


def test_zero_shot_vocabulary_is_the_labelers_names(blobs):
    X, names = blobs
    labeler = noisy_labeler(X, names, noise_rate=0.5)
    model = ZeroShotCLIP(labeler, image_encoder=FunctionTransformer(), random_state=0, **TINY)
    model.fit(X)
    given = clone(labeler).fit(X).transform(X)
    assert model.classes_.tolist() == sorted(set(given))
    assert model.n_labeler_calls_ == len(X)
    predicted = model.predict(X)
    assert set(predicted) <= set(model.classes_)
    assert model.decision_function(X).shape == (len(X), len(model.classes_))


def test_zero_shot_text_features_are_clips_template_features(blobs):
    import torch
    import torch.nn.functional as F

    from skvf._backbone import build_backbone

    X, names = blobs
    model = ZeroShotCLIP(
        noisy_labeler(X, names, noise_rate=0.0), image_encoder=FunctionTransformer(), **TINY
    ).fit(X)
    backbone = build_backbone(TINY_BACKBONE, None, TINY_BACKBONE_KWARGS)
    tokens = backbone.tokenizer([f"a photo of a {name}." for name in model.classes_])
    with torch.no_grad():
        expected = F.normalize(backbone.model.encode_text(tokens).float(), dim=-1).numpy()
    np.testing.assert_allclose(model.class_text_features_, expected, atol=1e-5)


def test_zero_shot_rejects_a_template_without_one_slot(blobs):
    X, names = blobs
    model = ZeroShotCLIP(
        noisy_labeler(X, names), image_encoder=FunctionTransformer(), template="a photo", **TINY
    )
    with pytest.raises(ValueError, match="exactly one '{}'"):
        model.fit(X)


def test_zero_shot_on_images_uses_the_image_tower():
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    labeler = NoisyOracleLabeler(make_oracle(images, ["a", "b"] * 3), noise_rate=0.0)
    model = ZeroShotCLIP(labeler, **TINY).fit(images)
    assert model.projection_ is None
    assert model.predict(images).shape == (6,)


def test_training_free_prototypes_over_views_are_reproducible_and_differ():
    images = np.random.default_rng(0).integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    labeler = NoisyOracleLabeler(make_oracle(images, ["a", "b"] * 3), noise_rate=0.0)

    def prototypes(**params):
        model = ZeroShotCLIP(labeler, prototype_weight=0.3, random_state=0, **TINY, **params)
        return model.fit(images).class_image_prototypes_

    plain, viewed = prototypes(), prototypes(prototype_views=2)
    assert not np.allclose(plain, viewed, atol=1e-4)
    np.testing.assert_array_equal(viewed, prototypes(prototype_views=2))
    np.testing.assert_allclose(np.linalg.norm(viewed, axis=1), 1.0, rtol=1e-5)


def test_training_free_views_need_the_image_tower(blobs):
    X, names = blobs
    model = ZeroShotCLIP(
        noisy_labeler(X, names),
        image_encoder=FunctionTransformer(),
        prototype_weight=0.3,
        prototype_views=2,
        **TINY,
    )
    with pytest.raises(ValueError, match="prototype_views=2 encodes views"):
        model.fit(X)


def test_method_configs_change_only_their_stage():
    configs = method_configs()
    assert list(configs) == [
        "CoOp on raw names",
        "NeaR",
        "NeaR w/o candidates",
        "NeaR w/o GMM (all clean)",
        "NeaR w/o GMM (all noisy)",
        "NeaR w/o label filter",
        "NeaR w/o name merging",
        "NeaR w/o prior correction",
        "NeaR w/o image prototypes",
        "NeaR w/o prototype refinement",
    ]
    assert configs["NeaR"] == {}
    assert configs["CoOp on raw names"] == {
        "noise_splitter": "passthrough",
        "label_filter": "passthrough",
        "prior_correction": 0.0,
        "ctx_init": None,  # CoOp's random context, not NeaR's "auto"
        "prototype_weight": 0.0,  # text prompts only
    }
    assert configs["NeaR w/o image prototypes"] == {"prototype_weight": 0.0}
    assert configs["NeaR w/o prototype refinement"] == {"prototype_iterations": 0}
    assert configs["NeaR w/o prior correction"] == {"prior_correction": 0.0}
    assert configs["NeaR w/o candidates"] == {"candidate_builder": "passthrough"}
    assert configs["NeaR w/o label filter"] == {"label_filter": "passthrough"}
    assert configs["NeaR w/o name merging"] == {"merge_name_variants": False}
    for name, probability in [("all clean", 1.0), ("all noisy", 0.0)]:
        (splitter,) = configs[f"NeaR w/o GMM ({name})"].values()
        assert isinstance(splitter, FixedNoiseSplitter)
        assert splitter.clean_probability == probability
    assert method_configs()["NeaR w/o GMM (all noisy)"]["noise_splitter"] is not splitter
    for params in configs.values():
        NeaRClassifier(**params).get_params()  # valid parameter names


def test_method_configs_fit_and_differ_where_they_should(blobs):
    X, names = blobs
    labeler = noisy_labeler(X, names, noise_rate=0.3)
    shared = dict(
        labeler=labeler,
        image_encoder=FunctionTransformer(),
        max_epochs=12,
        warmup_epochs=4,
        random_state=0,
        **TINY,
    )
    fitted = {
        name: NeaRClassifier(**shared, **params).fit(X) for name, params in method_configs().items()
    }
    coop, near = fitted["CoOp on raw names"], fitted["NeaR"]
    assert coop.noise_splitter_ is None and coop.label_filter_ is None
    assert all(entry["phase"] == "warmup" for entry in coop.history_)
    assert near.history_[-1]["phase"] == "refine"
    assert fitted["NeaR w/o candidates"].candidate_sets_.sum(axis=1).tolist() == [1] * len(X)
    assert near.candidate_sets_.sum() > len(X)
    np.testing.assert_array_equal(fitted["NeaR w/o GMM (all clean)"].clean_probability_, 1.0)
    np.testing.assert_array_equal(fitted["NeaR w/o GMM (all noisy)"].clean_probability_, 0.0)
    assert fitted["NeaR w/o label filter"].classes_.tolist() == near.vocabulary_.tolist()
    np.testing.assert_array_equal(coop.score_offsets_, 0.0)
    np.testing.assert_array_equal(fitted["NeaR w/o prior correction"].score_offsets_, 0.0)
    assert np.ptp(near.score_offsets_) > 0
    for model in fitted.values():
        assert set(model.predict(X)) <= set(model.classes_)
