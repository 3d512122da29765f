"""An inverted-file (IVF) index: approximate nearest neighbours of every row of a matrix.

A coarse quantizer (k-means, spherical for cosine) cuts the rows into ``n_lists``
lists, each row in the list of its nearest centroid. Every row then searches the lists
of its ``n_probe`` nearest centroids, exactly within them. The search runs list by list:
one matrix product scores a list's members against every row that probes the list, so
the work is a few hundred products of useful shapes rather than a product per row. A
pair scored for one of its rows is offered to the other row too (the reverse direction),
which finds more true neighbours for no more arithmetic.

Scores are float32 and symmetric: cosine similarity, or minus half the squared euclidean
distance. Each row keeps its best ``n_neighbors`` (higher score first, ties to the
lower index); a row's own list is searched first, and its worst kept score is the bar
every later candidate must reach, so almost nothing is copied out of a block. The lists
are as unequal as the data (copies of one image share a list): the time of a list grows
with the square of its size. The lists
run on a pool of threads with single-threaded BLAS, as many threads as BLAS would have
used: small products do not pay BLAS's per-call thread hand-offs, and the selection,
which numpy runs on one thread, runs on every core. The result does not depend on the
number of threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import sparse
from threadpoolctl import ThreadpoolController

__all__ = ["ivf_neighbors"]

# The quantizer is trained on this many rows per list, for this many Lloyd iterations.
# Training on 16-64 rows per list and 3-20 iterations gave the same recall (within .005)
# on PCA'd Fashion-MNIST pixels; more only costs time.
_TRAIN_ROWS_PER_LIST = 32
_LLOYD_ITERATIONS = 5
# Bytes of one similarity block (with the rows it gathers), per thread: 1 MiB blocks ran
# as fast as 8 MiB ones at 100,000 rows, in less memory.
_BLOCK_BYTES = 2**20
# Rows whose found candidates are merged at once.
_MERGE_ROWS = 8192


def ivf_neighbors(
    features: np.ndarray,
    n_neighbors: int,
    metric: str,
    n_lists: int,
    n_probe: int,
    seed: int | None,
) -> np.ndarray:
    """Each row's ``n_neighbors`` nearest other rows among the lists it probes.

    Parameters
    ----------
    features : ndarray of shape (n_samples, n_features)
        Float32 or float64; searched in float32 a block at a time, without a copy.
    n_neighbors : int
    metric : {"cosine", "euclidean"}
    n_lists : int
        Lists of the quantizer, at most ``n_samples``.
    n_probe : int
        Lists each row searches, its own included; at most ``n_lists``.
    seed : int or None
        Seed of the quantizer's training rows and first centroids.

    Returns
    -------
    ndarray of int64, shape (n_samples, n_neighbors)
        Nearest first (equal scores to the lower index); ``-1`` where the probed lists
        held fewer other rows.
    """
    controller = ThreadpoolController()
    blas = controller.select(user_api="blas").lib_controllers
    n_threads = max([1] + [library.num_threads for library in blas])
    with controller.limit(limits=1, user_api="blas"), ThreadPoolExecutor(n_threads) as pool:
        search = _Search(features, n_neighbors, metric, pool)
        centroids = search.train_centroids(n_lists, np.random.default_rng(seed))
        probes = search.nearest_centroids(centroids, n_probe)
        search.own_lists(probes[:, 0], n_lists)
        search.other_lists(probes)
    return search.candidates


class _Search:
    """One search: the rows, their score factors, and each row's best so far."""

    def __init__(self, features, n_candidates, metric, pool):
        self.features = features
        self.n_candidates = n_candidates
        self.cosine = metric == "cosine"
        self.pool = pool
        squared = np.einsum("ij,ij->i", features, features, dtype=np.float64)
        if self.cosine:  # a row's score factor: its inverse length, multiplied
            self.factor = (1.0 / np.maximum(np.sqrt(squared), 1e-12)).astype(np.float32)
        else:  # or half its squared length, subtracted
            self.factor = (0.5 * squared).astype(np.float32)
        n_samples = len(features)
        self.candidates = np.full((n_samples, n_candidates), -1, dtype=np.int64)
        self.scores = np.full((n_samples, n_candidates), -np.inf, dtype=np.float32)

    def rows(self, index) -> np.ndarray:
        """Float32 rows: a view of float32 features for a slice, else a block copy."""
        return self.features[index].astype(np.float32, copy=False)

    def blocks(self, n_rows: int, width: int) -> list[tuple[int, int]]:
        """Row ranges of ``n_rows`` whose blocks of ``width`` scores fit the budget."""
        step = max(1, _BLOCK_BYTES // (4 * (width + self.features.shape[1])))
        return [(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]

    def score(self, rows, row_features, columns, column_features) -> np.ndarray:
        """Float32 scores of ``rows`` against ``columns``, the same either way round."""
        block = row_features @ column_features.T
        if self.cosine:
            block *= self.factor[rows, None]
            block *= self.factor[columns]
        else:
            block -= self.factor[rows, None]
            block -= self.factor[columns]
        return block

    # ------------------------------------------------------------------ quantizer

    def train_centroids(self, n_lists: int, rng: np.random.Generator) -> np.ndarray:
        """Lloyd's k-means on a sample of rows (scaled to unit length for cosine)."""
        n_samples = len(self.features)
        n_train = min(n_samples, _TRAIN_ROWS_PER_LIST * n_lists)
        chosen = np.sort(rng.choice(n_samples, n_train, replace=False))
        sample = self.rows(chosen)
        if self.cosine:
            sample *= self.factor[chosen, None]
        centroids = sample[rng.choice(n_train, n_lists, replace=False)]
        for _ in range(_LLOYD_ITERATIONS):
            nearest = self.nearest(sample, centroids, 1)[:, 0]
            counts = np.bincount(nearest, minlength=n_lists)
            membership = sparse.csr_array(
                (
                    np.ones(n_train, dtype=np.float32),
                    np.argsort(nearest, kind="stable"),
                    np.r_[0, np.cumsum(counts)],
                ),
                shape=(n_lists, n_train),
            )
            filled = counts > 0
            centroids[filled] = (membership @ sample)[filled] / counts[filled, None]
            # an empty list starts again from a random training row
            n_empty = int(n_lists - filled.sum())
            centroids[~filled] = sample[rng.choice(n_train, n_empty, replace=False)]
            if self.cosine:
                centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
        return centroids

    def nearest(self, points, centroids: np.ndarray, n_nearest: int) -> np.ndarray:
        """Indices of each point's ``n_nearest`` centroids, nearest first."""
        half_squared = 0.0 if self.cosine else 0.5 * np.einsum("ij,ij->i", centroids, centroids)

        def block(bounds):
            scores = points[bounds[0] : bounds[1]].astype(np.float32, copy=False) @ centroids.T
            scores -= half_squared
            top = np.argpartition(-scores, n_nearest - 1, axis=1)[:, :n_nearest]
            order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
            return np.take_along_axis(top, order, axis=1)

        return np.concatenate(list(self.pool.map(block, self.blocks(len(points), len(centroids)))))

    def nearest_centroids(self, centroids: np.ndarray, n_probe: int) -> np.ndarray:
        """Each row's ``n_probe`` nearest centroids, nearest first."""
        return self.nearest(self.features, centroids, n_probe)

    # ------------------------------------------------------------------ search

    def list_members(self, list_index: int) -> np.ndarray:
        return self.members[self.bounds[list_index] : self.bounds[list_index + 1]]

    def own_lists(self, primary: np.ndarray, n_lists: int) -> None:
        """Search each row's own list: its members against each other."""
        self.members = np.argsort(primary, kind="stable")
        self.bounds = np.r_[0, np.cumsum(np.bincount(primary, minlength=n_lists))]
        for _ in self.pool.map(self._own_list, np.flatnonzero(np.diff(self.bounds) > 1)):
            pass

    def _own_list(self, list_index: int) -> None:
        members = self.list_members(list_index)
        member_features = self.rows(members)
        keep = min(self.n_candidates, len(members) - 1)
        for start, stop in self.blocks(len(members), len(members)):
            rows = members[start:stop]
            block = self.score(rows, member_features[start:stop], members, member_features)
            block[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # never oneself
            top = np.argpartition(-block, keep - 1, axis=1)[:, :keep]
            # the lists' rows never overlap: written without a lock
            self.candidates[rows, :keep] = members[top]
            self.scores[rows, :keep] = np.take_along_axis(block, top, axis=1)

    def other_lists(self, probes: np.ndarray) -> None:
        """Search each row's other probed lists; merge what reaches its worst kept."""
        n_samples, n_probe = probes.shape
        self.probes = probes
        self.bar = self.scores.min(axis=1)  # rises as better candidates are merged
        if n_probe > 1:
            probed = probes[:, 1:].ravel()
            self.probing = np.repeat(np.arange(n_samples), n_probe - 1)[
                np.argsort(probed, kind="stable")
            ]
            n_lists = len(self.bounds) - 1
            self.probing_bounds = np.r_[0, np.cumsum(np.bincount(probed, minlength=n_lists))]
            sizes, n_probing = np.diff(self.bounds), np.diff(self.probing_bounds)
            searched = np.flatnonzero((sizes > 0) & (n_probing > 0))
            pending, n_pending = [], 0
            for found in self.pool.map(self._other_list, searched):
                pending.append(found)
                n_pending += len(found[0])
                if n_pending > self.candidates.size // 2:  # bound what waits to be merged
                    self._merge(pending)
                    pending, n_pending = [], 0
            if pending:
                self._merge(pending)
        order = np.lexsort((self.candidates, -self.scores), axis=1)
        self.candidates = np.take_along_axis(self.candidates, order, axis=1)
        self.scores = np.take_along_axis(self.scores, order, axis=1)

    def _other_list(self, list_index: int):
        """(row, candidate, score) of the pairs of a list's members and the rows probing
        it that reach the row's bar, or the member's (the reverse direction)."""
        members = self.list_members(list_index)
        member_features = self.rows(members)
        probing = self.probing[
            self.probing_bounds[list_index] : self.probing_bounds[list_index + 1]
        ]
        found = []
        for start, stop in self.blocks(len(probing), len(members)):
            rows = probing[start:stop]
            block = self.score(rows, self.rows(rows), members, member_features)
            # `>=`: a candidate tying the bar may still win on its lower index
            forward = np.nonzero(block >= self.bar[rows, None])
            backward = np.nonzero(block >= self.bar[members])
            # a member probing the row's own list finds the pair forward itself
            seen = self.probes[members[backward[1]]] == self.probes[rows[backward[0]], :1]
            fresh = ~seen.any(axis=1)
            backward = (backward[0][fresh], backward[1][fresh])
            found.append((rows[forward[0]], members[forward[1]], block[forward]))
            found.append((members[backward[1]], rows[backward[0]], block[backward]))
        return tuple(np.concatenate(part) for part in zip(*found, strict=True))

    def _merge(self, pending) -> None:
        """Fold found (row, candidate, score) triples into each row's best."""
        found_rows, found, found_scores = (
            np.concatenate(part) for part in zip(*pending, strict=True)
        )
        order = np.argsort(found_rows, kind="stable")
        found_rows, found, found_scores = found_rows[order], found[order], found_scores[order]
        # a few thousand rows at a time, so that the sort's copies stay small
        edges = np.searchsorted(found_rows, np.arange(0, len(self.candidates), _MERGE_ROWS))
        for start, stop in zip(edges, np.r_[edges[1:], len(found_rows)], strict=True):
            if start < stop:
                self._merge_rows(
                    found_rows[start:stop], found[start:stop], found_scores[start:stop]
                )

    def _merge_rows(self, found_rows, found, found_scores) -> None:
        rows, counts = np.unique(found_rows, return_counts=True)
        width = self.n_candidates
        owner = np.concatenate([np.repeat(rows, width), found_rows])
        candidate = np.concatenate([self.candidates[rows].ravel(), found])
        score = np.concatenate([self.scores[rows].ravel(), found_scores])
        order = np.lexsort((candidate, -score, owner))
        sizes = counts + width
        rank = np.arange(len(order)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        kept = order[rank < width]
        self.candidates[rows] = candidate[kept].reshape(-1, width)
        self.scores[rows] = score[kept].reshape(-1, width)
        self.bar[rows] = self.scores[rows, -1]
