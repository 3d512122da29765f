"""Settings and builders for offline tests and demos: no pretrained CLIP weights needed."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline, make_pipeline

from skvf._images import load_images
from skvf.classifier import NeaRClassifier
from skvf.metrics import cluster_accuracy

from .baselines import method_configs
from .datasets import few_shot_split, load_digits_images
from .encoders import HOGFeatures, ImagePixels
from .simulation import NoisyOracleLabeler, digits_confusions, make_oracle

__all__ = [
    "TINY_BACKBONE",
    "TINY_BACKBONE_KWARGS",
    "TINY_BACKBONE_PARAMS",
    "offline_demo_classifier",
    "offline_image_encoder",
    "pixel_pca_encoder",
    "run_digits_demo",
]

#: An open_clip model name whose config :data:`TINY_BACKBONE_KWARGS` shrinks.
TINY_BACKBONE = "ViT-S-32"

#: ``backbone_kwargs`` shrinking ViT-S-32 to ~3M parameters (most of them the token
#: embedding): 32x32 images, two 64-wide layers per tower. Built with
#: ``pretrained=None`` it is random-init; it builds in well under a second.
TINY_BACKBONE_KWARGS = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "width": 64, "layers": 2, "patch_size": 8},
    "text_cfg": {"width": 64, "heads": 2, "layers": 2},
}

#: The parameters of a classifier (``NeaRClassifier``, ``ZeroShotCLIP``) on the tiny
#: random-init backbone: ``NeaRClassifier(**TINY_BACKBONE_PARAMS, labeler=...)``.
TINY_BACKBONE_PARAMS = {
    "backbone": TINY_BACKBONE,
    "pretrained": None,
    "backbone_kwargs": TINY_BACKBONE_KWARGS,
}


def pixel_pca_encoder(n_components: int = 32, random_state=None) -> Pipeline:
    """Image features needing no weights: 16x16 grey pixels -> PCA.

    Parameters
    ----------
    n_components : int, default=32
        Features per image.
    random_state : int, RandomState instance or None, default=None
        Seed of the PCA.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Unfitted.
    """
    return make_pipeline(ImagePixels(size=16), PCA(n_components, random_state=random_state))


def offline_image_encoder(kind: str, images, random_state=None) -> Pipeline:
    """Offline image features for the training ``images``: pixels or HOG -> PCA.

    Behind ``skvf fit --image-encoder pixels|hog``. PCA keeps 32 components, fewer when
    fewer than 33 of the images can be read (it needs more images than components).

    Parameters
    ----------
    kind : {"pixels", "hog"}
        :func:`pixel_pca_encoder`, or :class:`~skvf_bench.encoders.HOGFeatures` -> PCA.
    images : sequence of images
        The images the encoder will be fitted on; unreadable ones are not counted.
    random_state : int, RandomState instance or None, default=None
        Seed of the PCA.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Unfitted.
    """
    n_images = len(load_images(images, on_error="skip").indices)
    n_components = min(32, max(1, n_images - 1))
    if kind == "pixels":
        return pixel_pca_encoder(n_components, random_state=random_state)
    if kind == "hog":
        return make_pipeline(HOGFeatures(), PCA(n_components, random_state=random_state))
    raise ValueError(f"kind must be 'pixels' or 'hog', got {kind!r}.")


def offline_demo_classifier(
    images,
    names: Sequence[str],
    *,
    noise_rate: float = 0.4,
    n_components: int = 32,
    random_state: int = 0,
    **params,
) -> NeaRClassifier:
    """NeaR fully offline on digits: a simulated labeler, pixel features, a tiny CLIP.

    The labeler (:class:`~skvf_bench.simulation.NoisyOracleLabeler`) knows each image's true
    digit and names ``noise_rate`` of the images wrong, mostly as a confusable digit
    (:func:`~skvf_bench.simulation.digits_confusions`); the image features are
    :func:`pixel_pca_encoder`; CLIP is the tiny random-init model of
    :data:`TINY_BACKBONE_PARAMS`.

    Parameters
    ----------
    images : sequence of images, or image stack
        Every image the labeler will be asked to name.
    names : sequence of str
        The true digit name of each image.
    noise_rate : float, default=0.4
        Share of wrong names.
    n_components : int, default=32
        Image features (PCA components).
    random_state : int, default=0
        Seed of the labeler, the PCA and the classifier.
    **params
        Other parameters of the classifier; they override the ones above.

    Returns
    -------
    NeaRClassifier
        Unfitted.
    """
    labeler = NoisyOracleLabeler(
        make_oracle(images, names),
        noise_rate=noise_rate,
        confusions=digits_confusions(),
        random_state=random_state,
    )
    defaults = {
        **TINY_BACKBONE_PARAMS,
        "labeler": labeler,
        "image_encoder": pixel_pca_encoder(n_components, random_state=random_state),
        "random_state": random_state,
    }
    return NeaRClassifier(**{**defaults, **params})


def run_digits_demo(
    shots: int = 10,
    noise_rate: float = 0.4,
    max_epochs: int = 100,
    random_state: int = 0,
    *,
    warmup_epochs: int | str | None = "auto",
    max_test_per_class: int | None = 50,
    methods: Sequence[str] = ("CoOp on raw names", "NeaR"),
    export: str | Path | None = None,
    verbose: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """The offline demo (``skvf demo``): NeaR against plain CoOp on noisy digit names.

    scikit-learn's digits (upscaled to 32x32) are split into ``shots`` unlabeled training
    images per digit and held-out test images; the classifiers are
    :func:`offline_demo_classifier` (a simulated labeler naming ``noise_rate`` of the
    images wrong, pixels -> PCA features, a tiny random-init CLIP) with the parameters of
    each method of :func:`~skvf_bench.baselines.method_configs`. Each is fitted on the
    training images and scored (cluster accuracy) on the test images.

    Parameters
    ----------
    shots : int, default=10
        Training images per digit.
    noise_rate : float, default=0.4
        Share of wrong names given by the simulated labeler.
    max_epochs : int, default=100
        Training steps of each classifier.
    random_state : int, default=0
        Seed of the split, the labeler, the PCA and the classifiers.
    warmup_epochs : int, "auto" or None, default="auto"
        Steps before refinement (:class:`~skvf.NeaRClassifier`'s ``"auto"``: a quarter
        of ``max_epochs``, at most 50); ``None`` leaves the classifier's default.
    max_test_per_class : int or None, default=50
        Test images per digit; ``None`` holds out every image not used for training.
    methods : sequence of str, default=("CoOp on raw names", "NeaR")
        Keys of :func:`~skvf_bench.baselines.method_configs`, fitted in this order.
    export : str, Path or None, default=None
        Also write the images to ``export/train`` and ``export/test`` as class folders
        (``export/<split>/<digit name>/<index>.png``).
    verbose : int, default=0
        Verbosity of the classifiers (progress bars).
    progress : callable or None, default=None
        Called with a one-line message while the demo runs: after exporting the images,
        with the split and the labeler's share of wrong names before fitting, and after
        each fit with its time (``progress=print`` narrates the demo).

    Returns
    -------
    dict
        Cluster accuracies: ``"labeler names"`` (the labeler's names of the training
        images), then one per method (its predictions on the test images).
    """
    progress = progress or (lambda message: None)
    images, true_names = load_digits_images(scale=4)
    fit_index, test_index = few_shot_split(
        true_names, shots, random_state=random_state, max_test_per_class=max_test_per_class
    )
    if export is not None:
        _export_images(Path(export).expanduser(), images, true_names, fit_index, test_index)
        progress(f"wrote the digit images to {export}/train and {export}/test")
    X_fit, X_test = images[fit_index], images[test_index]
    params = {"max_epochs": max_epochs, "verbose": verbose}
    if warmup_epochs is not None:
        params["warmup_epochs"] = warmup_epochs
    near = offline_demo_classifier(
        images,
        true_names,
        noise_rate=noise_rate,
        n_components=min(32, max(1, len(X_fit) - 1)),  # PCA needs more images than features
        random_state=random_state,
        **params,
    )
    raw_names = near.labeler.fit(X_fit).transform(X_fit)
    results = {"labeler names": cluster_accuracy(true_names[fit_index], raw_names)}
    wrong_rate = float(np.mean(raw_names != true_names[fit_index]))
    progress(
        f"{len(X_fit)} unlabeled training digits ({shots} per class), {len(X_test)} test "
        f"digits; the simulated labeler named {wrong_rate:.0%} of the training digits wrong"
    )
    configs = method_configs()
    for method in methods:
        model = clone(near).set_params(**configs[method])
        start = time.perf_counter()
        model.fit(X_fit)
        results[method] = model.score(X_test, true_names[test_index])
        progress(f"fitted {method} in {time.perf_counter() - start:.1f} s")
    return results


def _export_images(folder: Path, images, names, fit_index, test_index) -> None:
    from PIL import Image

    for split, indices in (("train", fit_index), ("test", test_index)):
        for index in indices:
            class_dir = folder / split / str(names[index])
            class_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index]).save(class_dir / f"{index:04d}.png")
