"""Time and peak memory of candidate sets at 10,000 to 100,000 images, per search.

``NeighborCandidateBuilder().fit`` on clustered 512-d float32 features (Gaussian blobs,
the size of CLIP ViT-B/16's), one search per fresh child process, so that each pays
what a user's first fit pays: imports, and pynndescent's numba compilation. Searches:

* ``exact``: skvf's exact search (scikit-learn's chunked brute force, then a float64
  ranking of each row's candidates);
* ``full matrix``: the search skvf had before, one N x N float64 similarity matrix
  (run only where it fits in ``--max-matrix-gb``);
* ``nndescent``: pynndescent's approximate search, compilation included.

Peak memory is the child's peak resident set (``ru_maxrss``), features included. The
table prints seconds and MB per search, their ratios to ``exact``, and the share of
``exact``'s neighbour sets that the approximate search found.

Run: ``python benchmarks/candidate_scale.py [--sizes 10000,30000,100000]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

SEARCHES = ("exact", "full matrix", "nndescent")


def clustered_features(n_samples: int, n_features: int = 512, seed: int = 0) -> np.ndarray:
    """Float32 Gaussian blobs, one per 100 images, built without a float64 copy."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n_samples // 100), n_features)).astype(np.float32)
    features = centres[rng.integers(0, len(centres), n_samples)]
    features += rng.standard_normal(features.shape, dtype=np.float32)
    return features


def full_matrix_neighbors(features: np.ndarray, n_neighbors: int) -> np.ndarray:
    """The cosine search skvf had before: every similarity at once, in float64."""
    features = features.astype(np.float64)
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    top = np.argpartition(-similarity, n_neighbors - 1, axis=1)[:, :n_neighbors]
    order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def run_child(search: str, n_samples: int, out: str | None) -> None:
    """In the child: build the features, time one search, print time and peak RSS."""
    import resource

    from skvf.candidates import NeighborCandidateBuilder

    features = clustered_features(n_samples)
    labels = np.arange(n_samples) % 100
    start = time.perf_counter()
    if search == "full matrix":
        neighbors = full_matrix_neighbors(features, 5)
    else:
        builder = NeighborCandidateBuilder(algorithm=search, random_state=0)
        neighbors = builder.fit(features, labels).neighbors_
    seconds = time.perf_counter() - start
    if out:
        np.save(out, neighbors)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))


def measure(search: str, n_samples: int, out: str | None, timeout: float) -> dict | None:
    """One search in a fresh interpreter; ``None`` when it ran past ``timeout``."""
    command = [sys.executable, __file__, "--child", search, "--sizes", str(n_samples)]
    if out:
        command += ["--out", out]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if result.returncode:
        raise RuntimeError(f"{search} at {n_samples} failed:\n{result.stderr}")
    return json.loads(result.stdout.splitlines()[-1])


def main(argv=None) -> list[dict]:
    """Run the benchmark; print one row per size and return the rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000", help="images per fit")
    parser.add_argument("--searches", default=",".join(SEARCHES))
    parser.add_argument("--max-matrix-gb", type=float, default=4.0)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per search")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    sizes = [int(v) for v in arguments.sizes.split(",") if v]
    if arguments.child:
        run_child(arguments.child, sizes[0], arguments.out)
        return []

    import tempfile
    from pathlib import Path

    searches = [s for s in arguments.searches.split(",") if s]
    rows = []
    print(
        "| images | search | fit (s) | peak RSS (MB) | time / exact | memory / exact "
        "| same neighbour sets as exact |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for n_samples in sizes:
            found = {}
            for search in searches:
                if (
                    search == "full matrix"
                    and 2 * 8 * n_samples**2 > arguments.max_matrix_gb * 2**30
                ):
                    continue  # the similarity matrix and its negation
                out = str(Path(folder) / f"{search.replace(' ', '_')}_{n_samples}.npy")
                row = measure(search, n_samples, out, arguments.timeout)
                found[search] = np.load(out) if row else None
                rows.append({"size": n_samples, "search": search, **(row or {})})
            reference = next(
                r for r in rows if r["size"] == n_samples and r["search"] == searches[0]
            )
            for row in (r for r in rows if r["size"] == n_samples):
                if "seconds" not in row:
                    print(f"| {n_samples} | {row['search']} | > {arguments.timeout:.0f} | | | | |")
                    continue
                if found[searches[0]] is not None and found[row["search"]] is not None:
                    same = [
                        set(a) == set(b)
                        for a, b in zip(found[searches[0]], found[row["search"]], strict=True)
                    ]
                    row["same_sets"] = float(np.mean(same))
                time_ratio = row["seconds"] / reference.get("seconds", np.nan)
                memory_ratio = row["peak_mb"] / reference.get("peak_mb", np.nan)
                print(
                    f"| {n_samples} | {row['search']} | {row['seconds']:.1f} "
                    f"| {row['peak_mb']:.0f} | {time_ratio:.2f} | {memory_ratio:.2f} "
                    f"| {row.get('same_sets', float('nan')):.3f} |",
                    flush=True,
                )
    return rows


if __name__ == "__main__":
    main()
