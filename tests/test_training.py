"""Tests of skvf._training: prompt tuning on frozen features with refined targets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from skvf._backbone import weights_digest
from skvf._prompt import PromptLearner
from skvf._refinement import one_hot
from skvf._training import MAX_LOGIT_SCALE, TrainingConfig, tune_prompts
from skvf.candidates import candidate_votes
from skvf.noise import FixedNoiseSplitter, GMMNoiseSplitter

NAMES = ["cat", "dog", "bird"]
N_PER_CLASS = 20


def _learner(backbone, **options):
    return PromptLearner(
        backbone.model, backbone.tokenizer, NAMES, n_ctx=4, ctx_init="a photo of a", **options
    )


@pytest.fixture(scope="module")
def data():
    """60 unit features around 3 random centres, labels by centre, neighbour votes."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 64))
    labels = np.repeat(np.arange(3), N_PER_CLASS)
    features = centres[labels] / np.linalg.norm(centres[labels], axis=1, keepdims=True)
    features = features + 0.1 * rng.normal(size=features.shape)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    neighbors = np.array([[(i + 1) % 60, (i + 2) % 60] for i in range(60)])
    votes = candidate_votes(labels, neighbors, 3)
    return features, labels, votes


@pytest.fixture(scope="module")
def text_aligned(backbone):
    """Features equal to the untrained class prompts' features, plus a little noise."""
    with torch.no_grad():
        text = torch.nn.functional.normalize(_learner(backbone)(), dim=-1).numpy()
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), N_PER_CLASS)
    features = text[labels] + 0.02 * rng.normal(size=(60, 64))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    return features, labels, candidate_votes(labels, None, 3)


def _config(**overrides):
    settings = {
        "max_epochs": 20,
        "warmup_epochs": 8,
        "learning_rate": 2e-2,
        "optimizer": "adam",
        "logit_scale": 1 / 0.07,
        "learn_logit_scale": True,
        "clean_threshold": 0.5,
        "refinement": "posterior",
        "clean_vote_weight": 2.0,
        "candidate_weighting": "votes",
        "sharpen_temperature": 1.0,
        "verbose": 0,
    }
    settings.update(overrides)
    return TrainingConfig(**settings)


def _tune(backbone, data, noise_splitter=None, **config):
    """Tune a fresh learner on ``data`` (features, labels, votes) with ``_config(**config)``."""
    features, labels, votes = data
    return tune_prompts(
        _learner(backbone), features, labels, votes, noise_splitter, _config(**config)
    )


def _all_clean_run(backbone, data, refinement):
    """Four epochs, one of warm-up, with every name held clean."""
    return _tune(
        backbone,
        data,
        FixedNoiseSplitter(1.0),
        max_epochs=4,
        warmup_epochs=1,
        refinement=refinement,
    )


@pytest.fixture(scope="module")
def gmm_run(backbone, data):
    return _tune(backbone, data, GMMNoiseSplitter(random_state=0))


def test_loss_decreases_and_the_names_are_learned(gmm_run, data):
    _, labels, _ = data
    losses = [entry["loss"] for entry in gmm_run.history]
    assert losses[-1] < 0.5 * losses[0]
    warmup = losses[:8]
    assert all(later < earlier for earlier, later in zip(warmup, warmup[1:], strict=False))
    assert np.mean(gmm_run.probabilities.argmax(axis=1) == labels) == 1.0


def test_history_has_one_entry_per_epoch_warmup_then_refine(gmm_run):
    history = gmm_run.history
    assert [entry["epoch"] for entry in history] == list(range(20))
    assert [entry["phase"] for entry in history] == ["warmup"] * 8 + ["refine"] * 12
    assert set(history[0]) == {"epoch", "phase", "loss", "clean_fraction", "logit_scale"}
    assert all(entry["clean_fraction"] == 1.0 for entry in history[:8])
    assert all(0.0 <= entry["clean_fraction"] <= 1.0 for entry in history)
    last = history[-1]["clean_fraction"]
    assert last == pytest.approx(np.mean(gmm_run.clean_probability > 0.5))


def test_result_arrays(gmm_run):
    assert gmm_run.context.shape == (4, 64)
    assert gmm_run.context.dtype == np.float32
    assert gmm_run.probabilities.shape == (60, 3)
    np.testing.assert_allclose(gmm_run.probabilities.sum(axis=1), 1.0)
    assert gmm_run.clean_probability.shape == (60,)
    assert gmm_run.targets.shape == (60, 3)
    np.testing.assert_allclose(gmm_run.targets.sum(axis=1), 1.0)
    assert gmm_run.logit_scale == pytest.approx(gmm_run.history[-1]["logit_scale"])


def test_without_noise_splitter_every_target_is_one_hot(backbone, data):
    _, labels, _ = data
    result = _tune(backbone, data, max_epochs=12, warmup_epochs=3)
    np.testing.assert_array_equal(result.targets, one_hot(labels, 3))
    np.testing.assert_array_equal(result.clean_probability, np.ones(60))
    assert [entry["phase"] for entry in result.history] == ["warmup"] * 12
    assert all(entry["clean_fraction"] == 1.0 for entry in result.history)


def test_all_noisy_splitter_teaches_candidate_targets(backbone, data):
    _, labels, votes = data
    result = _tune(backbone, data, FixedNoiseSplitter(0.0), max_epochs=6, warmup_epochs=2)
    assert [entry["clean_fraction"] for entry in result.history[2:]] == [0.0] * 4
    assert np.all(result.targets[votes == 0] == 0)
    np.testing.assert_allclose(result.targets.sum(axis=1), 1.0)
    assert not np.array_equal(result.targets, one_hot(labels, 3))


def test_dividemix_rule_with_all_clean_names_keeps_one_hot_targets(backbone, data):
    # w = 1 for every sample: w * onehot + (1 - w) * p is the one-hot name exactly.
    _, labels, _ = data
    result = _all_clean_run(backbone, data, "dividemix")
    assert [entry["phase"] for entry in result.history] == ["warmup"] + ["refine"] * 3
    np.testing.assert_array_equal(result.targets, one_hot(labels, 3))


def test_posterior_rule_with_all_clean_names_still_refines(backbone, data):
    _, labels, votes = data
    result = _all_clean_run(backbone, data, "posterior")
    assert np.all(result.targets[votes == 0] == 0)
    assert not np.array_equal(result.targets, one_hot(labels, 3))
    np.testing.assert_allclose(result.targets.sum(axis=1), 1.0)


def test_training_leaves_the_backbone_untouched(backbone, data):
    features, labels, votes = data
    before = weights_digest(backbone.model)
    learner = _learner(backbone)
    start = learner.context.detach().clone()
    result = tune_prompts(learner, features, labels, votes, None, _config(max_epochs=3))
    assert weights_digest(backbone.model) == before
    assert all(parameter.grad is None for parameter in backbone.model.parameters())
    assert not np.allclose(result.context, start.numpy())
    np.testing.assert_array_equal(result.context, learner.context_numpy())


def test_training_is_deterministic(backbone, data):
    runs = [
        _tune(backbone, data, GMMNoiseSplitter(random_state=0), max_epochs=5, warmup_epochs=2)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(runs[0].context, runs[1].context)
    assert runs[0].history == runs[1].history


def test_prompts_encoded_in_chunks_train_as_one_pass(backbone, data):
    # Above its chunk size the learner backpropagates chunk by chunk: the same training
    # up to float rounding, warm-up and refinement alike.
    features, labels, votes = data
    runs = [
        tune_prompts(
            _learner(backbone, grad_chunk_size=chunk),
            features,
            labels,
            votes,
            GMMNoiseSplitter(random_state=0),
            _config(max_epochs=6, warmup_epochs=2),
        )
        for chunk in (len(NAMES), 1)
    ]
    np.testing.assert_allclose(runs[1].context, runs[0].context, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(runs[1].probabilities, runs[0].probabilities, atol=1e-5)
    np.testing.assert_array_equal(runs[1].targets.argmax(1), runs[0].targets.argmax(1))
    assert runs[1].history[-1]["loss"] == pytest.approx(runs[0].history[-1]["loss"], rel=1e-4)


def test_logit_scale_is_clamped_at_100(backbone, text_aligned):
    # Features equal to the class prompts: a larger scale always lowers the loss, so the
    # optimiser pushes the scale up against the clamp.
    result = _tune(backbone, text_aligned, max_epochs=4, learning_rate=1e-2, logit_scale=99.5)
    scales = [entry["logit_scale"] for entry in result.history]
    assert MAX_LOGIT_SCALE == 100.0
    assert max(scales) == pytest.approx(100.0, abs=1e-4)  # the clamp was reached...
    assert max(scales) <= 100.0 * (1 + 1e-6)  # ...and not passed (float32 rounding aside)
    assert result.logit_scale <= 100.0 * (1 + 1e-6)


def test_fixed_logit_scale_stays_fixed(backbone, data):
    result = _tune(backbone, data, max_epochs=3, logit_scale=20.0, learn_logit_scale=False)
    assert [entry["logit_scale"] for entry in result.history] == pytest.approx([20.0] * 3)


def test_logit_scale_cap_is_clips():
    assert math.log(MAX_LOGIT_SCALE) == pytest.approx(4.605170, abs=1e-6)


def test_nan_feature_is_a_floating_point_error_naming_learning_rate(backbone, data):
    # The estimator refuses non-finite features before training (classifier.py); called
    # directly, the training loop stops at the first non-finite loss.
    features, labels, votes = data
    broken = features.copy()
    broken[3, 5] = np.nan
    with pytest.raises(
        FloatingPointError,
        match=r"the training loss became nan at epoch 0; lower learning_rate\.",
    ):
        tune_prompts(_learner(backbone), broken, labels, votes, None, _config(max_epochs=3))


def test_zero_epochs_returns_the_initial_prediction(backbone, data):
    features, labels, votes = data
    learner = _learner(backbone)
    start = learner.context_numpy()
    result = tune_prompts(learner, features, labels, votes, None, _config(max_epochs=0))
    assert result.history == []
    np.testing.assert_array_equal(result.context, start)
    assert result.probabilities.shape == (60, 3)
