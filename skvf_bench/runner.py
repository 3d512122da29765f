"""NeaR against its baselines on the fine-grained garment benchmark, through a stand-in CLIP.

The paper's regime, offline: the benchmark pool of :mod:`skvf_bench.finegrained` (160
garment classes), a simulated vision LLM (:mod:`skvf_bench.simulated_mllm`, strong or
weak profile) naming the images, and a stand-in CLIP pretrained here
(:mod:`skvf_bench.standin`) whose **own image tower** encodes them: every classifier
gets ``backbone``, ``pretrained`` and ``backbone_kwargs`` from
:func:`~skvf_bench.standin.standin_params` and no ``image_encoder``.

Images are encoded once per run. :func:`prepare_benchmark` runs the stand-in's image
tower over the whole pool and writes each image's features into the feature store of
the ``memory`` directory through :func:`skvf._features.encode_with_memory`, the
function :class:`~skvf.NeaRClassifier`'s fit encodes with: every later fit, of every method
and seed, finds its images there (``n_images_encoded_`` is 0). Predictions for the
scores are computed from the same stored features and each fitted model's state
(:func:`predict_from_features`, what ``predict`` computes after the image tower); the
real ``predict``, image tower included, runs on a sample of the test images for the
predict time and is checked to agree.

- :func:`prepare_benchmark`: the pool, the stand-in, the features (a :class:`Benchmark`);
- :func:`draw_split`: the fitting and test images of one draw (``3`` or ``"1-10"``);
- :func:`build_methods`: the methods, unfitted, sharing labeler, stand-in and memory;
- :func:`run_trial`: fit and score the methods on one draw and seed;
- :func:`reask_selection`: how well re-asking chose whom to ask (``reask``);
- :func:`load_sacc_model`: FineR's sentence model where it can be loaded, else MiniLM.
"""

from __future__ import annotations

import ast
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .baselines import LabelerDirect, ZeroShotCLIP, method_configs
from .finegrained import FineGarments, few_shot_draws, imbalanced_split, load_fine_garments
from .simulated_mllm import make_simulated_mllm

__all__ = [
    "COOP_TRUE",
    "LABELER_DIRECT",
    "TRAINING_FREE",
    "ZERO_SHOT",
    "ZERO_SHOT_TRUE",
    "Benchmark",
    "build_methods",
    "draw_split",
    "load_sacc_model",
    "method_names",
    "parse_draw",
    "parse_params",
    "parse_variant",
    "predict_from_features",
    "prepare_benchmark",
    "reask_selection",
    "run_trial",
    "true_name_labeler",
]

LABELER_DIRECT = "labeler direct"
ZERO_SHOT = "zero-shot CLIP"
ZERO_SHOT_TRUE = "zero-shot CLIP on true names"
TRAINING_FREE = "training-free prototypes"
#: FineR's share of the image prototypes (its text weight is 0.7).
FINER_PROTOTYPE_WEIGHT = 0.3
COOP_TRUE = "CoOp on true names"
NO_NAME = "unknown"  # stands for a missing name in the metrics

#: Rates of a simulated MLLM that always answers the true fine name, as written.
_TRUE_NAMES = dict(
    generic_rate=0.0, partial_rate=0.0, sibling_rate=0.0, random_rate=0.0, variant_rate=0.0
)
_FINER_MODEL = "all-mpnet-base-v2"


def method_names() -> list[str]:
    """Every method :func:`build_methods` knows, in table order.

    The labeler's own names, zero-shot CLIP over the labeler's vocabulary and over the
    true names (a reference), the training-free classifier mixing zero-shot text scores
    with image prototypes of the labeler's names (FineR's), CoOp on the labeler's raw
    names and on the true names (the reference NeaR's gap is reported against), then
    NeaR and its ablations (:func:`skvf_bench.baselines.method_configs`).
    """
    configs = list(method_configs())
    return [
        LABELER_DIRECT,
        ZERO_SHOT,
        ZERO_SHOT_TRUE,
        TRAINING_FREE,
        configs[0],
        COOP_TRUE,
        *configs[1:],
    ]


@dataclass
class Benchmark:
    """One run's shared state: the pool, the stand-in, and the pool's features.

    Attributes
    ----------
    data : FineGarments
        The benchmark pool.
    standin : dict
        ``backbone``, ``pretrained`` and ``backbone_kwargs`` of the stand-in CLIP.
    standin_name : str
        Its recipe.
    memory : pathlib.Path
        The cache directory every classifier gets as ``memory``.
    features : ndarray of shape (n_images, embed_dim)
        The stand-in's image-tower features of each pool image, unnormalised.
    n_encoded : int
        Images the image tower encoded while preparing (the others were in ``memory``).
    encode_seconds : float
        Time of that encoding and of the cache's reads and writes.
    device : str
    batch_size : int
    """

    data: FineGarments
    standin: dict
    standin_name: str
    memory: Path
    features: np.ndarray
    n_encoded: int
    encode_seconds: float
    device: str
    batch_size: int


def prepare_benchmark(
    memory,
    standin: str = "garments",
    n_per_class: int = 20,
    garments=None,
    device: str = "auto",
    batch_size: int = 64,
    random_state: int = 0,
) -> Benchmark:
    """Build the pool at the stand-in's image size and encode it once into ``memory``.

    Parameters
    ----------
    memory : str or os.PathLike
        Cache directory; the pool's features go into the store that
        ``NeaRClassifier(memory=memory)`` reads for the stand-in's weights.
    standin : str, default="garments"
        A recipe of :data:`skvf_bench.standin.RECIPES`; its weights are built on first
        use (:func:`~skvf_bench.standin.standin_params`).
    n_per_class : int, default=20
        Images per class of the benchmark pool.
    garments : sequence of str or None, default=None
        Garment types to keep (16 classes each); ``None``: all ten (160 classes).
    device : str, default="auto"
    batch_size : int, default=64
        Images per pass of the image tower.
    random_state : int, default=0
        Seed of the pool.

    Returns
    -------
    Benchmark
    """
    from skvf._backbone import build_backbone
    from skvf._device import resolve_device
    from skvf._features import encode_with_memory
    from skvf._images import image_digest, load_images
    from skvf._store import resolve_memory

    from .standin import standin_params

    params = standin_params(standin)
    image_size = int(params["backbone_kwargs"]["vision_cfg"]["image_size"])
    data = load_fine_garments(
        "benchmark",
        n_per_class=n_per_class,
        image_size=image_size,
        garments=garments,
        random_state=random_state,
    )
    device = resolve_device(device)
    backbone = build_backbone(
        params["backbone"], params["pretrained"], params["backbone_kwargs"], device=device
    )
    images = load_images(data.images).images
    memory = resolve_memory(memory)
    started = time.perf_counter()
    features, n_encoded = encode_with_memory(
        backbone, images, [image_digest(image) for image in images], memory, batch_size
    )
    return Benchmark(
        data=data,
        standin=params,
        standin_name=standin,
        memory=memory,
        features=features,
        n_encoded=n_encoded,
        encode_seconds=time.perf_counter() - started,
        device=device,
        batch_size=batch_size,
    )


def parse_draw(text: str):
    """``"3"`` -> 3 images per class; ``"1-10"`` -> the imbalanced draw ``"1-10"``.

    Examples
    --------
    >>> parse_draw("3"), parse_draw("1-10")
    (3, '1-10')
    """
    low, dash, high = text.partition("-")
    if not dash:
        return int(text)
    if int(low) > int(high):
        raise ValueError(f"an imbalanced draw is 'low-high' with low <= high, got {text!r}.")
    return f"{int(low)}-{int(high)}"


def draw_split(names, draw, seed: int, test_per_class: int | None):
    """The fitting and test indices of one draw of ``names``.

    Parameters
    ----------
    names : array-like of str
    draw : int or str
        m images per class (:func:`~skvf_bench.finegrained.few_shot_draws`: the same
        permutation for every m of a seed), or ``"low-high"`` for the imbalanced draw
        (:func:`~skvf_bench.finegrained.imbalanced_split`).
    seed : int
    test_per_class : int or None
        Held-out images per class at most.

    Returns
    -------
    fit_indices, test_indices : ndarray of int
    """
    if isinstance(draw, str):
        low, high = (int(v) for v in draw.split("-"))
        return imbalanced_split(
            names, low, high, random_state=seed, max_test_per_class=test_per_class
        )
    return few_shot_draws(
        names, shots=(draw,), random_state=seed, max_test_per_class=test_per_class
    )[draw]


def parse_params(assignments: list[str]) -> dict:
    """``["max_epochs=100", "ctx_init=a photo of a"]`` -> NeaRClassifier parameters.

    Values are Python literals where they parse as one (numbers, booleans, ``None``),
    strings otherwise.

    Examples
    --------
    >>> parse_params(["center_features=False", "ctx_init=a photo of a"])
    {'center_features': False, 'ctx_init': 'a photo of a'}
    """
    params = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"a parameter is NAME=VALUE, got {assignment!r}.")
        try:
            params[name.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[name.strip()] = value
    return params


def parse_variant(text: str) -> tuple[str, dict]:
    """``"NeaR [short]: max_epochs=60; ctx_init=a photo of a"`` -> a method variant.

    A variant is a prompt-tuned method of :func:`method_names` (or the training-free
    one) run again, in the same trial, with some parameters changed: its results are
    paired by seed with the method's own, so a default can be chosen from one run.

    Returns
    -------
    name : str
        ``"<method> [<tag>]"``.
    params : dict
        As :func:`parse_params` reads the ``;``-separated assignments.

    Raises
    ------
    ValueError
        The text is not ``<method> [<tag>]: NAME=VALUE; ...``, or the method is not a
        prompt-tuned one.

    Examples
    --------
    >>> parse_variant("NeaR [short]: max_epochs=60; ctx_init=a photo of a")
    ('NeaR [short]', {'max_epochs': 60, 'ctx_init': 'a photo of a'})
    """
    name, colon, assignments = text.partition(":")
    base, bracket, tag = name.strip().partition(" [")
    tuned = [m for m in method_names() if m not in (LABELER_DIRECT, ZERO_SHOT, ZERO_SHOT_TRUE)]
    # tuned: the prompt-tuned methods and the training-free one, whose weight is tuned too
    if not colon or not bracket or not tag.endswith("]") or len(tag) < 2:
        raise ValueError(
            f"a variant is '<method> [<tag>]: NAME=VALUE; ...', got {text!r}; "
            "e.g. 'NeaR [short]: max_epochs=60'."
        )
    if base not in tuned:
        raise ValueError(f"a variant's method must be one of {tuned}, got {base!r}.")
    return name.strip(), parse_params([a for a in assignments.split(";") if a.strip()])


def build_methods(
    bench: Benchmark,
    labeler,
    true_labeler,
    seed: int,
    names: list[str],
    max_epochs: int,
    params: dict | None = None,
    variants: dict | None = None,
) -> dict:
    """Unfitted estimators for the methods in ``names`` (see :func:`method_names`).

    Every CLIP method gets the stand-in (its own image tower) and seed ``seed``; the
    prompt-tuned ones also get ``bench.memory``, ``max_epochs``, seeded stages (so an
    ablation shifts no other seed) and ``params`` (NeaRClassifier parameters applied to
    every prompt-tuned method). The references get ``true_labeler``. A name of
    ``variants`` (:func:`parse_variant`) is its method with the variant's parameters
    on top.
    """
    from skvf import GMMNoiseSplitter, NeaRClassifier, NeighborCandidateBuilder

    shared = dict(**bench.standin, device=bench.device, batch_size=bench.batch_size)
    methods = {}
    variants = variants or {}
    for name in names:
        # New stage instances per method: a variant's nested parameters
        # (noise_splitter__...) must not reach the other methods' stages.
        configs = method_configs()
        tuned = {
            **shared,
            "candidate_builder": NeighborCandidateBuilder(random_state=seed),
            "noise_splitter": GMMNoiseSplitter(random_state=seed),
            "max_epochs": max_epochs,
            "memory": str(bench.memory),
            "random_state": seed,
            **(params or {}),
        }
        base = name.partition(" [")[0] if name in variants else name
        if base == LABELER_DIRECT:
            methods[name] = LabelerDirect(labeler)
        elif base in (ZERO_SHOT, ZERO_SHOT_TRUE):
            given = true_labeler if base == ZERO_SHOT_TRUE else labeler
            methods[name] = ZeroShotCLIP(given, random_state=seed, **shared)
        elif base == TRAINING_FREE:
            methods[name] = ZeroShotCLIP(
                labeler,
                prototype_weight=FINER_PROTOTYPE_WEIGHT,
                memory=str(bench.memory),
                random_state=seed,
                **shared,
            )
        elif base == COOP_TRUE:
            config = configs["CoOp on raw names"]
            methods[name] = NeaRClassifier(true_labeler, **{**tuned, **config})
        else:
            methods[name] = NeaRClassifier(labeler, **{**tuned, **configs[base]})
        if name in variants:  # through set_params: nested names (label_filter__...) too
            methods[name].set_params(**variants[name])
    return methods


def predict_from_features(model, features: np.ndarray) -> np.ndarray:
    """The names a fitted CLIP classifier's ``predict`` gives images of these features.

    ``features`` are the backbone's image-tower features of the images (unnormalised,
    as the feature store holds them); the scores are ``predict``'s own, from the
    model's centring and projection to the best of its class prompts.
    """
    return model.classes_[np.argmax(model._scores_from_features(features), axis=1)]


def load_sacc_model(name: str = "auto"):
    """The sentence model for sACC, and the name to print with the scores.

    ``"auto"`` loads FineR's ``all-mpnet-base-v2`` when it is in the local Hugging Face
    cache (no download is tried: offline, that costs a minute of retries), and the
    offline all-MiniLM-L6-v2 (:data:`skvf.metrics.DEFAULT_SENTENCE_MODEL`) otherwise.
    Any other name is loaded with :func:`skvf.metrics.load_sentence_model`.

    Returns
    -------
    model : object with ``encode``
    description : str
    """
    from skvf.metrics import DEFAULT_SENTENCE_MODEL, load_sentence_model

    if name != "auto":
        return load_sentence_model(name), name
    try:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(_FINER_MODEL, local_files_only=True), _FINER_MODEL
    except Exception:  # not cached, or sentence-transformers missing: both mean fall back
        description = (
            f"{DEFAULT_SENTENCE_MODEL} (all-MiniLM-L6-v2; {_FINER_MODEL} is not in the local "
            f"Hugging Face cache: --sacc-model {_FINER_MODEL} downloads it)"
        )
        return load_sentence_model(DEFAULT_SENTENCE_MODEL), description


def true_name_labeler(data, profile: str, seed: int):
    """The simulated MLLM of ``profile`` made to answer every image's true name, as written.

    What the references on the true names ("CoOp on true names", "zero-shot CLIP on
    true names") are given: a perfect labeler.

    Examples
    --------
    >>> from skvf_bench.finegrained import load_fine_garments
    >>> data = load_fine_garments(n_per_class=2, garments=["trouser"], image_size=16)
    >>> labeler = true_name_labeler(data, "weak", seed=0).fit(data.images)
    >>> bool((labeler.transform(data.images) == data.names).all())
    True
    """
    return make_simulated_mllm(data, profile, random_state=seed, **_TRUE_NAMES)


def run_trial(
    bench: Benchmark,
    profile: str,
    draw,
    seed: int,
    methods: list[str],
    max_epochs: int = 200,
    test_per_class: int | None = 10,
    sacc_model=None,
    predict_sample: int = 256,
    params: dict | None = None,
    predictions: list | None = None,
    variants: dict | None = None,
) -> list[dict]:
    """Fit and score every method on one draw and seed; one result dict per method.

    Parameters
    ----------
    bench : Benchmark
    profile : {"strong", "weak"}
        The simulated MLLM's profile; its seed is ``seed``.
    draw : int or str
        See :func:`draw_split`.
    seed : int
    methods : list of str
    max_epochs : int, default=200
    test_per_class : int or None, default=10
    sacc_model : object with ``encode`` or None, default=None
        ``None`` skips sACC (NaN).
    predict_sample : int, default=256
        Test images each CLIP method's real ``predict`` runs on, for its time.
    params : dict or None, default=None
        NeaRClassifier parameters for every prompt-tuned method.
    predictions : list or None, default=None
        When a list, one dict per test image and method is appended to it: ``method``,
        ``profile``, ``shots``, ``seed``, ``index`` (in the pool), ``true`` and
        ``predicted``, the names the scores were computed from.
    variants : dict or None, default=None
        Method variants (:func:`parse_variant`), name -> parameters; run when named in
        ``methods``.

    Returns
    -------
    list of dict
        Per method: ``cacc``, ``sacc`` (FineR's form), calls (``fit_calls`` counts the
        re-asked images too), ``fit_s``, ``predict_ms_per_1000`` (the real predict),
        ``images_encoded`` (by the fit), ``n_classes`` (the fitted vocabulary; the
        labeler's: the names it gave), ``classes_lost`` (:func:`lost_classes`),
        ``predict_agreement`` (real predict against the
        stored-feature predictions on the sample), the re-asking measures of
        :func:`reask_selection` (NaN and 0 for a method that does not re-ask) and the
        setting.
    """
    from skvf.metrics import cluster_accuracy, semantic_accuracy

    data = bench.data
    fit_index, test_index = draw_split(data.names, draw, seed, test_per_class)
    labeler = make_simulated_mllm(data, profile, random_state=seed)
    true_labeler = true_name_labeler(data, profile, seed)
    models = build_methods(
        bench, labeler, true_labeler, seed, methods, max_epochs, params, variants
    )
    y_test = data.names[test_index]
    # Spread over the classes (test_index runs class by class); distinct, as the step is >= 1.
    n_sampled = max(1, min(predict_sample, len(test_index)))
    sampled = np.linspace(0, len(test_index) - 1, n_sampled).astype(int)
    results = []
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(data.images[fit_index])
        fit_seconds = time.perf_counter() - start
        if name == LABELER_DIRECT:
            start = time.perf_counter()
            predicted = model.predict(data.images[test_index])
            predict_seconds, n_timed, agreement = time.perf_counter() - start, len(test_index), 1.0
        else:
            start = time.perf_counter()
            real = model.predict(data.images[test_index[sampled]])
            predict_seconds, n_timed = time.perf_counter() - start, len(sampled)
            predicted = predict_from_features(model, bench.features[test_index])
            agreement = float(np.mean(real == predicted[sampled]))
        predicted = np.where(predicted == None, NO_NAME, predicted)  # noqa: E711
        if predictions is not None:
            setting = {"method": name, "profile": profile, "shots": draw, "seed": seed}
            predictions += [
                {**setting, "index": int(index), "true": true, "predicted": guess}
                for index, true, guess in zip(test_index, y_test, predicted, strict=True)
            ]
        predict_calls = model.n_labeler_calls_ if name == LABELER_DIRECT else 0
        reasking = reask_selection(model, data.names[fit_index])
        results.append(
            {
                "method": name,
                "profile": profile,
                "shots": draw,
                "seed": seed,
                "cacc": cluster_accuracy(y_test, predicted),
                "sacc": np.nan
                if sacc_model is None
                else semantic_accuracy(y_test, predicted, model=sacc_model),
                # Every method but the labeler's own has each fitting image named once
                # (here the shared memory answers all but the first of them), the
                # re-asked ones asked once more, and one request for synonyms when asked.
                "fit_calls": 0
                if name == LABELER_DIRECT
                else len(fit_index)
                + reasking["reask_calls"]
                + int(getattr(model, "synonyms_asked_", False)),
                "calls_per_1000": 1000.0 * predict_calls / len(test_index),
                "cost_per_1000": 0.0,
                "fit_s": fit_seconds,
                "predict_ms_per_1000": 1e6 * predict_seconds / n_timed,
                "images_encoded": getattr(model, "n_images_encoded_", 0),
                "n_classes": len(getattr(model, "classes_", ())) or len(set(predicted)),
                "classes_lost": len(lost_classes(y_test, predicted)),
                "predict_agreement": agreement,
                **reasking,
                "n_fit": len(fit_index),
                "n_test": len(test_index),
            }
        )
    return results


def lost_classes(y_true, y_pred, at_most: float = 0.1) -> np.ndarray:
    """The classes that cluster accuracy's matching all but misses.

    A class is lost when at most ``at_most`` of its images are matched to it, as
    :func:`skvf.metrics.cluster_matched` matches them: no predicted name serves it,
    typically because it shares its name with a sibling class.

    Parameters
    ----------
    y_true : array-like of str, shape (n_samples,)
    y_pred : array-like of str, shape (n_samples,)
    at_most : float, default=0.1

    Returns
    -------
    ndarray of str
        The lost classes, sorted.

    Examples
    --------
    >>> lost_classes(["a", "a", "b", "b", "c"], ["x", "x", "x", "y", "x"])
    array(['c'], dtype=object)
    """
    from skvf.metrics import cluster_matched

    y_true = np.asarray(y_true, dtype=object)
    matched = cluster_matched(y_true, y_pred)
    classes = np.unique(y_true)
    return np.array([c for c in classes if matched[y_true == c].mean() <= at_most], dtype=object)


def reask_selection(model, true_names) -> dict:
    """How well a fitted model's re-asking chose whom to ask, whatever the answers.

    Measures that do not depend on how well the simulated labeler answers a choice
    question (an assumption of :mod:`skvf_bench.simulated_mllm`), only on its first
    names and the candidate sets.

    Parameters
    ----------
    model : fitted estimator
        A :class:`~skvf.NeaRClassifier` (with ``reask`` > 0 and a labeler with
        ``names_the_truth``, such as :class:`~skvf_bench.simulated_mllm.SimulatedMLLM`);
        any other estimator gives NaN and 0.
    true_names : array-like of str
        The true name of each image the model was fitted on.

    Returns
    -------
    dict
        ``reask_calls``: images re-asked (each one more labeler request);
        ``reask_precision``: the share of them whose first name was wrong (NaN when
        none was re-asked); ``reask_recall``: the share of the wrong first names that
        were re-asked (NaN when none was wrong).
    """
    if getattr(model, "reask", 0) <= 0 or not hasattr(model, "reasked_"):
        return {"reask_calls": 0, "reask_precision": np.nan, "reask_recall": np.nan}
    first = np.asarray(model.labeler_names_["normalized"], dtype=object).copy()
    first[model.reasked_] = model.reask_first_names_
    truth = np.asarray(true_names, dtype=object)[model.train_indices_]
    wrong = ~model.labeler_.names_the_truth(first, truth)
    asked = np.zeros(len(first), dtype=bool)
    asked[model.reasked_] = True
    return {
        "reask_calls": int(asked.sum()),
        "reask_precision": float(wrong[asked].mean()) if asked.any() else np.nan,
        "reask_recall": float(asked[wrong].mean()) if wrong.any() else np.nan,
    }
