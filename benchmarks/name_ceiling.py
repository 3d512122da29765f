"""How much of the gap to prompt tuning on the true names lies in the labeler's names.

Prompt tuning on the true class names (CoOp) is what a perfect labeler would give. A
method that learns from a labeler's answers, NeaR included, can do at most what the
best names among those answers allow. This benchmark measures that ceiling on the
garment benchmark: an oracle that knows every training image's class picks one name per
class from the labeler's answers (a one-to-one matching of classes to names by the
Hungarian algorithm), and CoOp and NeaR are tuned on the picked names, every image of
a class carrying its class's name. Two oracles:

- ``vocabulary``: any name the labeler gave, to any image; the class's own name where
  some answer gave it, else a rewording of it, else the name its images got most often;
- ``own``: only the names the class's own images got, in the same order of preference.

They bound what choosing one of the answers for each class can do (no method knows
which answers are right); what is left between them and the true names is in the
names. They bound naming, not every classifier: where the answers name few classes (a
generic-naming labeler), one name per class merges classes that NeaR, tuned on the
answers as they are, keeps apart with its image prototypes.
Every method of a seed sees the same training draw and test images. cACC, mean over
seeds, and the paired difference to CoOp on the true names::

    python benchmarks/name_ceiling.py --labeler strong --shots 3 --epochs 60 200 \\
        --seeds 10 --threads 1
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import numpy as np  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

from skvf.metrics import cluster_accuracy  # noqa: E402
from skvf_bench.reporting import paired_table  # noqa: E402
from skvf_bench.runner import (  # noqa: E402
    build_methods,
    draw_split,
    lost_classes,
    parse_draw,
    predict_from_features,
    prepare_benchmark,
    true_name_labeler,
)
from skvf_bench.simulated_mllm import make_simulated_mllm  # noqa: E402
from skvf_bench.simulation import NoisyOracleLabeler, make_oracle  # noqa: E402

#: The names each row of the table tunes on, from the truth to the answers as given.
SOURCES = ("true names", "oracle pick: vocabulary", "oracle pick: own answers", "answers")
# Scores of a name for a class in the matching: its own name outweighs a rewording,
# which outweighs any count of answers (at most the images of one class).
_OWN_NAME, _REWORDING = 1e6, 1e3


def picked_names(answers, true_names, names_the_truth, scope: str = "vocabulary") -> dict:
    """One name per class from the labeler's answers, picked by an oracle.

    Classes and names are matched one to one (Hungarian algorithm) on how well a name
    serves a class: its own name first, then a rewording of it (as ``names_the_truth``
    judges), then how many of its images got the name. A class left without a name
    that serves it (more classes than names) gets the answer its images got most often.

    Parameters
    ----------
    answers : array-like of str, shape (n_images,)
        The labeler's answer for each training image.
    true_names : array-like of str, shape (n_images,)
        Each image's class.
    names_the_truth : callable
        ``names_the_truth(names, true_names) -> bool array``, whether each name names
        its class (``SimulatedMLLM.names_the_truth``).
    scope : {"vocabulary", "own"}, default="vocabulary"
        ``"vocabulary"``: any answer given to any image; ``"own"``: only the answers the
        class's own images got.

    Returns
    -------
    dict
        Class name -> picked name.

    Examples
    --------
    The images of class a were answered "b", those of class b "x":

    >>> def exact(names, truths):
    ...     return np.asarray(names) == np.asarray(truths)
    >>> answers, truths = ["b", "b", "x", "x"], ["a", "a", "b", "b"]
    >>> picked_names(answers, truths, exact, scope="own")
    {'a': 'b', 'b': 'x'}

    Over the whole vocabulary class b takes its own name, and a, left with no name that
    serves it, keeps its images' answer:

    >>> picked_names(answers, truths, exact)
    {'a': 'b', 'b': 'b'}
    """
    answers, true_names = np.asarray(answers, dtype=object), np.asarray(true_names, dtype=object)
    classes, vocabulary = np.unique(true_names), np.unique(answers)
    score = np.zeros((len(classes), len(vocabulary)))
    for row, name in enumerate(classes):
        given = answers[true_names == name]
        counts = Counter(given)
        score[row] = [counts[word] for word in vocabulary]
        reach = np.ones(len(vocabulary), dtype=bool)
        if scope == "own":
            reach = np.isin(vocabulary, given)
        serves = np.asarray(names_the_truth(vocabulary, [name] * len(vocabulary)), dtype=bool)
        score[row] += _REWORDING * serves + _OWN_NAME * (vocabulary == name)
        score[row] *= reach
    rows, columns = linear_sum_assignment(-score)
    picks = {
        classes[r]: vocabulary[c] for r, c in zip(rows, columns, strict=True) if score[r, c] > 0
    }
    for name in classes:
        if name not in picks:
            picks[name] = Counter(answers[true_names == name]).most_common(1)[0][0]
    return {name: picks[name] for name in classes}


def run_trial(bench, profile: str, shots, seed: int, max_epochs: int) -> list[dict]:
    """cACC and classes lost of CoOp and NeaR on each source of names, one seed.

    One record per method and source, named ``"CoOp, true names"`` and so on, with
    ``seed``, ``cacc`` and ``classes_lost``, as :mod:`skvf_bench.reporting` reads them.
    """
    data = bench.data
    fit_index, test_index = draw_split(data.names, shots, seed, 10)
    images, truth = data.images[fit_index], data.names[fit_index]
    labeler = make_simulated_mllm(data, profile, random_state=seed)
    answers = np.asarray(labeler.fit(images).transform(images), dtype=object)
    true_labeler = true_name_labeler(data, profile, seed)
    labelers = {"true names": true_labeler, "answers": labeler}
    for source, scope in zip(SOURCES[1:3], ("vocabulary", "own"), strict=True):
        picks = picked_names(answers, truth, labeler.names_the_truth, scope)
        names = [picks[name] for name in truth]
        labelers[source] = NoisyOracleLabeler(
            make_oracle(images, names), noise_rate=0.0, random_state=seed
        )
    features, test_truth = bench.features[test_index], data.names[test_index]
    records = []
    for source in SOURCES:
        models = build_methods(
            bench, labelers[source], true_labeler, seed, ["CoOp on raw names", "NeaR"], max_epochs
        )
        for method, model in models.items():
            predicted = predict_from_features(model.fit(images), features)
            records.append(
                {
                    "method": f"{'CoOp' if method != 'NeaR' else 'NeaR'}, {source}",
                    "seed": seed,
                    "cacc": cluster_accuracy(test_truth, predicted),
                    "classes_lost": len(lost_classes(test_truth, predicted)),
                }
            )
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labeler", nargs="+", default=["strong"])
    parser.add_argument("--shots", nargs="+", type=parse_draw, default=[3])
    parser.add_argument("--epochs", nargs="+", type=int, default=[60])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--standin", default="garments")
    parser.add_argument("--garments", help="comma-separated garment types; default all ten")
    parser.add_argument("--memory", default="benchmarks/out/name-ceiling-cache")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    garments = args.garments.split(",") if args.garments else None
    bench = prepare_benchmark(args.memory, args.standin, garments=garments)
    results = {}
    methods = [f"{method}, {source}" for source in SOURCES for method in ("CoOp", "NeaR")]
    for profile in args.labeler:
        for shots in args.shots:
            records = {
                epochs: [
                    record
                    for seed in range(args.seeds)
                    for record in run_trial(bench, profile, shots, seed, epochs)
                ]
                for epochs in args.epochs
            }
            results[(profile, shots)] = records
            print(f"\n{profile} labeler, m = {shots}, {args.seeds} seeds: cACC (classes lost)")
            header = " | ".join(
                f"{method}, {epochs} epochs"
                for epochs in args.epochs
                for method in ("CoOp", "NeaR")
            )
            print(f"| names tuned on | {header} |\n|---|" + "---|" * (2 * len(args.epochs)))
            for source in SOURCES:
                cells = []
                for epochs in args.epochs:
                    for method in ("CoOp", "NeaR"):
                        rows = [r for r in records[epochs] if r["method"] == f"{method}, {source}"]
                        accuracy = np.mean([row["cacc"] for row in rows])
                        lost = np.mean([row["classes_lost"] for row in rows])
                        cells.append(f"{accuracy:.3f} ({lost:.1f})")
                print(f"| {source} | " + " | ".join(cells) + " |")
            for epochs in args.epochs:
                print(f"\n{epochs} epochs, paired by seed:")
                print(paired_table(records[epochs], methods, ["CoOp, true names"]))
    return results


if __name__ == "__main__":
    main()
