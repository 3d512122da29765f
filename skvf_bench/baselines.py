"""Baselines NeaR is compared against, with the same ``fit(X)`` / ``predict(X)`` shape.

- :class:`LabelerDirect`: the labeler (a vision LLM) names every image at prediction
  time. No training, but one paid call per predicted image: the costly method NeaR
  replaces.
- :class:`ZeroShotCLIP`: the labeler's names on the training images form the
  vocabulary; frozen CLIP scores each image against ``"a photo of a {name}."``, with no
  tuning; with ``prototype_weight`` it mixes in each name's mean training image
  (FineR's training-free classifier).
- :func:`method_configs`: :class:`~skvf.NeaRClassifier` parameters for CoOp on the
  labeler's raw names, NeaR, and NeaR's ablations (no candidate sets, no GMM, no label
  filter).
"""

from __future__ import annotations

import numbers
import os

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from skvf._images import is_feature_matrix
from skvf._prediction import PromptClassifierMixin
from skvf._sklearn_compat import HasMethods, Interval, fit_context
from skvf.metrics import NameClassifierMixin
from skvf.names import normalize_name
from skvf.noise import FixedNoiseSplitter

__all__ = ["LabelerDirect", "ZeroShotCLIP", "method_configs"]


def _ask_labeler(labeler, X) -> np.ndarray:
    """The labeler's normalised name for each item of ``X`` (``None`` where it gave none)."""
    from skvf.labeling import label_items

    names, valid = label_items(labeler, X)
    result = np.full(len(names), None, dtype=object)
    for index in np.flatnonzero(valid):
        result[index] = normalize_name(names[index]) or None
    return result


def _n_items(X) -> int:
    from skvf._images import as_image_list, is_feature_matrix

    return len(X) if is_feature_matrix(X) else len(as_image_list(X))


class LabelerDirect(NameClassifierMixin, BaseEstimator):
    """The labeler names every image itself, at prediction time.

    The method NeaR is built to avoid: each ``predict`` call sends every image to the
    labeler (a paid vision-LLM request per image unless its answer is cached). ``fit``
    only fits the labeler; it names nothing.

    Parameters
    ----------
    labeler : estimator
        Object with ``fit(X)`` and ``transform(X) -> names`` (and optionally
        ``label(X) -> (names, valid_mask)``), e.g. :class:`skvf.MLLMLabeler` or
        :class:`skvf_bench.simulation.NoisyOracleLabeler`.

    Attributes
    ----------
    labeler_ : estimator
        The fitted labeler.
    n_labeler_calls_ : int
        Images sent to the labeler by ``predict`` since ``fit`` (cache hits of an
        :class:`~skvf.MLLMLabeler` included; its ``usage_`` tells paid calls apart).
    llm_usage_ : dict or None
        The labeler's ``usage_`` after the last ``predict``, when it has one.

    See Also
    --------
    ZeroShotCLIP : names from a vocabulary, with no labeler call at prediction time.

    Examples
    --------
    >>> import numpy as np
    >>> from skvf_bench.simulation import NoisyOracleLabeler, make_oracle
    >>> X = np.arange(8.0).reshape(4, 2)
    >>> labeler = NoisyOracleLabeler(make_oracle(X, ["cat", "dog", "cat", "dog"]), noise_rate=0)
    >>> model = LabelerDirect(labeler).fit(X)
    >>> model.predict(X), model.n_labeler_calls_
    (array(['cat', 'dog', 'cat', 'dog'], dtype=object), 4)
    """

    _parameter_constraints = {"labeler": [HasMethods(["fit", "transform"])]}

    def __init__(self, labeler):
        self.labeler = labeler

    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Fit the labeler; no image is named.

        Parameters
        ----------
        X : sequence of images, or 2-D numeric array
            Whatever the labeler accepts.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        self.labeler_ = clone(self.labeler).fit(X)
        self.n_labeler_calls_ = 0
        self.llm_usage_ = None
        return self

    def predict(self, X) -> np.ndarray:
        """Ask the labeler for the name of every image.

        Parameters
        ----------
        X : sequence of images, or 2-D numeric array

        Returns
        -------
        ndarray of str, shape (n_samples,)
            Normalised names (:func:`skvf.normalize_name`); ``None`` where the labeler
            gave no usable name.
        """
        check_is_fitted(self, "labeler_")
        names = _ask_labeler(self.labeler_, X)
        self.n_labeler_calls_ += len(names)
        usage = getattr(self.labeler_, "usage_", None)
        self.llm_usage_ = dict(usage) if usage else None
        return names


class ZeroShotCLIP(PromptClassifierMixin, NameClassifierMixin, BaseEstimator):
    """Frozen CLIP over the labeler's vocabulary, with no tuning.

    ``fit`` asks the labeler to name the training images; the distinct normalised names
    are ``classes_``. ``predict`` scores each image's frozen feature against the text
    feature of ``template`` filled with each name (CLIP's zero-shot classifier) and
    returns the best name. Nothing is learnt; the labeler is not called at prediction
    time.

    Parameters
    ----------
    labeler : estimator
        As in :class:`~skvf.NeaRClassifier`.
    backbone : str, default="ViT-B-16"
        open_clip model name.
    pretrained : str, path or None, default="openai"
        A hub tag, a local weights file, or ``None`` for random weights (tests only).
    backbone_kwargs : dict or None, default=None
        open_clip config overrides.
    image_encoder : transformer or None, default=None
        ``None`` uses the backbone's frozen image tower. Otherwise a transformer mapping
        the images (or the rows of a 2-D numeric X) to features; features of another
        width than the backbone's embedding are mapped into it by a fixed random
        projection, so zero-shot scores only mean something with the backbone's own
        image tower.
    template : str, default="a photo of a {}."
        Prompt with one ``{}`` for the class name.
    prototype_weight : float in [0, 1], default=0.0
        The share of image prototypes in the scores: each name's prototype is the mean
        feature of the training images the labeler gave that name, and an image's score
        is ``(1 - w)`` times its similarity to the name's prompt plus ``w`` times that
        to the prototype (FineR's training-free classifier; FineR uses 0.3). 0 is plain
        zero-shot CLIP; above 0, ``fit`` encodes the training images (once, with
        ``memory``).
    prototype_views : int, default=0
        Augmented views per training image averaged into the features the prototypes
        are built from, as FineR does (10 views there) and as
        ``NeaRClassifier(prototype_views=)`` does; the same views (crop and flip,
        drawn from ``random_state``, stored under ``memory``). Needs the backbone's
        image tower.
    memory : str, path or None, default=None
        Cache directory of image-tower features, as in :class:`~skvf.NeaRClassifier`.
    batch_size : int, default=64
        Images per pass of the image tower.
    device : str, default="auto"
        ``"auto"`` is CUDA when available, else CPU.
    random_state : int, RandomState or None, default=None
        Seeds the random projection (only used with an ``image_encoder``).

    Attributes
    ----------
    classes_ : ndarray of str
        The labeler's distinct normalised names on the training images, sorted.
    labeler_ : estimator
        The fitted labeler.
    n_labeler_calls_ : int
        Images the labeler was asked to name by ``fit``.
    image_encoder_ : transformer or None
        The fitted image encoder.
    class_text_features_ : ndarray of shape (n_classes, embed_dim)
        Unit-norm text features of the filled-in template.
    logit_scale_ : float
        The backbone's logit scale (capped at 100).
    projection_ : ndarray or None
        Random map from an ``image_encoder``'s features to the embedding size.
    class_image_prototypes_ : ndarray of shape (n_classes, embed_dim) or None
        Unit-norm mean training-image feature of each name (``prototype_weight > 0``).
    device_ : str
        Device the model was fitted on; ``predict`` falls back to the CPU.

    See Also
    --------
    NeaRClassifier : tunes the prompt on the refined names instead.
    LabelerDirect : the labeler names every image itself.

    References
    ----------
    .. [1] Radford et al., "Learning Transferable Visual Models From Natural Language
       Supervision" (CLIP), ICML 2021.
    """

    _parameter_constraints = {
        "labeler": [HasMethods(["fit", "transform"])],
        "backbone": [str],
        "pretrained": [str, os.PathLike, None],
        "backbone_kwargs": [dict, None],
        "image_encoder": [HasMethods(["fit", "transform"]), None],
        "template": [str],
        "prototype_weight": [Interval(numbers.Real, 0, 1, closed="both")],
        "prototype_views": [Interval(numbers.Integral, 0, None, closed="left")],
        "memory": [str, os.PathLike, None],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "device": [str],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        labeler,
        backbone="ViT-B-16",
        pretrained="openai",
        backbone_kwargs=None,
        image_encoder=None,
        template="a photo of a {}.",
        prototype_weight=0.0,
        prototype_views=0,
        memory=None,
        batch_size=64,
        device="auto",
        random_state=None,
    ):
        self.labeler = labeler
        self.backbone = backbone
        self.pretrained = pretrained
        self.backbone_kwargs = backbone_kwargs
        self.image_encoder = image_encoder
        self.template = template
        self.prototype_weight = prototype_weight
        self.prototype_views = prototype_views
        self.memory = memory
        self.batch_size = batch_size
        self.device = device
        self.random_state = random_state

    @fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Name the training images and encode the vocabulary's prompts.

        Parameters
        ----------
        X : sequence of images, or 2-D numeric array with an ``image_encoder``
        y : None
            Ignored.

        Returns
        -------
        self
        """
        import torch
        import torch.nn.functional as F

        from skvf._backbone import build_backbone
        from skvf._device import resolve_device

        if self.template.count("{}") != 1:
            raise ValueError(
                f"template must hold exactly one '{{}}' for the class name, got {self.template!r}."
            )
        if self.prototype_views and self.image_encoder is not None:
            raise ValueError(
                f"prototype_views={self.prototype_views} encodes views with the backbone's "
                "image tower, which image_encoder replaces: set one of them to its default."
            )
        self.labeler_ = clone(self.labeler).fit(X)
        names = _ask_labeler(self.labeler_, X)
        self.n_labeler_calls_ = len(names)
        named = names[names != None]  # noqa: E711
        if len(named) == 0:
            raise ValueError("the labeler gave no usable name for any training image.")
        self.classes_ = np.unique(named.astype(str)).astype(object)

        self.device_ = resolve_device(self.device)
        backbone = build_backbone(
            self.backbone, self.pretrained, self.backbone_kwargs, device=self.device_
        )
        embed_dim = int(backbone.config["embed_dim"])
        self.image_encoder_ = None if self.image_encoder is None else clone(self.image_encoder)
        self.projection_ = None
        if is_feature_matrix(X):
            self.n_features_in_ = X.shape[1]
        features = None
        if self.image_encoder_ is not None:
            from skvf._features import projection_matrix

            features = np.asarray(self.image_encoder_.fit_transform(X))
            if features.shape[1] != embed_dim:
                rng = check_random_state(self.random_state)
                self.projection_ = projection_matrix(features.shape[1], embed_dim, rng)
        self.class_image_prototypes_ = None
        if self.prototype_weight > 0:
            if features is None:
                features = self._tower_features(X, backbone)
            self.class_image_prototypes_ = self._prototypes(features, names)

        prompts = [self.template.format(name) for name in self.classes_]
        tokens = backbone.tokenizer(prompts).to(self.device_)
        with torch.no_grad():
            text = F.normalize(backbone.model.encode_text(tokens).float(), dim=-1)
            scale = float(backbone.model.logit_scale.exp().item())
        self.class_text_features_ = text.cpu().numpy().astype(np.float32)
        self.logit_scale_ = min(scale, 100.0)
        return self

    def _tower_features(self, X, backbone) -> np.ndarray:
        """Image-tower features of the training images (cached by ``memory``).

        With ``prototype_views``, each image's unit-norm mean with its views' features.
        """
        from skvf._features import encode_with_memory, to_embedding_space
        from skvf._images import load_training_items
        from skvf._store import resolve_memory
        from skvf._views import encode_views, view_averaged_features, view_seed

        items, digests, _, _, _ = load_training_items(X, "raise", False)
        cache_root = resolve_memory(self.memory)
        features, _ = encode_with_memory(backbone, items, digests, cache_root, self.batch_size)
        if not self.prototype_views:
            return features
        seed = view_seed(check_random_state(self.random_state))
        views, _ = encode_views(
            backbone, items, digests, self.prototype_views, seed, cache_root, self.batch_size
        )
        return view_averaged_features(to_embedding_space(features, None, None), views)

    def _prototypes(self, features, names) -> np.ndarray:
        """Mean embedded feature of the training images carrying each of ``classes_``."""
        from skvf._features import to_embedding_space
        from skvf._prototypes import image_prototypes

        column = {name: index for index, name in enumerate(self.classes_)}
        weights = np.zeros((len(names), len(self.classes_)))
        for row, name in enumerate(names):
            if name is not None:
                weights[row, column[str(name)]] = 1.0
        embedded = to_embedding_space(features, None, self.projection_)
        return image_prototypes(embedded, weights)


def method_configs() -> dict[str, dict]:
    """:class:`~skvf.NeaRClassifier` parameters of NeaR, its baseline and its ablations.

    Each value holds only the parameters that differ from NeaR's defaults; merge it
    with the shared ones (labeler, backbone, encoder, seed):
    ``NeaRClassifier(**shared, **method_configs()["NeaR"])``. Components are new
    instances on every call.

    Returns
    -------
    dict
        ``{method name: parameters}``, in this order:

        - ``"CoOp on raw names"``: no noise split, no label filter, no prior
          correction, no image prototypes, a random context: cross-entropy on the
          labeler's names (CoOp);
        - ``"NeaR"``: every stage at its default;
        - ``"NeaR w/o candidates"``: singleton candidate sets (each image's own name);
        - ``"NeaR w/o GMM (all clean)"``: every name gets clean probability 1;
        - ``"NeaR w/o GMM (all noisy)"``: every name gets clean probability 0, so
          every target comes from the candidate set and the prediction;
        - ``"NeaR w/o label filter"``: every labeler name stays in ``classes_``;
        - ``"NeaR w/o name merging"``: spelling variants stay separate names;
        - ``"NeaR w/o prior correction"``: ``predict`` scores names by similarity
          alone;
        - ``"NeaR w/o image prototypes"``: ``predict`` scores names by their tuned
          prompts alone (the model of the NeaR paper);
        - ``"NeaR w/o prototype refinement"``: each prototype weighs the training
          images by their refined targets, with no reassignment.

    Examples
    --------
    >>> sorted(method_configs()["CoOp on raw names"])
    ['ctx_init', 'label_filter', 'noise_splitter', 'prior_correction', 'prototype_weight']
    """
    return {
        "CoOp on raw names": {
            "noise_splitter": "passthrough",
            "label_filter": "passthrough",
            "prior_correction": 0.0,
            "ctx_init": None,
            "prototype_weight": 0.0,
        },
        "NeaR": {},
        "NeaR w/o candidates": {"candidate_builder": "passthrough"},
        "NeaR w/o GMM (all clean)": {"noise_splitter": FixedNoiseSplitter(1.0)},
        "NeaR w/o GMM (all noisy)": {"noise_splitter": FixedNoiseSplitter(0.0)},
        "NeaR w/o label filter": {"label_filter": "passthrough"},
        "NeaR w/o name merging": {"merge_name_variants": False},
        "NeaR w/o prior correction": {"prior_correction": 0.0},
        "NeaR w/o image prototypes": {"prototype_weight": 0.0},
        "NeaR w/o prototype refinement": {"prototype_iterations": 0},
    }
