"""Quickstart, fully offline: NeaR against its baselines on scikit-learn's digits.

What is real and what is simulated here:

* the images are real (scikit-learn's 8x8 handwritten digits, upscaled to 32x32);
* the **labeler is simulated**: ``NoisyOracleLabeler`` knows each image's true digit and
  gives a wrong name to 40% of the images (mostly a confusable digit: 3/5/8, 1/7, 4/9,
  0/6), standing where a vision LLM would be;
* the frozen image encoder is pixels -> PCA (an informative encoder that needs no
  weights), and CLIP's text tower is a tiny random-init open_clip model, since no
  pretrained CLIP weights can be downloaded on this machine.

:func:`skvf.bench.demo.offline_demo_classifier` builds that setup. With a real LLM and real
CLIP weights, the same code is::

    NeaRClassifier(labeler=MLLMLabeler(model="gpt-4o-mini", domain="handwritten digit"),
                   backbone="ViT-B-16", pretrained="openai").fit(paths)

Run: ``python examples/quickstart.py [--fast]``.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
from sklearn.base import clone

from skvf.bench.baselines import method_configs
from skvf.bench.datasets import few_shot_split, load_digits_images
from skvf.bench.demo import offline_demo_classifier
from skvf.metrics import cluster_accuracy


def main(shots: int = 30, noise_rate: float = 0.4, seed: int = 0, max_epochs: int = 200) -> dict:
    """Fit the CoOp baseline and NeaR on the same noisy names; return their accuracies."""
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that weights are random
    images, true_names = load_digits_images(scale=4)
    fit_index, test_index = few_shot_split(true_names, shots, random_state=seed)
    near = offline_demo_classifier(
        images, true_names, noise_rate=noise_rate, random_state=seed, max_epochs=max_epochs
    )
    X_fit, X_test, y_test = images[fit_index], images[test_index], true_names[test_index]
    raw_names = near.labeler.fit(X_fit).transform(X_fit)
    results = {"labeler names (train)": cluster_accuracy(true_names[fit_index], raw_names)}
    print(f"{len(X_fit)} unlabeled training images ({shots} per digit), {len(X_test)} test images")
    print(f"simulated labeler: {np.mean(raw_names != true_names[fit_index]):.0%} wrong names\n")
    configs = method_configs()
    models = {
        name: clone(near).set_params(**configs[name]) for name in ("CoOp on raw names", "NeaR")
    }
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(X_fit)
        results[name] = model.score(X_test, y_test)
        print(f"  fitted {name!r} in {time.perf_counter() - start:.1f} s")
    print("\ncluster accuracy")
    for name, value in results.items():
        print(f"  {name:24s} {value:.3f}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="fewer epochs, for the test suite")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    main(seed=arguments.seed, max_epochs=120 if arguments.fast else 200)
