"""Tests of skvf.noise: splitting clean from noisy names by their loss."""

from __future__ import annotations

import numpy as np
import pytest

from skvf._sklearn_compat import InvalidParameterError
from skvf.noise import FixedNoiseSplitter, GMMNoiseSplitter, _two_means_start


def _two_populations(seed=0, n_clean=80, n_noisy=20):
    rng = np.random.default_rng(seed)
    clean = rng.normal(0.2, 0.05, n_clean)
    noisy = rng.normal(3.0, 0.3, n_noisy)
    return np.r_[clean, noisy]


def test_gmm_separates_two_clear_loss_populations_low_is_clean():
    losses = _two_populations()
    splitter = GMMNoiseSplitter(random_state=0).fit(losses)
    assert splitter.clean_mask_[:80].all()
    assert not splitter.clean_mask_[80:].any()
    assert splitter.clean_mask_.dtype == bool
    assert splitter.means_.shape == (2,)
    assert splitter.means_[0] < splitter.means_[1]  # low (clean) first
    # on the min-max normalised scale the clean mean is near 0, the noisy one far above
    assert splitter.means_[0] < 0.1 and splitter.means_[1] > 0.5


def _warmup_like_losses(n_samples, noise_rate, seed=0):
    """Gamma losses: small for clean names, large with a long tail for wrong ones."""
    rng = np.random.default_rng(seed)
    n_noisy = int(round(noise_rate * n_samples))
    losses = np.r_[rng.gamma(2.0, 0.25, n_samples - n_noisy), rng.gamma(6.0, 0.5, n_noisy)]
    return losses, np.arange(n_samples) < n_samples - n_noisy


@pytest.mark.parametrize("n_samples", [300, 3000, 30000])
@pytest.mark.parametrize("noise_rate", [0.1, 0.4, 0.7])
def test_gmm_split_is_right_at_every_size_and_noise_rate(n_samples, noise_rate):
    # A start at the two ends of the loss range let the long tail of wrong names pull
    # the "noisy" component away: at 3000 losses it called 89% of them clean.
    losses, is_clean = _warmup_like_losses(n_samples, noise_rate)
    splitter = GMMNoiseSplitter().fit(losses)
    assert np.mean(splitter.clean_mask_ == is_clean) > 0.8


@pytest.mark.parametrize("n_samples", [300, 3000, 10_000])
def test_split_at_or_below_max_samples_is_bit_identical_to_the_full_fit(n_samples):
    # The full fit is what GMMNoiseSplitter computed before max_samples existed.
    losses, _ = _warmup_like_losses(n_samples, 0.4)
    sampled = GMMNoiseSplitter(random_state=0).fit(losses)
    full = GMMNoiseSplitter(max_samples=None, random_state=0).fit(losses)
    np.testing.assert_array_equal(sampled.clean_probability_, full.clean_probability_)
    np.testing.assert_array_equal(sampled.means_, full.means_)


def test_sampled_split_is_deterministic_for_a_seed_and_scores_every_sample():
    losses, is_clean = _warmup_like_losses(5000, 0.4)
    first = GMMNoiseSplitter(max_samples=500, random_state=3).fit(losses)
    again = GMMNoiseSplitter(max_samples=500, random_state=3).fit(losses)
    other = GMMNoiseSplitter(max_samples=500, random_state=4).fit(losses)
    full = GMMNoiseSplitter(max_samples=None).fit(losses)
    np.testing.assert_array_equal(first.clean_probability_, again.clean_probability_)
    assert not np.array_equal(first.clean_probability_, other.clean_probability_)
    assert first.clean_probability_.shape == (5000,)
    # a sample of 500 places the boundary nearly where all 5000 losses do
    assert np.mean(first.clean_mask_ == full.clean_mask_) > 0.98
    assert np.mean(first.clean_mask_ == is_clean) > 0.8


def test_sampled_split_fits_only_max_samples_losses(monkeypatch):
    from sklearn.mixture import GaussianMixture

    fitted_sizes = []
    original_fit = GaussianMixture.fit

    def recording_fit(mixture, values, y=None):
        fitted_sizes.append(len(values))
        return original_fit(mixture, values)

    monkeypatch.setattr(GaussianMixture, "fit", recording_fit)
    losses, _ = _warmup_like_losses(3000, 0.4)
    GMMNoiseSplitter(max_samples=200, random_state=0).fit(losses)
    GMMNoiseSplitter(max_samples=None, random_state=0).fit(losses)
    assert fitted_sizes == [200, 3000]


def test_two_means_start_is_the_one_dimensional_two_means_split():
    values = np.r_[np.zeros(5), np.full(3, 0.2), np.full(4, 0.9), [1.0]]
    weights, means, precisions = _two_means_start(values, reg_covar=1e-3)
    np.testing.assert_allclose(weights, [8 / 13, 5 / 13])
    np.testing.assert_allclose(means.ravel(), [0.6 / 8, 4.6 / 5])
    low, high = values[:8], values[8:]
    np.testing.assert_allclose(precisions.ravel(), 1 / (np.r_[low.var(), high.var()] + 1e-3))
    # more than half the values tied at the top still give two parts
    weights, means, _ = _two_means_start(np.r_[[0.0], np.ones(4)], reg_covar=1e-3)
    np.testing.assert_allclose(weights, [0.2, 0.8])
    np.testing.assert_allclose(means.ravel(), [0.0, 1.0])


def test_gmm_labels_follow_the_loss_not_the_position():
    losses = _two_populations()[::-1].copy()  # noisy samples first
    splitter = GMMNoiseSplitter(random_state=0).fit(losses)
    assert not splitter.clean_mask_[:20].any()
    assert splitter.clean_mask_[20:].all()


def test_gmm_docstring_example():
    losses = np.r_[np.full(8, 0.1), np.full(4, 2.0)] + np.linspace(0, 0.01, 12)
    mask = GMMNoiseSplitter(random_state=0).fit(losses).clean_mask_
    assert mask.astype(int).tolist() == [1] * 8 + [0] * 4


def test_gmm_is_invariant_to_loss_scale_and_shift():
    losses = np.random.default_rng(3).uniform(0, 1, 200) ** 3
    first = GMMNoiseSplitter(random_state=0).fit(losses).clean_probability_
    second = GMMNoiseSplitter(random_state=0).fit(10 * losses + 5).clean_probability_
    np.testing.assert_allclose(first, second, atol=1e-8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clean_probability_is_a_probability(seed):
    losses = np.random.default_rng(seed).gamma(1.0, 1.0, 150)
    probability = GMMNoiseSplitter(random_state=seed).fit(losses).clean_probability_
    assert probability.shape == (150,)
    assert np.all((probability >= 0) & (probability <= 1))
    # the lowest loss is clean, the highest is not
    assert probability[np.argmin(losses)] > 0.5
    assert probability[np.argmax(losses)] < 0.5


@pytest.mark.parametrize(
    "losses", [np.full(6, 2.5), np.zeros(3), [0.7], np.full(4, 1e-13) * [1, 2, 3, 4]]
)
def test_equal_losses_are_all_clean(losses):
    splitter = GMMNoiseSplitter(random_state=0).fit(losses)
    np.testing.assert_array_equal(splitter.clean_probability_, np.ones(len(losses)))
    assert splitter.clean_mask_.all()


def test_two_distinct_losses():
    splitter = GMMNoiseSplitter(random_state=0).fit([0.0, 0.0, 0.0, 1.0])
    assert splitter.clean_mask_.tolist() == [True, True, True, False]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_losses_are_refused(bad):
    with pytest.raises(
        ValueError, match="losses hold NaN or infinite values; the training diverged."
    ):
        GMMNoiseSplitter().fit([0.1, bad, 0.3])


@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.5, 0.9, 0.999, 1.0])
def test_threshold_is_respected(threshold):
    losses = np.random.default_rng(5).gamma(2.0, 1.0, 100)
    splitter = GMMNoiseSplitter(threshold=threshold, random_state=0).fit(losses)
    np.testing.assert_array_equal(splitter.clean_mask_, splitter.clean_probability_ > threshold)


def test_higher_threshold_keeps_fewer_clean():
    losses = np.random.default_rng(5).gamma(2.0, 1.0, 100)
    counts = [
        GMMNoiseSplitter(threshold=t, random_state=0).fit(losses).clean_mask_.sum()
        for t in (0.1, 0.5, 0.9)
    ]
    assert counts[0] >= counts[1] >= counts[2]
    assert counts[0] > counts[2]


def test_refit_replaces_state():
    splitter = GMMNoiseSplitter(random_state=0)
    splitter.fit(_two_populations())
    splitter.fit(np.full(3, 1.0))
    assert splitter.clean_probability_.shape == (3,)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1.0}, "tol"),
        ({"reg_covar": -1e-3}, "reg_covar"),
        ({"max_samples": 1}, "max_samples"),
        ({"max_samples": 2.5}, "max_samples"),
    ],
)
def test_gmm_parameter_validation_names_the_parameter(params, name):
    with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter of GMMNoiseSplitter"):
        GMMNoiseSplitter(**params).fit([0.1, 0.2, 3.0])


def test_gmm_defaults_follow_the_design():
    assert GMMNoiseSplitter().get_params() == {
        "threshold": 0.5,
        "max_iter": 10,
        "tol": 1e-2,
        "reg_covar": 5e-4,
        "max_samples": 10_000,
        "random_state": None,
    }


# ----------------------------------------------------------------------------- fixed


@pytest.mark.parametrize(
    ("probability", "clean"), [(0.0, False), (0.5, False), (0.7, True), (1.0, True)]
)
def test_fixed_splitter_gives_every_sample_the_same_probability(probability, clean):
    splitter = FixedNoiseSplitter(clean_probability=probability).fit(np.arange(4.0))
    np.testing.assert_array_equal(splitter.clean_probability_, np.full(4, probability))
    assert splitter.clean_mask_.tolist() == [clean] * 4


def test_fixed_splitter_default_treats_every_name_as_noisy_and_ignores_values():
    splitter = FixedNoiseSplitter().fit([np.nan, 1.0, np.inf])
    np.testing.assert_array_equal(splitter.clean_probability_, [0.0, 0.0, 0.0])
    assert not splitter.clean_mask_.any()


def test_fixed_splitter_parameter_validation():
    with pytest.raises(
        InvalidParameterError, match="The 'clean_probability' parameter of FixedNoiseSplitter"
    ):
        FixedNoiseSplitter(clean_probability=1.5).fit([1.0])
