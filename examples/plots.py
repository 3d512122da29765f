"""Diagnostic plots of a fitted NeaRClassifier, saved as PNG files.

Fits NeaR offline (digits, a simulated labeler naming 40% of the images wrong, as in
``quickstart.py``) and saves the three plots of :mod:`skvf.plotting`:

- ``history.png``: loss and clean fraction per epoch, warm-up shaded;
- ``name_frequencies.png``: how often the labeler gave each name, kept or dropped;
- ``name_mapping.png``: which final class the images of each labeler name went to.

Needs matplotlib: ``pip install "skvf[plot]"``.

Run: ``python examples/plots.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no window, works on a headless machine

from skvf.plotting import (  # noqa: E402
    plot_name_frequencies,
    plot_name_mapping,
    plot_training_history,
)
from skvf_bench.datasets import few_shot_split, load_digits_images  # noqa: E402 - after the backend
from skvf_bench.demo import offline_demo_classifier  # noqa: E402


def main(out: Path, shots: int = 30, max_epochs: int = 200, seed: int = 0) -> list[Path]:
    """Fit NeaR on noisy names of digits and save its diagnostic plots under ``out``."""
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that weights are random
    images, names = load_digits_images(scale=4)
    index, _ = few_shot_split(names, shots, random_state=seed)
    X = images[index]
    clf = offline_demo_classifier(
        X,
        names[index],
        random_state=seed,
        max_epochs=max_epochs,
        warmup_epochs=max_epochs // 4,
    ).fit(X)
    figures = {
        "history.png": plot_training_history(clf),
        "name_frequencies.png": plot_name_frequencies(clf),
        "name_mapping.png": plot_name_mapping(clf, X=X),
    }
    out.mkdir(parents=True, exist_ok=True)
    saved = []
    for name, figure in figures.items():
        figure.savefig(out / name, dpi=100)
        saved.append(out / name)
        print(f"saved {out / name}")
    return saved


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="fewer images and epochs")
    parser.add_argument("--out", type=Path, help="folder for the PNG files (default: temp)")
    arguments = parser.parse_args()
    settings = {"shots": 5, "max_epochs": 12} if arguments.fast else {}
    if arguments.out is not None:
        main(arguments.out, **settings)
    else:
        with tempfile.TemporaryDirectory() as out:
            main(Path(out), **settings)
