"""Tests of skvf.folders: listing the images of a folder, and the classes of class folders."""

from pathlib import Path

import pytest
from PIL import Image

from skvf._images import load_image
from skvf.folders import folder_class_name, load_flat_folder, load_image_folder


def _save(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (value, value, value)).save(path)


def test_load_image_folder_reads_classes_from_folder_names(tmp_path):
    _save(tmp_path / "Painted_Bunting" / "b.png")
    _save(tmp_path / "Painted_Bunting" / "a.JPG")
    _save(tmp_path / "001.Black_footed_Albatross" / "x.jpeg")
    _save(tmp_path / "empty_class" / ".hidden.png")
    (tmp_path / "Painted_Bunting" / "notes.txt").write_text("not an image")
    (tmp_path / "stray.png").write_bytes(b"")  # files directly under root are not a class

    paths, names = load_image_folder(tmp_path)
    assert [Path(p).relative_to(tmp_path).as_posix() for p in paths] == [
        "001.Black_footed_Albatross/x.jpeg",
        "Painted_Bunting/a.JPG",
        "Painted_Bunting/b.png",
    ]
    assert names.dtype == object
    assert names.tolist() == ["black footed albatross", "painted bunting", "painted bunting"]
    assert load_image(paths[1]).size == (4, 4)

    _, kept_ordinal = load_image_folder(tmp_path, strip_ordinal=False)
    assert kept_ordinal[0] == "001 black footed albatross"


def test_folder_class_name():
    assert folder_class_name("House_Sparrow") == "house sparrow"
    assert folder_class_name("042 - Grey-headed_Gull") == "grey-headed gull"
    assert folder_class_name("3") == "3"  # a bare number is the name, not an ordinal


def test_load_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "only_text").mkdir()
    (tmp_path / "only_text" / "a.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no images found in class folders"):
        load_image_folder(tmp_path)
    _save(tmp_path / "Blue_Jay" / "a.png")
    _save(tmp_path / "blue jay" / "b.png")
    with pytest.raises(ValueError, match="'Blue_Jay' and 'blue jay' both give the class name"):
        load_image_folder(tmp_path)


def test_load_flat_folder(tmp_path):
    _save(tmp_path / "b.png")
    _save(tmp_path / "a.jpg")
    _save(tmp_path / "nested" / "c.png")
    (tmp_path / "readme.md").write_text("x")
    assert [Path(p).name for p in load_flat_folder(tmp_path)] == ["a.jpg", "b.png"]
    assert [Path(p).name for p in load_flat_folder(tmp_path, recursive=True)] == [
        "a.jpg",
        "b.png",
        "c.png",
    ]
    with pytest.raises(FileNotFoundError, match="no images found"):
        load_flat_folder(tmp_path / "nested" / "..", extensions=(".gif",))
    with pytest.raises(NotADirectoryError):
        load_flat_folder(tmp_path / "b.png")
