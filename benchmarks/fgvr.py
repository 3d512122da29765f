"""Vocabulary-free fine-grained recognition: NeaR against its baselines and ablations.

Runs every method on one configuration (data set, image encoder, labeler, m images per
class, name-noise rate) over several seeds and prints a markdown table of cluster
accuracy (cACC) and semantic accuracy (sACC) on held-out images (mean ± sd over seeds),
labeler calls and cost, and fit / predict times. Unless ``--no-plots``, it then sweeps
the name-noise rate and m for a few methods and saves plots of accuracy against each
(PNG, plus every measurement as CSV) in ``--out``.

Methods: ``labeler direct`` (the labeler names every test image: one call per
prediction), ``zero-shot CLIP`` over the labeler's vocabulary, and the
:class:`~skvf.NeaRClassifier` configurations of :func:`skvf.bench.baselines.method_configs`
(CoOp on the labeler's raw names, NeaR, NeaR without candidate sets / GMM / label
filter).

Offline (the defaults): real images (scikit-learn's digits or Debian's Fashion-MNIST),
a **simulated** labeler (:class:`~skvf.bench.simulation.NoisyOracleLabeler`: the true name,
replaced by a wrong one for ``--noise`` of the images, mostly a confusable class),
pixels -> PCA, HOG -> PCA or random-conv image features, and a tiny random-init CLIP
text tower.
Zero-shot CLIP is at chance there: it needs a pretrained CLIP. The paper's setting, on a
GPU machine with the weights and an API key::

    python benchmarks/fgvr.py --data ~/data/CUB_200_2011/images --backbone ViT-B-16 \\
        --pretrained openai --labeler gpt-4o-mini --domain bird --shots 3

Image features are computed once per image (per seed for PCA) and every method gets the
same feature rows through ``image_encoder=FunctionTransformer()``, so fit and predict
times exclude image encoding, which costs all methods alike. An LLM labeler names each
image once (answers are cached on disk by :class:`~skvf.MLLMLabeler`); the methods then
read its answers, and the table reports the calls and cost each method would incur.

Run: ``python benchmarks/fgvr.py --help``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import shlex
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

LABELER_DIRECT = "labeler direct"
ZERO_SHOT = "zero-shot CLIP"
NO_NAME = "unknown"  # stands for a missing name in the metrics


class AnswerLookup(BaseEstimator):
    """A labeler that returns answers collected beforehand, keyed by item content.

    Lets every method and seed reuse one set of paid LLM answers.

    Parameters
    ----------
    answers : dict
        ``{skvf.bench.simulation.item_keys key: name, or None for no usable name}``.
    """

    def __init__(self, answers: dict):
        self.answers = answers

    def fit(self, X, y=None):
        """Nothing to learn; returns self."""
        return self

    def label(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Return the stored ``(names, valid)`` of the items of ``X``."""
        from skvf.bench.simulation import item_keys

        names = np.asarray([self.answers[key] for key in item_keys(X)], dtype=object)
        return names, np.asarray([name is not None for name in names])

    def transform(self, X) -> np.ndarray:
        """Return the stored names of the items of ``X``."""
        return self.label(X)[0]


@dataclass
class Setting:
    """One benchmark configuration: data, frozen features, labeler and model settings."""

    images: list | np.ndarray
    names: np.ndarray
    frozen_features: np.ndarray
    encoder: str
    name_noise: dict  # NoisyOracleLabeler's confusions, synonyms and generic name
    labeler: str
    domain: str | None
    backbone: str
    pretrained: str | None
    backbone_kwargs: dict | None
    max_epochs: int
    device: str
    test_per_class: int | None
    synonym_rate: float = 0.0
    generic_rate: float = 0.0
    llm_answers: dict = field(default_factory=dict)  # image index -> name or None
    llm_cost_per_image: float = 0.0


def load_data(dataset: str, max_per_class: int | None):
    """Return (images, true names, the simulated labeler's name model) of ``dataset``.

    The name model holds the ``confusions``, ``synonyms`` and ``generic_name`` of
    :class:`~skvf.bench.simulation.NoisyOracleLabeler` for the data set.
    """
    from skvf.bench.datasets import load_digits_images, load_fashion_mnist, load_image_folder
    from skvf.bench.simulation import (
        digits_confusions,
        digits_synonyms,
        fashion_mnist_confusions,
        fashion_mnist_synonyms,
    )

    if dataset == "digits":
        images, names = load_digits_images(scale=4)
        model = dict(confusions=digits_confusions(), synonyms=digits_synonyms())
        return images, names, {**model, "generic_name": "number"}
    if dataset == "fashion-mnist":
        images, names = load_fashion_mnist("train", max_per_class=max_per_class)
        model = dict(confusions=fashion_mnist_confusions(), synonyms=fashion_mnist_synonyms())
        return images, names, {**model, "generic_name": "clothing"}
    if dataset.startswith("folder:"):
        paths, names = load_image_folder(os.path.expanduser(dataset.removeprefix("folder:")))
        return paths, names, {}
    raise SystemExit(f"unknown --dataset {dataset!r}; use digits, fashion-mnist or folder:<root>")


def frozen_features(arguments, images) -> np.ndarray:
    """The part of the image encoder that learns nothing, run once over every image."""
    from skvf.bench.encoders import HOGFeatures, ImagePixels, RandomConvFeatures

    if arguments.encoder == "pca":
        return ImagePixels(size=16).fit_transform(images)
    if arguments.encoder == "hog":
        return HOGFeatures().fit_transform(images)
    if arguments.encoder == "randconv":
        return RandomConvFeatures(random_state=0).fit_transform(images)
    from skvf._backbone import build_backbone
    from skvf._device import resolve_device
    from skvf._features import encode_images
    from skvf._images import as_image_list, load_images

    device = resolve_device(arguments.device)
    backbone = build_backbone(
        arguments.backbone, arguments.pretrained, backbone_kwargs(arguments), device=device
    )
    items = as_image_list(images)
    chunks = []
    for start in range(0, len(items), 512):  # bounds the decoded images held in memory
        loaded = load_images(items[start : start + 512])
        chunks.append(encode_images(backbone, loaded.images, device, arguments.batch_size))
    return np.concatenate(chunks)


def backbone_kwargs(arguments) -> dict | None:
    """The tiny test config for the offline default backbone, else none."""
    from skvf.bench.demo import TINY_BACKBONE, TINY_BACKBONE_KWARGS

    if arguments.backbone == TINY_BACKBONE and arguments.pretrained is None:
        return TINY_BACKBONE_KWARGS
    return None


def split_features(setting: Setting, fit_index, test_index, seed: int):
    """Feature rows of the fitting and test images (PCA fitted on the fitting images)."""
    from sklearn.decomposition import PCA

    base = setting.frozen_features
    if setting.encoder not in ("pca", "hog"):
        return base[fit_index].astype(np.float64), base[test_index].astype(np.float64)
    pca = PCA(32, random_state=seed).fit(base[fit_index])
    return pca.transform(base[fit_index]), pca.transform(base[test_index])


def make_labeler(setting: Setting, rows, indices, noise: float, seed: int):
    """The labeler the methods share: simulated, or a lookup of the LLM's answers.

    ``rows`` are the feature rows of the images at ``indices``; labelers key items by
    content, so the methods can pass them the rows.
    """
    from skvf.bench.simulation import NoisyOracleLabeler, item_keys, make_oracle

    if setting.labeler == "simulated":
        variants = {}
        if setting.synonym_rate:
            variants.update(
                synonym_rate=setting.synonym_rate, synonyms=setting.name_noise.get("synonyms")
            )
        if setting.generic_rate:
            variants.update(
                generic_rate=setting.generic_rate,
                generic_name=setting.name_noise.get("generic_name"),
            )
        return NoisyOracleLabeler(
            make_oracle(rows, setting.names[indices]),
            noise_rate=noise,
            confusions=setting.name_noise.get("confusions"),
            random_state=seed,
            **variants,
        )
    answers = [setting.llm_answers[i] for i in indices]
    return AnswerLookup(dict(zip(item_keys(rows), answers, strict=True)))


def ask_llm(setting: Setting, arguments, indices: np.ndarray) -> None:
    """Name the images at ``indices`` with the LLM (once each; answers cached on disk)."""
    from skvf import MLLMLabeler

    missing = [int(i) for i in indices if int(i) not in setting.llm_answers]
    if not missing:
        return
    labeler = MLLMLabeler(
        model=arguments.labeler, domain=arguments.domain, api_base=arguments.api_base
    )
    items = [setting.images[i] for i in missing]
    names, valid = labeler.fit(items).label(items)
    for index, name, ok in zip(missing, names, valid, strict=True):
        setting.llm_answers[index] = name if ok else None
    usage = labeler.usage_
    if usage["answers"]:
        setting.llm_cost_per_image = usage["cost_usd"] / usage["answers"]


def build_methods(setting: Setting, labeler, seed: int, names: list[str]) -> dict:
    """Unfitted estimators for the methods in ``names``, sharing labeler and encoder."""
    from sklearn.preprocessing import FunctionTransformer

    from skvf import GMMNoiseSplitter, NeaRClassifier, NeighborCandidateBuilder
    from skvf.bench.baselines import LabelerDirect, ZeroShotCLIP, method_configs

    # Seeded stages: NeaRClassifier draws a seed for each unseeded stage from the stream
    # that also seeds the prompt context, so without them an ablation would change the
    # context's initialisation too. With them, every configuration starts from the same.
    tuned = dict(
        candidate_builder=NeighborCandidateBuilder(random_state=seed),
        noise_splitter=GMMNoiseSplitter(random_state=seed),
        max_epochs=setting.max_epochs,
    )
    shared = dict(
        labeler=labeler,
        backbone=setting.backbone,
        pretrained=setting.pretrained,
        backbone_kwargs=setting.backbone_kwargs,
        image_encoder=FunctionTransformer(),
        device=setting.device,
        random_state=seed,
    )
    configs = method_configs()
    methods = {}
    for name in names:
        if name == LABELER_DIRECT:
            methods[name] = LabelerDirect(labeler)
        elif name == ZERO_SHOT:
            methods[name] = ZeroShotCLIP(**shared)
        else:
            methods[name] = NeaRClassifier(**{**shared, **tuned, **configs[name]})
    return methods


def run_trial(setting: Setting, arguments, methods: list[str], seed: int, noise: float, shots):
    """Fit and score every method on one split; returns one result dict per method."""
    from skvf.bench.datasets import few_shot_split
    from skvf.metrics import cluster_accuracy, semantic_accuracy

    fit_index, test_index = few_shot_split(
        setting.names, shots, random_state=seed, max_test_per_class=setting.test_per_class
    )
    fit_rows, test_rows = split_features(setting, fit_index, test_index, seed)
    rows = np.concatenate([fit_rows, test_rows])
    indices = np.r_[fit_index, test_index]
    if setting.labeler != "simulated":
        ask_llm(setting, arguments, indices if LABELER_DIRECT in methods else fit_index)
        if LABELER_DIRECT not in methods:  # test images stay unasked: the lookup needs a key
            indices, rows = fit_index, fit_rows
    labeler = make_labeler(setting, rows, indices, noise, seed)
    y_test = setting.names[test_index]
    results = []
    for name, model in build_methods(setting, labeler, seed, methods).items():
        start = time.perf_counter()
        model.fit(fit_rows)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        predicted = model.predict(test_rows)
        predict_seconds = time.perf_counter() - start
        predicted = np.where(predicted == None, NO_NAME, predicted)  # noqa: E711
        fit_calls = getattr(model, "n_labeler_calls_", 0) if name != LABELER_DIRECT else 0
        predict_calls = model.n_labeler_calls_ if name == LABELER_DIRECT else 0
        results.append(
            {
                "method": name,
                "seed": seed,
                "noise": noise,
                "shots": shots,
                "cacc": cluster_accuracy(y_test, predicted),
                "sacc": semantic_accuracy(y_test, predicted) if arguments.sacc else np.nan,
                "fit_calls": fit_calls,
                "calls_per_1000": 1000.0 * predict_calls / len(test_rows),
                "cost_per_1000": 1000.0
                * predict_calls
                * setting.llm_cost_per_image
                / len(test_rows),
                "fit_s": fit_seconds,
                "predict_ms_per_1000": 1e6 * predict_seconds / len(test_rows),
                "n_fit": len(fit_rows),
                "n_test": len(test_rows),
            }
        )
    return results


def _mean_sd(values) -> str:
    values = np.asarray(values, dtype=float)
    if np.all(np.isnan(values)):
        return "—"
    return f"{np.nanmean(values):.3f} ± {np.nanstd(values, ddof=1) if len(values) > 1 else 0:.3f}"


def markdown_table(results: list[dict], methods: list[str], simulated: bool) -> str:
    """One row per method: accuracies mean ± sd over seeds, calls, cost and times."""
    cost_header = "labeler cost / 1000 pred. (USD)"
    lines = [
        "| method | cACC | sACC | labeler calls in fit | labeler calls / 1000 pred. "
        f"| {cost_header} | fit (s) | predict (ms / 1000 img.) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        rows = [r for r in results if r["method"] == method]
        cost = (
            "— (simulated)" if simulated else f"{np.mean([r['cost_per_1000'] for r in rows]):.4f}"
        )
        lines.append(
            f"| {method} | {_mean_sd([r['cacc'] for r in rows])} "
            f"| {_mean_sd([r['sacc'] for r in rows])} "
            f"| {np.mean([r['fit_calls'] for r in rows]):.0f} "
            f"| {np.mean([r['calls_per_1000'] for r in rows]):.0f} | {cost} "
            f"| {np.mean([r['fit_s'] for r in rows]):.2f} "
            f"| {np.mean([r['predict_ms_per_1000'] for r in rows]):.1f} |"
        )
    return "\n".join(lines)


def paired_differences(results: list[dict], method: str, reference: str) -> dict | None:
    """cACC of ``method`` minus ``reference``, paired by seed: mean, 95% CI, wins.

    The seeds share the split, the labeler's names and the features, so the paired
    difference removes the between-seed spread that the ± sd columns show.
    """
    from scipy import stats

    by_seed = {r["seed"]: r["cacc"] for r in results if r["method"] == reference}
    pairs = [(r["cacc"], by_seed[r["seed"]]) for r in results if r["method"] == method]
    if len(pairs) < 2 or method == reference:
        return None
    differences = np.array([a - b for a, b in pairs])
    half_width = stats.t.ppf(0.975, len(differences) - 1) * stats.sem(differences)
    return {
        "mean": float(differences.mean()),
        "low": float(differences.mean() - half_width),
        "high": float(differences.mean() + half_width),
        "wins": int(np.sum(differences > 0)),
        "n": len(differences),
    }


def paired_table(results: list[dict], methods: list[str], references: list[str]) -> str:
    """Markdown table of every method's paired cACC difference to each reference."""
    references = [r for r in references if r in methods]
    if not references:
        return ""
    lines = [
        "| method | " + " | ".join(f"Δ cACC vs {r} (95% CI), wins" for r in references) + " |",
        "|---|" + "---|" * len(references),
    ]
    for method in methods:
        cells = []
        for reference in references:
            paired = paired_differences(results, method, reference)
            cells.append(
                "—"
                if paired is None
                else f"{paired['mean']:+.3f} ({paired['low']:+.3f}, {paired['high']:+.3f}), "
                f"{paired['wins']}/{paired['n']}"
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_sweep(results: list[dict], key: str, label: str, title: str, path: Path) -> None:
    """Save mean ± sd cACC of each method against ``key`` (noise or shots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in results):
        values = sorted({r[key] for r in results if r["method"] == method})
        scores = [
            [r["cacc"] for r in results if r["method"] == method and r[key] == v] for v in values
        ]
        axes.errorbar(
            values,
            [np.mean(s) for s in scores],
            yerr=[np.std(s, ddof=1) if len(s) > 1 else 0.0 for s in scores],
            marker="o",
            capsize=3,
            label=method,
        )
    axes.set_xlabel(label)
    axes.set_ylabel("cluster accuracy (test)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_csv(results: list[dict], path: Path) -> None:
    """Save every measurement, one row per method, seed and setting."""
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)


def _float_list(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def parse_arguments(argv):
    """The command line; see ``--help``."""
    from skvf.bench.baselines import method_configs
    from skvf.bench.demo import TINY_BACKBONE

    all_methods = [LABELER_DIRECT, ZERO_SHOT, *method_configs()]
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--dataset", default="digits", help="digits, fashion-mnist or folder:<root>"
    )
    parser.add_argument("--data", help="root of a folder of class folders (sets --dataset)")
    parser.add_argument(
        "--encoder",
        choices=["pca", "hog", "randconv", "clip"],
        help="image features: pca (16x16 pixels -> PCA(32)), hog (HOG -> PCA(32)), randconv "
        "(random convolutions) or clip (the backbone's image tower); default pca, or clip "
        "with --pretrained",
    )
    parser.add_argument(
        "--labeler",
        default="simulated",
        help="'simulated', or a LiteLLM model string (MLLMLabeler)",
    )
    parser.add_argument("--domain", help="domain hint for an LLM labeler, e.g. 'bird'")
    parser.add_argument("--api-base", help="URL of a local OpenAI-compatible server (…/v1)")
    parser.add_argument("--shots", type=int, default=30, help="m: images per class for fitting")
    parser.add_argument(
        "--noise", type=float, default=0.4, help="name-noise rate of the simulated labeler"
    )
    parser.add_argument(
        "--synonym-rate",
        type=float,
        default=0.0,
        help="share of simulated answers given as a synonym or spelling variant",
    )
    parser.add_argument(
        "--generic-rate",
        type=float,
        default=0.0,
        help="share of simulated answers too generic ('clothing', 'number')",
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--methods", default=",".join(all_methods), help="comma-separated")
    parser.add_argument(
        "--max-per-class", type=int, default=500, help="Fashion-MNIST images read per class"
    )
    parser.add_argument(
        "--test-per-class", type=int, default=200, help="held-out images per class (0: all)"
    )
    parser.add_argument("--backbone", default=TINY_BACKBONE, help="open_clip model name")
    parser.add_argument(
        "--pretrained",
        default=None,
        help="open_clip weights tag or file; none: random-init tiny model",
    )
    parser.add_argument(
        "--epochs", type=int, default=200, help="max_epochs of every prompt-tuned method"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--batch-size", type=int, default=64, help="images per pass of the CLIP image tower"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--no-sacc", dest="sacc", action="store_false", help="skip semantic accuracy"
    )
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="skip the sweeps")
    parser.add_argument(
        "--sweep-noise", default="0,0.2,0.3,0.4,0.5", help="noise rates of the noise plot"
    )
    parser.add_argument("--sweep-shots", default="5,10,20,30,50", help="m values of the shots plot")
    parser.add_argument("--sweep-seeds", type=int, default=3)
    parser.add_argument("--sweep-methods", default=f"{LABELER_DIRECT},CoOp on raw names,NeaR")
    parser.add_argument("--out", default="benchmarks/out", help="folder for plots and CSV")
    arguments = parser.parse_args(argv)
    if arguments.data:
        arguments.dataset = f"folder:{arguments.data}"
    if arguments.encoder is None:
        arguments.encoder = "clip" if arguments.pretrained else "pca"
    for option in ("methods", "sweep_methods"):
        chosen = [m.strip() for m in getattr(arguments, option).split(",") if m.strip()]
        unknown = sorted(set(chosen) - set(all_methods))
        if unknown:
            parser.error(f"unknown method(s) {unknown}; choose from {all_methods}")
        setattr(arguments, option, chosen)
    return arguments


def main(argv=None) -> list[dict]:
    """Run the benchmark; print the table; save plots and CSV. Returns the measurements."""
    arguments = parse_arguments(argv)
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns about random weights
    # The GMM runs 10 EM steps by design each epoch; its non-convergence notice is noise.
    warnings.filterwarnings("ignore", message="Best performing initialization did not converge")
    if arguments.threads:
        import torch

        torch.set_num_threads(arguments.threads)
    images, names, name_noise = load_data(arguments.dataset, arguments.max_per_class)
    started = time.perf_counter()
    setting = Setting(
        images=images,
        names=names,
        frozen_features=frozen_features(arguments, images),
        encoder=arguments.encoder,
        name_noise=name_noise,
        labeler=arguments.labeler,
        domain=arguments.domain,
        backbone=arguments.backbone,
        pretrained=arguments.pretrained,
        backbone_kwargs=backbone_kwargs(arguments),
        max_epochs=arguments.epochs,
        device=arguments.device,
        test_per_class=arguments.test_per_class or None,
        synonym_rate=arguments.synonym_rate,
        generic_rate=arguments.generic_rate,
    )
    simulated = arguments.labeler == "simulated"
    command = "python " + shlex.join(
        ["benchmarks/fgvr.py", *(sys.argv[1:] if argv is None else argv)]
    )
    print(f"`{command}`\n")
    print(
        f"{arguments.dataset}, encoder {arguments.encoder}, labeler {arguments.labeler}"
        + (
            f" (noise {arguments.noise:g}, synonyms {arguments.synonym_rate:g}, "
            f"generic {arguments.generic_rate:g})"
            if simulated
            else ""
        )
        + f", m = {arguments.shots}, {arguments.seeds} seeds, backbone {arguments.backbone}"
        + f" ({arguments.pretrained or 'random-init'})\n"
    )
    results = []
    for seed in range(arguments.seeds):
        results += run_trial(
            setting, arguments, arguments.methods, seed, arguments.noise, arguments.shots
        )
    print(markdown_table(results, arguments.methods, simulated))
    paired = paired_table(results, arguments.methods, ["CoOp on raw names", LABELER_DIRECT])
    if paired:
        print("\nPaired by seed (method minus reference):\n\n" + paired)
    first = results[0]
    print(
        f"\n{first['n_fit']} fitting / {first['n_test']} test images per seed; "
        f"{time.perf_counter() - started:.0f} s"
    )
    if not arguments.plots:
        return results
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(results, out / "table.csv")
    title = f"{arguments.dataset}, {arguments.encoder}"
    sweeps = [("shots", _int_list(arguments.sweep_shots), "m (images per class)")]
    if simulated:
        sweeps.insert(0, ("noise", _float_list(arguments.sweep_noise), "name-noise rate"))
    for key, values, label in sweeps:
        measured = []
        for value in values:
            noise = value if key == "noise" else arguments.noise
            shots = value if key == "shots" else arguments.shots
            for seed in range(arguments.sweep_seeds):
                measured += run_trial(
                    setting, arguments, arguments.sweep_methods, seed, noise, shots
                )
        write_csv(measured, out / f"accuracy_vs_{key}.csv")
        fixed = f"m = {arguments.shots}" if key == "noise" else f"noise {arguments.noise:g}"
        plot_sweep(measured, key, label, f"{title}, {fixed}", out / f"accuracy_vs_{key}.png")
        print(f"saved {out / f'accuracy_vs_{key}.png'}")
    return results


if __name__ == "__main__":
    main()
