"""What prompt tuning costs against one pass of the image tower, side by side.

A fit encodes its N training images once with the frozen image tower, then runs
``max_epochs`` training steps, each a forward and backward pass of the text tower over
the K class prompts. For ViT-B-16 (random weights: the same compute as real ones) this
benchmark measures, in fresh child processes run alternately so that the machine's load
hits every configuration alike:

* ``image pass``: seconds per image of ``encode_images`` over 224-pixel images, times N;
* ``step``: seconds per training step (forward, backward, Adam) over K prompts of a
  context (``--contexts``: ``16`` random vectors, as ``ctx_init=None``, or an initial
  phrase such as ``"a photo of a"``, 4 vectors) before class names of about six tokens,
  either with the shared prefix computed once per step (``shared``, what a fit does) or
  with every prompt encoded whole (``whole``, as before), optionally under bfloat16
  autocast; above ``GRAD_CHUNK_SIZE`` (320) classes the prompts go in checkpointed
  chunks, as in a fit;

and prints the tuning time of a fit of each ``--max-epochs`` step count over the image
pass, and each child's peak memory. ``--baseline PATH`` runs every step configuration a
second time with skvf imported from ``PATH`` (another checkout, e.g. the previous commit's
``git worktree``), right after the first: before and after side by side.

``--device cuda`` measures on a GPU: there every step runs under bfloat16 autocast, as a
fit on CUDA does, the image pass covers 256 images, and the memory printed is the GPU's
peak allocation.

Run: ``python benchmarks/fit_cost.py [--classes 50,300,500] [--images 600] [--steps 2]
[--contexts "16,a photo of a"] [--max-epochs 60,200] [--baseline PATH] [--device cuda]``
(``--bf16`` adds the bfloat16 configurations; ``--modes shared`` skips the slow one).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time

BACKBONE = "ViT-B-16"


def _child(
    kind: str, classes: int, steps: int, mode: str, bf16: bool, context: str, device: str
) -> dict:
    """Run one measurement in this process; returns seconds per unit and peak memory."""
    import numpy as np
    import torch

    from skvf._backbone import build_backbone
    from skvf._device import resolve_device
    from skvf._features import encode_images
    from skvf._prompt import PromptLearner, context_token_count

    torch.manual_seed(0)
    device = resolve_device(device)
    cuda = device.startswith("cuda")
    backbone = build_backbone(BACKBONE, None, device=device)

    def synchronize():
        if cuda:
            torch.cuda.synchronize(device)

    if kind == "image":
        rng = np.random.default_rng(0)
        from PIL import Image

        # A GPU needs more images than a CPU for a pass to outlast its launch overheads.
        images = [Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8))]
        images *= 256 if cuda else 32
        encode_images(backbone, images[:32], 32)  # warm-up
        synchronize()
        start = time.perf_counter()
        encode_images(backbone, images, 32)
        seconds = (time.perf_counter() - start) / len(images)
    else:
        names = [f"speckled grey wing warbler {index}" for index in range(classes)]
        learner = PromptLearner(
            backbone.model,
            backbone.tokenizer,
            names,
            n_ctx=int(context)
            if context.isdigit()
            else context_token_count(backbone.tokenizer, context),
            ctx_init=None if context.isdigit() else context,
            generator=torch.Generator(),
            share_prefix=mode == "shared",
        )
        optimizer = torch.optim.Adam([learner.context], lr=2e-3)
        features = torch.nn.functional.normalize(torch.randn(600, 512), dim=-1).to(device)
        labels = torch.randint(0, classes, (600,)).to(device)

        def step():
            # A fit on CUDA always runs the text tower under bfloat16 autocast.
            with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16 or cuda):
                text = learner()
            text = torch.nn.functional.normalize(text.float(), dim=-1)
            loss = torch.nn.functional.cross_entropy(100 * features @ text.T, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        step()  # warm-up
        synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize()
        seconds = (time.perf_counter() - start) / steps
    if cuda:  # what the step held on the GPU, which bounds the K a card can tune
        peak_mb = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mb": peak_mb}


def _measure(
    kind: str,
    classes: int,
    steps: int,
    mode: str,
    bf16: bool,
    context="16",
    skvf_path=None,
    device="cpu",
) -> dict:
    """Run one measurement in a fresh child, importing skvf from ``skvf_path`` if given."""
    command = [sys.executable, __file__, "--child", kind, str(classes), str(steps), mode, context]
    command += ["--device", device]
    command += ["--bf16"] if bf16 else []
    env = None if skvf_path is None else {**os.environ, "PYTHONPATH": skvf_path}
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="50,300,500", help="values of K")
    parser.add_argument("--images", type=int, default=600, help="training images N")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per child")
    parser.add_argument(
        "--max-epochs",
        default="60,200",
        help="steps of a fit (comma list); the first is the default fit's (max_epochs='auto' "
        "without an image_encoder: 60)",
    )
    parser.add_argument(
        "--contexts", default="16", help="context vectors or an initial phrase (comma list)"
    )
    parser.add_argument("--modes", default="shared,whole", help="shared and/or whole")
    parser.add_argument("--bf16", action="store_true", help="also under bfloat16 autocast")
    parser.add_argument(
        "--baseline",
        metavar="PATH",
        help="also run each step configuration with skvf imported from PATH (another checkout)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="'cpu' or 'cuda' (there every step runs under bfloat16 autocast, as a fit does)",
    )
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, classes, steps, mode, context = args.child
        result = _child(kind, int(classes), int(steps), mode, args.bf16, context, args.device)
        print(json.dumps(result))
        return

    configurations = [
        (mode, bf16, context)
        for mode in args.modes.split(",")
        for bf16 in ([False, True] if args.bf16 else [False])
        for context in args.contexts.split(",")
    ]
    fits = [int(steps) for steps in args.max_epochs.split(",")]
    print(f"{BACKBONE}, N = {args.images} images, device {args.device}")
    ratios = "\t".join(f"tuning / image pass ({steps} steps)" for steps in fits)
    memory = "peak GPU MB" if args.device.startswith("cuda") else "peak MB"
    print(f"K\tconfiguration\tstep s\timage pass s\t{ratios}\t{memory}")
    for classes in [int(k) for k in args.classes.split(",")]:
        image = _measure("image", classes, args.steps, "shared", False, device=args.device)
        image_pass = image["seconds"] * args.images
        runs = [(None, "")] + ([(args.baseline, " [baseline]")] if args.baseline else [])
        for (mode, bf16, context), (skvf_path, tag) in itertools.product(configurations, runs):
            result = _measure(
                "step", classes, args.steps, mode, bf16, context, skvf_path, args.device
            )
            ratios = "\t".join(f"{result['seconds'] * steps / image_pass:.2f}" for steps in fits)
            label = f"{mode}{' bf16' if bf16 else ''}, context {context!r}{tag}"
            print(
                f"{classes}\t{label}\t{result['seconds']:.2f}\t{image_pass:.1f}\t{ratios}"
                f"\t{result['peak_mb']:.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
