"""Shared fixtures of the skvf test suite."""

from __future__ import annotations

import pytest

#: A ~1M-parameter random-init open_clip model: small enough for CPU tests.
TINY = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 32, "width": 64, "layers": 2, "patch_size": 8},
    "text_cfg": {"width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session")
def backbone():
    """The tiny random-init ViT-S-32 backbone, built once per test session."""
    from skvf.backbone import build_backbone

    return build_backbone("ViT-S-32", None, TINY)
