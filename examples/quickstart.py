"""Quickstart, fully offline: NeaR against its baselines on scikit-learn's digits.

What is real and what is simulated here:

* the images are real (scikit-learn's 8x8 handwritten digits, upscaled to 32x32);
* the **labeler is simulated**: ``NoisyOracleLabeler`` knows each image's true digit and
  gives a wrong name to 40% of the images (mostly a confusable digit: 3/5/8, 1/7, 4/9,
  0/6), standing where a vision LLM would be;
* the frozen image encoder is pixels -> PCA (an informative encoder that needs no
  weights), and CLIP's text tower is a tiny random-init open_clip model, since no
  pretrained CLIP weights can be downloaded on this machine.

:func:`skvf_bench.demo.offline_demo_classifier` builds that setup, and
:func:`skvf_bench.demo.run_digits_demo` (also behind ``skvf demo``) fits and scores it.
With a real LLM and real CLIP weights, the same code is::

    NeaRClassifier(labeler=MLLMLabeler(model="gpt-4o-mini", domain="handwritten digit"),
                   backbone="ViT-B-16", pretrained="openai").fit(paths)

Run: ``python examples/quickstart.py [--fast]``.
"""

from __future__ import annotations

import argparse
import logging

from skvf_bench.demo import run_digits_demo


def main(shots: int = 30, noise_rate: float = 0.4, seed: int = 0, max_epochs: int = 200) -> dict:
    """Fit the CoOp baseline and NeaR on the same noisy names; return their accuracies."""
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that weights are random

    scores = run_digits_demo(
        shots, noise_rate, max_epochs, seed,
        warmup_epochs=None, max_test_per_class=None, progress=print,
    )  # fmt: skip
    results = {"labeler names (train)": scores.pop("labeler names"), **scores}
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
