"""Settings for offline tests and demos, where no pretrained CLIP weights can be had."""

from __future__ import annotations

__all__ = ["TINY_BACKBONE", "TINY_BACKBONE_KWARGS"]

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
