"""From a folder of photos to a saved model, predictions and scores, offline.

The workflow of a user with photos on disk, run here on scikit-learn's digits written
out as PNG files, one folder per class (``train/<class>/*.png``, ``test/<class>/*.png``):

1. fit a ``NeaRClassifier`` on the training images, **without their labels**;
2. save it with skops and load it back with explicit trusted types;
3. name the test images, with probabilities;
4. score the names against the test folders (cluster accuracy).

What is simulated: the labeler. ``NoisyOracleLabeler`` reads each training image's class
from its folder and names 40% of the images wrong, standing where a vision LLM
(``MLLMLabeler(model="gpt-4o-mini", domain="handwritten digit")``) would be. The image
features are pixels -> PCA and CLIP is a tiny random-init model, since no pretrained
weights can be downloaded here; with real photos use ``backbone="ViT-B-16",
pretrained="openai"`` and drop ``image_encoder``.

Run: ``python examples/folder_of_photos.py [--fast] [--workdir DIR]``. ``--fast`` (5
photos per class, 20 epochs) only shows that the workflow runs: its accuracies mean
nothing, and the script says so beside them.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from skvf.folders import load_flat_folder, load_image_folder
from skvf.metrics import cluster_accuracy
from skvf.serialization import dump, load
from skvf_bench import trusted_types
from skvf_bench.datasets import few_shot_split, load_digits_images
from skvf_bench.demo import offline_demo_classifier


def write_photo_folders(root: Path, shots: int, seed: int = 0) -> None:
    """Write digits as PNG files: ``shots`` per class in train/, up to 40 per class in test/."""
    images, names = load_digits_images(scale=4)
    fit_index, test_index = few_shot_split(names, shots, random_state=seed, max_test_per_class=40)
    for split, indices in (("train", fit_index), ("test", test_index)):
        for index in indices:
            folder = root / split / names[index]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index]).save(folder / f"{index:04d}.png")


FAST = {"shots": 5, "max_epochs": 20}
FAST_NOTE = (
    f"--fast: {FAST['shots']} photos per class and {FAST['max_epochs']} epochs, to show "
    "that the workflow runs: these accuracies mean nothing. Run without --fast for "
    "numbers to read"
)


def main(
    workdir: Path, shots: int = 20, max_epochs: int = 150, seed: int = 0, fast: bool = False
) -> dict:
    """Fit on workdir/train, save, load, predict and score on workdir/test."""
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that weights are random
    write_photo_folders(workdir, shots, seed)

    # 1. Fit on the unlabeled training photos. The simulated labeler is the only thing
    #    that reads the class folders; the classifier sees paths only.
    train_paths = load_flat_folder(workdir / "train", recursive=True)
    folder_paths, folder_names = load_image_folder(workdir / "train")
    clf = offline_demo_classifier(
        folder_paths,
        folder_names,
        random_state=seed,
        max_epochs=max_epochs,
        memory=workdir / "cache",  # features and answers: a refit pays nothing twice
    )
    clf.fit(train_paths)
    print(f"fitted on {len(train_paths)} unlabeled photos: {len(clf.classes_)} classes")
    print(f"  classes_: {', '.join(clf.classes_)}")

    # 2. Save with skops; load back trusting the product's types and, since this model
    #    holds the harness's simulated labeler and pixel encoder, the harness's too.
    model_path = workdir / "digits.skops"
    dump(clf, model_path)
    loaded = load(model_path, trusted=trusted_types())
    print(f"saved and loaded {model_path.name} ({model_path.stat().st_size / 1024:.0f} KiB)")

    # 3. Name the test photos.
    test_paths, true_names = load_image_folder(workdir / "test")
    predicted = loaded.predict(test_paths)
    probabilities = loaded.predict_proba(test_paths)
    assert np.array_equal(predicted, clf.predict(test_paths))
    for path, name, row in list(zip(test_paths, predicted, probabilities, strict=True))[:3]:
        print(f"  {Path(path).relative_to(workdir)} -> {name} (p = {row.max():.2f})")

    # 4. Score against the test folders.
    scores = {
        "labeler names (train)": cluster_accuracy(
            folder_names, clf.labeler.fit(None).transform(folder_paths)
        ),
        "NeaR predictions (test)": cluster_accuracy(true_names, predicted),
    }
    for name, value in scores.items():
        print(f"cluster accuracy, {name}: {value:.3f}")
    if fast:
        print(f"({FAST_NOTE})")
    return scores


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="fewer photos and epochs")
    parser.add_argument("--workdir", type=Path, help="where to write the photos (default: temp)")
    arguments = parser.parse_args()
    settings = {**FAST, "fast": True} if arguments.fast else {}
    if arguments.workdir is not None:
        main(arguments.workdir, **settings)
    else:
        with tempfile.TemporaryDirectory() as workdir:
            main(Path(workdir), **settings)
