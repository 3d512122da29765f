"""Images as the labeler sends them: downscaled JPEG data URIs."""

from __future__ import annotations

import base64
import io

from PIL import Image

__all__ = ["JPEG_QUALITY", "jpeg_data_uri"]

#: The JPEG quality of the images sent (a part of the answer cache key).
JPEG_QUALITY = 90


def jpeg_data_uri(image: Image.Image, max_side: int, quality: int = JPEG_QUALITY) -> str:
    """Encode an RGB image as a ``data:image/jpeg;base64,...`` URI.

    Parameters
    ----------
    image : PIL.Image.Image
        An RGB image.
    max_side : int
        The longest side of the image sent; larger images are downscaled (aspect kept).
        Vision models tile or resize images anyway; a smaller image costs fewer input
        tokens and less upload.
    quality : int, default=90
        JPEG quality.

    Returns
    -------
    str
    """
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
