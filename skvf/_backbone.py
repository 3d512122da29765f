"""Building the frozen open_clip backbone, reproducibly and identifiably.

A fitted :class:`~skvf.NeaRClassifier` never stores CLIP weights: it records the model
name, the weights source and a digest of the weights, and :func:`build_backbone`
re-creates the same model on load (refusing weights whose digest differs).
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass, field

from ._process_cache import ProcessCache
from ._warnings import warn
from .exceptions import BackboneError

__all__ = [
    "Backbone",
    "FrozenBackboneMixin",
    "build_backbone",
    "backbone_config",
    "weights_digest",
]

#: Random-init backbones (``pretrained=None``) draw their weights from this fixed seed, so
#: every fit and every load re-creates the same model.
RANDOM_INIT_SEED = 0


@dataclass
class Backbone:
    """A built open_clip model with what is needed to use and identify it.

    Attributes
    ----------
    model : torch.nn.Module
        The open_clip model, in eval mode, gradients off.
    preprocess : callable
        open_clip's evaluation transform, PIL image -> tensor.
    tokenizer : callable
        open_clip's tokenizer for the model.
    digest : str
        Hash of every weight of the model.
    source : str
        Human-readable weights source: a hub tag, a file path or ``"random-init"``.
    name : str
        The open_clip model name it was built from, as given to :func:`build_backbone`
        (part of the feature cache's key, :func:`skvf._features.feature_store`).
    device : str
        The torch device its model sits on, e.g. ``"cpu"`` or ``"cuda:0"``: where its
        inputs go, and where whatever is trained on it lives.
    config : dict
        The model config, ``backbone_kwargs`` merged in (see :func:`backbone_config`).
    """

    model: object
    preprocess: object
    tokenizer: object
    digest: str
    source: str
    name: str
    device: str
    config: dict = field(default_factory=dict)


def _deep_update(base: dict, overrides: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_update(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def backbone_config(name: str, backbone_kwargs: dict | None = None) -> dict:
    """Return open_clip's config for ``name`` with ``backbone_kwargs`` merged in deeply.

    Parameters
    ----------
    name : str
        An open_clip model name, e.g. ``"ViT-B-16"``.
    backbone_kwargs : dict or None
        Overrides; nested dicts (``vision_cfg``, ``text_cfg``) update the base config
        key by key instead of replacing it.

    Returns
    -------
    dict
        The merged model config.
    """
    import open_clip

    base = open_clip.get_model_config(name)
    if base is None:
        known = ", ".join(sorted(open_clip.list_models())[:12])
        raise BackboneError(
            f"backbone={name!r} is not an open_clip model name; examples: {known}, ... "
            "(open_clip.list_models() lists them all)."
        )
    return _deep_update(base, backbone_kwargs or {})


def weights_digest(model) -> str:
    """Hash every parameter and buffer of ``model`` (names, shapes and values)."""
    import torch

    hasher = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        array = tensor.detach().to("cpu").contiguous()
        hasher.update(f"{name}:{tuple(array.shape)}:{array.dtype}".encode())
        hasher.update(array.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def _describe_source(pretrained) -> str:
    if pretrained is None:
        return "random-init"
    return os.fspath(pretrained)


#: Seconds the one connection attempt of :func:`_check_weights_reachable` may take.
REACHABILITY_TIMEOUT = 3.0


def _hub_offline() -> bool:
    """Whether huggingface_hub is told to stay offline (read from the environment now)."""
    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return flag.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _weights_to_download(cfg: dict) -> tuple[str, str, bool] | None:
    """Where open_clip would fetch a tag's weights: ``(server URL, what, from the hub)``.

    None when nothing is to be downloaded: the weights are a local file, or already in
    the Hugging Face cache (or, for weights without a hub copy, in open_clip's own).
    Follows ``open_clip.pretrained.download_pretrained``, which prefers the hub.
    """
    if cfg.get("file"):
        return None
    hub, url = cfg.get("hf_hub", ""), cfg.get("url", "")
    try:
        import huggingface_hub
        from huggingface_hub import constants as hub_constants
    except ImportError:
        hub = ""  # open_clip then downloads from the URL
    if hub:
        repo, filename = os.path.split(hub)
        names = {filename or "open_clip_pytorch_model.bin", "open_clip_model.safetensors"}
        names |= {os.path.splitext(name)[0] + ".safetensors" for name in names}
        if any(
            isinstance(huggingface_hub.try_to_load_from_cache(repo, name), str) for name in names
        ):
            return None
        endpoint = os.environ.get("HF_ENDPOINT") or hub_constants.ENDPOINT
        return endpoint.rstrip("/"), f"{repo} on the Hugging Face hub", True
    if url and not os.path.isfile(
        os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
    ):
        return url, url, False
    return None


def _connection_problem(url: str) -> str | None:
    """Why one quick connection to the server of ``url`` (or to its proxy) fails, or None."""
    import socket
    import threading
    import urllib.parse
    import urllib.request

    parsed = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(parsed.hostname or ""):
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    outcome: list = []

    def connect() -> None:
        try:
            socket.create_connection((parsed.hostname, port), REACHABILITY_TIMEOUT).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"{type(error).__name__}: {error}")

    # A thread, so that a slow name lookup (no timeout of its own) is bounded too.
    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(REACHABILITY_TIMEOUT + 1.0)
    if not outcome:
        return f"no answer within {REACHABILITY_TIMEOUT + 1.0:g} s"
    return outcome[0]


def _check_weights_reachable(name: str, tag: str, cfg: dict) -> None:
    """Refuse at once weights that must be downloaded on a machine that cannot download.

    Without this, an offline machine spends minutes in the download retries of
    huggingface_hub before open_clip gives up.
    """
    source = _weights_to_download(cfg)
    if source is None:
        return
    server, what, from_hub = source
    if from_hub and _hub_offline():
        reason = "HF_HUB_OFFLINE is set"
    else:
        problem = _connection_problem(server)
        if problem is None:
            return
        reason = f"{server} cannot be reached ({problem})"
    raise BackboneError(
        f"backbone={name!r} with pretrained={tag!r} needs its weights downloaded from {what}, "
        f"and {reason}. Download them where the internet can be reached (open_clip."
        f"create_model_and_transforms({name!r}, pretrained={tag!r}) puts them in its cache), "
        "then copy that cache here, or pass the weights file itself: "
        "pretrained='/path/to/open_clip_pytorch_model.bin'."
    )


# Built backbones, reused within a process: GridSearchCV, repeated fits and every predict
# ask for the same frozen model. Keyed by everything that determines weights and device.
_BUILT = ProcessCache(max_entries=2)


def _build_key(name, pretrained, backbone_kwargs, device) -> str:
    import json

    source = None if pretrained is None else os.fspath(pretrained)
    if source is not None and os.path.isfile(source):
        stat = os.stat(source)
        source = f"{os.path.abspath(source)}:{stat.st_size}:{stat.st_mtime_ns}"
    return json.dumps([name, source, backbone_kwargs or {}, str(device)], sort_keys=True)


def build_backbone(
    name: str,
    pretrained=None,
    backbone_kwargs: dict | None = None,
    device: str = "cpu",
    expected_digest: str | None = None,
) -> Backbone:
    """Build (or reuse from this process) a frozen open_clip model.

    The model is frozen and never modified, so one built backbone serves every
    estimator that asks for the same name, weights, overrides and device.

    Parameters
    ----------
    name : str
        open_clip model name.
    pretrained : str, os.PathLike or None
        A hub tag (``"openai"``, ``"laion2b_s34b_b88k"``), a local weights file, or
        ``None`` for random weights drawn from a fixed seed (offline tests only).
    backbone_kwargs : dict or None
        Config overrides, see :func:`backbone_config`.
    device : str
        Device to put the model on (a concrete one, see
        :func:`skvf._device.resolve_device`); the returned backbone's ``device`` names
        where its model then sits (``"cuda:0"`` for ``"cuda"``).
    expected_digest : str or None
        When given, the built weights must hash to it (see :func:`weights_digest`).

    Returns
    -------
    Backbone

    Raises
    ------
    BackboneError
        Unknown model name, weights not found or not downloadable, or a digest mismatch.
    """
    backbone = _BUILT.get_or_create(
        _build_key(name, pretrained, backbone_kwargs, device),
        lambda: _build_uncached(name, pretrained, backbone_kwargs, device),
    )
    if expected_digest is not None and backbone.digest != expected_digest:
        raise BackboneError(
            f"the weights of backbone={name!r} from {backbone.source!r} hash to "
            f"{backbone.digest}, but the model was fitted with weights hashing to "
            f"{expected_digest}. Pass the weights file used at fit time."
        )
    return backbone


def _build_uncached(
    name: str,
    pretrained=None,
    backbone_kwargs: dict | None = None,
    device: str = "cpu",
) -> Backbone:
    import open_clip
    import torch

    config = backbone_config(name, backbone_kwargs)
    source = _describe_source(pretrained)
    pretrained_arg = None if pretrained is None else os.fspath(pretrained)
    if pretrained_arg is not None:
        is_tag = open_clip.get_pretrained_cfg(name, pretrained_arg)
        if not is_tag and not os.path.isfile(pretrained_arg):
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise BackboneError(
                f"pretrained={pretrained_arg!r} is neither a weights file nor a known tag for "
                f"backbone={name!r} (known tags: {tags or 'none'}). Pass an existing local "
                "weights file, a tag, or pretrained=None for random weights (tests only)."
            )
        if is_tag:
            _check_weights_reachable(name, pretrained_arg, is_tag)
    # open_clip replaces top-level config entries with these, so pass merged sub-configs.
    model_kwargs = {key: config[key] for key in backbone_kwargs or {}}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained_arg, device="cpu", **model_kwargs
            )
        except Exception as error:  # torch.load fails on a corrupt file in many ways
            if pretrained_arg is not None and os.path.isfile(pretrained_arg):
                raise BackboneError(
                    f"pretrained={pretrained_arg!r} is not a usable weights file for "
                    f"backbone={name!r} ({type(error).__name__}: {error}). Check that the file "
                    "is complete and was saved for this model."
                ) from error
            raise BackboneError(
                f"could not build backbone={name!r} with pretrained={pretrained_arg!r}: {error}. "
                "On a machine without internet access, download the weights elsewhere and "
                "pass the local file as pretrained='/path/to/weights.bin'."
            ) from error
    model.eval()
    model.requires_grad_(False)
    digest = weights_digest(model)
    # The tokenizer pads to the text tower's own length, backbone_kwargs included.
    tokenizer = open_clip.get_tokenizer(
        name, context_length=config["text_cfg"].get("context_length")
    )
    model.to(device)
    return Backbone(
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        digest=digest,
        source=source,
        name=name,
        device=str(next(model.parameters()).device),
        config=config,
    )


class FrozenBackboneMixin:
    """Gives an estimator its frozen backbone at predict time without storing it.

    The backbone is taken from the process-wide cache of built backbones
    (:func:`build_backbone`), built again from the ``backbone``, ``pretrained`` and
    ``backbone_kwargs`` parameters when it is not there, and checked against
    ``backbone_digest_``. Nothing is stored on the estimator: ``predict`` leaves it as
    ``fit`` left it, and pickling or skops never meet a torch object.
    """

    def _runtime_backbone(self) -> Backbone:
        """The backbone to predict with, on the fit's device, else on the CPU.

        Returns
        -------
        Backbone
            Its ``device`` is where the images to encode go.
        """
        from ._device import resolve_device

        fitted_device = getattr(self, "device_", None) or self.device
        try:
            device = resolve_device(fitted_device)
        except ValueError:
            # Fitted on a GPU, used where there is none: predict on the CPU.
            warn(f"device={fitted_device!r} is not available here; predicting on the CPU.")
            device = "cpu"
        return build_backbone(
            self.backbone,
            self.pretrained,
            self.backbone_kwargs,
            device=device,
            expected_digest=getattr(self, "backbone_digest_", None),
        )
