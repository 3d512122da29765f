"""NeaRClassifier: vocabulary-free fine-grained recognition as a scikit-learn classifier."""

from __future__ import annotations

import numbers
import os
import warnings

import numpy as np
from sklearn.base import BaseEstimator, _fit_context, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from .backbone import FrozenBackboneMixin
from .candidates import NeighborCandidateBuilder, candidate_votes
from .features import cached_encode, encode_images, projection_matrix, to_embedding_space
from .filtering import LabelFilter
from .images import (
    ImageInputError,
    as_image_list,
    image_digest,
    is_feature_matrix,
    load_images,
    row_digest,
)
from .metrics import NameClassifierMixin
from .names import merge_near_duplicates, normalize_names
from .noise import GMMNoiseSplitter
from .store import ItemStore, cached_values, resolve_memory, stable_hash
from .training import TrainingConfig, softmax, tune_prompts

__all__ = ["NeaRClassifier"]

_PASSTHROUGH = "passthrough"
# Images loaded, encoded and scored at a time in predict: bounds memory on huge inputs.
_PREDICT_CHUNK = 256


class NeaRClassifier(FrozenBackboneMixin, NameClassifierMixin, BaseEstimator):
    """Name images with no vocabulary: LLM names refined by neighbours, then CLIP alone.

    ``fit`` takes unlabeled images. A multimodal LLM (the ``labeler``) names each one;
    frozen image features give each image its nearest neighbours, whose names form its
    candidate set; CLIP's text side is prompt-tuned (CoOp) on the names, and after a
    warm-up a Gaussian mixture over per-sample losses splits clean from noisy names:
    clean ones are kept, noisy ones are replaced by the model's prediction restricted to
    the candidate set. A label filter keeps the names the tuned model predicts and the
    candidate sets support. ``predict`` is CLIP alone over that vocabulary: no LLM call.

    Parameters
    ----------
    labeler : estimator or None, default=None
        Object with ``fit(X)`` and ``transform(X) -> names`` (and optionally
        ``label(X) -> (names, valid_mask)``). ``None`` is ``MLLMLabeler()``.
    candidate_builder : estimator, "passthrough" or None, default=None
        Builds candidate sets from image features; ``None`` is
        ``NeighborCandidateBuilder()``; ``"passthrough"`` gives singleton sets (own name).
    noise_splitter : estimator, "passthrough" or None, default=None
        Splits clean from noisy names each epoch after warm-up; ``None`` is
        ``GMMNoiseSplitter()``; ``"passthrough"`` trusts every name (plain cross-entropy).
    label_filter : estimator, "passthrough" or None, default=None
        Chooses the final vocabulary; ``None`` is ``LabelFilter()``; ``"passthrough"``
        keeps every name. With splitter and filter off, the estimator is CoOp on the
        labeler's raw names.
    merge_name_variants : bool, default=True
        Map spelling variants of a name ("blue-jay", "blue jays" beside "blue jay":
        hyphens, spaces, apostrophes, a trailing plural "s") onto its most frequent
        spelling before training (:func:`skvf.names.merge_near_duplicates`).
    backbone : str, default="ViT-B-16"
        open_clip model name. Its text tower is always used; its image tower unless
        ``image_encoder`` is given.
    pretrained : str, path or None, default="openai"
        A hub tag, a local weights file, or ``None`` for random weights from a fixed
        seed (offline tests only).
    backbone_kwargs : dict or None, default=None
        open_clip config overrides, merged deeply (``{"text_cfg": {"layers": 2}}``).
    image_encoder : transformer or None, default=None
        ``None`` uses the backbone's frozen image tower. Otherwise a scikit-learn
        transformer mapping the images (a list of RGB PIL images, or the rows of a 2-D
        numeric X) to a 2-D float array; it is cloned and fitted on the training images
        and used for both the neighbours and the classifier.
    center_features : bool, default=True
        Subtract the training mean from image features before use.
    n_ctx : int or None, default=None
        Context vectors; ``None`` is 16, or the token count of ``ctx_init``.
    ctx_init : str or None, default=None
        Phrase initialising the context (``"a photo of a"`` starts from CLIP's
        zero-shot prompt); ``None`` draws the context at random (CoOp's default).
    class_specific_context : bool, default=False
        One context per class instead of a shared one.
    max_epochs : int, default=200
        Full-batch training steps.
    warmup_epochs : int, default=50
        Steps of plain cross-entropy on the labeler's names before refinement.
    learning_rate : float, default=2e-3
    optimizer : {"adam", "sgd"}, default="adam"
        Both with a cosine schedule; SGD uses momentum 0.9 (CoOp's setting).
    logit_scale : float or None, default=None
        Initial logit scale; ``None`` takes the backbone's (100 for pretrained CLIP,
        1/0.07 for random weights).
    learn_logit_scale : bool, default=True
        Train the logit scale (capped at 100) along with the context.
    refinement : {"posterior", "dividemix"}, default="posterior"
        How targets are refined after warm-up. ``"posterior"``: every sample is taught
        its prediction times a candidate prior, its own name getting
        ``clean_vote_weight`` extra votes scaled by its clean probability.
        ``"dividemix"``: clean samples keep their name (blended with the prediction),
        noisy ones learn the prediction restricted to their candidate set.
    clean_vote_weight : float, default=2.0
        Extra prior votes of a surely-clean sample's own name (posterior rule).
    candidate_weighting : {"votes", "mask"}, default="votes"
        How targets use the candidate set: prediction times vote counts, or the
        prediction masked to the set.
    sharpen_temperature : float, default=1.0
        Temperature sharpening refined targets (1 leaves them as they are).
    batch_size : int, default=64
        Images per pass of the CLIP image tower.
    device : str, default="auto"
        ``"auto"`` is CUDA when available (bfloat16 autocast there), else CPU.
    memory : str, path, joblib.Memory or None, default=None
        Cache directory for CLIP image-tower features and labeler answers, one file
        per image keyed by content hash plus backbone weights or labeler parameters: a
        second fit (and every cross-validation fold) reuses them. A custom
        ``image_encoder`` is refitted each time (cache inside it if it is costly).
        Answers enter this cache when the labeler returns; what survives an interrupted
        labeling run is the labeler's own cache (``MLLMLabeler(cache=...)``, on by
        default), which stores each answer the moment it arrives.
    on_error : {"raise", "skip"}, default="raise"
        Bad images (missing, corrupt, not an image): ``"raise"`` names the first one;
        ``"skip"`` drops them from ``fit`` (listed in ``skipped_``) and gives them the
        name ``None`` and NaN probabilities in ``predict``.
    random_state : int, RandomState or None, default=None
        Seeds the context, the projection and every component left unseeded.
    verbose : int, default=0
        Progress bars when positive.

    Attributes
    ----------
    classes_ : ndarray of str
        The final vocabulary, sorted; ``predict`` returns these.
    vocabulary_ : ndarray of str
        Every distinct labeler name after normalisation and merging, sorted; columns of
        the diagnostics.
    labeler_names_ : dict
        ``{"raw": ..., "normalized": ...}``, one entry per training image;
        ``"normalized"`` are the names training starts from (normalised, variants
        merged).
    name_merges_ : dict
        ``{variant: name}`` for every spelling variant merged into another name.
    labeler_ : estimator
        The fitted labeler.
    candidate_builder_, noise_splitter_, label_filter_ : estimator or None
        Fitted components (``None`` when passed through).
    image_encoder_ : transformer or None
        The fitted image encoder.
    candidate_sets_ : ndarray of bool, shape (n_train, len(vocabulary_))
    clean_probability_ : ndarray of shape (n_train,)
        Last epoch's clean probability of each name.
    clean_mask_ : ndarray of bool, shape (n_train,)
    refined_targets_ : ndarray of shape (n_train, len(vocabulary_))
        Last epoch's training targets.
    neighbor_agreement_ : float or None
        Mean share of a training image's neighbours that carry its own labeler name
        (``None`` without candidate sets). It grows with the labeler's accuracy ``q``
        and with how well the features group images by class: neighbours of one class
        agree about ``q**2`` of the time, so a value well below that says neighbours
        cross class borders and the candidate sets can add little.
    train_indices_ : ndarray of int
        Positions in ``X`` of the images used for training.
    skipped_ : list of str
        Why each dropped image was dropped.
    history_ : list of dict
        Per epoch: phase, loss, clean fraction, logit scale.
    llm_usage_ : dict or None
        The labeler's ``usage_`` after fitting, when it has one.
    n_labeler_calls_ : int
        Images the labeler was asked to name in the last fit (cache misses).
    n_images_encoded_ : int
        Images that went through the image tower or encoder in the last fit.
    backbone_digest_ : str
        Hash of the backbone's weights; a loaded model refuses other weights.
    n_features_in_ : int
        Columns of X, only when fitted on 2-D numeric rows (with an image_encoder).
    device_ : str
        Device used by the last fit or predict.

    See Also
    --------
    MLLMLabeler : names images with a multimodal LLM through LiteLLM.
    NeighborCandidateBuilder, GMMNoiseSplitter, LabelFilter : the pluggable stages.

    References
    ----------
    .. [1] "NeaR: Nearest-Neighbor Label Refinement for vocabulary-free fine-grained
       visual recognition", arXiv:2505.01064.
    .. [2] Zhou et al., "Learning to Prompt for Vision-Language Models" (CoOp), IJCV 2022.

    Examples
    --------
    >>> from skvf import NeaRClassifier, MLLMLabeler
    >>> clf = NeaRClassifier(labeler=MLLMLabeler(model="gpt-4o-mini", domain="bird"))
    >>> clf.fit(train_paths).predict(test_paths)  # doctest: +SKIP
    """

    _parameter_constraints = {
        "labeler": [HasMethods(["fit", "transform"]), None],
        "candidate_builder": [HasMethods(["fit"]), StrOptions({_PASSTHROUGH}), None],
        "noise_splitter": [HasMethods(["fit"]), StrOptions({_PASSTHROUGH}), None],
        "label_filter": [HasMethods(["fit"]), StrOptions({_PASSTHROUGH}), None],
        "merge_name_variants": ["boolean"],
        "backbone": [str],
        "pretrained": [str, os.PathLike, None],
        "backbone_kwargs": [dict, None],
        "image_encoder": [HasMethods(["fit", "transform"]), None],
        "center_features": ["boolean"],
        "n_ctx": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "ctx_init": [str, None],
        "class_specific_context": ["boolean"],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "warmup_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "optimizer": [StrOptions({"adam", "sgd"})],
        "logit_scale": [Interval(numbers.Real, 0, 100, closed="right"), None],
        "learn_logit_scale": ["boolean"],
        "refinement": [StrOptions({"posterior", "dividemix"})],
        "clean_vote_weight": [Interval(numbers.Real, 0, None, closed="left")],
        "candidate_weighting": [StrOptions({"votes", "mask"})],
        "sharpen_temperature": [Interval(numbers.Real, 0, None, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "device": [str],
        "memory": [str, os.PathLike, HasMethods(["cache"]), None],
        "on_error": [StrOptions({"raise", "skip"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        labeler=None,
        candidate_builder=None,
        noise_splitter=None,
        label_filter=None,
        merge_name_variants=True,
        backbone="ViT-B-16",
        pretrained="openai",
        backbone_kwargs=None,
        image_encoder=None,
        center_features=True,
        n_ctx=None,
        ctx_init=None,
        class_specific_context=False,
        max_epochs=200,
        warmup_epochs=50,
        learning_rate=2e-3,
        optimizer="adam",
        logit_scale=None,
        learn_logit_scale=True,
        refinement="posterior",
        clean_vote_weight=2.0,
        candidate_weighting="votes",
        sharpen_temperature=1.0,
        batch_size=64,
        device="auto",
        memory=None,
        on_error="raise",
        random_state=None,
        verbose=0,
    ):
        self.labeler = labeler
        self.candidate_builder = candidate_builder
        self.noise_splitter = noise_splitter
        self.label_filter = label_filter
        self.merge_name_variants = merge_name_variants
        self.backbone = backbone
        self.pretrained = pretrained
        self.backbone_kwargs = backbone_kwargs
        self.image_encoder = image_encoder
        self.center_features = center_features
        self.n_ctx = n_ctx
        self.ctx_init = ctx_init
        self.class_specific_context = class_specific_context
        self.max_epochs = max_epochs
        self.warmup_epochs = warmup_epochs
        self.learning_rate = learning_rate
        self.optimizer = optimizer
        self.logit_scale = logit_scale
        self.learn_logit_scale = learn_logit_scale
        self.refinement = refinement
        self.clean_vote_weight = clean_vote_weight
        self.candidate_weighting = candidate_weighting
        self.sharpen_temperature = sharpen_temperature
        self.batch_size = batch_size
        self.device = device
        self.memory = memory
        self.on_error = on_error
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y=None):
        """Name the images, refine the names with their neighbours, tune the prompts.

        Parameters
        ----------
        X : sequence of images
            Paths, PIL images or HxW[xC] arrays (or an (n, H, W[, C]) array); with an
            ``image_encoder``, also a 2-D numeric array of sample rows.
        y : None
            Ignored: NeaR is unsupervised. Accepted so that ``GridSearchCV`` can pass
            true labels on to a scorer.

        Returns
        -------
        self
        """
        from ._device import resolve_device
        from .backbone import build_backbone

        random_state = check_random_state(self.random_state)
        cache_root = resolve_memory(self.memory)
        items, digests, self.train_indices_, self.skipped_ = self._load_training_items(X)

        self.device_ = resolve_device(self.device)
        backbone = build_backbone(
            self.backbone, self.pretrained, self.backbone_kwargs, device=self.device_
        )
        self.backbone_digest_ = backbone.digest
        self._backbone = backbone

        raw_features = self._fit_features(items, digests, backbone, cache_root)
        raw_names, valid = self._label(items, digests, cache_root)
        if not valid.all():
            dropped = np.flatnonzero(~valid)
            self.skipped_ = self.skipped_ + [
                f"X[{self.train_indices_[i]}]: the labeler gave no usable name" for i in dropped
            ]
            raw_features, raw_names = raw_features[valid], raw_names[valid]
            self.train_indices_ = self.train_indices_[valid]
        if self.skipped_:
            warnings.warn(
                f"{len(self.skipped_)} training item(s) dropped; see skipped_: "
                + "; ".join(self.skipped_[:3]),
                UserWarning,
                stacklevel=2,
            )
        names = self._normalise_names(raw_names)
        self.labeler_names_ = {"raw": raw_names, "normalized": names}
        self.vocabulary_, labels = np.unique(names, return_inverse=True)
        self.vocabulary_ = self.vocabulary_.astype(object)
        self._check_vocabulary(labels)

        embed_dim = int(backbone.config["embed_dim"])
        self.feature_mean_ = raw_features.mean(axis=0) if self.center_features else None
        self.projection_ = None
        if raw_features.shape[1] != embed_dim:
            self.projection_ = projection_matrix(raw_features.shape[1], embed_dim, random_state)
        features = to_embedding_space(raw_features, self.feature_mean_, self.projection_)

        votes = self._candidate_votes(raw_features, labels, random_state)
        self.candidate_sets_ = votes > 0
        splitter = self._component("noise_splitter", random_state)
        self.noise_splitter_ = splitter

        result = self._tune(backbone, features, labels, votes, splitter, random_state)
        self.context_ = result.context
        self.logit_scale_ = result.logit_scale
        self.history_ = result.history
        self.clean_probability_ = result.clean_probability
        self.clean_mask_ = result.clean_probability > self._clean_threshold()
        self.refined_targets_ = result.targets

        keep = self._filter_vocabulary(result.probabilities, votes, random_state)
        self.classes_ = self.vocabulary_[keep]
        text_features = self._class_text_features(backbone, result.context)
        self.class_text_features_ = text_features[keep]
        self.llm_usage_ = dict(getattr(self.labeler_, "usage_", None) or {}) or None
        return self

    # -- fit stages ---------------------------------------------------------------------

    def _uses_feature_rows(self, X) -> bool:
        if not is_feature_matrix(X):
            return False
        if self.image_encoder is None:
            raise ValueError(
                f"X is a 2-D numeric array of shape {X.shape}: sample rows, not images. Pass "
                "images (paths, PIL images or an (n, H, W[, C]) array), or an image_encoder "
                "that turns these rows into features."
            )
        return True

    def _load_items(self, X):
        """Return (items, digests, positions, errors) for images or feature rows."""
        if self._uses_feature_rows(X):
            rows = np.asarray(X)
            if not np.all(np.isfinite(rows)):
                raise ValueError("X holds NaN or infinite values; impute or drop those rows.")
            self.n_features_in_ = rows.shape[1]
            return rows, [row_digest(row) for row in rows], np.arange(len(rows)), []
        self.__dict__.pop("n_features_in_", None)
        loaded = load_images(X, on_error=self.on_error)
        digests = [image_digest(image) for image in loaded.images]
        return loaded.images, digests, loaded.indices, loaded.errors

    def _load_training_items(self, X):
        if X is None:
            raise ValueError("X is None; pass a collection of training images.")
        try:
            n_items = len(X)
        except TypeError:
            X = as_image_list(X)
            n_items = len(X)
        if n_items == 0:
            raise ValueError("X is empty; NeaR needs training images to fit.")
        items, digests, positions, errors = self._load_items(X)
        if len(positions) == 0:
            raise ValueError(
                f"none of the {n_items} items of X is a usable image: " + "; ".join(errors[:3])
            )
        if len(positions) < 2:
            raise ValueError(
                f"NeaR needs at least two training images; got n_samples={len(positions)}."
            )
        return items, digests, positions, errors

    def _fit_features(self, items, digests, backbone, cache_root) -> np.ndarray:
        if self.image_encoder is not None:
            self.image_encoder_ = clone(self.image_encoder)
            self.n_images_encoded_ = len(items)
            features = self.image_encoder_.fit_transform(items)
            return self._check_encoder_output(features, len(items))
        self.image_encoder_ = None
        store = None
        if cache_root is not None:
            namespace = "features-" + stable_hash(
                {"backbone": self.backbone, "weights": backbone.digest}
            )
            store = ItemStore(cache_root, namespace, kind="npy")
        features, self.n_images_encoded_ = cached_encode(
            lambda images: encode_images(
                backbone, images, self.device_, self.batch_size, self.verbose
            ),
            items,
            digests,
            store,
        )
        return features

    def _check_encoder_output(self, features, n_items: int) -> np.ndarray:
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or len(features) != n_items:
            raise ValueError(
                f"image_encoder returned an array of shape {features.shape}; it must return "
                f"one row per image, shape ({n_items}, n_features)."
            )
        if not np.all(np.isfinite(features)):
            raise ValueError("image_encoder returned NaN or infinite features.")
        return features

    def _label(self, items, digests, cache_root):
        """Name every item, through the answer cache; returns (raw names, valid mask)."""
        labeler = self.labeler
        self.labeler_ = _default_component("labeler") if labeler is None else clone(labeler)
        if self.verbose and "verbose" in self.labeler_.get_params(deep=False):
            self.labeler_.set_params(verbose=self.verbose)
        self.labeler_.fit(items)
        store = None
        if cache_root is not None:
            params = {
                key: value
                for key, value in self.labeler_.get_params(deep=True).items()
                if key not in _LABELER_PARAMS_NOT_IN_KEY
            }
            namespace = "labels-" + stable_hash(
                {"labeler": type(self.labeler_).__qualname__, "params": params}
            )
            store = ItemStore(cache_root, namespace, kind="json")

        def ask(subset):
            names, valid = label_items(self.labeler_, subset)
            return [{"name": name if ok else None} for name, ok in zip(names, valid, strict=True)]

        answers, self.n_labeler_calls_ = cached_values(ask, items, digests, store)
        raw = np.asarray([answer["name"] for answer in answers], dtype=object)
        return raw, np.asarray([answer["name"] is not None for answer in answers])

    def _normalise_names(self, raw_names) -> np.ndarray:
        names = normalize_names(raw_names)
        empty = [int(self.train_indices_[i]) for i in np.flatnonzero(names == "")]
        if empty:
            raise ValueError(
                f"the labeler's name for X[{empty[0]}] ({raw_names[names == ''][0]!r}) is empty "
                f"after normalisation ({len(empty)} such image(s)); an empty class name is "
                "never allowed. Fix the labeler, or use one with on_error='skip'."
            )
        self.name_merges_ = {}
        if self.merge_name_variants:
            merged = merge_near_duplicates(names)
            self.name_merges_ = {name: into for name, into in merged.items() if name != into}
            names = np.asarray([merged[name] for name in names], dtype=object)
        return names

    def _check_vocabulary(self, labels) -> None:
        if len(self.vocabulary_) < 2:
            raise ValueError(
                f"the labeler gave the same name ({self.vocabulary_[0]!r}) to all "
                f"{len(labels)} training images; NeaR needs at least two distinct names. "
                "Use more varied images, or a more specific labeler prompt or domain."
            )

    def _component(self, name: str, random_state):
        """Clone the component parameter ``name`` (or its default), seeding it if unseeded."""
        # Drawn for every stage, used or not: switching a stage off in an ablation must
        # not shift the seeds of the stages after it (the prompt context among them).
        seed = int(random_state.randint(np.iinfo(np.int32).max))
        given = getattr(self, name)
        if isinstance(given, str) and given == _PASSTHROUGH:
            return None
        component = _default_component(name) if given is None else clone(given)
        params = component.get_params(deep=False)
        if self.random_state is not None and params.get("random_state", 0) is None:
            component.set_params(random_state=seed)
        return component

    def _candidate_votes(self, raw_features, labels, random_state) -> np.ndarray:
        builder = self._component("candidate_builder", random_state)
        self.candidate_builder_ = builder
        n_classes = len(self.vocabulary_)
        if builder is None:
            self.neighbor_agreement_ = None
            return candidate_votes(labels, None, n_classes)
        builder.fit(raw_features, labels, n_classes=n_classes)
        agreement = getattr(builder, "name_agreement_", None)
        self.neighbor_agreement_ = None if agreement is None else float(np.mean(agreement))
        return np.asarray(builder.candidate_votes_, dtype=np.float64)

    def _clean_threshold(self) -> float:
        return float(getattr(self.noise_splitter_, "threshold", 0.5))

    def _context_size(self, tokenizer) -> int:
        from .prompt import context_token_count

        if self.ctx_init is None:
            return 16 if self.n_ctx is None else self.n_ctx
        init_tokens = context_token_count(tokenizer, self.ctx_init)
        if self.n_ctx is not None and self.n_ctx != init_tokens:
            raise ValueError(
                f"n_ctx={self.n_ctx} does not match ctx_init={self.ctx_init!r}, which is "
                f"{init_tokens} tokens; pass n_ctx=None (or {init_tokens}), or ctx_init=None "
                "for a random context."
            )
        return init_tokens

    def _prompt_learner(self, backbone, context=None, random_state=None):
        import torch

        from .prompt import PromptLearner

        generator = torch.Generator()
        if random_state is not None:
            generator.manual_seed(int(random_state.randint(np.iinfo(np.int32).max)))
        learner = PromptLearner(
            backbone.model,
            backbone.tokenizer,
            list(self.vocabulary_),
            n_ctx=self._context_size(backbone.tokenizer),
            ctx_init=self.ctx_init,
            class_specific=self.class_specific_context,
            generator=generator,
        )
        if context is not None:
            with torch.no_grad():
                learner.context.copy_(torch.as_tensor(context))
        return learner.to(self.device_)

    def _tune(self, backbone, features, labels, votes, splitter, random_state):
        learner = self._prompt_learner(backbone, random_state=random_state)
        initial_scale = self.logit_scale
        if initial_scale is None:
            initial_scale = float(backbone.model.logit_scale.exp().item())
        config = TrainingConfig(
            max_epochs=self.max_epochs,
            warmup_epochs=self.warmup_epochs,
            learning_rate=self.learning_rate,
            optimizer=self.optimizer,
            logit_scale=min(initial_scale, 100.0),
            learn_logit_scale=self.learn_logit_scale,
            clean_threshold=self._clean_threshold(),
            refinement=self.refinement,
            clean_vote_weight=self.clean_vote_weight,
            candidate_weighting=self.candidate_weighting,
            sharpen_temperature=self.sharpen_temperature,
            device=self.device_,
            verbose=self.verbose,
        )
        return tune_prompts(learner, features, labels, votes, splitter, config)

    def _filter_vocabulary(self, probabilities, votes, random_state) -> np.ndarray:
        label_filter = self._component("label_filter", random_state)
        self.label_filter_ = label_filter
        if label_filter is None:
            return np.ones(len(self.vocabulary_), dtype=bool)
        keep = np.asarray(label_filter.fit(probabilities, votes).keep_mask_, dtype=bool)
        if not keep.any():
            warnings.warn(
                "the label filter kept no name; keeping every name the model predicts on "
                "the training images instead.",
                UserWarning,
                stacklevel=3,
            )
            keep = np.bincount(probabilities.argmax(axis=1), minlength=len(keep)) > 0
        return keep

    def _class_text_features(self, backbone, context) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        learner = self._prompt_learner(backbone, context=context)
        with torch.no_grad():
            text = F.normalize(learner().float(), dim=-1)
        return text.cpu().numpy().astype(np.float32)

    # -- prediction ---------------------------------------------------------------------

    def _embed(self, items) -> np.ndarray:
        if self.image_encoder_ is not None:
            raw = self._check_encoder_output(self.image_encoder_.transform(items), len(items))
        else:
            raw = encode_images(self._runtime_backbone(), items, self.device_, self.batch_size)
        return to_embedding_space(raw, self.feature_mean_, self.projection_)

    def decision_function(self, X) -> np.ndarray:
        """Scaled cosine similarity of each image to each class prompt.

        Parameters
        ----------
        X : sequence of images
            As in :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_samples, n_classes), or (n_samples,) with two classes
            Columns follow ``classes_``; with two classes, the score of ``classes_[1]``
            minus that of ``classes_[0]`` (scikit-learn's binary convention). Bad images
            get NaN under ``on_error="skip"``.
        """
        scores = self._scores(X)
        if len(self.classes_) == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def _scores(self, X) -> np.ndarray:
        """Scores of every image for every class, shape (n_samples, n_classes)."""
        check_is_fitted(self, "class_text_features_")
        if self._uses_feature_rows(X):
            items = np.asarray(X, dtype=np.float64)
            expected = getattr(self, "n_features_in_", None)
            if expected is None:
                raise ValueError(
                    f"X is a 2-D numeric array of shape {items.shape}, but this model was "
                    "fitted on images; pass images."
                )
            if items.shape[1] != expected:
                raise ValueError(
                    f"X has {items.shape[1]} features, but NeaRClassifier is expecting "
                    f"{expected} features as input."
                )
            return self.logit_scale_ * self._embed(items) @ self.class_text_features_.T
        entries = as_image_list(X)
        scores = np.full((len(entries), len(self.classes_)), np.nan, dtype=np.float32)
        for start in range(0, len(entries), _PREDICT_CHUNK):
            chunk = entries[start : start + _PREDICT_CHUNK]
            try:
                loaded = load_images(chunk, on_error=self.on_error)
            except ImageInputError as error:
                raise ImageInputError(_shift_index(str(error), start)) from None
            if len(loaded.images):
                features = self._embed(loaded.images)
                rows = start + loaded.indices
                scores[rows] = self.logit_scale_ * features @ self.class_text_features_.T
        return scores

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities over ``classes_``.

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Rows sum to one (NaN rows for skipped bad images).
        """
        scores = np.asarray(self._scores(X), dtype=np.float64)
        probabilities = np.full_like(scores, np.nan)
        ok = np.isfinite(scores).all(axis=1)
        probabilities[ok] = softmax(scores[ok])
        return probabilities

    def predict(self, X) -> np.ndarray:
        """Name each image with one of ``classes_``.

        Parameters
        ----------
        X : sequence of images

        Returns
        -------
        ndarray of str, shape (n_samples,)
            ``None`` for a bad image under ``on_error="skip"``.
        """
        scores = self._scores(X)
        ok = np.isfinite(scores).all(axis=1)
        names = np.full(len(scores), None, dtype=object)
        names[ok] = self.classes_[np.argmax(scores[ok], axis=1)]
        return names

    # -- scikit-learn plumbing ----------------------------------------------------------

    def set_params(self, **params):
        """Set parameters; ``component__param`` works on a default (``None``) component.

        Parameters
        ----------
        **params : dict
            Estimator parameters, nested ones as ``component__param``.

        Returns
        -------
        self
        """
        for key in params:
            component, _, nested = key.partition("__")
            if nested and component in _COMPONENTS and getattr(self, component, 0) is None:
                setattr(self, component, _default_component(component))
        return super().set_params(**params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = self.image_encoder is not None
        tags.input_tags.three_d_array = True  # an (n, H, W) stack of grayscale images
        tags.non_deterministic = self.random_state is None
        return tags


def label_items(labeler, items):
    """Ask a labeler for one name per item; returns ``(names, valid)``.

    Uses the labeler's ``label(X) -> (names, valid)`` when it has one, else its
    ``transform(X)`` (every name valid), and checks that the answer is one ``str`` per
    valid item.

    Parameters
    ----------
    labeler : fitted labeler
    items : list or ndarray
        Images (or feature rows) to name.

    Returns
    -------
    names : ndarray of object, shape (n_items,)
    valid : ndarray of bool, shape (n_items,)
    """
    if hasattr(labeler, "label"):
        names, valid = labeler.label(items)
    else:
        names = labeler.transform(items)
        valid = np.ones(len(items), dtype=bool)
    names = np.asarray(names, dtype=object).ravel()
    valid = np.asarray(valid, dtype=bool).ravel()
    if len(names) != len(items):
        raise ValueError(
            f"the labeler returned {len(names)} names for {len(items)} images; a labeler "
            "must return exactly one name per image."
        )
    for index, name in enumerate(names):
        if valid[index] and not isinstance(name, str):
            raise TypeError(
                f"the labeler returned {name!r} ({type(name).__name__}) for image {index}; "
                "names must be str."
            )
    return names, valid


_COMPONENTS = ("labeler", "candidate_builder", "noise_splitter", "label_filter")

# Labeler parameters that change how answers are fetched, not what they are: leaving them
# out of the answer-cache key lets a verbose or more concurrent run reuse every answer.
_LABELER_PARAMS_NOT_IN_KEY = frozenset(
    {"verbose", "max_concurrency", "timeout", "max_retries", "backoff_base", "cache", "max_cost"}
)


def _default_component(name: str):
    """A new instance of the default for the component parameter ``name``."""
    if name == "labeler":
        from .labeling import MLLMLabeler

        return MLLMLabeler()
    defaults = {
        "candidate_builder": NeighborCandidateBuilder,
        "noise_splitter": GMMNoiseSplitter,
        "label_filter": LabelFilter,
    }
    return defaults[name]()


def _shift_index(message: str, offset: int) -> str:
    """Rewrite ``X[i]`` in a chunk's error message into the position in the whole input."""
    import re

    def shifted(match):
        return f"X[{int(match.group(1)) + offset}]"

    return re.sub(r"X\[(\d+)\]", shifted, message, count=1)
