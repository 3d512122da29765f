"""Saving fitted models with skops, and loading them back with explicit trusted types.

A fitted :class:`~skvf.NeaRClassifier` holds only numpy arrays and plain Python values:
the learnt prompt context, the class text features, the training diagnostics and the
fitted components. The CLIP weights are never stored: the model records the backbone
name, the weights source (``pretrained``), the config overrides and a digest of the
weights, and rebuilds the backbone on the first ``predict`` that needs it, refusing
weights whose digest differs (:class:`skvf._backbone.BackboneError`).

skops refuses to load any type it does not trust by default; :func:`trusted_types`
lists the skvf types a model with the built-in components needs. A component of your
own (a labeler, an image encoder) must be added to that list explicitly, after
reviewing ``skops.io.get_untrusted_types(file=...)``. Never load with everything the
file asks for unreviewed.

A model with a component of your own loads with
``load("birds.skops", trusted=trusted_types() + ["mypackage.MyLabeler"])``.

Examples
--------
A fitted stage saved and loaded back (a fitted ``NeaRClassifier`` goes the same way):

>>> import pathlib, tempfile
>>> from skvf.noise import GMMNoiseSplitter
>>> from skvf.serialization import dump, load
>>> splitter = GMMNoiseSplitter(random_state=0).fit([0.1, 0.2, 0.15, 2.0, 2.1])
>>> with tempfile.TemporaryDirectory() as folder:
...     dump(splitter, pathlib.Path(folder) / "splitter.skops")
...     loaded = load(pathlib.Path(folder) / "splitter.skops")  # trusted=trusted_types()
>>> loaded.clean_mask_.tolist()
[True, True, True, False, False]
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import secrets
import stat
import threading
import zipfile
from collections.abc import Iterable
from importlib import import_module

__all__ = ["dump", "load", "register_trusted_type", "trusted_types"]


# The modules of the product whose classes a saved model may hold; importing them
# registers those classes (each module registers its own).
_PRODUCT_MODULES = (
    "skvf.classifier",
    "skvf.candidates",
    "skvf.noise",
    "skvf.filtering",
    "skvf.labeling",
)
_REGISTERED: set[str] = set()
_REGISTRY_LOCK = threading.Lock()


def _type_name(cls: type) -> str:
    # The name skops writes for an object of this class (module + class name).
    return f"{cls.__module__}.{cls.__name__}"


def register_trusted_type(cls: type) -> type:
    """Add a class to :func:`trusted_types`; usable as a class decorator.

    skvf's modules register their own estimators when they are imported; register a
    component of your own only after reviewing that loading it runs no code you do not
    trust (skops calls ``__setstate__`` and ``__init__``-free reconstruction on it).

    Parameters
    ----------
    cls : type
        The class to trust.

    Returns
    -------
    type
        ``cls`` itself, so that ``@register_trusted_type`` leaves the class unchanged.

    Examples
    --------
    >>> from sklearn.base import BaseEstimator
    >>> from skvf.serialization import register_trusted_type, trusted_types
    >>> @register_trusted_type
    ... class MyLabeler(BaseEstimator):
    ...     pass
    >>> f"{MyLabeler.__module__}.MyLabeler" in trusted_types()
    True
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_trusted_type takes a class, got {cls!r}.")
    with _REGISTRY_LOCK:
        _REGISTERED.add(_type_name(cls))
    return cls


def trusted_types() -> list[str]:
    """Type names to trust when loading a NeaRClassifier with built-in components.

    Covers every class registered with :func:`register_trusted_type`:
    :class:`~skvf.NeaRClassifier` and its components (``NeighborCandidateBuilder``,
    ``GMMNoiseSplitter``, ``FixedNoiseSplitter``, ``LabelFilter``, ``MLLMLabeler``), and
    :mod:`pathlib` paths, which parameters such as ``pretrained``, ``memory`` and
    ``MLLMLabeler(cache=...)`` accept. scikit-learn estimators (a ``Pipeline``, ``PCA``)
    and numpy arrays are trusted by skops already. Anything else in the file, such as a
    component of your own or a ``joblib.Memory`` passed as ``memory``, is not covered:
    review ``skops.io.get_untrusted_types(file=...)`` and add those names yourself. The
    list does not depend on what has been imported before: the evaluation harness's
    estimators are trusted only through ``skvf_bench.trusted_types()``, asked for by name.

    Returns
    -------
    list of str
        Fully qualified type names, sorted, for ``skops.io.load(..., trusted=...)``.

    Examples
    --------
    >>> from skvf.serialization import trusted_types
    >>> "skvf.classifier.NeaRClassifier" in trusted_types()
    True
    """
    for module in _PRODUCT_MODULES:
        import_module(module)
    with _REGISTRY_LOCK:
        names = set(_REGISTERED)
    names.update(_type_name(cls) for cls in (pathlib.PosixPath, pathlib.WindowsPath))
    return sorted(names)


def dump(estimator, file: str | os.PathLike) -> None:
    """Save an estimator in the skops format (a zip of JSON and ``.npy`` files).

    The file is written whole or not at all: the model goes to a temporary file in the
    destination's folder, which is flushed to disk and then renamed onto ``file``. A save
    that fails part way (a full disk, an interrupted process) leaves a previous ``file``
    as it was and no temporary file behind.

    Parameters
    ----------
    estimator : estimator
        Typically a fitted :class:`~skvf.NeaRClassifier`, alone or in a pipeline. Its
        CLIP backbone is not saved (see the module docstring).
    file : str or os.PathLike
        Destination; ``.skops`` is the conventional extension. A symbolic link is
        followed: the file it points to is replaced, with its permission bits kept. A
        destination that exists but is not a regular file (a FIFO, ``/dev/null``) is
        written to directly, since it cannot be replaced.

    Raises
    ------
    PermissionError
        ``file`` exists and is not writable (it is not replaced).
    OSError
        The save failed; ``file`` is unchanged.
    """
    import skops.io

    target = pathlib.Path(os.path.realpath(os.fspath(file)))
    try:
        existing = target.stat()
    except FileNotFoundError:
        existing = None
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        skops.io.dump(estimator, target)
        return
    if existing is not None and not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, "the model file is not writable", os.fspath(file))
    # Beside the target, so that the rename below stays on one file system; created as
    # open() would (0o666 less the umask); the name cut so that it stays a valid name.
    temporary = target.with_name(f".{target.name[:200]}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            skops.io.dump(estimator, stream)
            stream.flush()
            os.fsync(stream.fileno())
        if existing is not None:
            os.chmod(temporary, stat.S_IMODE(existing.st_mode))
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_folder(target.parent)


def _sync_folder(folder: pathlib.Path) -> None:
    """Flush a folder's entries to disk, so that a rename in it survives a power cut.

    Where folders cannot be opened (Windows) the rename is left to the file system.
    """
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on folders
            os.fsync(descriptor)
    finally:
        os.close(descriptor)


def load(file: str | os.PathLike, trusted: Iterable[str] | None = None):
    """Load an estimator saved with :func:`dump` or ``skops.io.dump``.

    Parameters
    ----------
    file : str or os.PathLike
        The ``.skops`` file.
    trusted : list of str or None, default=None
        Type names to trust beyond skops' defaults; ``None`` is :func:`trusted_types`.
        To load a model with components of your own, pass
        ``trusted_types() + ["mypackage.MyLabeler", ...]``. ``True`` (trust
        everything) is refused.

    Returns
    -------
    estimator

    Raises
    ------
    skops.io.exceptions.UntrustedTypesFoundException
        The file holds a type that is not trusted; nothing from it is executed.
    TypeError
        ``trusted`` is ``True``, a single string or not a list of names.
    ValueError
        The file is not a skops file (another kind of file, or truncated).
    """
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    if trusted is None:
        names = trusted_types()
    elif isinstance(trusted, (bool, str, bytes)):
        raise TypeError(
            f"trusted must be a list of type names, got {trusted!r}. Pass "
            "trusted_types() + [<your reviewed type names>]; trusting every type in a "
            "file is never done, since loading an untrusted type can run arbitrary code."
        )
    else:
        names = list(trusted)
        if not all(isinstance(name, str) for name in names):
            raise TypeError(f"trusted must hold type names (str), got {names!r}.")
    if not zipfile.is_zipfile(file):
        raise ValueError(
            f"{os.fspath(file)!r} is not a skops file (a skops file is a zip archive; this "
            "one is another kind of file, or truncated). Pass a model saved with "
            "skvf.serialization.dump or skops.io.dump."
        )
    try:
        return skops.io.load(file, trusted=names)
    except UntrustedTypesFoundException:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, EOFError) as error:
        raise ValueError(
            f"{os.fspath(file)!r} is not a readable skops file ({type(error).__name__}: "
            f"{error}). Pass a model saved with skvf.serialization.dump or skops.io.dump."
        ) from error
