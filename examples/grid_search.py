"""Tune NeaR with GridSearchCV: true labels reach the scorer only, answers come from a cache.

``fit`` ignores ``y``, so ``GridSearchCV(...).fit(X, y_true)`` hands the true names to
the scorer alone (:data:`skvf.metrics.cluster_accuracy_scorer`). Every fold refits, so
the labeler's answers and the image features go through ``memory``: each image is named
once, however many folds and candidates there are. With a real LLM this is what keeps a
grid search from paying for the same answer twenty times.

Offline as in ``quickstart.py``: real digit images, a simulated labeler naming 40% of them
wrong, pixels -> PCA features and a tiny random-init CLIP text tower.

Run: ``python examples/grid_search.py [--fast]``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile

import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skvf.metrics import cluster_accuracy_scorer
from skvf_bench.datasets import few_shot_split, load_digits_images
from skvf_bench.demo import offline_demo_classifier


def main(
    shots: int = 30, max_epochs: int = 150, grid=None, folds: int = 3, seed: int = 0
) -> GridSearchCV:
    """Search the grid with cross-validation; print the table and the cache's effect."""
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that weights are random
    images, names = load_digits_images(scale=4)
    index, _ = few_shot_split(names, shots, random_state=seed)
    X, y = images[index], names[index]
    grid = grid or {
        "candidate_builder__n_neighbors": [3, 5, 10],
        "refinement": ["posterior", "dividemix"],
    }
    with tempfile.TemporaryDirectory() as memory:
        clf = offline_demo_classifier(
            X, y, n_components=16, random_state=seed, max_epochs=max_epochs, memory=memory
        )
        search = GridSearchCV(
            clf,
            grid,
            scoring=cluster_accuracy_scorer,
            cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        )
        search.fit(X, y)  # y reaches the scorer only
    results = search.cv_results_
    print(f"{'params':47s}  cACC (mean +- std over {folds} folds)")
    for params, mean, std in zip(
        results["params"], results["mean_test_score"], results["std_test_score"], strict=True
    ):
        print(f"  {str(params):45s}  {mean:.3f} +- {std:.3f}")
    print(f"best: {search.best_params_} (cACC {search.best_score_:.3f})")
    refit = search.best_estimator_
    print(
        f"the final refit on all {len(X)} images asked the labeler for "
        f"{refit.n_labeler_calls_} new answer(s): every image was named in the folds"
    )
    assert np.isfinite(search.best_score_)
    return search


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="a small grid, few images")
    arguments = parser.parse_args()
    if arguments.fast:
        main(shots=4, max_epochs=8, grid={"candidate_builder__n_neighbors": [3, 5]}, folds=2)
    else:
        main()
