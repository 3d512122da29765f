"""Choosing the torch device."""

from __future__ import annotations

import re

__all__ = ["resolve_device"]

_DEVICE = re.compile(r"^(?:auto|cpu|mps|cuda(?::\d+)?)$")


def resolve_device(device: str) -> str:
    """Turn the ``device`` parameter into a concrete torch device string.

    Parameters
    ----------
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``
        or ``"mps"`` (Apple GPUs).

    Returns
    -------
    str

    Raises
    ------
    ValueError
        Not a device skvf runs on, or one this machine does not have.

    Examples
    --------
    >>> resolve_device("cpu")
    'cpu'
    >>> resolve_device("tpu")
    Traceback (most recent call last):
    ...
    ValueError: device='tpu' is not a device skvf can use; ...
    """
    if not isinstance(device, str) or not _DEVICE.match(device):
        raise ValueError(
            f"device={device!r} is not a device skvf can use; pass 'auto', 'cpu', 'cuda', "
            "'cuda:N' or 'mps'."
        )
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but torch sees no CUDA device here; pass device='cpu' or "
                "device='auto'."
            )
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA "
                "device(s); pass device='cuda' for the first one."
            )
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError(
            "device='mps' but torch sees no Apple GPU here; pass device='cpu' or device='auto'."
        )
    return device
