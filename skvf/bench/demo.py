"""Settings and builders for offline tests and demos: no pretrained CLIP weights needed."""

from __future__ import annotations

from collections.abc import Sequence

from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline, make_pipeline

from ..classifier import NeaRClassifier
from .encoders import ImagePixels
from .simulation import NoisyOracleLabeler, digits_confusions, make_oracle

__all__ = [
    "TINY_BACKBONE",
    "TINY_BACKBONE_KWARGS",
    "TINY_BACKBONE_PARAMS",
    "offline_demo_classifier",
    "pixel_pca_encoder",
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

    The labeler (:class:`~skvf.bench.simulation.NoisyOracleLabeler`) knows each image's true
    digit and names ``noise_rate`` of the images wrong, mostly as a confusable digit
    (:func:`~skvf.bench.simulation.digits_confusions`); the image features are
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
