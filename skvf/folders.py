"""Image folders on disk: the user's own photos, as lists of paths.

- :func:`load_flat_folder` lists the images of an unlabelled folder (``~/photos/birds``),
  the input of ``NeaRClassifier.fit`` and ``predict``.
- :func:`load_image_folder` reads a labelled folder, ``root/<class>/<image>``, with the
  class of each image taken from its folder's name (:func:`folder_class_name`), to score
  a model with :func:`skvf.metrics.cluster_accuracy` and
  :func:`skvf.metrics.semantic_accuracy`.

Examples
--------
>>> import pathlib, tempfile
>>> from skvf.folders import load_flat_folder, load_image_folder
>>> with tempfile.TemporaryDirectory() as root:
...     for name in ("001.House_Sparrow/a.jpg", "002.Grey_Gull/b.png", "notes.txt"):
...         path = pathlib.Path(root, name)
...         path.parent.mkdir(exist_ok=True)
...         path.touch()
...     paths, names = load_image_folder(root)
...     flat = load_flat_folder(root, recursive=True)
>>> [pathlib.Path(p).name for p in paths], names.tolist()
(['a.jpg', 'b.png'], ['house sparrow', 'grey gull'])
>>> [pathlib.Path(p).name for p in flat]
['a.jpg', 'b.png']
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .names import normalize_name

__all__ = [
    "IMAGE_EXTENSIONS",
    "folder_class_name",
    "load_flat_folder",
    "load_image_folder",
]

#: File name endings (lowercase) taken as images by the folder loaders.
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)

# A leading ordinal such as CUB-200's "001.Black_footed_Albatross".
_ORDINAL_PREFIX = re.compile(r"^\d+[._\-\s]+(?=\D)")


def _is_image_file(path: Path, extensions: tuple[str, ...]) -> bool:
    # Anything named like an image that is not a folder: a broken link, a FIFO or an
    # unreadable file is listed, so that loading it reports why it is unusable.
    return not path.is_dir() and not path.name.startswith(".") and path.suffix.lower() in extensions


def _check_directory(root) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{os.fspath(root)!r} does not exist.")
    if not path.is_dir():
        raise NotADirectoryError(f"{os.fspath(root)!r} is not a directory.")
    return path


def folder_class_name(folder_name: str, strip_ordinal: bool = True) -> str:
    """The class name a folder stands for: underscores as spaces, then normalised.

    Parameters
    ----------
    folder_name : str
        E.g. ``"001.Black_footed_Albatross"``.
    strip_ordinal : bool, default=True
        Drop a leading number followed by a separator ("001.").

    Returns
    -------
    str

    Examples
    --------
    >>> folder_class_name("001.Black_footed_Albatross")
    'black footed albatross'
    """
    if strip_ordinal:
        folder_name = _ORDINAL_PREFIX.sub("", folder_name)
    return normalize_name(folder_name.replace("_", " "))


def load_image_folder(
    root: str | os.PathLike,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    strip_ordinal: bool = True,
) -> tuple[list[str], np.ndarray]:
    """Read a labelled image folder laid out as ``root/<class>/<image>``.

    Parameters
    ----------
    root : str or os.PathLike
        A directory with one sub-directory per class. Files directly inside each class
        directory whose names end in one of ``extensions`` (any case) are the images;
        hidden files are ignored.
    extensions : tuple of str, default=IMAGE_EXTENSIONS
        Accepted file name endings, lowercase, with the dot.
    strip_ordinal : bool, default=True
        See :func:`folder_class_name`.

    Returns
    -------
    paths : list of str
        Image paths, sorted by class folder then file name.
    names : ndarray of str, shape (n_images,), dtype object
        The class of each image: its folder name, "_" read as a space, normalised with
        :func:`skvf.names.normalize_name` ("Painted_Bunting" -> "painted bunting").

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist or holds no images in class folders.
    ValueError
        Two folders normalise to the same class name.
    """
    root_path = _check_directory(root)
    paths, names, folder_of_class = [], [], {}
    for folder in sorted(p for p in root_path.iterdir() if p.is_dir()):
        if folder.name.startswith("."):
            continue
        files = sorted(p for p in folder.iterdir() if _is_image_file(p, extensions))
        if not files:
            continue
        name = folder_class_name(folder.name, strip_ordinal=strip_ordinal)
        if not name:
            raise ValueError(f"the class folder {folder.name!r} gives an empty class name.")
        if name in folder_of_class:
            raise ValueError(
                f"the class folders {folder_of_class[name]!r} and {folder.name!r} both give "
                f"the class name {name!r}; merge or rename them."
            )
        folder_of_class[name] = folder.name
        paths.extend(str(p) for p in files)
        names.extend([name] * len(files))
    if not paths:
        raise FileNotFoundError(
            f"no images found in class folders under {os.fspath(root)!r}; expected "
            f"root/<class>/<image> with extensions {', '.join(extensions)}."
        )
    return paths, np.asarray(names, dtype=object)


def load_flat_folder(
    root: str | os.PathLike,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    recursive: bool = False,
) -> list[str]:
    """List the images of an unlabelled folder, sorted by path.

    Parameters
    ----------
    root : str or os.PathLike
        A directory of images, e.g. ``~/photos/birds``.
    extensions : tuple of str, default=IMAGE_EXTENSIONS
        Accepted file name endings, lowercase, with the dot (any case on disk).
    recursive : bool, default=False
        Also list images in sub-directories.

    Returns
    -------
    list of str

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist or holds no images.
    """
    root_path = _check_directory(root)
    candidates = root_path.rglob("*") if recursive else root_path.iterdir()
    paths = sorted(str(p) for p in candidates if _is_image_file(p, extensions))
    if not paths:
        raise FileNotFoundError(
            f"no images found in {os.fspath(root)!r} (extensions {', '.join(extensions)})."
        )
    return paths
