"""A stand-in for a pretrained CLIP, contrastively pretrained here on garment photos.

No pretrained CLIP weights can be downloaded on the machines skvf is measured on, and a
random-init CLIP is not what users run: its towers are not aligned, zero-shot is at
chance and a prompt's initial words mean nothing. This module pretrains a small
open_clip ``CLIP`` (both towers, open_clip's own tokenizer) on the ``"pretraining"``
pool of the fine-grained garment benchmark (:mod:`skvf_bench.finegrained`), with
web-like captions (:mod:`skvf_bench.captions`), so that on the ``"benchmark"`` pool it
behaves as a pretrained CLIP: its towers are aligned, zero-shot with the true names
works (.70 on 160 classes; real CLIP ViT-B/16 is about .55-.65 on the paper's sets),
neighbours in its image space share a class 66% of the time, and its image tower tells
the classes apart a little better than its text side names them (a linear probe .72,
prompt tuning on the true names above zero-shot). Unlike a real CLIP on birds or cars,
its hardest attribute is the coarse one (the garment type), and the probe's and
tuning's lead over zero-shot is small (docs/results.md, "the stand-in CLIP").

- :data:`RECIPES` holds the training recipes: ``"garments"`` (the benchmark's stand-in,
  an open_clip ResNet CLIP of 2.3M parameters besides its token embedding, pretrained
  for 2,000 steps of 128 pairs, 15-30 minutes on one CPU core; its weights are
  committed to the repository, 18 MB, and left out of the wheel) and ``"tiny"`` (for
  tests, seconds).
- :func:`pretrain_standin` trains one, deterministically, and saves its weights.
- :func:`standin_params` returns the :class:`~skvf.NeaRClassifier` parameters that load
  it through the real path (``backbone``, ``pretrained=<file>``, ``backbone_kwargs``),
  building the weights on first use into a cache and checking their digest.

Examples
--------
>>> RECIPES["garments"].backbone, RECIPES["garments"].backbone_kwargs["vision_cfg"]["width"]
('RN50', 24)
>>> RECIPES["tiny"].backbone_kwargs["text_cfg"]["context_length"]
32

``standin_params("garments")`` then gives ``NeaRClassifier(**standin_params(), labeler=...)``
the committed weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .captions import garment_captions
from .finegrained import load_fine_garments

__all__ = [
    "RECIPES",
    "WEIGHTS_DIR",
    "StandInRecipe",
    "StandInDigestError",
    "pretrain_standin",
    "pretraining_pool",
    "standin_params",
]


#: Where the weights of recipes with a recorded digest are committed.
WEIGHTS_DIR = Path(__file__).with_name("weights")
#: Logit scale of the cosine classifier of :attr:`StandInRecipe.class_loss_weight`.
CLASS_LOSS_SCALE = 16.0


@dataclass(frozen=True)
class StandInRecipe:
    """How one stand-in CLIP is built and pretrained.

    Attributes
    ----------
    backbone : str
        The open_clip config the overrides apply to.
    backbone_kwargs : dict
        Config overrides (:func:`skvf._backbone.backbone_config` merges them deeply).
    n_per_class : int
        Images per class of the pretraining pool.
    epochs : float
        Passes over the pretraining images; each pass reads a new caption per image.
    batch_size : int
    learning_rate : float
        Peak AdamW learning rate (linear warm-up over 5% of the steps, then cosine).
    weight_decay : float
    caption_kwargs : dict
        Parameters of :func:`skvf_bench.captions.garment_captions`.
    garments : tuple of str or None
        Garment types of the pool (``None``: all ten).
    random_state : int
    garments_per_batch : int or None
        Draw each batch from this many garment types (drawn at random per batch), so
        that a batch holds the neighbouring shades and patterns of a garment, as a
        real CLIP's batch of tens of thousands of pairs holds near-duplicates of any
        image: the hard negatives that teach the fine attributes. ``None``: batches
        are slices of a random permutation of the pool (one pass per epoch).
    class_loss_weight : float
        Weight of a second, image-only objective: the image tower's unit embeddings also
        classify the pool's fine classes through a cosine classifier (scale
        ``CLASS_LOSS_SCALE``) that is dropped after training. A real CLIP's image tower
        learns from far more pairs than one domain's captions name, so a linear probe on
        its features beats its zero-shot; one domain's captions alone cannot teach an
        image tower that. ``0``: CLIP's objective only.
    text_learning_rate_scale : float
        The text tower's learning rate (token embedding, transformer, final norm and
        projection) as a share of ``learning_rate``. Below 1 the text side learns the
        domain's words less precisely than the image side learns its images, as a real
        CLIP's text tower knows a fine-grained domain's names only roughly.
    render_size : int
        Side at which the pool is rendered (the benchmark's ``image_size``); open_clip's
        eval transform then resizes it to the image tower's ``image_size``, as the
        classifier does.
    sha256 : str or None
        Digest of the committed weights file, or ``None`` when the weights are built on
        first use.
    """

    backbone: str
    backbone_kwargs: dict
    n_per_class: int
    epochs: float
    batch_size: int
    learning_rate: float
    weight_decay: float = 0.1
    caption_kwargs: dict = field(default_factory=dict)
    garments: tuple | None = None
    random_state: int = 0
    garments_per_batch: int | None = None
    class_loss_weight: float = 0.0
    text_learning_rate_scale: float = 1.0
    render_size: int = 48
    sha256: str | None = None

    def fingerprint(self) -> str:
        """A short digest of everything that determines the trained weights."""
        fields = asdict(self)
        fields.pop("sha256")
        if fields["text_learning_rate_scale"] == 1.0:  # recipes from before the field
            fields.pop("text_learning_rate_scale")
        text = json.dumps(fields, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


_GARMENTS_KWARGS = {
    "embed_dim": 256,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 24, "head_width": 32},
    "text_cfg": {"context_length": 32, "width": 112, "heads": 4, "layers": 3},
}
_TINY_KWARGS = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
    "text_cfg": {"context_length": 32, "width": 64, "heads": 2, "layers": 2},
}

#: The recipes :func:`pretrain_standin` and :func:`standin_params` know.
RECIPES = {
    "garments": StandInRecipe(
        backbone="RN50",
        backbone_kwargs=_GARMENTS_KWARGS,
        n_per_class=250,
        epochs=6.4,
        batch_size=128,
        learning_rate=2e-3,
        caption_kwargs={
            "fine_word_rate": 0.8,
            # The class names' own words are common but loose (a shade's word names the
            # neighbouring shade 40% of the time; synonyms are accurate), as a real CLIP
            # knows many fine-grained class names only roughly.
            "canonical_word_rate": 0.5,
            "class_word_noise": 0.4,
            # The full combination a class name spells out is rare (as a species' name
            # is on the web); most captions pair the garment with one fine attribute.
            "kind_rates": {
                "full": 0.1,
                "colour and garment": 0.35,
                "pattern and garment": 0.25,
                "garment": 0.1,
                "colour": 0.1,
                "generic": 0.1,
            },
        },
        # The image tower also learns the classes from the images themselves.
        class_loss_weight=1.0,
        # The text tower learns at a twentieth of the image tower's rate, so it knows the
        # class names less precisely than the image tower tells the classes apart: a
        # linear probe beats zero-shot by .18 and CoOp on the true names by .11-.16, as
        # on a real CLIP (docs/results.md, v11).
        text_learning_rate_scale=0.05,
        sha256="2ade2c059a4eaaf410b9f39d4211c88da98527746dd4e5bd5469f1fbee57f6db",
    ),
    "tiny": StandInRecipe(
        backbone="RN50",
        backbone_kwargs=_TINY_KWARGS,
        n_per_class=4,
        epochs=2.0,
        batch_size=64,
        learning_rate=2e-3,
        garments=("trouser", "bag"),
    ),
}


class StandInDigestError(RuntimeError):
    """A committed stand-in weights file does not have the digest its recipe records."""


def _recipe(recipe) -> StandInRecipe:
    if isinstance(recipe, StandInRecipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(
            f"recipe must be one of {sorted(RECIPES)} or a StandInRecipe, got {recipe!r}."
        )
    return RECIPES[recipe]


def _preprocessed(images: np.ndarray, preprocess):
    """The images as the classifier's image tower sees them: open_clip's eval transform."""
    import torch
    from PIL import Image

    return torch.stack([preprocess(Image.fromarray(image)) for image in images])


def pretraining_pool(recipe="garments"):
    """The "pretraining" pool a recipe is pretrained on (its images, names and attributes).

    Parameters
    ----------
    recipe : str or StandInRecipe, default="garments"
        A key of :data:`RECIPES` or a recipe.

    Returns
    -------
    FineGarments
        The pool of :func:`~skvf_bench.finegrained.load_fine_garments` at the recipe's
        size, garment types, render size and seed.

    Examples
    --------
    >>> pool = pretraining_pool("tiny")
    >>> len(pool.classes), len(pool.names)
    (32, 128)
    """
    recipe = _recipe(recipe)
    return load_fine_garments(
        "pretraining",
        n_per_class=recipe.n_per_class,
        image_size=recipe.render_size,
        garments=recipe.garments,
        random_state=recipe.random_state,
    )


def pretrain_standin(
    path, recipe="garments", n_threads: int = 2, verbose: int = 0, device: str = "cpu"
) -> str:
    """Contrastively pretrain a stand-in CLIP and save its weights to ``path``.

    CLIP's objective (symmetric cross-entropy over a batch of image-caption pairs, a
    learnable temperature clamped at 100), AdamW with linear warm-up and cosine decay,
    one new caption per image per pass. Deterministic for a recipe, a machine and a
    thread count (floating-point sums may be ordered differently with other threads).

    Parameters
    ----------
    path : str or os.PathLike
        Where to write the weights (an open_clip state dict, stored in float16).
    recipe : str or StandInRecipe, default="garments"
        A key of :data:`RECIPES` or a recipe.
    n_threads : int, default=2
        torch threads while training (use 1 on a machine shared with other jobs:
        several jobs each running threads on the same cores slow torch down many times).
    verbose : int, default=0
        Print the loss every 20 steps when positive.
    device : str, default="cpu"
        Where to train (float32 throughout). A GPU builds a recipe in about a minute,
        for trying recipes; its weights differ from the CPU's in the last bits, so a
        recipe's recorded ``sha256`` is that of a CPU build.

    Returns
    -------
    str
        The SHA-256 of the written file.
    """
    import open_clip
    import torch
    import torch.nn.functional as F

    from skvf._backbone import backbone_config
    from skvf._device import resolve_device

    recipe = _recipe(recipe)
    device = resolve_device(device)
    config = backbone_config(recipe.backbone, recipe.backbone_kwargs)
    threads = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.random_state)
            model, _, preprocess = open_clip.create_model_and_transforms(
                recipe.backbone,
                pretrained=None,
                **{key: config[key] for key in recipe.backbone_kwargs},
            )
            tokenizer = open_clip.get_tokenizer(
                recipe.backbone, context_length=config["text_cfg"]["context_length"]
            )
            data = pretraining_pool(recipe)
            passes = math.ceil(recipe.epochs)
            captions = garment_captions(
                data, n_captions=passes, random_state=recipe.random_state, **recipe.caption_kwargs
            )
            n_images = len(data.names)
            batch = min(recipe.batch_size, n_images)
            steps = max(1, int(recipe.epochs * n_images / batch))
            warm_up = max(1, steps // 20)
            model.to(device)
            text = [p for name, p in model.named_parameters() if _is_text_parameter(name)]
            rest = [p for name, p in model.named_parameters() if not _is_text_parameter(name)]
            groups = [
                {"params": rest},
                {"params": text, "lr": recipe.learning_rate * recipe.text_learning_rate_scale},
            ]
            if recipe.class_loss_weight > 0:
                classes, class_ids = np.unique(data.names, return_inverse=True)
                class_ids = torch.as_tensor(class_ids, device=device)
                # The cosine classifier of the image-only objective (dropped after training).
                class_head = torch.nn.Parameter(
                    (torch.randn(len(classes), config["embed_dim"]) * 0.02).to(device)
                )
                groups[0]["params"].append(class_head)
            optimizer = torch.optim.AdamW(
                groups,
                lr=recipe.learning_rate,
                weight_decay=recipe.weight_decay,
                betas=(0.9, 0.98),
                eps=1e-6,
            )
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimizer,
                lambda step: (
                    min(1.0, (step + 1) / warm_up)
                    * 0.5
                    * (1 + math.cos(math.pi * min(step, steps) / steps))
                ),
            )
            rng = np.random.default_rng(recipe.random_state)
            model.train()
            pixels = _preprocessed(data.images, preprocess).to(device)
            started = time.perf_counter()
            for step, (rows, column) in enumerate(
                _batches(data, batch, steps, passes, recipe.garments_per_batch, rng)
            ):
                index = torch.as_tensor(rows, device=device)
                image_features, text_features, scale = model(
                    pixels[index], tokenizer(list(captions[rows, column])).to(device)
                )[:3]
                logits = scale * image_features @ text_features.T
                targets = torch.arange(len(rows), device=device)
                loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
                if recipe.class_loss_weight > 0:
                    class_logits = CLASS_LOSS_SCALE * image_features @ F.normalize(class_head).T
                    class_loss = F.cross_entropy(class_logits, class_ids[index])
                    loss = loss + recipe.class_loss_weight * class_loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, math.log(100))
                if verbose > 0 and ((step + 1) % 20 == 0 or step + 1 == steps):
                    elapsed = time.perf_counter() - started
                    print(
                        f"step {step + 1}/{steps}  loss {loss.item():.3f}  {elapsed:.0f} s",
                        flush=True,
                    )
    finally:
        torch.set_num_threads(threads)
    model.eval()
    state = {
        name: tensor.cpu().half() if tensor.is_floating_point() else tensor.cpu()
        for name, tensor in model.state_dict().items()
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.tmp")
    torch.save(state, partial)
    os.replace(partial, path)
    return _state_sha256(state)


def _is_text_parameter(name: str) -> bool:
    """Whether an open_clip ``CLIP`` parameter belongs to the text tower."""
    return not name.startswith("visual.") and name != "logit_scale"


def _batches(data, batch: int, steps: int, passes: int, garments_per_batch, rng):
    """Yield ``steps`` batches as (pool rows, caption column).

    Without ``garments_per_batch``: consecutive slices of a new permutation of the pool
    per pass (the caption column is the pass). With it: each batch draws that many
    garment types, then ``batch`` of their images; the caption column is the number of
    images drawn so far divided by the pool's size.
    """
    n_images = len(data.names)
    if garments_per_batch is None:
        step, epoch = 0, 0
        while True:
            column = min(epoch, passes - 1)
            epoch += 1
            order = rng.permutation(n_images)
            for start in range(0, n_images - batch + 1, batch):
                if step >= steps:
                    return
                yield order[start : start + batch], column
                step += 1
    garment_of = np.array([data.attributes[name]["garment"] for name in data.names])
    types = np.unique(garment_of)
    rows_of = {garment: np.flatnonzero(garment_of == garment) for garment in types}
    drawn = min(garments_per_batch, len(types))
    for step in range(steps):
        chosen = rng.choice(types, size=drawn, replace=False)
        pool = np.concatenate([rows_of[garment] for garment in chosen])
        rows = rng.choice(pool, size=min(batch, len(pool)), replace=False)
        yield rows, min(step * batch // n_images, passes - 1)


def _state_sha256(state: dict) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and values (not of the file)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _file_sha256(path) -> str:
    """The digest of the weights in a file; empty when it cannot be read as weights."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file fails in many ways
        return ""
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        return ""
    return _state_sha256(state)


def _weights_file(recipe: StandInRecipe, name: str | None, cache_dir) -> Path:
    """Where the recipe's weights are: committed beside this module, else in the cache."""
    if recipe.sha256 is not None and name is not None:
        committed = WEIGHTS_DIR / f"{name}.pt"
        if committed.is_file():
            return committed
    from skvf.labeling._cache import default_cache_dir

    root = default_cache_dir() / "standin" if cache_dir is None else Path(cache_dir)
    return root / f"{name or 'recipe'}-{recipe.fingerprint()}.pt"


def standin_params(recipe="garments", cache_dir=None, verbose: int = 0) -> dict:
    """The :class:`~skvf.NeaRClassifier` parameters that load a stand-in CLIP.

    The weights load through the real path: ``backbone`` names the open_clip config,
    ``backbone_kwargs`` shrinks it, and ``pretrained`` is the weights file, so the
    classifier uses the stand-in's own image tower by default. A recipe with a
    recorded digest keeps its weights beside this module in the repository; they are
    checked against the digest. Otherwise, or when the file is missing (installed from
    a wheel, which leaves the weights out), the weights are built on first use with
    :func:`pretrain_standin` into ``cache_dir``, with their digest beside them; a cached
    file that no longer matches its digest is built again.

    Parameters
    ----------
    recipe : str or StandInRecipe, default="garments"
        A key of :data:`RECIPES` or a recipe.
    cache_dir : str, os.PathLike or None, default=None
        Where weights built on first use go; ``None``: ``standin`` in skvf's user cache
        folder (``~/.cache/skvf/standin`` on Linux), never beside the installed module.
    verbose : int, default=0
        Passed to :func:`pretrain_standin` when the weights are built.

    Returns
    -------
    dict
        ``{"backbone": ..., "pretrained": <path of the weights>, "backbone_kwargs": ...}``.

    Raises
    ------
    StandInDigestError
        The committed weights file has been changed or damaged.
    """
    name = recipe if isinstance(recipe, str) else None
    recipe = _recipe(recipe)
    path = _weights_file(recipe, name, cache_dir)
    expected = recipe.sha256
    sidecar = path.with_name(path.name + ".sha256")
    if expected is not None and path.parent == WEIGHTS_DIR:
        actual = _file_sha256(path)
        if actual != expected:
            raise StandInDigestError(
                f"the stand-in weights {path} have SHA-256 {actual}, not the recorded "
                f"{expected}: the file was changed or damaged. Restore it from the "
                "repository (git checkout -- <file>) or delete it to build it again."
            )
    elif not (path.is_file() and sidecar.is_file() and _file_sha256(path) == _read(sidecar)):
        digest = pretrain_standin(
            path, recipe, n_threads=min(2, os.cpu_count() or 1), verbose=verbose
        )
        if expected is not None and digest != expected and verbose > 0:
            print(f"built {path}: SHA-256 {digest} (the committed file's is {expected})")
        sidecar.write_text(digest)
    return {
        "backbone": recipe.backbone,
        "pretrained": str(path),
        "backbone_kwargs": json.loads(json.dumps(recipe.backbone_kwargs)),
    }


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""
