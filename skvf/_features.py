"""Frozen image features: the CLIP image tower, computed once per image, and the map
from any encoder's features into the text embedding space."""

from __future__ import annotations

import numpy as np

from ._store import ItemStore, cached_values, stable_hash

__all__ = [
    "is_feature_vector",
    "check_encoder_output",
    "encode_batch",
    "encode_images",
    "preprocess_images",
    "cached_encode",
    "feature_store",
    "encode_with_memory",
    "projection_matrix",
    "to_embedding_space",
]


def encode_images(backbone, images: list, batch_size: int = 64, verbose: int = 0) -> np.ndarray:
    """Run the frozen CLIP image tower over RGB PIL images.

    Parameters
    ----------
    backbone : skvf._backbone.Backbone
        Encodes on its ``device``; on CUDA the tower runs under bfloat16 autocast.
    images : list of PIL.Image.Image
    batch_size : int, default=64
    verbose : int, default=0
        A progress bar (on stderr) when positive.

    Returns
    -------
    ndarray of shape (n_images, embed_dim), float32
        Unnormalised image embeddings.
    """
    from tqdm.auto import tqdm

    outputs = []
    progress = tqdm(total=len(images), desc="image features", unit="image", disable=not verbose)
    with progress:
        for start in range(0, len(images), batch_size):
            batch = preprocess_images(backbone, images[start : start + batch_size])
            outputs.append(encode_batch(backbone, batch))
            progress.update(len(batch))
    if not outputs:
        return np.zeros((0, int(backbone.config["embed_dim"])), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32, copy=False)


def preprocess_images(backbone, images: list):
    """The backbone's preprocessing of RGB PIL images, stacked: a tensor (n, 3, H, W).

    open_clip's usual pipeline (resize, crop, RGB, ``ToTensor``, ``Normalize``) runs its
    PIL steps per image and its tensor steps once on the stacked batch: the same
    float operations, in a handful of large ones instead of several small ones per
    image. Any other pipeline runs image by image. Pure CPU work that releases the GIL
    for most of its time, so it can run in a loading thread while the tower encodes
    the previous batch.
    """
    import torch

    split = _pil_steps_and_normalization(backbone.preprocess)
    with torch.inference_mode():
        if split is not None:
            pil_steps, mean, std = split
            pixels = [np.asarray(pil_steps(image)) for image in images]
            if all(p.ndim == 3 and p.shape[2] == 3 and p.dtype == np.uint8 for p in pixels):
                batch = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)
                batch = batch.to(dtype=torch.get_default_dtype()).div_(255)
                return batch.sub_(mean).div_(std)
        return torch.stack([backbone.preprocess(image) for image in images])


def _pil_steps_and_normalization(preprocess):
    """``(PIL steps, mean, std)`` when ``preprocess`` ends with ``ToTensor, Normalize``.

    ``None`` for any other pipeline. mean and std are tensors shaped (3, 1, 1).
    """
    import torch
    from torchvision import transforms

    steps = list(getattr(preprocess, "transforms", ()))
    if (
        len(steps) < 2
        or not isinstance(steps[-2], transforms.ToTensor)
        or type(steps[-1]) is not transforms.Normalize
        or not all(_is_pil_step(step) for step in steps[:-2])
    ):
        return None
    dtype = torch.get_default_dtype()
    mean = torch.as_tensor(steps[-1].mean, dtype=dtype).view(-1, 1, 1)
    std = torch.as_tensor(steps[-1].std, dtype=dtype).view(-1, 1, 1)
    return transforms.Compose(steps[:-2]), mean, std


def _is_pil_step(step) -> bool:
    """A step of open_clip's evaluation pipeline that maps a PIL image to a PIL image."""
    from torchvision import transforms

    return isinstance(step, (transforms.Resize, transforms.CenterCrop)) or (
        type(step).__name__ == "MaybeConvertMode"
    )


def encode_batch(backbone, batch) -> np.ndarray:
    """Image-tower embeddings of one preprocessed batch (from :func:`preprocess_images`).

    Parameters
    ----------
    backbone : skvf._backbone.Backbone
        The batch goes to its ``device``.
    batch : torch.Tensor of shape (n_images, 3, H, W)

    Returns
    -------
    ndarray of shape (n_images, embed_dim), float32
        Unnormalised; on CUDA the tower runs under bfloat16 autocast.
    """
    import torch

    device = backbone.device
    with torch.inference_mode():
        batch = batch.to(device, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
            features = backbone.model.encode_image(batch)
        return features.float().cpu().numpy()


def feature_store(cache_root, backbone) -> ItemStore | None:
    """The on-disk store of a backbone's image-tower features, one vector per image.

    Its namespace hashes the backbone's name and weights digest, so every estimator
    given the same ``memory`` directory and weights shares it, and other weights never
    read it.

    Parameters
    ----------
    cache_root : pathlib.Path or None
        The cache directory (:func:`skvf._store.resolve_memory`); ``None``: no store.
    backbone : skvf._backbone.Backbone
        Its ``name`` and ``digest`` key the store (its device does not).

    Returns
    -------
    ItemStore or None
    """
    if cache_root is None:
        return None
    key = stable_hash({"backbone": backbone.name, "weights": backbone.digest})
    width = int(backbone.config["embed_dim"])
    return ItemStore(cache_root, "features-" + key, "npy", is_feature_vector(width))


def cached_encode(encode, images: list, digests: list[str], store: ItemStore | None):
    """Encode images, reading and writing one cached vector per image digest.

    Parameters
    ----------
    encode : callable
        ``encode(list_of_images) -> ndarray (n, d)``; called once, on the misses only.
    images : list
    digests : list of str
        Content digest of each image.
    store : ItemStore or None
        ``None`` disables caching.

    Returns
    -------
    features : ndarray of shape (n_images, d)
    n_computed : int
        Images that went through ``encode``.
    """
    if store is None:  # keep encode's array whole rather than restacking its rows
        return encode(images), len(images)
    vectors, n_computed = cached_values(encode, images, digests, store)
    return np.stack(vectors).astype(np.float32, copy=False), n_computed


def encode_with_memory(
    backbone,
    images: list,
    digests: list[str],
    cache_root,
    batch_size: int,
    verbose: int = 0,
):
    """Image-tower features of ``images`` through the backbone's feature store.

    What a fit of the CLIP path reads and writes under ``memory``: the
    :func:`feature_store` of the backbone's name and weights, one vector per image
    digest, the misses encoded by :func:`encode_images` in batches of ``batch_size``.
    Whoever fills the store ahead of fits (the benchmarks) calls this too, so the fits
    find every vector.

    Parameters
    ----------
    backbone : skvf._backbone.Backbone
        Encodes on its ``device``.
    images : list of PIL.Image.Image
    digests : list of str
        Content digest of each image.
    cache_root : pathlib.Path or None
        The cache directory (:func:`skvf._store.resolve_memory`); ``None``: no store.
    batch_size : int
        Images per pass of the tower.
    verbose : int, default=0
        A progress bar (on stderr) when positive.

    Returns
    -------
    features : ndarray of shape (n_images, embed_dim)
    n_encoded : int
        Images the tower encoded (the others were in the store).
    """
    return cached_encode(
        lambda batch: encode_images(backbone, batch, batch_size, verbose),
        images,
        digests,
        feature_store(cache_root, backbone),
    )


def projection_matrix(n_features: int, n_components: int, random_state) -> np.ndarray:
    """A fixed random map from ``n_features`` to ``n_components`` dimensions.

    Orthonormal columns when ``n_features >= n_components`` (distances are kept as well
    as a linear map can), scaled Gaussian otherwise.
    """
    gaussian = random_state.standard_normal((n_features, n_components))
    if n_features >= n_components:
        orthonormal, _ = np.linalg.qr(gaussian)
        return orthonormal.astype(np.float32)
    return (gaussian / np.sqrt(n_components)).astype(np.float32)


def to_embedding_space(
    features: np.ndarray, mean: np.ndarray | None, projection: np.ndarray | None
) -> np.ndarray:
    """Centre, project and L2-normalise image features for comparison with text features.

    Parameters
    ----------
    features : ndarray of shape (n_samples, n_features)
    mean : ndarray of shape (n_features,) or None
        Training mean to subtract; ``None`` skips centring.
    projection : ndarray of shape (n_features, embed_dim) or None
        ``None`` when the features already live in the embedding space.

    Returns
    -------
    ndarray of shape (n_samples, embed_dim), float32, rows of unit norm
    """
    features = np.asarray(features, dtype=np.float32)
    if mean is not None:
        features = features - mean
    if projection is not None:
        features = features @ projection
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def check_encoder_output(features, n_items: int, width: int | None = None) -> np.ndarray:
    """The features an ``image_encoder`` returned, checked: one finite row per item.

    Parameters
    ----------
    features : array-like
    n_items : int
        Items the encoder was given.
    width : int or None, default=None
        Features per item the model was fitted with (``None`` in ``fit``).

    Returns
    -------
    ndarray of float32, shape (n_items, n_features)
    """
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or len(features) != n_items:
        raise ValueError(
            f"image_encoder returned an array of shape {features.shape}; it must return "
            f"one row per image, shape ({n_items}, n_features)."
        )
    if width is not None and features.shape[1] != width:
        raise ValueError(
            f"image_encoder returned {features.shape[1]} features per image, but the model "
            f"was fitted with {width}; the fitted image_encoder_ must not change its output "
            "width (refit the classifier after changing the encoder)."
        )
    if not np.all(np.isfinite(features)):
        raise ValueError("image_encoder returned NaN or infinite features.")
    return features


def is_feature_vector(width: int):
    """A check for stored features: a finite float vector of ``width`` values.

    Examples
    --------
    >>> import numpy as np
    >>> check = is_feature_vector(3)
    >>> check(np.ones(3, dtype=np.float32)), check(np.ones(4)), check(np.array([1, np.nan, 0]))
    (True, False, False)
    """

    def check(value) -> bool:
        return (
            isinstance(value, np.ndarray)
            and value.shape == (width,)
            and np.issubdtype(value.dtype, np.floating)
            and bool(np.all(np.isfinite(value)))
        )

    return check
