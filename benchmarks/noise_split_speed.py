"""Time of one GMM clean/noisy split: skvf's against a fit on every loss and a k-means start.

NeaR refits the two-component Gaussian mixture on the per-sample losses every epoch
after warm-up, so its cost is paid ~150 times per fit. ``GMMNoiseSplitter`` hands
``GaussianMixture`` every initial parameter (means at the ends of the normalised loss
range, equal weights, the sample's variance), which skips scikit-learn's k-means
initialisation. This benchmark times, side by side in one run and on the same losses,

* ``skvf``: ``GMMNoiseSplitter().fit(losses)``, which fits the mixture on at most
  ``max_samples=10000`` losses drawn at random and scores every loss;
* ``all losses``: ``GMMNoiseSplitter(max_samples=None)``, the mixture fitted on every
  loss, as before ``max_samples`` (the same split up to 10,000 losses);
* ``k-means init``: the same mixture given only the initial means, as before, so
  scikit-learn runs k-means for the rest;

and prints milliseconds per fit, their ratio, and how many of the simulated names each
split calls right (clean or noisy), so a faster split is not bought with a worse one.

Run: ``python benchmarks/noise_split_speed.py [--sizes 300,3000,30000,100000]
[--noise 0.1,0.4,0.7]``.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from _timing import interleaved_medians


def simulated_losses(n_samples: int, noise_rate: float = 0.4, seed: int = 0):
    """Losses shaped like a warm-up's, and which names are clean.

    Returns ``(losses, is_clean)``: gamma-distributed losses, small for clean names and
    large with a long tail for wrong ones.
    """
    rng = np.random.default_rng(seed)
    n_noisy = int(round(noise_rate * n_samples))
    clean = rng.gamma(shape=2.0, scale=0.25, size=n_samples - n_noisy)
    noisy = rng.gamma(shape=6.0, scale=0.5, size=n_noisy)
    is_clean = np.arange(n_samples) < n_samples - n_noisy
    return np.concatenate([clean, noisy]), is_clean


def kmeans_initialised_clean_mask(losses: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The split with only the means given: scikit-learn initialises the rest by k-means."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    normalised = ((losses - losses.min()) / (losses.max() - losses.min())).reshape(-1, 1)
    mixture = GaussianMixture(
        n_components=2, max_iter=10, tol=1e-2, reg_covar=5e-4, means_init=[[0.0], [1.0]]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mixture.fit(normalised)
    clean_component = int(np.argmin(mixture.means_.ravel()))
    return mixture.predict_proba(normalised)[:, clean_component] > threshold


def measure(size: int, repeats: int, noise_rate: float = 0.4) -> dict:
    """Time the three splits on ``size`` simulated losses; return ms, speed-ups, share right."""
    from skvf.noise import GMMNoiseSplitter

    losses, is_clean = simulated_losses(size, noise_rate)
    splitter = GMMNoiseSplitter(random_state=0)
    on_all = GMMNoiseSplitter(max_samples=None, random_state=0)
    ours, all_losses, theirs = interleaved_medians(
        [
            lambda: splitter.fit(losses),
            lambda: on_all.fit(losses),
            lambda: kmeans_initialised_clean_mask(losses),
        ],
        repeats,
    )
    # k-means starts at random: score its split over several starts.
    kmeans_right = [np.mean(kmeans_initialised_clean_mask(losses) == is_clean) for _ in range(5)]
    return {
        "size": size,
        "noise_rate": noise_rate,
        "skvf_ms": 1e3 * ours,
        "all_ms": 1e3 * all_losses,
        "kmeans_ms": 1e3 * theirs,
        "sampling_speedup": all_losses / ours,
        "speedup": theirs / ours,
        "skvf_right": float(np.mean(splitter.fit(losses).clean_mask_ == is_clean)),
        "all_right": float(np.mean(on_all.fit(losses).clean_mask_ == is_clean)),
        "kmeans_right": float(np.mean(kmeans_right)),
    }


def main(argv=None) -> list[dict]:
    """Run the benchmark; print one row per size and return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="300,3000,30000,100000", help="losses per fit")
    parser.add_argument("--noise", default="0.1,0.4,0.7", help="shares of wrong names")
    parser.add_argument("--repeats", type=int, default=30)
    arguments = parser.parse_args(argv)

    rows = []
    print(
        "| losses | wrong names | skvf (ms) | all losses (ms) | k-means init (ms) "
        "| all / skvf | k-means / skvf | skvf split right | all-losses split right "
        "| k-means-init split right |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in [int(v) for v in arguments.sizes.split(",") if v]:
        for noise_rate in [float(v) for v in arguments.noise.split(",") if v]:
            row = measure(size, arguments.repeats, noise_rate)
            rows.append(row)
            print(
                f"| {size} | {noise_rate:g} | {row['skvf_ms']:.2f} | {row['all_ms']:.2f} "
                f"| {row['kmeans_ms']:.2f} | {row['sampling_speedup']:.1f}x "
                f"| {row['speedup']:.1f}x | {row['skvf_right']:.3f} | {row['all_right']:.3f} "
                f"| {row['kmeans_right']:.3f} |"
            )
    return rows


if __name__ == "__main__":
    main()
