"""Time, peak memory and recall of candidate sets at 100,000 images, per search.

``NeighborCandidateBuilder.fit`` on float32 features of 64 and 512 dimensions (512 is
CLIP ViT-B/16's), 5 neighbours, one search per fresh child process, so that each pays
what a user's first fit pays: its imports and any compilation. Features:

* ``blobs``: Gaussian blobs, one per 100 images: clustered;
* ``fashion-conv``: Fashion-MNIST photos (Debian's ``dataset-fashion-mnist``, 70,000
  at most) through skvf_bench's ``RandomConvFeatures`` (32 random filters pooled on a
  4 x 4 grid: 512 dimensions only): real images, clustered only as much as they are;
* ``fashion-pca``: the same photos' pixels, PCA'd to the dimensions asked for;
* ``gaussian``: isotropic Gaussian noise, the worst case: no structure, every image
  about as far from all the others.

Searches:

* ``exact``: scikit-learn's brute force (``algorithm="exact"``);
* ``ivf``: faiss-cpu's inverted-file index (``algorithm="ivf"``, the ``ann`` extra),
  at each ``--n-probe``;
* ``pynndescent`` (``pip install pynndescent``; not run unless asked for):
  ``neighbors=PyNNDescentTransformer(n_neighbors=5, metric="cosine")``, the object
  form, in two children: the first with an empty numba cache (``NUMBA_CACHE_DIR`` a
  new folder), the second with the cache the first left.

Columns: seconds to import skvf's candidate module and the search's library (numba
compiles pynndescent's cached functions here, or loads them from its cache); the first
fit, on 500 of the images (where a library compiles on first use, this is where it
shows); the fit on every image; their sum; the CPU seconds the child used in all (user
and system, every thread: on a machine shared with other jobs, wall time stretches and
CPU time much less); the child's resident memory once its features are loaded, its
peak (``VmHWM``) and the difference (the RSS delta: what the search and the
candidate votes add); time against ``exact`` at the same size; and, on 1,000 images
drawn at random, the share of their exact 5 nearest neighbours (float64 brute force)
the search found (``recall``) and the share of those images whose neighbour set is the
exact one (``same sets``).

``--in-process`` times exact search against the index instead within one process,
alternating, the best of ``--repeats``: how ``algorithm="auto"``'s threshold was
chosen at small sizes, where a fresh process's imports would hide the search.

Run: ``python benchmarks/candidate_scale.py [--sizes 100000] [--dims 64,512]
[--features blobs] [--searches exact,ivf] [--n-probe 8]`` (``--searches
exact,ivf,pynndescent`` for every search), or
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
SEARCHES = ("exact", "ivf", "pynndescent")
N_NEIGHBORS = 5
N_RECALL_ROWS = 1000
N_FIRST_FIT = 500


def blobs(n_samples: int, n_features: int, seed: int = 0) -> np.ndarray:
    """Float32 Gaussian blobs, one per 100 images, built a block at a time."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n_samples // 100), n_features)).astype(np.float32)
    features = centres[rng.integers(0, len(centres), n_samples)]
    for start in range(0, n_samples, 10_000):
        block = features[start : start + 10_000]
        block += rng.standard_normal(block.shape, dtype=np.float32)
    return features


def fashion_features(kind: str, n_features: int) -> np.ndarray | None:
    """All 70,000 Fashion-MNIST photos as float32 features; ``None`` where ``kind``
    has no features of that many dimensions."""
    from skvf_bench.datasets import load_fashion_mnist

    if kind == "fashion-conv" and n_features != 512:
        return None
    images, _ = load_fashion_mnist("all")
    if kind == "fashion-conv":
        from skvf_bench.encoders import RandomConvFeatures

        encoder = RandomConvFeatures(n_filters=32, grid=4, random_state=0).fit(images[:1])
        return np.concatenate(
            [encoder.transform(images[i : i + 5000]) for i in range(0, len(images), 5000)]
        ).astype(np.float32)
    from sklearn.decomposition import PCA

    pixels = images.reshape(len(images), -1).astype(np.float32) / 255
    return PCA(n_features, random_state=0).fit_transform(pixels).astype(np.float32)


def make_features(kind: str, n_samples: int, n_features: int, cache: dict) -> np.ndarray | None:
    """``n_samples`` rows of ``kind``; ``None`` where the data set has too few."""
    if kind == "blobs":
        return blobs(n_samples, n_features)
    if kind == "gaussian":
        return np.random.default_rng(0).standard_normal((n_samples, n_features), np.float32)
    if (kind, n_features) not in cache:
        cache[kind, n_features] = fashion_features(kind, n_features)
    features = cache[kind, n_features]
    if features is None or n_samples > len(features):
        return None
    rows = np.sort(np.random.default_rng(0).choice(len(features), n_samples, replace=False))
    return features[rows]


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


def memory_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MB.

    Not ``ru_maxrss``: a child started by ``subprocess`` inherits its parent's peak there.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def builder_for(search: str, n_probe: int):
    """The builder a child fits, its search's library imported."""
    from skvf.candidates import NeighborCandidateBuilder

    if search == "pynndescent":
        from pynndescent import PyNNDescentTransformer

        transformer = PyNNDescentTransformer(n_neighbors=N_NEIGHBORS, metric="cosine")
        return NeighborCandidateBuilder(neighbors=transformer)
    if search == "ivf":
        import faiss  # noqa: F401  (imported here so that its import is timed with the rest)

        return NeighborCandidateBuilder(
            n_neighbors=N_NEIGHBORS, algorithm="ivf", n_probe=n_probe, random_state=0
        )
    return NeighborCandidateBuilder(n_neighbors=N_NEIGHBORS, algorithm="exact")


def run_child(search: str, n_probe: int, features_path: str, out: str) -> None:
    """In the child: import, load the features, time a first fit on a few images and
    one on all of them, print times and memory."""
    import resource

    builder = builder_for(search, n_probe)
    imports = time.perf_counter() - _START
    features = np.load(features_path)
    labels = np.arange(len(features)) % 100
    before_mb = memory_mb("VmRSS")
    start = time.perf_counter()
    builder.fit(features[:N_FIRST_FIT], labels[:N_FIRST_FIT])
    first = time.perf_counter() - start
    start = time.perf_counter()
    neighbors = builder.fit(features, labels).neighbors_
    seconds = time.perf_counter() - start
    np.save(out, neighbors)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"imports": imports, "first_fit": first, "seconds": seconds,
                      "before_mb": before_mb, "peak_mb": memory_mb("VmHWM"),
                      "cpu_seconds": usage.ru_utime + usage.ru_stime}))  # fmt: skip


def measure(search, n_probe, features_path, out, timeout, env=None) -> dict | None:
    """One fit in a fresh interpreter; ``None`` when it ran past ``timeout``."""
    command = [sys.executable, __file__, "--child", search, "--n-probe", str(n_probe)]
    command += ["--features-path", features_path, "--out", out]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
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


def in_process(sizes, dims, kinds, n_probes, repeats) -> list[dict]:
    """Exact search against the index in one process: best of ``repeats``, alternating."""
    from skvf.candidates import nearest_neighbors

    print("| images | dims | features | exact (s) | search | search (s) | exact / search "
          "| recall | same sets |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    rows, cache = [], {}
    for n_samples in sizes:
        for n_features in dims:
            for kind in kinds:
                features = make_features(kind, n_samples, n_features, cache)
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
                    rows.append({"size": n_samples, "dims": n_features, "features": kind,
                                 "n_probe": n_probe, "exact_seconds": best[None],
                                 "seconds": best[n_probe], "recall": recall,
                                 "same_sets": same})  # fmt: skip
                    print(
                        f"| {n_samples} | {n_features} | {kind} | {best[None]:.3f} "
                        f"| ivf n_probe={n_probe} | {best[n_probe]:.3f} "
                        f"| {best[None] / best[n_probe]:.1f} | {recall:.3f} | {same:.3f} |",
                        flush=True,
                    )
    return rows


def load_line() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def runs_for(searches, n_probes, numba_cache: str) -> list[tuple[str, str, int, dict | None]]:
    """(label, search, n_probe, environment) of each child, in the order they run."""
    runs = []
    for search in searches:
        if search == "ivf":
            runs += [(f"ivf n_probe={p}", "ivf", p, None) for p in n_probes]
        elif search == "pynndescent":
            for label in ("pynndescent, empty numba cache", "pynndescent, warm numba cache"):
                runs.append((label, search, 0, {**os.environ, "NUMBA_CACHE_DIR": numba_cache}))
        else:
            runs.append((search, search, 0, None))
    return runs


def main(argv=None) -> list[dict]:
    """Run the benchmark; print one row per size, dimensions, features and search;
    return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000", help="images per fit, comma-separated")
    parser.add_argument("--dims", default="64,512", help="feature dimensions, comma-separated")
    parser.add_argument("--features", default="blobs", help=", ".join(FEATURES))
    parser.add_argument("--searches", default="exact,ivf", help=", ".join(SEARCHES))
    parser.add_argument("--n-probe", default="8", help="ivf's n_probe values, comma-separated")
    parser.add_argument("--exact-max", type=int, default=100_000, help="largest exact search")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per child")
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
    dims = [int(v) for v in arguments.dims.split(",") if v]
    kinds = [v for v in arguments.features.split(",") if v]
    searches = [v for v in arguments.searches.split(",") if v]
    n_probes = [int(p) for p in arguments.n_probe.split(",") if p]
    for given, known, what in ((kinds, FEATURES, "features"), (searches, SEARCHES, "searches")):
        unknown = set(given) - set(known)
        if unknown:
            parser.error(f"unknown {what} {sorted(unknown)}; choose from {', '.join(known)}")
    if arguments.in_process:
        return in_process(sizes, dims, kinds, n_probes, arguments.repeats)
    rows, cache = [], {}
    print(f"Started at {load_line()}.")
    print(
        "| images | dims | features | search | imports (s) | first fit (s) | fit (s) "
        "| total (s) | CPU (s) | RSS before fit (MB) | peak RSS (MB) | RSS delta (MB) "
        "| time / exact | recall | same sets |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for n_samples in sizes:
            for n_features in dims:
                for kind in kinds:
                    features = make_features(kind, n_samples, n_features, cache)
                    if features is None:
                        continue
                    features_path = str(Path(folder) / "features.npy")
                    np.save(features_path, features)
                    sample = np.random.default_rng(1).choice(
                        n_samples, N_RECALL_ROWS, replace=False
                    )
                    truth = exact_sample(features, sample)
                    numba_cache = tempfile.mkdtemp(dir=folder)  # empty for the first child
                    exact_seconds = None
                    for label, search, n_probe, env in runs_for(searches, n_probes, numba_cache):
                        if search == "exact" and n_samples > arguments.exact_max:
                            continue
                        out = str(Path(folder) / "neighbors.npy")
                        row = {"size": n_samples, "dims": n_features, "features": kind,
                               "search": label}  # fmt: skip
                        found = measure(search, n_probe, features_path, out, arguments.timeout, env)
                        rows.append(row)
                        if found is None:
                            print(f"| {n_samples} | {n_features} | {kind} | {label} | | | "
                                  f"> {arguments.timeout:.0f} | | | | | | | | |")  # fmt: skip
                            continue
                        row.update(found)
                        row["total"] = row["imports"] + row["first_fit"] + row["seconds"]
                        row["delta_mb"] = row["peak_mb"] - row["before_mb"]
                        row["recall"], row["same_sets"] = recall_and_same_sets(
                            truth, np.load(out)[sample]
                        )
                        if search == "exact":
                            exact_seconds = row["seconds"]
                        ratio = row["seconds"] / exact_seconds if exact_seconds else float("nan")
                        row["time_ratio"] = ratio
                        print(
                            f"| {n_samples} | {n_features} | {kind} | {label} "
                            f"| {row['imports']:.1f} | {row['first_fit']:.2f} "
                            f"| {row['seconds']:.2f} | {row['total']:.1f} "
                            f"| {row['cpu_seconds']:.1f} | {row['before_mb']:.0f} "
                            f"| {row['peak_mb']:.0f} | {row['delta_mb']:.0f} | {ratio:.3f} "
                            f"| {row['recall']:.3f} | {row['same_sets']:.3f} |",
                            flush=True,
                        )
    print(f"Ended at {load_line()}.")
    return rows


if __name__ == "__main__":
    main()
