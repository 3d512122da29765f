"""Warnings that point at the user's line, not into skvf or scikit-learn."""

from __future__ import annotations

import os
import sys
import warnings
from importlib.util import find_spec

__all__ = ["warn"]


def _package_dir(name: str) -> str | None:
    spec = find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "")


# Frames in these packages are skvf's own or the machinery that calls it (a Pipeline, a
# search, joblib's parallel loop): a warning belongs to the first frame outside them.
_INTERNAL_DIRS = tuple(
    path for path in (_package_dir(name) for name in ("skvf", "sklearn", "joblib")) if path
)


def warn(message: str | Warning, category: type[Warning] = UserWarning) -> None:
    """Issue a warning attributed to the first caller outside skvf, scikit-learn and joblib.

    Parameters
    ----------
    message : str or Warning
        The message, or a warning instance (its class is then the category).
    category : Warning subclass, default=UserWarning
    """
    frame = sys._getframe(1)
    level = 2  # stacklevel 2 is warn's caller
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level if frame is not None else level - 1)
