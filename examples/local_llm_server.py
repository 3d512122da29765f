"""Name images with a local OpenAI-compatible vision server, then fit NeaR on the names.

Point it at your own server (vLLM, llama.cpp, LM Studio, Ollama's OpenAI endpoint)::

    vllm serve Qwen/Qwen2-VL-7B-Instruct --port 8000
    python examples/local_llm_server.py --api-base http://127.0.0.1:8000/v1 \\
        --model openai/Qwen/Qwen2-VL-7B-Instruct --domain bird ~/photos/birds

or try it with no server at all: ``--demo`` starts the fake server of the test suite
(``tests/labeling/fake_openai_server.py``, a real HTTP server on 127.0.0.1 that names
each image after its colour) and writes a few colour images to name. The classifier
uses a tiny random-init CLIP here, since no pretrained weights can be downloaded; with a
real server use ``backbone="ViT-B-16", pretrained="openai"``.

Run: ``python examples/local_llm_server.py --demo [--fast]``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image

from skvf import MLLMLabeler, NeaRClassifier
from skvf.folders import load_flat_folder
from skvf_bench.demo import TINY_BACKBONE, TINY_BACKBONE_KWARGS

DEMO_KEY_ENV = "SKVF_DEMO_KEY"


@contextlib.contextmanager
def demo_server(folder: Path):
    """Start the test suite's fake server; write colour images into ``folder``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "labeling"))
    fake = importlib.import_module("fake_openai_server")
    for colour in ("red", "green", "blue", "yellow"):
        for seed in range(3):
            image = fake.colour_image(colour, size=32, seed=seed)
            Image.fromarray(image).save(folder / f"{colour}-{seed}.png")
    os.environ.setdefault(DEMO_KEY_ENV, "not-checked")  # the client insists on some key
    with fake.serve(fake.FakeVLM()) as base_url:
        yield base_url


def main(paths, api_base, model, domain, api_key_env, cache, max_epochs=100) -> NeaRClassifier:
    """Label ``paths`` on the server, fit NeaR on them and print what happened."""
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that weights are random
    labeler = MLLMLabeler(
        model=model, api_base=api_base, domain=domain, api_key_env=api_key_env, cache=cache
    ).fit()
    names, valid = labeler.label(paths)
    print(f"the server named {int(valid.sum())} of {len(paths)} images:")
    for path, name in list(zip(paths, names, strict=True))[:4]:
        print(f"  {Path(path).name}: {name}")
    usage = labeler.usage_
    print(
        f"usage: {usage['calls']} calls, {usage['prompt_tokens']} prompt tokens, "
        f"${usage['cost_usd']:.4f} (a local model is unpriced)"
    )

    clf = NeaRClassifier(
        labeler=labeler,
        backbone=TINY_BACKBONE,
        pretrained=None,
        backbone_kwargs=TINY_BACKBONE_KWARGS,
        max_epochs=max_epochs,
        warmup_epochs=max_epochs // 4,
        random_state=0,
    )
    clf.fit(paths)  # the labeler's answers come from its cache: no second request
    print(
        f"NeaR classes: {', '.join(clf.classes_)}; "
        f"answers from the cache during fit: {clf.llm_usage_['cache_hits']}"
    )
    print(f"prediction for {Path(paths[0]).name}: {clf.predict(paths[:1])[0]}")
    return clf


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, help="images to name (not with --demo)")
    parser.add_argument("--demo", action="store_true", help="start the fake local server")
    parser.add_argument("--api-base", help="e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="openai/fake-vlm", help="openai/<served name>")
    parser.add_argument("--domain", help="what the images show, e.g. bird")
    parser.add_argument("--api-key-env", default=DEMO_KEY_ENV, help="variable with the key")
    parser.add_argument("--fast", action="store_true", help="fewer epochs")
    arguments = parser.parse_args()
    epochs = 10 if arguments.fast else 100
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "answers"
        if arguments.demo:
            with demo_server(Path(scratch)) as base_url:
                images = load_flat_folder(scratch)
                main(
                    images, base_url, arguments.model, "bird", arguments.api_key_env, cache, epochs
                )
        elif arguments.api_base and arguments.folder:
            os.environ.setdefault(arguments.api_key_env, "no-key")  # local servers ignore it
            main(
                load_flat_folder(arguments.folder),
                arguments.api_base,
                arguments.model,
                arguments.domain,
                arguments.api_key_env,
                cache,
                epochs,
            )
        else:
            parser.error("give --demo, or --api-base URL and a folder of images")
