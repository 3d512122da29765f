"""Time, peak memory and recall of candidate sets at 2,000 to 100,000 images, per search.

``NeighborCandidateBuilder(algorithm=...).fit`` on 512-d float32 features (the size of
CLIP ViT-B/16's), one search per fresh child process, so that each pays what a user's
first fit pays: its imports. Features:

* ``blobs``: Gaussian blobs, one per 100 images: well-separated clusters;
* ``fashion-conv``: Fashion-MNIST photos (Debian's ``dataset-fashion-mnist``, 70,000
  at most) through skvf.bench's ``RandomConvFeatures`` (32 random filters pooled on a
  4 x 4 grid: 512-d): real images, clustered only as much as the photos are;
* ``fashion-pca``: the same photos' pixels, PCA'd to 512 dimensions;
* ``gaussian``: isotropic Gaussian noise, the worst case: no structure, every image
  about as far from all the others.

Searches: ``exact`` (skvf's exact search), ``ivf`` (its inverted-file index, at each
``--n-probe``) and ``full matrix`` (the search skvf had first, one N x N float64
similarity matrix; only where it fits in ``--max-matrix-gb``).

Columns: seconds to import skvf's candidate module (scikit-learn with it) and to fit,
their sum, and the CPU seconds the child used in all (user and system, every thread:
on a machine shared with other jobs, wall time stretches and CPU time much less); the
child's resident memory before the fit (imports and features) and its
peak (``VmHWM``); time against ``exact`` at the same size; and, on 1,000 images
drawn at random, the share of their exact 5 nearest neighbours (float64 brute force)
the search found (``recall``) and the share of those images whose neighbour set is the
exact one (``same sets``).

``--in-process`` times the searches instead within one process, alternating, the best
of ``--repeats``: how ``algorithm="auto"``'s threshold was chosen at small sizes, where
a fresh process's imports would hide the search.

Run: ``python benchmarks/candidate_scale.py [--sizes 2000,10000,30000,100000]
[--features blobs,fashion-conv] [--n-probe 4] [--exact-max 30000]``, or
``python benchmarks/candidate_scale.py --in-process --sizes 1000,2000,4000,8000``.
"""

from __future__ import annotations

import time

_START = time.perf_counter()  # a child's imports are timed from here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

FEATURES = ("blobs", "fashion-conv", "fashion-pca", "gaussian")
N_FEATURES = 512
N_NEIGHBORS = 5
N_RECALL_ROWS = 1000


def blobs(n_samples: int, seed: int = 0) -> np.ndarray:
    """Float32 Gaussian blobs, one per 100 images, built a block at a time."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n_samples // 100), N_FEATURES)).astype(np.float32)
    features = centres[rng.integers(0, len(centres), n_samples)]
    for start in range(0, n_samples, 10_000):
        block = features[start : start + 10_000]
        block += rng.standard_normal(block.shape, dtype=np.float32)
    return features


def fashion_features(kind: str) -> np.ndarray:
    """All 70,000 Fashion-MNIST photos as 512-d float32 features."""
    from skvf.bench.datasets import load_fashion_mnist

    images, _ = load_fashion_mnist("all")
    if kind == "fashion-conv":
        from skvf.bench.encoders import RandomConvFeatures

        encoder = RandomConvFeatures(n_filters=32, grid=4, random_state=0).fit(images[:1])
        return np.concatenate(
            [encoder.transform(images[i : i + 5000]) for i in range(0, len(images), 5000)]
        ).astype(np.float32)
    from sklearn.decomposition import PCA

    pixels = images.reshape(len(images), -1).astype(np.float32) / 255
    return PCA(N_FEATURES, random_state=0).fit_transform(pixels).astype(np.float32)


def make_features(kind: str, n_samples: int, cache: dict) -> np.ndarray | None:
    """``n_samples`` rows of ``kind``; ``None`` where the data set is smaller."""
    if kind == "blobs":
        return blobs(n_samples)
    if kind == "gaussian":
        return np.random.default_rng(0).standard_normal((n_samples, N_FEATURES), np.float32)
    if kind not in cache:
        cache[kind] = fashion_features(kind)
    if n_samples > len(cache[kind]):
        return None
    rows = np.sort(np.random.default_rng(0).choice(len(cache[kind]), n_samples, replace=False))
    return cache[kind][rows]


def exact_sample(features: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The cosine nearest neighbours of ``rows`` among all rows, in float64."""
    unit = features.astype(np.float64)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    found = []
    for start in range(0, len(rows), 100):
        block = rows[start : start + 100]
        similarity = unit[block] @ unit.T
        similarity[np.arange(len(block)), block] = -np.inf
        found.append(np.argpartition(-similarity, N_NEIGHBORS, axis=1)[:, :N_NEIGHBORS])
    return np.concatenate(found)


def full_matrix_neighbors(features: np.ndarray, n_neighbors: int) -> np.ndarray:
    """The cosine search skvf had first: every similarity at once, in float64."""
    features = features.astype(np.float64)
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    top = np.argpartition(-similarity, n_neighbors - 1, axis=1)[:, :n_neighbors]
    order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def memory_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MB.

    Not ``ru_maxrss``: a child started by ``subprocess`` inherits its parent's peak there.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def run_child(search: str, n_probe: int, features_path: str, out: str) -> None:
    """In the child: import, load the features, time one fit, print times and memory."""
    import resource

    from skvf.candidates import NeighborCandidateBuilder

    imports = time.perf_counter() - _START
    features = np.load(features_path)
    labels = np.arange(len(features)) % 100
    before_mb = memory_mb("VmRSS")
    start = time.perf_counter()
    if search == "full matrix":
        neighbors = full_matrix_neighbors(features, N_NEIGHBORS)
    else:
        builder = NeighborCandidateBuilder(
            n_neighbors=N_NEIGHBORS, algorithm=search, random_state=0
        )
        if search == "ivf":
            builder.set_params(n_probe=n_probe)
        neighbors = builder.fit(features, labels).neighbors_
    seconds = time.perf_counter() - start
    np.save(out, neighbors)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"imports": imports, "seconds": seconds, "before_mb": before_mb,
                      "peak_mb": memory_mb("VmHWM"),
                      "cpu_seconds": usage.ru_utime + usage.ru_stime}))  # fmt: skip


def measure(search, n_probe, features_path, out, timeout) -> dict | None:
    """One fit in a fresh interpreter; ``None`` when it ran past ``timeout``."""
    command = [sys.executable, __file__, "--child", search, "--n-probe", str(n_probe)]
    command += ["--features-path", features_path, "--out", out]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if result.returncode:
        raise RuntimeError(f"{search} failed:\n{result.stderr}")
    return json.loads(result.stdout.splitlines()[-1])


def recall_and_same_sets(truth: np.ndarray, found: np.ndarray) -> tuple[float, float]:
    """Share of the exact neighbours found; share of rows whose set is the exact one."""
    pairs = list(zip(truth, found, strict=True))
    recall = np.mean([len(set(a) & set(b)) for a, b in pairs]) / truth.shape[1]
    return float(recall), float(np.mean([set(a) == set(b) for a, b in pairs]))


def in_process(sizes, kinds, n_probes, repeats) -> list[dict]:
    """Exact search against the index in one process: best of ``repeats``, alternating."""
    from skvf.candidates import nearest_neighbors

    print("| images | features | exact (s) | search | search (s) | exact / search | recall "
          "| same sets |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    rows, cache = [], {}
    for n_samples in sizes:
        for kind in kinds:
            features = make_features(kind, n_samples, cache)
            if features is None:
                continue
            best, found = {}, {}
            for _ in range(repeats):
                for n_probe in [None, *n_probes]:
                    algorithm = "exact" if n_probe is None else "ivf"
                    start = time.perf_counter()
                    found[n_probe] = nearest_neighbors(
                        features, N_NEIGHBORS, algorithm=algorithm, n_probe=n_probe or 1,
                        random_state=0,
                    )  # fmt: skip
                    seconds = time.perf_counter() - start
                    best[n_probe] = min(best.get(n_probe, np.inf), seconds)
            for n_probe in n_probes:
                recall, same = recall_and_same_sets(found[None], found[n_probe])
                rows.append({"size": n_samples, "features": kind, "n_probe": n_probe,
                             "exact_seconds": best[None], "seconds": best[n_probe],
                             "recall": recall, "same_sets": same})  # fmt: skip
                print(
                    f"| {n_samples} | {kind} | {best[None]:.3f} | ivf n_probe={n_probe} "
                    f"| {best[n_probe]:.3f} | {best[None] / best[n_probe]:.1f} | {recall:.3f} "
                    f"| {same:.3f} |",
                    flush=True,
                )
    return rows


def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def main(argv=None) -> list[dict]:
    """Run the benchmark; print one row per size, features and search; return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,10000,30000,100000", help="images per fit")
    parser.add_argument("--features", default="blobs,fashion-conv", help=", ".join(FEATURES))
    parser.add_argument("--searches", default="exact,ivf", help="exact, ivf, full matrix")
    parser.add_argument("--n-probe", default="4", help="ivf's n_probe values, comma-separated")
    parser.add_argument("--exact-max", type=int, default=30_000, help="largest exact search")
    parser.add_argument("--max-matrix-gb", type=float, default=4.0)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per fit")
    parser.add_argument("--in-process", action="store_true", help="time in this process")
    parser.add_argument("--repeats", type=int, default=3, help="with --in-process")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--features-path", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.child:
        run_child(arguments.child, int(arguments.n_probe), arguments.features_path, arguments.out)
        return []

    sizes = [int(v) for v in arguments.sizes.split(",") if v]
    kinds = [v for v in arguments.features.split(",") if v]
    unknown = set(kinds) - set(FEATURES)
    if unknown:
        parser.error(f"unknown features {sorted(unknown)}; choose from {', '.join(FEATURES)}")
    if arguments.in_process:
        n_probes = [int(p) for p in arguments.n_probe.split(",")]
        return in_process(sizes, kinds, n_probes, arguments.repeats)
    runs = []  # (label, search, n_probe)
    for search in (s for s in arguments.searches.split(",") if s):
        if search == "ivf":
            runs += [(f"ivf n_probe={p}", "ivf", int(p)) for p in arguments.n_probe.split(",")]
        else:
            runs.append((search, search, 4))  # n_probe unused
    rows, cache = [], {}
    print(f"Started at {load_line()}.")
    print(
        "| images | features | search | imports (s) | fit (s) | total (s) | CPU (s) "
        "| RSS before fit (MB) | peak RSS (MB) | time / exact | recall | same sets |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for n_samples in sizes:
            for kind in kinds:
                features = make_features(kind, n_samples, cache)
                if features is None:
                    continue
                features_path = str(Path(folder) / "features.npy")
                np.save(features_path, features)
                sample = np.random.default_rng(1).choice(n_samples, N_RECALL_ROWS, replace=False)
                truth = exact_sample(features, sample)
                exact_seconds = None
                for label, search, n_probe in runs:
                    if search == "exact" and n_samples > arguments.exact_max:
                        continue
                    if (
                        search == "full matrix"
                        and 16 * n_samples**2 > arguments.max_matrix_gb * 2**30
                    ):
                        continue  # the similarity matrix and its negation
                    out = str(Path(folder) / "neighbors.npy")
                    row = {"size": n_samples, "features": kind, "search": label}
                    found = measure(search, n_probe, features_path, out, arguments.timeout)
                    rows.append(row)
                    if found is None:
                        print(f"| {n_samples} | {kind} | {label} | | > {arguments.timeout:.0f} "
                              "| | | | | | | |")  # fmt: skip
                        continue
                    row.update(found)
                    row["recall"], row["same_sets"] = recall_and_same_sets(
                        truth, np.load(out)[sample]
                    )
                    if search == "exact":
                        exact_seconds = row["seconds"]
                    ratio = row["seconds"] / exact_seconds if exact_seconds else float("nan")
                    row["time_ratio"] = ratio
                    print(
                        f"| {n_samples} | {kind} | {label} | {row['imports']:.1f} "
                        f"| {row['seconds']:.2f} | {row['imports'] + row['seconds']:.1f} "
                        f"| {row['cpu_seconds']:.1f} "
                        f"| {row['before_mb']:.0f} | {row['peak_mb']:.0f} | {ratio:.3f} "
                        f"| {row['recall']:.3f} | {row['same_sets']:.3f} |",
                        flush=True,
                    )
    print(f"Ended at {load_line()}.")
    return rows


if __name__ == "__main__":
    main()
