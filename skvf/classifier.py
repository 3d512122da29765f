"""NeaRClassifier: vocabulary-free fine-grained recognition as a scikit-learn classifier."""

from __future__ import annotations

import numbers
import os

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state

from ._features import (
    check_encoder_output,
    encode_with_memory,
    projection_matrix,
    to_embedding_space,
)
from ._images import (
    DEFAULT_MAX_PIXELS,
    is_feature_matrix,
    load_training_items,
)
from ._openset import (
    KNOWN_SCORES,
    calibration_rows,
    fit_temperature,
    known_images,
    known_scores,
    leave_one_out_prototype_similarity,
    temperature_targets,
)
from ._prediction import PREDICT_CHUNK, PromptClassifierMixin
from ._prior import name_prior, prior_offsets
from ._prototypes import (
    agreement_weight,
    image_prototypes,
    mix,
    refine_prototypes,
    text_prototype_agreement,
)
from ._sklearn_compat import HasMethods, Interval, StrOptions, fit_context
from ._store import resolve_memory
from ._training import MAX_LOGIT_SCALE, TrainingConfig, tune_prompts
from ._views import encode_views, view_averaged_features, view_seed
from ._warnings import warn
from .candidates import (
    NeighborCandidateBuilder,
    build_candidate_votes,
    recount_candidate_votes,
)
from .exceptions import SkippedImagesWarning
from .filtering import LabelFilter, filter_vocabulary
from .labeling import (
    BudgetExceededError,
    LabelingError,
    LabelingWarning,
    MLLMLabeler,
    UnusableAnswerError,
    cached_labels,
    labeler_requests,
)
from .metrics import NameClassifierMixin
from .names import check_vocabulary, group_representatives, training_names
from .noise import GMMNoiseSplitter
from .reasking import check_reask_labeler, reask_contradicted
from .serialization import register_trusted_type

__all__ = ["PREDICT_CHUNK", "NeaRClassifier"]

_PASSTHROUGH = "passthrough"


def _groups_synonyms(labeler) -> bool:
    """Whether ``labeler`` (an instance or a class) can say which names are synonyms."""
    return callable(getattr(labeler, "group_synonyms", None))


@register_trusted_type
class NeaRClassifier(PromptClassifierMixin, NameClassifierMixin, BaseEstimator):
    """Name images with no vocabulary: LLM names refined by neighbours, then CLIP alone.

    ``fit`` takes unlabeled images. A multimodal LLM (the ``labeler``) names each one;
    frozen image features give each image its nearest neighbours, whose names form its
    candidate set; CLIP's text side is prompt-tuned (CoOp) on the names, and after a
    warm-up a Gaussian mixture over per-sample losses splits clean from noisy names:
    clean ones are kept, noisy ones are replaced by the model's prediction restricted to
    the candidate set. A label filter keeps the names the tuned model predicts and the
    candidate sets support. ``predict`` is CLIP alone over that vocabulary, each name's
    probability divided by the tuned model's mean probability of it on the training
    images (``prior_correction``): no LLM call.

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
        keeps every name. With splitter and filter off and ``prior_correction=0``, the
        estimator is CoOp on the labeler's raw names.
    merge_name_variants : bool, default=True
        Map spelling variants of a name ("blue-jay", "blue jays" beside "blue jay":
        hyphens, spaces, apostrophes, a trailing plural "s"; and the same words in
        another order, "2012 audi a4" beside "audi a4 2012") onto its most frequent
        spelling before training (:func:`skvf.names.merge_near_duplicates`).
    merge_synonyms : {"auto"} or bool, default="auto"
        Ask the labeler once per fit which of its names are wordings of one kind
        ("pullover", "sweater"; its ``group_synonyms(names)``, one text request for
        ``MLLMLabeler``, cached and counted like the names) and map each group onto its
        most frequent name before training (listed in ``synonym_merges_``). With a few
        images per class the wordings of one kind split its images until the label
        filter drops them all. ``"auto"`` asks only where that can happen: when the
        labeler has ``group_synonyms`` and the label filter would apply its predicted
        rule to the names (:meth:`LabelFilter.rules_for`: names recur, and the answers
        spread over many names rather than a few generic ones); a request that fails or
        an unusable answer then merges nothing, with a warning. ``True`` always asks
        (and refuses a labeler without ``group_synonyms``), ``False`` never.
    reask : float, default=0.0
        Largest share of the training images the labeler is asked about again, with
        choices, once the candidate sets are built: in [0, 1], 0 is off. The images
        whose own name their candidate votes contradict (another name has at least as
        many) or whose name is generic (given to more than 4 times the median name's
        images), ranked by how strongly they are contradicted, at most
        ``floor(reask * n_train)`` of them, are shown to the labeler again with a few
        names of their candidate set and "none of these" (its ``choose(X, choices)``,
        which :class:`MLLMLabeler` has; another labeler without one is refused). A
        chosen name replaces the first one, and the names, vocabulary and candidate
        sets are rebuilt before prompt tuning (:mod:`skvf.reasking`). Each re-asked
        image is one more labeler request, within the labeler's ``max_cost``. The
        answers are stored apart from the first names (by :class:`MLLMLabeler` in its
        ``cache``, by ``memory`` for other labelers), keyed by the image and the names
        offered, so a refit asks nothing again and a first name is never read as a
        chosen one.
    reask_choices : int, default=5
        Most names offered to a re-asked image: its own, then its candidate set's most
        voted ones, listed alphabetically.
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
    ctx_init : str or None, default="auto"
        Phrase initialising the context (``"a photo of a"`` starts from CLIP's
        zero-shot prompt); ``None`` draws the context at random (CoOp's default).
        ``"auto"``: ``"a photo of a"`` with the backbone's own image tower and
        ``n_ctx=None``, since that tower's text side already knows the prompt (on the
        offline stand-in CLIP: +.021 with a strong labeler and +.103 with a
        generic-naming one at 3 images per class, 10 seeds; level at 1 image per
        class); a random context otherwise (with an ``image_encoder``, or when
        ``n_ctx`` is given).
    class_specific_context : bool, default=False
        One context per class instead of a shared one.
    max_epochs : int or "auto", default="auto"
        Full-batch training steps. ``"auto"``: 60 with the backbone's own image tower
        (a pretrained CLIP's prompt needs few steps, and on a CPU the text tower's steps
        are what a fit costs: 60 keep prompt tuning at about 1.5 image passes for 300
        names on ViT-B-16), 200 with an ``image_encoder`` (whose features the text side
        must learn to meet: 60 lost .04-.06 on digits and Fashion-MNIST). On the offline
        stand-in CLIP, starting from "a photo of a", 100 steps add .008 with a strong
        labeler and nothing with a weak one. See docs/results.md.
    warmup_epochs : int or "auto", default="auto"
        Steps of plain cross-entropy on the labeler's names before refinement;
        ``"auto"`` is a quarter of ``max_epochs``, at most 50.
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
    prior_correction : float, default=1.0
        How much ``predict`` corrects for the names the tuned model favours: each
        name's probability is divided by its prior (the model's mean probability of
        the name over the training images, ``name_prior_``) raised to this power. A
        name that draws images of other classes (a generic name, a variant given to
        many images) loses its head start. 1 is the full prior shift, 0 none. On the
        offline 160-class benchmark it gained .011-.025 cACC in every setting, 10 of 10
        seeds (docs/results.md).
    prototype_weight : float in [0, 1] or "auto", default="auto"
        The share of image prototypes in ``predict``'s scores: an image's similarity to
        a name is ``(1 - w)`` times that to the name's tuned prompt plus ``w`` times
        that to the name's image prototype (its training images' mean feature, see
        ``class_image_prototypes_``), as FineR's training-free classifier mixes text
        and image prototypes. 0 is the text-only model of the NeaR paper, bit for bit.
        ``"auto"``, with the backbone's own image tower (whose image and text features
        share one space), is chosen at fit from how well the names fit the images: the
        share of training images that the tuned prompts and the prototypes built
        without them name alike (``prototype_agreement_``) gives
        ``clip(1.3 - 1.8 * agreement, 0.2, 0.9)`` (``prototype_weight_``; 0.5 when
        fewer than 10 images share their name). The best weight grows with how poor the
        labeler's names are: about 0.2 with a fine-naming labeler, 0.85 with a
        generic-naming one on the offline 160-class garment benchmark, where the rule
        gained .012 and .020 cACC over a fixed 0.5 at m = 3 (docs/results.md). 0 with
        an ``image_encoder``, whose features reach that space through a random
        projection (there prototypes cost .02-.03 cACC on Fashion-MNIST). Read at
        predict time, so it can be changed after fit (the prototypes were refined at
        the fit's weight).
    prototype_iterations : int, default=3
        Rounds of prototype refinement at fit: each training image is given to the
        name the mixed classifier prefers and the prototypes are recomputed (as in
        k-means). 0 keeps the first prototypes, each training image weighted by its
        refined target.
    prototype_views : int, default=0
        Augmented views per training image that the prototypes are built from, as
        FineR builds its prototypes: each view is a random resized crop (80-100% of the
        area) flipped left-right half the time, encoded by the backbone's image tower
        at fit, and the feature each training image lends the prototypes is the
        unit-norm mean of its own and its views' features. The training images are
        still scored by their own features, as ``predict`` scores new images, which
        get no views (``predict`` costs no extra pass). The views are drawn from
        ``random_state`` (from a copy of it: every other seed is that of a fit without
        views) and each image's digest, and stored under ``memory`` beside the
        images' features, so a refit encodes none again. Needs images and the
        backbone's own tower: refused with an ``image_encoder`` or 2-D numeric X. 0,
        the default, builds the prototypes from the images alone, bit for bit.
    unknown_label : str or None, default=None
        When set, ``predict`` answers it for images whose known-ness
        (:meth:`score_samples`) is below ``unknown_threshold_``: images of kinds the
        training set never held. ``predict_proba`` and ``decision_function`` keep
        their columns. ``None`` leaves ``predict`` as it is, bit for bit. A label
        that is one of ``classes_`` is refused by ``predict``.
    known_rate : float in (0, 1], default=0.95
        The share of training images, scored as new images would be (each left out of
        the training images and its own prototype), that the threshold accepts as
        known: the threshold is their ``1 - known_rate`` quantile. No labelled unknowns
        are needed. An image alone under its name is left out of this (with one image
        per kind, its nearest other images are of other kinds: it looks like an
        unknown), unless fewer than 10 images share a name with another.
    known_score : {"knn", "prototype", "msp", "max_logit", "energy", "mcm"}, default="knn"
        The known-ness score: the mean cosine to the 3 nearest training images
        (``known_image_features_``: the training images' features, at most 10,000 of
        them, kept in the model); the cosine to the nearest image prototype; the
        largest class probability; the largest score; the energy (log-sum-exp of the
        scores); MCM (the largest softmax of the unscaled similarity). On the offline
        garment benchmark ``"knn"`` separated held-out classes at AUROC .72-.81, .03-.04
        above the prototype score with a generic-naming labeler (whose names shape the
        prototypes but not the neighbours) and within .01 of it or above with a
        fine-naming one; see docs/results.md.
    calibrate_probabilities : bool, default=True
        Divide the scores by ``probability_temperature_`` before the softmax of
        ``predict_proba``. The temperature is fitted at ``fit`` to the training images,
        each scored left out of its own prototype, against targets that mix what the
        names and the images say as the scores mix them: the refined name at the text
        share, the names the prototypes gave the two nearest other training images at
        the prototype share. It never changes ``predict``. On the offline garment
        benchmark (expected calibration error on held-out images of the known classes,
        names matched as cluster accuracy matches them, 10 seeds) it brings the error
        from .24-.28 to .06-.10 with a fine-naming labeler from 3 images per class and
        holds it at .05-.08 elsewhere, except with a generic-naming labeler and one
        image per class (.38 to .26-.27; see docs/results.md). With a prototype weight
        of 0 (an ``image_encoder``, or ``prototype_weight=0``) nothing in the scores is
        held out from the training images and the temperature is 1. ``False`` gives
        the plain softmax of ``decision_function``.
    batch_size : int, default=64
        Images per pass of the CLIP image tower.
    device : str, default="auto"
        ``"auto"`` is CUDA when available (bfloat16 autocast there), else CPU.
    memory : str, path, joblib.Memory or None, default=None
        Cache directory for CLIP image-tower features, one file per image keyed by
        content hash and backbone weights: a second fit (and every cross-validation
        fold) reuses them. A custom ``image_encoder`` is refitted each time (cache
        inside it if it is costly). Each labeler answer is stored once: a labeler that
        keeps its own answers (:class:`MLLMLabeler`, in its ``cache``, on by default,
        each answer stored the moment it arrives) keeps them there; the answers of any
        other labeler are stored here, keyed by content hash and the labeler's
        parameters (:func:`skvf.labeling.keeps_answers`).
    max_image_pixels : int or None, default=64_000_000
        Images with more pixels are refused as bad images, read from the file header
        before decoding (a decompression bomb is a few KB on disk and gigabytes in
        memory). ``None`` accepts any size.
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
        merged). A name chosen by re-asking stands in both in place of the first one
        (kept in ``reask_first_names_``).
    name_merges_ : dict
        ``{variant: name}`` for every spelling variant merged into another name.
    synonym_merges_ : dict
        ``{name: name}`` for every name the labeler grouped with another, more frequent
        one (``merge_synonyms``); empty when not asked.
    synonyms_asked_ : bool
        Whether the labeler was asked for synonyms in this fit.
    labeler_ : estimator
        The fitted labeler.
    candidate_builder_, noise_splitter_, label_filter_ : estimator or None
        Fitted components (``None`` when passed through).
    image_encoder_ : transformer or None
        The fitted image encoder.
    candidate_sets_ : ndarray of bool, shape (n_train, len(vocabulary_))
    reasked_ : ndarray of int
        The training images asked again (``reask``), as increasing positions in
        ``train_indices_`` (rows of ``candidate_sets_``); empty when none was.
    reask_changed_ : ndarray of bool, shape (len(reasked_),)
        Whether each re-asked image got a new name (a choice other than its own).
    reask_first_names_ : ndarray of object, shape (len(reasked_),)
        The names of the re-asked images before re-asking.
    clean_probability_ : ndarray of shape (n_train,)
        Last epoch's clean probability of each name.
    clean_mask_ : ndarray of bool, shape (n_train,)
    refined_targets_ : ndarray of shape (n_train, len(vocabulary_))
        Last epoch's training targets.
    name_prior_ : ndarray of shape (len(classes_),)
        The tuned model's mean probability of each kept name over the training images
        (smoothed by a tenth of an image per name); sums to one.
    score_offsets_ : ndarray of shape (len(classes_),)
        Added to every image's scores by ``predict``: ``-prior_correction *
        log(name_prior_)``, centred on zero.
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
        Requests the labeler answered in the last fit, none from a store: images asked
        to name and asked again to choose a name (``reask``), the misses of ``memory``;
        for a labeler that keeps its own answers, the requests it sent (its ``usage_``
        ``calls`` less ``retries``, the naming context's and the synonym request
        included).
    n_images_encoded_ : int
        Images that went through the image tower or encoder in the last fit.
    n_views_encoded_ : int
        Augmented views (``prototype_views``) that went through the image tower in the
        last fit, the others read from ``memory``.
    backbone_digest_ : str
        Hash of the backbone's weights; a loaded model refuses other weights.
    n_features_in_ : int
        Columns of X, only when fitted on 2-D numeric rows (with an image_encoder).
    device_ : str
        Device the model was fitted on. ``predict`` uses it where it exists here and
        the CPU otherwise (with a warning); it never changes fitted state.
    feature_mean_ : ndarray of shape (n_image_features,) or None
        Training mean of the image features, subtracted before use
        (``center_features=True``); ``None`` otherwise.
    projection_ : ndarray of shape (n_image_features, embed_dim) or None
        Seeded orthonormal map from an ``image_encoder``'s features to the text
        embedding size; ``None`` when the sizes already agree (CLIP's own tower).
    context_ : ndarray of shape (n_ctx, width) or (n_vocabulary, n_ctx, width)
        The learnt prompt context (token embeddings), shared or one per class.
    logit_scale_ : float
        The learnt (or fixed) logit scale multiplying cosine similarities.
    class_text_features_ : ndarray of shape (n_classes, embed_dim)
        Unit-norm text features of the tuned prompt for each of ``classes_``.
    unknown_threshold_ : float
        ``predict`` answers ``unknown_label`` (when set) below this known-ness.
    unknown_threshold_params_ : dict
        The ``known_score`` and ``known_rate`` that ``unknown_threshold_`` was fitted
        for; ``predict`` with ``unknown_label`` refuses others (fit again to change
        them).
    known_image_features_ : ndarray of shape (n_known_images, embed_dim) or None
        With ``known_score="knn"``, the unit-norm features (float32) of the training
        images new images are compared with: all of them, or a random 10,000;
        ``None`` for the other scores.
    probability_temperature_ : float
        The temperature ``predict_proba`` divides the scores by
        (``calibrate_probabilities``).
    class_image_prototypes_ : ndarray of shape (n_classes, embed_dim)
        Unit-norm image prototype of each of ``classes_``: the mean (centred, unit-norm)
        feature of the training images given that name after
        ``prototype_iterations`` rounds of refinement (a name no image was given keeps
        its prototype from the round before). With ``class_text_features_``,
        all ``predict`` needs besides the image features.
    prototype_weight_ : float
        The prototypes' share of the scores chosen at fit: ``prototype_weight``, or for
        ``"auto"`` the weight read from ``prototype_agreement_``.
    prototype_agreement_ : float
        The share of training images (among those whose name keeps other images) that
        the tuned prompts and the image prototypes built without them name alike; NaN
        when no image shares its name.

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
        "merge_synonyms": ["boolean", StrOptions({"auto"})],
        "reask": [Interval(numbers.Real, 0, 1, closed="both")],
        "reask_choices": [Interval(numbers.Integral, 2, None, closed="left")],
        "backbone": [str],
        "pretrained": [str, os.PathLike, None],
        "backbone_kwargs": [dict, None],
        "image_encoder": [HasMethods(["fit", "transform"]), None],
        "center_features": ["boolean"],
        "n_ctx": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "ctx_init": [str, None],
        "class_specific_context": ["boolean"],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "warmup_epochs": [Interval(numbers.Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "optimizer": [StrOptions({"adam", "sgd"})],
        "logit_scale": [Interval(numbers.Real, 0, 100, closed="right"), None],
        "learn_logit_scale": ["boolean"],
        "refinement": [StrOptions({"posterior", "dividemix"})],
        "clean_vote_weight": [Interval(numbers.Real, 0, None, closed="left")],
        "candidate_weighting": [StrOptions({"votes", "mask"})],
        "sharpen_temperature": [Interval(numbers.Real, 0, None, closed="neither")],
        "prior_correction": [Interval(numbers.Real, 0, None, closed="left")],
        "prototype_weight": [Interval(numbers.Real, 0, 1, closed="both"), StrOptions({"auto"})],
        "prototype_iterations": [Interval(numbers.Integral, 0, None, closed="left")],
        "prototype_views": [Interval(numbers.Integral, 0, None, closed="left")],
        "unknown_label": [str, None],
        "known_rate": [Interval(numbers.Real, 0, 1, closed="right")],
        "known_score": [StrOptions(set(KNOWN_SCORES))],
        "calibrate_probabilities": ["boolean"],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "device": [str],
        "memory": [str, os.PathLike, HasMethods(["cache"]), None],
        "max_image_pixels": [Interval(numbers.Integral, 1, None, closed="left"), None],
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
        merge_synonyms="auto",
        reask=0.0,
        reask_choices=5,
        backbone="ViT-B-16",
        pretrained="openai",
        backbone_kwargs=None,
        image_encoder=None,
        center_features=True,
        n_ctx=None,
        ctx_init="auto",
        class_specific_context=False,
        max_epochs="auto",
        warmup_epochs="auto",
        learning_rate=2e-3,
        optimizer="adam",
        logit_scale=None,
        learn_logit_scale=True,
        refinement="posterior",
        clean_vote_weight=2.0,
        candidate_weighting="votes",
        sharpen_temperature=1.0,
        prior_correction=1.0,
        prototype_weight="auto",
        prototype_iterations=3,
        prototype_views=0,
        unknown_label=None,
        known_rate=0.95,
        known_score="knn",
        calibrate_probabilities=True,
        batch_size=64,
        device="auto",
        memory=None,
        max_image_pixels=DEFAULT_MAX_PIXELS,
        on_error="raise",
        random_state=None,
        verbose=0,
    ):
        self.labeler = labeler
        self.candidate_builder = candidate_builder
        self.noise_splitter = noise_splitter
        self.label_filter = label_filter
        self.merge_name_variants = merge_name_variants
        self.merge_synonyms = merge_synonyms
        self.reask = reask
        self.reask_choices = reask_choices
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
        self.prior_correction = prior_correction
        self.prototype_weight = prototype_weight
        self.prototype_iterations = prototype_iterations
        self.prototype_views = prototype_views
        self.unknown_label = unknown_label
        self.known_rate = known_rate
        self.known_score = known_score
        self.calibrate_probabilities = calibrate_probabilities
        self.batch_size = batch_size
        self.device = device
        self.memory = memory
        self.max_image_pixels = max_image_pixels
        self.on_error = on_error
        self.random_state = random_state
        self.verbose = verbose

    @fit_context(prefer_skip_nested_validation=False)
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
        from ._backbone import build_backbone
        from ._device import resolve_device
        from ._prompt import prompt_text_features

        random_state = check_random_state(self.random_state)
        check_reask_labeler(MLLMLabeler if self.labeler is None else self.labeler, self.reask)
        self._check_synonym_labeler()
        self._check_prototype_views(X)
        views_seed = view_seed(random_state) if self.prototype_views else None
        cache_root = resolve_memory(self.memory)
        items, digests, train_indices, skipped, n_features = load_training_items(
            X, self.on_error, self._uses_feature_rows(X), self.max_image_pixels
        )
        if n_features is None:
            self.__dict__.pop("n_features_in_", None)
        else:
            if n_features == 0:  # checked before the labeler is asked about empty rows
                raise ValueError(
                    f"0 feature(s) (shape=({len(items)}, 0)) while a minimum of 1 is "
                    "required by NeaRClassifier."
                )
            self.n_features_in_ = n_features

        self.device_ = resolve_device(self.device)

        # One free-form name per image from the labeler (cached by content and labeler).
        # Asked before the backbone is built: a missing API key or a server that cannot be
        # reached is reported at once, not after the weights are fetched, and the answers
        # are cached as they arrive, so a backbone that then fails costs nothing twice.
        self.labeler_ = MLLMLabeler() if self.labeler is None else clone(self.labeler)
        if self.verbose and "verbose" in self.labeler_.get_params(deep=False):
            self.labeler_.set_params(verbose=self.verbose)
        raw_names, n_asked = cached_labels(self.labeler_.fit(items), items, digests, cache_root)

        # Frozen image features, computed once (cached by content and weights).
        backbone = build_backbone(
            self.backbone, self.pretrained, self.backbone_kwargs, device=self.device_
        )
        self.backbone_digest_ = backbone.digest
        self.image_encoder_, raw_features, self.n_images_encoded_ = self._encode_images(
            items, digests, backbone, cache_root
        )
        valid = np.asarray([name is not None for name in raw_names])
        view_features, self.n_views_encoded_ = self._encode_views(
            [items[i] for i in np.flatnonzero(valid)],
            [digests[i] for i in np.flatnonzero(valid)],
            backbone,
            views_seed,
            cache_root,
        )
        skipped = skipped + [
            f"X[{train_indices[i]}]: the labeler gave no usable name"
            for i in np.flatnonzero(~valid)
        ]
        raw_features, raw_names, train_indices = (
            raw_features[valid],
            raw_names[valid],
            train_indices[valid],
        )
        if skipped:
            message = f"{len(skipped)} training item(s) dropped; see skipped_: "
            warn(SkippedImagesWarning(message + "; ".join(skipped[:3]), skipped))
        self.train_indices_, self.skipped_ = train_indices, skipped

        # Names -> vocabulary.
        names, self.name_merges_ = training_names(
            raw_names, train_indices, self.merge_name_variants
        )
        self.synonym_merges_ = {}
        names, self.vocabulary_, labels = self._vocabulary(names)

        # Image features in the text embedding space.
        self.feature_mean_ = raw_features.mean(axis=0) if self.center_features else None
        embed_dim = int(backbone.config["embed_dim"])
        self.projection_ = None
        if raw_features.shape[1] != embed_dim:
            self.projection_ = projection_matrix(raw_features.shape[1], embed_dim, random_state)
        features = to_embedding_space(raw_features, self.feature_mean_, self.projection_)
        # What each training image lends the prototypes: its feature, or with views the
        # mean of its own and its views' (the images are still scored by their own).
        prototype_features = None
        if view_features is not None:
            prototype_features = view_averaged_features(
                features, view_features, self.feature_mean_, self.projection_
            )
        built = features if prototype_features is None else prototype_features

        # Candidate sets from the neighbours' names.
        self.candidate_builder_ = self._component("candidate_builder", random_state)
        votes, self.neighbor_agreement_ = build_candidate_votes(
            self.candidate_builder_, raw_features, labels, len(self.vocabulary_)
        )

        # The labeler's synonyms merged, when asked; the vocabulary and votes follow.
        self.synonyms_asked_ = self._asks_synonyms(
            labels, len(self.vocabulary_), self.neighbor_agreement_
        )
        if self.synonyms_asked_:
            self.synonym_merges_, n_synonym_requests = self._synonym_merges(names)
            n_asked += n_synonym_requests
        if self.synonym_merges_:
            names, self.vocabulary_, labels = self._vocabulary(names)
            votes, self.neighbor_agreement_ = recount_candidate_votes(
                self.candidate_builder_, raw_features, labels, len(self.vocabulary_)
            )
        self.labeler_names_ = {"raw": raw_names, "normalized": names}

        # Re-asking: the images whose name the candidate sets contradict, or whose name
        # is generic, choose among a few names of their candidate set.
        reasking = reask_contradicted(
            self.labeler_,
            self.reask,
            self.reask_choices,
            items,
            digests,
            np.flatnonzero(valid),
            raw_names,
            labels,
            votes,
            self.vocabulary_,
            cache_root,
        )
        self.reasked_, self.reask_changed_ = reasking.positions, reasking.changed
        self.reask_first_names_ = reasking.first_names
        n_asked += reasking.n_asked
        if reasking.changed.any():  # the names, vocabulary and votes follow the answers
            raw_names = reasking.raw_names
            names, self.name_merges_ = training_names(
                raw_names, train_indices, self.merge_name_variants
            )
            names, self.vocabulary_, labels = self._vocabulary(names)
            self.labeler_names_ = {"raw": raw_names, "normalized": names}
            votes, self.neighbor_agreement_ = recount_candidate_votes(
                self.candidate_builder_, raw_features, labels, len(self.vocabulary_)
            )
        self.candidate_sets_ = votes > 0

        # Prompt tuning on refined targets, the noise split redone every epoch.
        self.noise_splitter_ = self._component("noise_splitter", random_state)
        result = self._tune(backbone, features, labels, votes, random_state)
        self.context_ = result.context
        self.logit_scale_ = result.logit_scale
        self.history_ = result.history
        self.clean_probability_ = result.clean_probability
        self.clean_mask_ = result.clean_probability > self._clean_threshold()
        self.refined_targets_ = result.targets

        # The final vocabulary and what predict needs of it.
        self.label_filter_ = self._component("label_filter", random_state)
        keep = filter_vocabulary(
            self.label_filter_, result.probabilities, votes, self.neighbor_agreement_, labels
        )
        self.classes_ = self.vocabulary_[keep]
        learner = self._prompt_learner(backbone, context=result.context)
        self.class_text_features_ = prompt_text_features(learner)[keep]
        self.name_prior_ = name_prior(result.probabilities[:, keep])
        self.score_offsets_ = prior_offsets(self.name_prior_, self.prior_correction)
        start = result.targets[:, keep]
        self.prototype_agreement_, n_agreeing = text_prototype_agreement(
            features,
            self.class_text_features_,
            start,
            self.logit_scale_,
            self.score_offsets_,
            prototype_features,
        )
        self.prototype_weight_ = self._fitted_prototype_weight(n_agreeing)
        self.class_image_prototypes_, prototype_weights = refine_prototypes(
            features,
            self.class_text_features_,
            image_prototypes(built, start),
            self._prototype_weight(),
            self.logit_scale_,
            self.score_offsets_,
            self.prototype_iterations,
            start,
            prototype_features,
        )

        # What the training images, scored as unseen ones, say of new images: the
        # known-ness threshold and the temperature of predict_proba.
        logits, similarity, prototype_similarity = self._held_out_training_scores(
            features, prototype_weights, prototype_features
        )
        # Only images whose name keeps other images stand for new images of known kinds.
        calibration = calibration_rows(prototype_weights)
        self.known_image_features_, image_similarity = None, None
        if self.known_score == "knn":
            self.known_image_features_, image_similarity = known_images(features, random_state)
        known = known_scores(
            logits, similarity, prototype_similarity, self.known_score, image_similarity
        )
        scored = np.isfinite(known)  # "knn": the images it keeps
        threshold_rows = calibration & scored if (calibration & scored).any() else scored
        self.unknown_threshold_ = float(np.quantile(known[threshold_rows], 1 - self.known_rate))
        self.unknown_threshold_params_ = {
            "known_score": self.known_score,
            "known_rate": float(self.known_rate),
        }
        self.probability_temperature_ = self._fitted_temperature(
            features, logits, start, prototype_weights, calibration
        )
        self.llm_usage_ = dict(getattr(self.labeler_, "usage_", None) or {}) or None
        self.n_labeler_calls_ = labeler_requests(self.labeler_, n_asked)
        return self

    # -- fit stages, in the order fit runs them -----------------------------------------

    def _fitted_prototype_weight(self, n_agreeing: int) -> float:
        """The prototypes' share of the scores in force: ``"auto"`` resolved at fit.

        With the backbone's own tower, whose image and text features share one space,
        from how well the tuned prompts agree with the images
        (:func:`~skvf._prototypes.agreement_weight`); 0 with an ``image_encoder``,
        whose features reach that space through a random projection (there the tuned
        prompts are a head learnt on them, and mixing in centroids cost .02-.03 cACC on
        Fashion-MNIST).
        """
        if not (isinstance(self.prototype_weight, str) and self.prototype_weight == "auto"):
            return float(self.prototype_weight)
        if self.image_encoder_ is not None:
            return 0.0
        return agreement_weight(self.prototype_agreement_, n_agreeing)

    def _fitted_temperature(self, features, logits, start, prototype_weights, calibration):
        """The temperature of ``predict_proba``, from the training images' held-out scores.

        Fitted to :func:`~skvf._openset.temperature_targets` over the images that
        calibrate and whose names were kept. Only the prototypes hold each image out:
        with a prototype weight of 0 the scores are the prompts alone, tuned on these
        very images, which would ask for overconfidence (on digits and Fashion-MNIST a
        temperature of about 0.33 took the calibration error from .05 to .16 and from
        .10 to .24), so the temperature is 1.
        """
        weight = self._prototype_weight()
        if weight == 0:
            return 1.0
        targets = temperature_targets(
            features,
            np.argmax(start, axis=1),
            np.argmax(prototype_weights, axis=1),
            weight,
            len(self.classes_),
        )
        named = calibration & (start.sum(axis=1) > 0)  # and whose names were kept
        return fit_temperature(logits[named], targets[named])

    def _held_out_training_scores(self, features, prototype_weights, prototype_features=None):
        """The training images' logits and similarities, each left out of its prototypes.

        An image is part of the prototypes it would be scored against; leaving it out
        (:func:`~skvf._openset.leave_one_out_prototype_similarity`) scores it as a new
        image of its kind would be. With ``prototype_views`` the prototypes are built
        from the view-averaged ``prototype_features``, and the image is left out of
        them as such.
        """
        text = features @ self.class_text_features_.T
        prototype_similarity = leave_one_out_prototype_similarity(
            features, prototype_weights, prototype_features
        )
        similarity = mix(text, prototype_similarity, self._prototype_weight())
        logits = self.logit_scale_ * similarity + self.score_offsets_
        return logits, similarity, prototype_similarity

    def _encode_images(self, items, digests, backbone, cache_root):
        """Return (fitted image encoder or None, features, images encoded)."""
        if self.image_encoder is not None:
            encoder = clone(self.image_encoder)
            features = check_encoder_output(encoder.fit_transform(items), len(items))
            return encoder, features, len(items)
        features, n_encoded = encode_with_memory(
            backbone, items, digests, cache_root, self.batch_size, self.verbose
        )
        return None, features, n_encoded

    def _check_prototype_views(self, X) -> None:
        """Refuse views where there is no image to crop or no image tower to encode it."""
        if not self.prototype_views:
            return
        if is_feature_matrix(X):
            raise ValueError(
                f"prototype_views={self.prototype_views} needs images: X is a 2-D numeric "
                f"array of shape {np.shape(X)}, feature rows that cannot be cropped or "
                "flipped. Pass the images, or set prototype_views=0."
            )
        if self.image_encoder is not None:
            raise ValueError(
                f"prototype_views={self.prototype_views} encodes augmented views with the "
                "backbone's image tower, which image_encoder replaces. Set "
                "prototype_views=0, or image_encoder=None."
            )

    def _encode_views(self, items, digests, backbone, seed, cache_root):
        """Return (raw view features of shape (n, views, d) or None, views encoded)."""
        if not self.prototype_views:
            return None, 0
        return encode_views(
            backbone,
            items,
            digests,
            self.prototype_views,
            seed,
            cache_root,
            self.batch_size,
            self.verbose,
        )

    def _vocabulary(self, names):
        """The training names with synonyms merged, the vocabulary and each name's index."""
        names = np.asarray([self.synonym_merges_.get(name, name) for name in names], dtype=object)
        vocabulary, labels = np.unique(names, return_inverse=True)
        vocabulary = vocabulary.astype(object)
        check_vocabulary(vocabulary, len(labels))
        return names, vocabulary, labels

    def _check_synonym_labeler(self) -> None:
        """Refuse ``merge_synonyms=True`` with a labeler that cannot group names."""
        labeler = MLLMLabeler if self.labeler is None else self.labeler
        if self.merge_synonyms is True and not _groups_synonyms(labeler):
            raise TypeError(
                f"merge_synonyms=True asks the labeler which names are wordings of one kind, "
                f"but {type(labeler).__name__} has no group_synonyms(names) method; use a "
                "labeler that has one (MLLMLabeler), or merge_synonyms=False."
            )

    def _asks_synonyms(self, labels, n_names: int, name_agreement) -> bool:
        """Whether this fit asks the labeler for synonyms (``merge_synonyms``).

        ``"auto"``: when the labeler can group names and the label filter would apply
        its predicted rule to these names (:meth:`LabelFilter.rules_for`), the rule that
        drops the wordings of a kind that split its images; a filter without
        ``rules_for`` (or none) is never asked about.
        """
        if self.merge_synonyms != "auto":
            return bool(self.merge_synonyms)
        if not _groups_synonyms(self.labeler_):
            return False
        label_filter = LabelFilter() if self.label_filter is None else self.label_filter
        rules_for = getattr(label_filter, "rules_for", None)
        return callable(rules_for) and "predicted" in rules_for(labels, n_names, name_agreement)

    def _synonym_merges(self, names) -> tuple[dict, int]:
        """``{name: representative}`` of the labeler's synonym groups, and the requests sent.

        Each group the labeler's ``group_synonyms`` returns for the distinct training
        ``names`` is represented by its most frequent name
        (:func:`~skvf.names.group_representatives`). With ``merge_synonyms="auto"`` a
        request that fails, or an unusable answer, merges nothing, with a warning.
        """
        distinct, counts = np.unique(names, return_counts=True)
        if len(distinct) < 2:
            return {}, 0
        try:
            groups = self.labeler_.group_synonyms(list(distinct))
        except (LabelingError, UnusableAnswerError) as error:
            if self.merge_synonyms is True:
                raise
            warn(
                f"No names were merged as synonyms (merge_synonyms='auto'): {error} Pass "
                "merge_synonyms=False not to ask, or True to stop the fit when asking fails.",
                LabelingWarning,
            )
            return {}, int(not isinstance(error, BudgetExceededError))
        representatives = group_representatives(groups, dict(zip(distinct, counts, strict=True)))
        return {name: rep for name, rep in representatives.items() if name != rep}, 1

    def _component(self, name: str, random_state):
        """Clone the component parameter ``name`` (or its default), seeding it if unseeded."""
        # Drawn for every stage, used or not: switching a stage off in an ablation must
        # not shift the seeds of the stages after it (the prompt context among them).
        seed = int(random_state.randint(np.iinfo(np.int32).max))
        given = getattr(self, name)
        if isinstance(given, str) and given == _PASSTHROUGH:
            return None
        component = _DEFAULT_COMPONENTS[name]() if given is None else clone(given)
        params = component.get_params(deep=False)
        if self.random_state is not None and params.get("random_state", 0) is None:
            component.set_params(random_state=seed)
        return component

    def _max_epochs(self) -> int:
        if self.max_epochs == "auto":
            return 60 if self.image_encoder is None else 200
        return self.max_epochs

    def _ctx_init(self) -> str | None:
        if self.ctx_init == "auto":
            own_tower = self.image_encoder is None and self.n_ctx is None
            return "a photo of a" if own_tower else None
        return self.ctx_init

    def _warmup_epochs(self) -> int:
        if self.warmup_epochs == "auto":
            return min(50, self._max_epochs() // 4)
        return self.warmup_epochs

    def _clean_threshold(self) -> float:
        return float(getattr(self.noise_splitter_, "threshold", 0.5))

    def _prompt_learner(self, backbone, context=None, seed=None):
        from ._prompt import build_prompt_learner

        return build_prompt_learner(
            backbone,
            self.vocabulary_,
            self.n_ctx,
            self._ctx_init(),
            self.class_specific_context,
            context=context,
            seed=seed,
        )

    def _tune(self, backbone, features, labels, votes, random_state):
        seed = int(random_state.randint(np.iinfo(np.int32).max))
        learner = self._prompt_learner(backbone, seed=seed)
        initial_scale = self.logit_scale
        if initial_scale is None:
            initial_scale = float(backbone.model.logit_scale.exp().item())
        config = TrainingConfig(
            max_epochs=self._max_epochs(),
            warmup_epochs=self._warmup_epochs(),
            learning_rate=self.learning_rate,
            optimizer=self.optimizer,
            logit_scale=min(initial_scale, MAX_LOGIT_SCALE),
            learn_logit_scale=self.learn_logit_scale,
            clean_threshold=self._clean_threshold(),
            refinement=self.refinement,
            clean_vote_weight=self.clean_vote_weight,
            candidate_weighting=self.candidate_weighting,
            sharpen_temperature=self.sharpen_temperature,
            verbose=self.verbose,
        )
        return tune_prompts(learner, features, labels, votes, self.noise_splitter_, config)

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
            if nested and component in _DEFAULT_COMPONENTS and getattr(self, component) is None:
                setattr(self, component, _DEFAULT_COMPONENTS[component]())
        return super().set_params(**params)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # an (n, H, W) stack of grayscale images
        tags.non_deterministic = self.random_state is None
        return tags


#: The component each parameter defaults to when left ``None``.
_DEFAULT_COMPONENTS = {
    "labeler": MLLMLabeler,
    "candidate_builder": NeighborCandidateBuilder,
    "noise_splitter": GMMNoiseSplitter,
    "label_filter": LabelFilter,
}
