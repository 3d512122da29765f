"""predict throughput of NeaRClassifier against open_clip's own ``encode_image``.

``predict`` is meant to cost what the image tower costs: image features times a cached
matrix of class text features. This benchmark times, side by side in one run and on the
same images and batch size,

* ``encode_image``: open_clip's preprocessing + ``model.encode_image`` alone;
* ``predict``: ``NeaRClassifier.predict`` (loading, preprocessing, encoding, scoring);

and prints images per second and their ratio. Offline it uses a random-init model
(weights do not change the cost); pass ``--backbone``/``--pretrained`` for a real one.

Run: ``python benchmarks/predict_speed.py [--images 512] [--batch-size 64]``.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
from _timing import interleaved_medians


def main(argv=None) -> dict:
    """Run the benchmark; returns the measured throughputs and their ratio."""
    import torch

    from skvf import NeaRClassifier
    from skvf._backbone import build_backbone
    from skvf.bench.datasets import load_digits_images
    from skvf.bench.demo import TINY_BACKBONE, TINY_BACKBONE_KWARGS
    from skvf.bench.simulation import NoisyOracleLabeler, make_oracle

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backbone", default=TINY_BACKBONE)
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--device", default="auto")
    arguments = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.ERROR)

    kwargs = TINY_BACKBONE_KWARGS if arguments.backbone == TINY_BACKBONE else None
    images, names = load_digits_images(scale=4)
    if kwargs is None:  # a real backbone: give it images of its own input size
        images, names = load_digits_images(scale=28)
    train = np.r_[0:100, 900:1000]
    clf = NeaRClassifier(
        labeler=NoisyOracleLabeler(make_oracle(images[train], names[train]), noise_rate=0.2),
        backbone=arguments.backbone,
        pretrained=arguments.pretrained,
        backbone_kwargs=kwargs,
        batch_size=arguments.batch_size,
        max_epochs=20,
        device=arguments.device,
        random_state=0,
    ).fit(images[train])
    backbone = build_backbone(arguments.backbone, arguments.pretrained, kwargs, clf.device_)
    test = np.resize(np.arange(len(images)), arguments.images)
    test_images = images[test]

    from PIL import Image

    def encode_only():
        pil = [Image.fromarray(image) for image in test_images]
        with torch.inference_mode():
            for start in range(0, len(pil), arguments.batch_size):
                batch = torch.stack(
                    [backbone.preprocess(p) for p in pil[start : start + arguments.batch_size]]
                )
                backbone.model.encode_image(batch.to(clf.device_))

    def predict():
        clf.predict(test_images)

    encode_only(), predict()  # warm up both
    encode_seconds, predict_seconds = interleaved_medians([encode_only, predict], arguments.repeats)
    result = {
        "encode_image_per_s": len(test) / encode_seconds,
        "predict_per_s": len(test) / predict_seconds,
    }
    result["ratio"] = result["predict_per_s"] / result["encode_image_per_s"]
    print(
        f"backbone {arguments.backbone} ({arguments.pretrained or 'random-init'}), "
        f"device {clf.device_}, {len(test)} images, batch size {arguments.batch_size}, "
        f"{len(clf.classes_)} classes, median of {arguments.repeats} interleaved runs"
    )
    print(f"  open_clip encode_image   {result['encode_image_per_s']:9.1f} images/s")
    print(f"  NeaRClassifier.predict   {result['predict_per_s']:9.1f} images/s")
    print(f"  predict / encode_image   {result['ratio']:9.2f}")
    return result


if __name__ == "__main__":
    main()
