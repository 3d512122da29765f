"""predict throughput of skvf's CLIP classifiers against open_clip's own ``encode_image``.

``predict`` is meant to cost no more than the image tower: image features times a cached
matrix of class text features. This benchmark times, side by side in one run and on the
same image files and batch size,

* ``encode_image``: open_clip's own path, serial: ``PIL.Image.open`` + the model's
  ``preprocess`` + ``model.encode_image``, batch by batch;
* ``predict``: ``predict`` of a fitted classifier on the same paths (loading and
  checking, preprocessing, encoding, scoring);

and prints images per second and their ratio, for two backbones at 224 px: a small ViT
(two 128-wide layers, where decoding and preprocessing dominate) and ViT-B-16. Both are
random-init (weights do not change the cost). The classifier is ``ZeroShotCLIP`` fitted
on ten names: its ``predict`` is the one ``NeaRClassifier`` runs (the same mixin), and
fitting it costs no training.

Run: ``python benchmarks/predict_speed.py [--images 96] [--batch-size 32] [--torch-threads 1]``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from _timing import interleaved_medians

#: The backbones measured: name, open_clip config overrides.
BACKBONES = {
    "small ViT (224 px, 2x128)": (
        "ViT-S-32",
        {
            "embed_dim": 64,
            "vision_cfg": {"image_size": 224, "width": 128, "layers": 2, "patch_size": 32},
            "text_cfg": {"width": 64, "heads": 2, "layers": 2},
        },
    ),
    "ViT-B-16": ("ViT-B-16", None),
}


def write_images(folder: Path, n_images: int, side: int) -> list[str]:
    """``n_images`` JPEG photos of ``side`` pixels (upscaled digits) in ``folder``."""
    from PIL import Image

    from skvf_bench.datasets import load_digits_images

    images, _ = load_digits_images(scale=side // 8)
    paths = []
    for index in range(n_images):
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(images[index % len(images)]).save(path, quality=90)
        paths.append(str(path))
    return paths


def measure(name, kwargs, paths, batch_size, repeats, device) -> dict:
    """Time open_clip's path and ``predict`` on ``paths``, interleaved."""
    import torch
    from PIL import Image

    from skvf._backbone import build_backbone
    from skvf_bench.baselines import ZeroShotCLIP
    from skvf_bench.datasets import load_digits_images
    from skvf_bench.simulation import NoisyOracleLabeler, make_oracle

    train, names = load_digits_images(scale=1)
    labeler = NoisyOracleLabeler(make_oracle(train[:10], names[:10]), noise_rate=0.0)
    clf = ZeroShotCLIP(
        labeler=labeler,
        backbone=name,
        pretrained=None,
        backbone_kwargs=kwargs,
        batch_size=batch_size,
        device=device,
    ).fit(train[:10])
    backbone = build_backbone(name, None, kwargs, clf.device_)

    def encode_image():
        with torch.inference_mode():
            for start in range(0, len(paths), batch_size):
                batch = [
                    backbone.preprocess(Image.open(path))
                    for path in paths[start : start + batch_size]
                ]
                backbone.model.encode_image(torch.stack(batch).to(clf.device_)).cpu()

    def predict():
        clf.predict(paths)

    encode_image(), predict()  # warm up both
    encode_seconds, predict_seconds = interleaved_medians([encode_image, predict], repeats)
    return {
        "encode_image_per_s": len(paths) / encode_seconds,
        "predict_per_s": len(paths) / predict_seconds,
        "ratio": encode_seconds / predict_seconds,
        "device": clf.device_,
    }


def main(argv=None) -> dict:
    """Run the benchmark; returns, per backbone, the throughputs and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--side", type=int, default=256, help="pixels of each JPEG file")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    arguments = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)
    import torch

    if arguments.torch_threads:
        torch.set_num_threads(arguments.torch_threads)

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        paths = write_images(Path(folder), arguments.images, arguments.side)
        print(
            f"{len(paths)} JPEG files of {arguments.side}x{arguments.side} px, batch size "
            f"{arguments.batch_size}, {torch.get_num_threads()} torch threads, median of "
            f"{arguments.repeats} interleaved runs"
        )
        for label in arguments.backbones:
            name, kwargs = BACKBONES[label]
            result = measure(
                name, kwargs, paths, arguments.batch_size, arguments.repeats, arguments.device
            )
            results[label] = result
            print(f"{label} (random-init, {result['device']})")
            print(f"  open_clip encode_image   {result['encode_image_per_s']:9.1f} images/s")
            print(f"  predict                  {result['predict_per_s']:9.1f} images/s")
            print(f"  predict / encode_image   {result['ratio']:9.2f}")
    return results


if __name__ == "__main__":
    main()
