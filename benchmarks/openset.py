"""Saying "unknown" on the garment benchmark: held-out classes, known-ness scores, calibration.

A fifth of the 160 garment classes is held out of the training draw entirely; NeaR is
fitted on the rest (m images per known class, named by a simulated MLLM) and scores
held-out test images of every class. Two splits: ``random`` (32 classes drawn at
random) and ``sibling`` (3 of the 16 classes of every garment type, so each held-out
class has known siblings of its type: the near-out-of-distribution case of CUB 100/100).

For each known-ness score of :data:`skvf._openset.KNOWN_SCORES` it prints AUROC and the
false-positive rate at 95% true positives (known images are the positives), NeaR's
closed-set cACC on the known classes, the share of unknown images named unknown and of
known images rejected at the fitted threshold (``known_rate=0.95``, the default score),
and the expected calibration error (15 bins) on the known classes of ``predict_proba``
(calibrated by the fitted temperature) and of the plain softmax of the scores
(correctness as cACC matches names to classes).
Zero-shot CLIP over the labeler's vocabulary is scored with MCM, its standard score.
``--shots 1-10`` draws 1 to 10 images per known class (the imbalanced draw).
Mean ± sd over seeds::

    python benchmarks/openset.py --labeler strong weak --shots 1 3 5 --seeds 5 --threads 1 \
        --reliability docs/img/reliability_garments_strong_m3.png
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import numpy as np  # noqa: E402
from scipy.special import softmax  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from skvf._openset import (  # noqa: E402
    KNOWN_SCORES,
    expected_calibration_error,
    known_scores,
    nearest_image_similarity,
)
from skvf.metrics import cluster_matched  # noqa: E402
from skvf_bench.runner import (  # noqa: E402
    ZERO_SHOT,
    build_methods,
    draw_split,
    parse_draw,
    prepare_benchmark,
)
from skvf_bench.simulated_mllm import make_simulated_mllm  # noqa: E402


def held_out_classes(data, split: str, seed: int, share: float = 0.2) -> np.ndarray:
    """The classes kept out of training: a random fifth, or 3 of 16 of every garment type."""
    rng = np.random.default_rng(seed)
    if split == "random":
        return rng.choice(data.classes, int(round(share * len(data.classes))), replace=False)
    by_type = {}
    for name in data.classes:
        by_type.setdefault(data.attributes[name]["garment"], []).append(name)
    per_type = int(round(share * len(next(iter(by_type.values())))))
    return np.concatenate(
        [rng.choice(sorted(names), per_type, replace=False) for names in by_type.values()]
    )


def fpr_at_95_tpr(is_known, score) -> float:
    """False-positive rate (unknowns accepted) where 95% of the known images are accepted."""
    fpr, tpr, _ = roc_curve(is_known, score)
    return float(fpr[np.searchsorted(tpr, 0.95)])


def run_trial(bench, profile, shots, seed, split) -> dict:
    data = bench.data
    held_out = held_out_classes(data, split, seed)
    fit_index, test_index = draw_split(data.names, shots, seed, 10)
    fit_index = fit_index[~np.isin(data.names[fit_index], held_out)]
    labeler = make_simulated_mllm(data, profile, random_state=seed)
    models = build_methods(bench, labeler, labeler, seed, ["NeaR", ZERO_SHOT], 60)
    near = models["NeaR"].fit(data.images[fit_index])
    zero_shot = models[ZERO_SHOT].fit(data.images[fit_index])
    features, truth = bench.features[test_index], data.names[test_index]
    is_known = ~np.isin(truth, held_out)

    similarity, prototype_similarity = near._similarities(features)
    logits = near._scores_from_features(features)
    image_similarity = nearest_image_similarity(
        near._embedded(features), near.known_image_features_
    )
    row = {}
    for score in KNOWN_SCORES:
        known = known_scores(logits, similarity, prototype_similarity, score, image_similarity)
        row[f"auroc {score}"] = roc_auc_score(is_known, known)
        row[f"fpr95 {score}"] = fpr_at_95_tpr(is_known, known)
    default = known_scores(
        logits, similarity, prototype_similarity, near.known_score, image_similarity
    )
    rejected = default < near.unknown_threshold_
    row["unknown named unknown"] = rejected[~is_known].mean()
    row["known rejected"] = rejected[is_known].mean()
    predicted = near.classes_[np.argmax(logits, axis=1)]
    correct = cluster_matched(truth[is_known], predicted[is_known])
    row["closed-set cACC"] = correct.mean()
    for name, temperature in (("ECE raw", 1.0), ("ECE calibrated", near.probability_temperature_)):
        confidence = softmax(logits[is_known] / temperature, axis=1).max(axis=1)
        row[name] = expected_calibration_error(confidence, correct)
        row[f"_{name}"] = (confidence, correct)  # for the reliability diagram
    row["temperature"] = near.probability_temperature_
    zs_similarity, _ = zero_shot._similarities(features)
    mcm = softmax(zs_similarity, axis=1).max(axis=1)
    row["zero-shot auroc mcm"] = roc_auc_score(is_known, mcm)
    row["zero-shot fpr95 mcm"] = fpr_at_95_tpr(is_known, mcm)
    return row


def plot_reliability(rows, path, title, n_bins: int = 15) -> None:
    """Accuracy against confidence on the known classes, raw and calibrated, all seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.linspace(0, 1, n_bins + 1)
    figure, axes = plt.subplots(1, 2, figsize=(8, 4), sharey=True)
    for axis, name in zip(axes, ("ECE raw", "ECE calibrated"), strict=True):
        confidence = np.concatenate([row[f"_{name}"][0] for row in rows])
        correct = np.concatenate([row[f"_{name}"][1] for row in rows])
        bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
        accuracy = [correct[bins == b].mean() if (bins == b).any() else 0 for b in range(n_bins)]
        axis.bar(edges[:-1], accuracy, width=1 / n_bins, align="edge", edgecolor="black")
        axis.plot([0, 1], [0, 1], "k--", linewidth=1)
        ece = expected_calibration_error(confidence, correct, n_bins)
        label = "plain softmax" if name == "ECE raw" else "predict_proba (calibrated)"
        axis.set(title=f"{label}: ECE {ece:.3f}", xlabel="confidence", xlim=(0, 1), ylim=(0, 1))
    axes[0].set_ylabel("accuracy (names matched as cACC matches them)")
    figure.suptitle(f"Known garment classes, {title}, {len(rows)} seeds")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    print(f"saved {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labeler", nargs="+", default=["strong", "weak"])
    parser.add_argument("--shots", nargs="+", type=parse_draw, default=[3])
    parser.add_argument("--split", nargs="+", default=["random", "sibling"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--standin", default="garments")
    parser.add_argument("--memory", default="benchmarks/out/openset-cache")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--reliability", help="PNG of the first setting's reliability diagram")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    bench = prepare_benchmark(args.memory, args.standin)
    for profile in args.labeler:
        for shots in args.shots:
            for split in args.split:
                started = time.perf_counter()
                rows = [run_trial(bench, profile, shots, seed, split) for seed in range(args.seeds)]
                print(f"\n{profile} labeler, m = {shots}, {split} split, {args.seeds} seeds "
                      f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
                if args.reliability and (profile, shots, split) == (
                    args.labeler[0],
                    args.shots[0],
                    args.split[0],
                ):
                    plot_reliability(rows, args.reliability, f"{profile} labeler, m = {shots}")
                print("| measure | mean ± sd |\n|---|---|")
                for key in [key for key in rows[0] if not key.startswith("_")]:
                    values = np.array([row[key] for row in rows])
                    print(f"| {key} | {values.mean():.3f} ± {values.std():.3f} |")


if __name__ == "__main__":
    main()
