"""The naming context of ``prompt="expert"``: what the images show, and who names them how.

FiNDR (CVPR 2026) found the largest single gain of its pipeline in the naming prompt: one
that tells the model what the collection shows, the granularity of the names wanted and
the expert who would give them, all three inferred from the images themselves. Before
any image is named, the labeler shows the model a few training images in one message and
asks for those three; every naming prompt is then rendered from the answer.

The question is one request per fit (:func:`~skvf.labeling._single_request.ask_once`:
the same client as the names, cached under the model, the server, the question, the
image encoding and the content digests of the images shown), so a rerun sends nothing.
"""

from __future__ import annotations

import numpy as np

from .._images import as_image_list, describe_item, image_digest, load_image
from .._store import stable_hash
from .._warnings import warn
from ..exceptions import ImageInputError
from ._encoding import jpeg_data_uri
from ._errors import LabelingWarning
from ._parsing import parse_naming_context
from ._prompts import render_context_question
from ._single_request import ask_once, attempts

__all__ = ["context_positions", "infer_naming_context"]


def context_positions(n_items: int, n_images: int) -> list[int]:
    """The positions of the images shown: up to ``n_images``, evenly spaced, ends included.

    Evenly spaced rather than the first ones, so that a collection sorted by kind shows
    several kinds.

    Parameters
    ----------
    n_items : int
        Images to choose from.
    n_images : int
        Images wanted.

    Returns
    -------
    list of int
        Increasing positions.

    Examples
    --------
    >>> context_positions(10, 4)
    [0, 3, 6, 9]
    >>> context_positions(2, 4)
    [0, 1]
    """
    if n_items == 0:
        return []
    spaced = np.linspace(0, n_items - 1, num=min(n_images, n_items))
    return sorted({int(position) for position in np.round(spaced)})


def infer_naming_context(labeler, X) -> dict | None:
    """Ask the labeler's model for the naming context of the images ``X``.

    Parameters
    ----------
    labeler : MLLMLabeler
        Its parameters say what to ask (``domain``, ``context_images``), where and how;
        its ``usage_`` counts the request.
    X : sequence of images
        The training images; :func:`context_positions` picks those shown.

    Returns
    -------
    dict or None
        ``category``, ``granularity`` and ``expert``; ``None`` when the answer is
        unusable (or no image shown could be read) and ``on_error`` is ``"warn"`` or
        ``"skip"``: a :class:`LabelingWarning` then says that the direct prompt is used.

    Raises
    ------
    ValueError
        ``X`` holds no image.
    ImageInputError
        An image shown cannot be read and ``on_error="raise"``.
    UnusableAnswerError
        The answer is unusable and ``on_error="raise"``.
    LabelingError
        The request failed for good, or the key is missing.
    BudgetExceededError
        ``max_cost`` leaves nothing to spend.
    """
    items = [] if X is None else as_image_list(X)
    if not items:
        raise ValueError(
            "prompt='expert' infers what to ask from a few training images: pass them to "
            "fit(X), at least one."
        )
    described, data_uris, digests = _context_images(labeler, items)
    if not data_uris:
        return _fall_back("no image shown for the naming context could be read")
    question = render_context_question(labeler.domain)
    answer = ask_once(
        labeler,
        question,
        data_uris,
        purpose="naming context",
        key=stable_hash(digests, length=40),
        item=f"naming context ({', '.join(described)})",
        parse=parse_naming_context,
        budget_message=f"max_cost={labeler.max_cost} USD leaves nothing to spend on the naming "
        "context of prompt='expert'; no request was sent. Raise max_cost.",
        failure_message=lambda error: (
            f"Asking for the naming context of prompt='expert' stopped: {error} "
            f"{attempts(error)}. No image was "
            "named yet; running again asks again."
        ),
    )
    problem = answer.problem
    if problem is None:
        return answer.value
    message = (
        f"the naming context answer of prompt='expert' (about {', '.join(described)}) is "
        f"unusable: {problem}"
    )
    if labeler.on_error == "raise":
        raise answer.unusable_error(
            message, "name the images with the direct prompt instead, or change the model."
        )
    return _fall_back(message)


def _fall_back(why: str) -> None:
    # Always warned, even under on_error="skip": it changes the question of every image.
    warn(f"{why}; every image is named with the direct prompt instead.", LabelingWarning)


def _context_images(labeler, items: list) -> tuple[list[str], list[str], list[str]]:
    """The images shown: their descriptions, data URIs and digests (duplicates once)."""
    described, data_uris, digests = [], [], []
    for position in context_positions(len(items), labeler.context_images):
        item = items[position]
        try:
            image = load_image(item)
        except ImageInputError as error:
            if labeler.on_error == "raise":
                raise ImageInputError(
                    f"{describe_item(position, item)}: {error}; it was chosen to show the "
                    "model what the images are (prompt='expert'). Fix or remove this item, "
                    "or pass on_error='skip' to leave bad images without a name."
                ) from None
            continue  # reported with the other images left without a name, when named
        digest = image_digest(image)
        if digest not in digests:
            described.append(describe_item(position, item))
            data_uris.append(jpeg_data_uri(image, labeler.max_side))
            digests.append(digest)
    return described, data_uris, digests
