"""The CUDA path against the CPU path: accuracy, agreement, and a GPU-fitted model used on CPU.

On a machine with a GPU, on the fine-garments benchmark through the stand-in CLIP (its own
image tower, the strong simulated MLLM, m = 3 by default), each method is fitted once with
``device="cuda"`` (the image tower and the text tower under bfloat16 autocast) and once with
``device="cpu"`` (float32), each on features its own device encoded, and this prints:

* how close the two devices' image features are (cosine per pool image);
* per seed and method, cACC on each device, the share of test images both name alike, and
  fit seconds; then the paired difference CUDA - CPU over seeds with its 95% interval;
* that the real ``predict`` on CUDA (image tower included) names the test images as the
  scores from the stored features do;
* that the first seed's CUDA-fitted NeaR, saved with skops and loaded by a child process
  that sees no GPU (``CUDA_VISIBLE_DEVICES=""``), predicts the test images on CPU as it did
  on the GPU: agreement and the largest ``decision_function`` difference.

The saved model and its expected outputs stay in ``--out``: ``--check-load MODEL EXPECTED``
repeats the last check on any machine (the stand-in's weights are looked up in this
checkout when the recorded file is missing).

Run: ``python benchmarks/cuda_path.py [--seeds 3] [--shots 3] [--out DIR]`` on a machine
with a GPU; ``python benchmarks/cuda_path.py --check-load DIR/cuda_near.skops
DIR/cuda_near_expected.npz`` anywhere.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = "zero-shot CLIP,CoOp on raw names,NeaR"
POOL = dict(n_per_class=20, random_state=0)  # prepare_benchmark's defaults


def _test_images(test_index: np.ndarray) -> np.ndarray:
    """The benchmark pool's images at ``test_index``, as prepare_benchmark builds them."""
    from skvf_bench.finegrained import load_fine_garments
    from skvf_bench.standin import standin_params

    image_size = int(standin_params()["backbone_kwargs"]["vision_cfg"]["image_size"])
    return load_fine_garments("benchmark", image_size=image_size, **POOL).images[test_index]


def check_load(model_path: str, expected_path: str) -> dict:
    """Load a saved model, predict its test images here, compare with the saved outputs."""
    import warnings

    import torch

    from skvf.serialization import load
    from skvf_bench import trusted_types
    from skvf_bench.standin import standin_params

    model = load(model_path, trusted=trusted_types())  # its labeler is a simulated one
    if not Path(model.pretrained).is_file():  # fitted on another machine: same weights here
        model.set_params(pretrained=standin_params()["pretrained"])
    expected = np.load(expected_path, allow_pickle=False)
    images = _test_images(expected["test_index"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decision = model.decision_function(images)
        predicted = model.predict(images)
    result = {
        "fitted_on": model.device_,
        "cuda_here": torch.cuda.is_available(),
        "warnings": sorted({str(w.message).split(";")[0] for w in caught}),
        "agreement": float(np.mean(predicted == expected["predicted"])),
        "max_abs_decision_diff": float(np.max(np.abs(decision - expected["decision"]))),
        "decision_scale": float(np.std(expected["decision"])),
    }
    print(
        f"loaded a model fitted on {result['fitted_on']} (CUDA here: {result['cuda_here']}); "
        f"warnings: {result['warnings'] or 'none'}\n"
        f"  predict agrees with the GPU's on {result['agreement']:.4f} of "
        f"{len(predicted)} test images; max |decision_function difference| "
        f"{result['max_abs_decision_diff']:.4f} (scores' sd {result['decision_scale']:.3f})"
    )
    return result


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--profile", default="strong", choices=["strong", "weak"])
    parser.add_argument("--methods", default=METHODS, help=f"comma list (default: {METHODS})")
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--test-per-class", type=int, default=10)
    parser.add_argument("--gpu", default="cuda", help="the CUDA device (default: cuda)")
    parser.add_argument("--out", default="benchmarks/out/cuda_path")
    parser.add_argument("--check-load", nargs=2, metavar=("MODEL", "EXPECTED"))
    arguments = parser.parse_args(argv)
    if arguments.check_load:
        check_load(*arguments.check_load)
        return []

    import torch

    from skvf._device import resolve_device
    from skvf.metrics import cluster_accuracy
    from skvf.serialization import dump
    from skvf_bench.reporting import paired_differences
    from skvf_bench.runner import (
        build_methods,
        draw_split,
        predict_from_features,
        prepare_benchmark,
    )
    from skvf_bench.simulated_mllm import make_simulated_mllm

    gpu = resolve_device(arguments.gpu)  # a clear error where torch sees no GPU
    out = Path(arguments.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = arguments.methods.split(",")
    card = torch.cuda.get_device_name(gpu) if torch.cuda.is_available() else gpu
    print(f"torch {torch.__version__}, {card}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as memory:
        benches = {}
        for device, where in (("cuda", gpu), ("cpu", "cpu")):
            start = time.perf_counter()
            benches[device] = prepare_benchmark(Path(memory) / device, device=where, **POOL)
            print(f"pool encoded on {device} in {time.perf_counter() - start:.1f} s")
        cosine = _cosines(benches["cuda"].features, benches["cpu"].features)
        print(
            f"image features, CUDA (bf16 autocast) vs CPU: cosine min {cosine.min():.5f}, "
            f"median {np.median(cosine):.5f} over {len(cosine)} images"
        )
        data = benches["cpu"].data
        results = []
        for seed in range(arguments.seeds):
            fit_index, test_index = draw_split(
                data.names, arguments.shots, seed, arguments.test_per_class
            )
            y_test = data.names[test_index]
            predicted = {}
            for device, bench in benches.items():
                labeler = make_simulated_mllm(data, arguments.profile, random_state=seed)
                models = build_methods(bench, labeler, None, seed, methods, arguments.max_epochs)
                for name, model in models.items():
                    start = time.perf_counter()
                    model.fit(data.images[fit_index])
                    fit_seconds = time.perf_counter() - start
                    guesses = predict_from_features(model, bench.features[test_index])
                    predicted[name, device] = guesses
                    results.append(
                        {
                            "method": f"{name} [{device}]",
                            "seed": seed,
                            "cacc": cluster_accuracy(y_test, guesses),
                            "fit_s": fit_seconds,
                        }
                    )
                    if device == "cuda" and name == "NeaR":
                        real = model.predict(data.images[test_index])
                        print(
                            f"seed {seed}: real predict on CUDA agrees with the stored-feature "
                            f"scores on {np.mean(real == guesses):.4f} of {len(real)} images"
                        )
                        if seed == 0:
                            dump(model, out / "cuda_near.skops")
                            np.savez(
                                out / "cuda_near_expected.npz",
                                test_index=test_index,
                                predicted=real.astype(str),
                                decision=model.decision_function(data.images[test_index]),
                            )
            for name in methods:
                latest = results[-2 * len(methods) :]
                cuda, cpu = (r for r in latest if r["method"].startswith(name + " ["))
                agreement = np.mean(predicted[name, "cuda"] == predicted[name, "cpu"])
                print(
                    f"seed {seed} {name:<18} cACC cuda {cuda['cacc']:.3f} cpu {cpu['cacc']:.3f}"
                    f"  same name {agreement:.3f}  fit s cuda {cuda['fit_s']:.1f} "
                    f"cpu {cpu['fit_s']:.1f}",
                    flush=True,
                )
    print("\npaired over seeds, CUDA - CPU (cACC): mean (95% interval), wins")
    for name in methods:
        rows = [r for r in results if r["method"].startswith(name + " [")]
        diff = paired_differences(rows, f"{name} [cuda]", f"{name} [cpu]")
        cuda_fit = np.mean([r["fit_s"] for r in rows if r["method"].endswith("[cuda]")])
        cpu_fit = np.mean([r["fit_s"] for r in rows if r["method"].endswith("[cpu]")])
        summary = (
            "n/a (one seed)"
            if diff is None
            else f"{diff['mean']:+.4f} ({diff['low']:+.4f}, {diff['high']:+.4f}), "
            f"{diff['wins']}/{diff['n']}"
        )
        print(f"  {name:<18} {summary}; fit s cuda {cuda_fit:.1f}, cpu {cpu_fit:.1f}")
    print("\nthe seed-0 CUDA NeaR, loaded in a child process that sees no GPU:", flush=True)
    subprocess.run(
        [sys.executable, __file__, "--check-load"]
        + [str(out / "cuda_near.skops"), str(out / "cuda_near_expected.npz")],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        check=True,
    )
    return results


if __name__ == "__main__":
    main()
