"""Errors skvf raises for input a user can fix.

Each is a ``ValueError`` subclass, so code that catches scikit-learn's input errors
catches these too; the message names the offending item and how to fix it. The
labeler's errors (:class:`~skvf.labeling.LabelingError` and its kin) live beside the
labeler in :mod:`skvf.labeling`.
"""

__all__ = ["BackboneError", "ImageInputError", "SkippedImagesWarning"]


class ImageInputError(ValueError):
    """An item of the input cannot be used as an image.

    Examples
    --------
    >>> from skvf import NeaRClassifier
    >>> from skvf.exceptions import ImageInputError
    >>> try:
    ...     NeaRClassifier().fit(["missing.jpg", "also-missing.jpg"])
    ... except ImageInputError as error:
    ...     print(str(error).split(":")[0])
    X[0] ('missing.jpg')
    """


class BackboneError(ValueError):
    """The backbone cannot be built: unknown model, missing weights, mismatched digest."""


class SkippedImagesWarning(UserWarning):
    """Some images could not be used and were skipped (``on_error="skip"``).

    Parameters
    ----------
    message : str
    reasons : list of str
        One line per skipped image: its position, its path and why.
    """

    def __init__(self, message: str, reasons: list[str]):
        super().__init__(message)
        self.reasons = list(reasons)
