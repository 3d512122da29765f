"""Tests of skvf.candidates: nearest neighbours and candidate-set votes."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.neighbors import KNeighborsTransformer, NearestNeighbors, RadiusNeighborsTransformer
from sklearn.pipeline import make_pipeline

from skvf import candidates
from skvf._sklearn_compat import InvalidParameterError
from skvf.candidates import NeighborCandidateBuilder, candidate_votes, nearest_neighbors


def _brute_force(features, n_neighbors, metric):
    """Neighbours by a double loop over float64 distances, self excluded, equal
    distances to the lower index."""
    features = np.asarray(features, dtype=np.float64)
    n_samples = len(features)
    result = np.empty((n_samples, n_neighbors), dtype=int)
    for row in range(n_samples):
        distances = []
        for other in range(n_samples):
            if other == row:
                continue
            a, b = features[row], features[other]
            if metric == "cosine":
                distance = 1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
            else:
                distance = np.sqrt(((a - b) ** 2).sum())
            distances.append((distance, other))
        distances.sort()
        result[row] = [other for _, other in distances[:n_neighbors]]
    return result


def _clustered(n_samples, n_features, n_clusters, spread, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, n_features))
    return centres[rng.integers(0, n_clusters, n_samples)] + spread * rng.normal(
        size=(n_samples, n_features)
    )


def _recall(exact, found):
    """Share of each row's exact neighbours that were found, averaged."""
    return np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(exact, found, strict=True)])


@pytest.fixture
def without_faiss(monkeypatch):
    """The ``ann`` extra not installed: importing faiss fails."""
    monkeypatch.setitem(sys.modules, "faiss", None)


# ----------------------------------------------------------------------------- exact search


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exact_neighbors_match_brute_force(metric, dtype):
    features = np.random.default_rng(0).normal(size=(40, 7)).astype(dtype)
    found = nearest_neighbors(features, 4, metric=metric, algorithm="exact")
    assert found.shape == (40, 4) and found.dtype == np.int64
    np.testing.assert_array_equal(found, _brute_force(features, 4, metric))
    assert not np.any(found == np.arange(40)[:, None])  # never one's own neighbour


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_copies_tie_and_go_to_the_lower_index(metric, dtype):
    # 12 points, each 9 times: a row's 8 copies tie, more than the first search asks for.
    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(12, 5))
    copy_of = rng.permutation(np.repeat(np.arange(12), 9))
    features = distinct[copy_of].astype(dtype)
    found = nearest_neighbors(features, 5, metric=metric, algorithm="exact")
    for row, neighbors in enumerate(found):
        copies = [i for i in np.flatnonzero(copy_of == copy_of[row]) if i != row]
        assert neighbors.tolist() == copies[:5]
    np.testing.assert_array_equal(found, _brute_force(features, 5, metric))


def test_equal_distances_on_a_grid_go_to_the_lower_index():
    # Integer points: each has up to 4 neighbours at distance 1 and 4 at sqrt(2), exactly.
    features = np.array([(x, y) for x in range(5) for y in range(5)], dtype=float)
    for n_neighbors in (1, 3, 6):
        found = nearest_neighbors(features, n_neighbors, metric="euclidean", algorithm="exact")
        np.testing.assert_array_equal(found, _brute_force(features, n_neighbors, "euclidean"))
    assert found[12].tolist() == [7, 11, 13, 17, 6, 8]  # the centre: 4 at 1, then sqrt(2)


def test_exact_neighbors_are_nearest_first():
    # On a line, the neighbours of 0 are 1, 2, 3 in that order (euclidean).
    features = np.array([[0.0], [1.0], [2.5], [4.5], [7.0]])
    found = nearest_neighbors(features, 3, metric="euclidean", algorithm="exact")
    assert found[0].tolist() == [1, 2, 3]
    assert found[4].tolist() == [3, 2, 1]
    assert found[2].tolist() == [1, 3, 0]


def test_duplicate_rows_are_each_others_nearest_but_not_their_own():
    features = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    found = nearest_neighbors(features, 1, algorithm="exact")
    assert found[:2, 0].tolist() == [1, 0]
    every_row_the_same = nearest_neighbors(np.ones((6, 3)), 5, algorithm="exact")
    assert every_row_the_same.tolist() == [[j for j in range(6) if j != i] for i in range(6)]


def test_cosine_ignores_length_and_euclidean_does_not():
    query = [1.0, 0.0]
    same_direction_far = [10.0, 0.0]  # cosine 1, distance 9
    other_direction_near = [0.8, 0.6]  # cosine 0.8, distance 0.63
    features = np.array([query, same_direction_far, other_direction_near])
    cosine = nearest_neighbors(features, 1, metric="cosine", algorithm="exact")
    euclidean = nearest_neighbors(features, 1, metric="euclidean", algorithm="exact")
    assert cosine[0, 0] == 1
    assert euclidean[0, 0] == 2


def test_exact_search_does_not_depend_on_working_memory():
    import sklearn

    features = _clustered(500, 16, 5, 0.5).astype(np.float32)
    expected = nearest_neighbors(features, 5, algorithm="exact")
    with sklearn.config_context(working_memory=1):  # chunks of a few rows
        np.testing.assert_array_equal(nearest_neighbors(features, 5, algorithm="exact"), expected)


# ----------------------------------------------------------------------------- choice of search


def test_auto_searches_exactly_up_to_exact_max_samples(monkeypatch):
    pytest.importorskip("faiss")
    calls = []

    def fake(faiss, points, n_neighbors, n_lists, n_probe, seed):
        calls.append((len(points), n_neighbors, n_lists, n_probe, seed))
        return np.zeros((len(points), n_neighbors), dtype=np.int64)

    monkeypatch.setattr(candidates, "_ivf_neighbors", fake)
    features = np.random.default_rng(0).normal(size=(12, 3))
    exact = nearest_neighbors(features, 2, algorithm="exact")
    np.testing.assert_array_equal(nearest_neighbors(features, 2, exact_max_samples=12), exact)
    assert calls == []  # at the limit: exact
    nearest_neighbors(
        features, 2, metric="euclidean", exact_max_samples=11, n_probe=3, random_state=7
    )
    assert calls == [(12, 2, None, 3, 7)]
    nearest_neighbors(features, 2, algorithm="exact", exact_max_samples=1)
    assert len(calls) == 1
    nearest_neighbors(features, 2, algorithm="ivf", n_lists=4)
    assert calls[-1] == (12, 2, 4, candidates._N_PROBE, None)


def test_without_the_ann_extra_auto_searches_exactly_at_any_size(without_faiss, monkeypatch):
    def never(*args):
        raise AssertionError("the index was used")

    monkeypatch.setattr(candidates, "_ivf_neighbors", never)
    features = _clustered(300, 8, 6, 0.5)
    exact = nearest_neighbors(features, 4, algorithm="exact")
    np.testing.assert_array_equal(nearest_neighbors(features, 4, exact_max_samples=10), exact)
    builder = NeighborCandidateBuilder(n_neighbors=4, exact_max_samples=10)
    np.testing.assert_array_equal(builder.fit(features, np.zeros(300, int)).neighbors_, exact)


def test_without_the_ann_extra_ivf_names_the_extra(without_faiss):
    message = r"algorithm='ivf' needs faiss-cpu: pip install 'skvf\[ann\]'"
    with pytest.raises(ImportError, match=message):
        nearest_neighbors(np.eye(6), 1, algorithm="ivf")


def test_unknown_algorithm_is_a_clear_error():
    with pytest.raises(
        ValueError, match="algorithm must be 'auto', 'exact' or 'ivf', got 'nndescent'"
    ):
        nearest_neighbors(np.eye(4), 1, algorithm="nndescent")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_probe": 0}, "n_probe must be a positive int, got 0"),
        ({"n_probe": 2.0}, "n_probe must be a positive int, got 2.0"),
        ({"n_probe": None}, "n_probe must be a positive int, got None"),
        ({"n_lists": 0}, "n_lists must be a positive int, got 0"),
        ({"n_lists": "8"}, "n_lists must be a positive int, got '8'"),
    ],
)
def test_bad_index_parameters_are_a_clear_error(params, message):
    with pytest.raises(ValueError, match=message):
        nearest_neighbors(np.eye(6), 1, algorithm="ivf", **params)


# ----------------------------------------------------------------------------- the index (faiss)


@pytest.fixture
def faiss():
    return pytest.importorskip("faiss")


def test_ivf_finds_the_exact_neighbours_of_clustered_data_at_defaults(faiss):
    # 30 overlapping clusters: a row's own list alone holds 0.67-0.73 of its neighbours;
    # probing 8 of the 76 lists finds 0.991-0.996 of them (seeds 0-2 of the data).
    features = _clustered(3000, 32, 30, 1.0)
    exact = nearest_neighbors(features, 5, algorithm="exact")
    found = nearest_neighbors(features, 5, algorithm="ivf", random_state=0)
    assert _recall(exact, found) >= 0.95
    own_list_only = nearest_neighbors(features, 5, algorithm="ivf", n_probe=1, random_state=0)
    assert _recall(exact, own_list_only) <= 0.8
    # the index ranks what it finds: where it found the exact set, the order is exact too
    same = np.all(np.sort(found, axis=1) == np.sort(exact, axis=1), axis=1)
    assert same.mean() >= 0.9
    np.testing.assert_array_equal(found[same], exact[same])


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ivf_probing_every_list_is_the_exact_search(faiss, metric, dtype):
    features = _clustered(300, 24, 6, 0.3, seed=300).astype(dtype)
    exact = nearest_neighbors(features, 5, metric=metric, algorithm="exact")
    found = nearest_neighbors(features, 5, metric=metric, algorithm="ivf", n_probe=300)
    assert found.dtype == np.int64
    np.testing.assert_array_equal(found, exact)


def test_ivf_is_deterministic_given_its_seed_and_the_same_on_one_thread(faiss):
    from threadpoolctl import threadpool_limits

    features = _clustered(3000, 32, 30, 1.0).astype(np.float32)
    first = nearest_neighbors(features, 5, algorithm="ivf", n_probe=1, random_state=3)
    np.testing.assert_array_equal(
        nearest_neighbors(features, 5, algorithm="ivf", n_probe=1, random_state=3), first
    )
    with threadpool_limits(1):  # faiss's OpenMP threads and its BLAS
        serial = nearest_neighbors(features, 5, algorithm="ivf", n_probe=1, random_state=3)
    np.testing.assert_array_equal(serial, first)
    other_seed = nearest_neighbors(features, 5, algorithm="ivf", n_probe=1, random_state=4)
    assert not np.array_equal(other_seed, first)  # the seed picks the lists


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_ivf_excludes_each_row_and_returns_distinct_neighbours(faiss, metric):
    features = _clustered(1000, 8, 10, 0.5)
    found = nearest_neighbors(features, 6, metric=metric, algorithm="ivf", random_state=0)
    assert found.shape == (1000, 6)
    assert not np.any(found == np.arange(1000)[:, None])
    assert all(len(set(row)) == 6 for row in found)
    assert found.min() >= 0 and found.max() < 1000


def test_ivf_finds_copies_of_a_row_first(faiss):
    # 200 distinct rows, each 4 times: a row's 3 neighbours are exactly its copies
    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(200, 16))
    copy_of = rng.permutation(np.repeat(np.arange(200), 4))
    found = nearest_neighbors(distinct[copy_of], 3, algorithm="ivf", random_state=0)
    for row, neighbors in enumerate(found):
        copies = set(np.flatnonzero(copy_of == copy_of[row])) - {row}
        assert set(neighbors) == copies
    # every row the same: any others will do, never the row itself
    same = nearest_neighbors(np.ones((50, 4)), 3, algorithm="ivf", random_state=0)
    assert not np.any(same == np.arange(50)[:, None])
    assert all(len(set(row)) == 3 for row in same)


def test_ivf_searches_exactly_where_the_probed_lists_hold_too_few_rows(faiss, monkeypatch):
    # 40 lists for 40 rows, each row probing its own: most lists hold one or two rows
    searched_again = []
    exact_neighbors = candidates._exact_neighbors

    def recording(points, n_neighbors, rows):
        searched_again.extend(rows.tolist())
        return exact_neighbors(points, n_neighbors, rows)

    monkeypatch.setattr(candidates, "_exact_neighbors", recording)
    features = _clustered(40, 5, 4, 0.5)
    found = nearest_neighbors(features, 3, algorithm="ivf", n_lists=40, n_probe=1, random_state=0)
    assert len(searched_again) > 20
    exact = nearest_neighbors(features, 3, algorithm="exact")
    np.testing.assert_array_equal(found[searched_again], exact[searched_again])
    assert not np.any(found == np.arange(40)[:, None]) and found.min() >= 0


# ----------------------------------------------------------------------------- votes


def test_candidate_votes_by_hand():
    labels = np.array([0, 1, 1, 2])
    neighbors = np.array([[1, 2], [0, 2], [1, 3], [2, 2]])
    votes = candidate_votes(labels, neighbors, n_classes=4, self_weight=1.0)
    expected = np.array(
        [
            [1, 2, 0, 0],  # own 0, neighbours 1 and 2 both name 1
            [1, 2, 0, 0],  # own 1, neighbours name 0 and 1
            [0, 2, 1, 0],  # own 1, neighbours name 1 and 2
            [0, 2, 1, 0],  # own 2, a neighbour listed twice votes twice
        ],
        dtype=float,
    )
    np.testing.assert_array_equal(votes, expected)


def test_candidate_votes_self_weight_and_no_neighbours():
    labels = np.array([2, 0])
    np.testing.assert_array_equal(
        candidate_votes(labels, None, n_classes=3, self_weight=0.5),
        [[0, 0, 0.5], [0.5, 0, 0]],
    )
    np.testing.assert_array_equal(
        candidate_votes(labels, np.array([[1], [0]]), n_classes=3, self_weight=3.0),
        [[1, 0, 3], [3, 0, 1]],
    )


def test_candidate_votes_rows_sum_to_self_weight_plus_neighbours():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 30)
    neighbors = rng.integers(0, 30, (30, 4))
    votes = candidate_votes(labels, neighbors, n_classes=6, self_weight=2.0)
    np.testing.assert_allclose(votes.sum(axis=1), 6.0)
    assert np.all(votes[np.arange(30), labels] >= 2.0)  # own name always a candidate
    assert np.all(votes[:, 5] == 0)  # an unused class gets no votes


# ----------------------------------------------------------------------------- builder


def test_builder_docstring_example():
    features = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    builder = NeighborCandidateBuilder(n_neighbors=1).fit(features, [0, 1, 1, 1])
    assert builder.neighbors_.tolist() == [[1], [0], [3], [2]]
    np.testing.assert_array_equal(builder.candidate_votes_, [[1, 1], [1, 1], [0, 2], [0, 2]])
    np.testing.assert_array_equal(builder.candidate_sets_, builder.candidate_votes_ > 0)
    assert builder.candidate_sets_.dtype == bool


def test_builder_attributes_shapes_and_n_classes():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(15, 4))
    labels = rng.integers(0, 3, 15)
    builder = NeighborCandidateBuilder(n_neighbors=3, self_weight=2.0).fit(
        features, labels, n_classes=5
    )
    assert builder.neighbors_.shape == (15, 3)
    assert builder.candidate_votes_.shape == (15, 5)
    np.testing.assert_array_equal(builder.neighbors_, nearest_neighbors(features, 3))
    np.testing.assert_array_equal(
        builder.candidate_votes_, candidate_votes(labels, builder.neighbors_, 5, 2.0)
    )
    default = NeighborCandidateBuilder(n_neighbors=3).fit(features, labels)
    assert default.candidate_votes_.shape == (15, labels.max() + 1)


def test_builder_init_only_stores_and_clones():
    builder = NeighborCandidateBuilder(n_neighbors=-3, metric="nope")  # validated in fit
    assert builder.get_params()["n_neighbors"] == -3
    assert clone(builder).get_params() == builder.get_params()
    assert NeighborCandidateBuilder().get_params() == {
        "n_neighbors": 5,
        "metric": "cosine",
        "algorithm": "auto",
        "exact_max_samples": candidates._EXACT_MAX_SAMPLES,
        "n_lists": None,
        "n_probe": 8,
        "self_weight": 1.0,
        "random_state": None,
        "neighbors": None,
    }


@pytest.mark.parametrize("n_samples", [0, 1, 5])
def test_too_few_images_is_a_clear_error(n_samples):
    features = np.ones((n_samples, 3))
    with pytest.raises(ValueError, match=f"n_neighbors=5 needs at least 6 images, got {n_samples}"):
        NeighborCandidateBuilder().fit(features, np.zeros(n_samples, dtype=int))


def test_just_enough_images():
    builder = NeighborCandidateBuilder(n_neighbors=5).fit(np.eye(6), np.arange(6))
    assert builder.neighbors_.shape == (6, 5)
    assert all(set(row) == set(range(6)) - {i} for i, row in enumerate(builder.neighbors_))
    assert np.all(builder.candidate_sets_)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"n_neighbors": 0}, "n_neighbors"),
        ({"n_neighbors": 2.5}, "n_neighbors"),
        ({"metric": "manhattan"}, "metric"),
        ({"algorithm": "ball_tree"}, "algorithm"),
        ({"algorithm": "nndescent"}, "algorithm"),
        ({"exact_max_samples": 0}, "exact_max_samples"),
        ({"n_lists": 0}, "n_lists"),
        ({"n_lists": 2.5}, "n_lists"),
        ({"n_probe": 0}, "n_probe"),
        ({"n_probe": None}, "n_probe"),
        ({"self_weight": 0.0}, "self_weight"),
        ({"self_weight": -1.0}, "self_weight"),
        ({"random_state": "seed"}, "random_state"),
        ({"neighbors": 3}, "neighbors"),
        ({"neighbors": "kneighbors"}, "neighbors"),
    ],
)
def test_parameter_validation_names_the_parameter(params, name):
    with pytest.raises(
        InvalidParameterError, match=f"The '{name}' parameter of NeighborCandidateBuilder"
    ):
        features = np.random.default_rng(0).random((10, 3))
        NeighborCandidateBuilder(**params).fit(features, np.zeros(10, dtype=int))


def test_builder_passes_its_index_parameters_and_seed(monkeypatch):
    pytest.importorskip("faiss")
    calls = []

    def fake(faiss, points, n_neighbors, n_lists, n_probe, seed):
        calls.append((n_lists, n_probe, seed))
        return np.tile(np.arange(1, n_neighbors + 1), (len(points), 1))

    monkeypatch.setattr(candidates, "_ivf_neighbors", fake)
    features = np.random.default_rng(0).normal(size=(8, 2))
    for _ in range(2):
        NeighborCandidateBuilder(
            n_neighbors=2, algorithm="ivf", n_lists=3, n_probe=2, random_state=3
        ).fit(features, np.zeros(8, dtype=int))
    assert calls[0] == calls[1]
    assert calls[0][:2] == (3, 2) and isinstance(calls[0][2], int)


def test_builder_with_ivf_is_deterministic_given_random_state():
    pytest.importorskip("faiss")
    features = _clustered(2000, 16, 20, 0.8)
    labels = np.arange(2000) % 7
    fits = [
        NeighborCandidateBuilder(algorithm="ivf", random_state=np.random.RandomState(5)).fit(
            features, labels
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(fits[0].neighbors_, fits[1].neighbors_)
    np.testing.assert_array_equal(fits[0].candidate_votes_, fits[1].candidate_votes_)


@pytest.mark.parametrize(
    ("features", "labels", "n_classes"),
    [
        (np.array([[np.nan, 1.0], [1, 0], [0, 1], [1, 1]]), [0, 1, 0, 1], None),
        (np.random.default_rng(0).normal(size=(6, 2)), [0, 1, 0], None),  # too few labels
        (np.random.default_rng(0).normal(size=(6, 2)), [0, 1, 0, 1, 2, 3], 2),  # >= n_classes
        (np.random.default_rng(0).normal(size=(6, 2)), [0, 1, 0, 1, -1, 1], None),  # negative
    ],
)
def test_bad_features_or_labels_are_a_clear_error(features, labels, n_classes):
    with pytest.raises(ValueError, match="NaN|labels"):
        NeighborCandidateBuilder(n_neighbors=2).fit(features, labels, n_classes=n_classes)


# ----------------------------------------------------------------------------- neighbors=


def _cosine_and_euclidean_disagree():
    """Rows whose nearest row differs by metric: 0's cosine nearest is 1, euclidean 2."""
    features = np.array([[1.0, 0.0], [10.0, 0.5], [0.8, 0.6], [0.0, 1.0], [0.1, 9.0], [-0.5, 0.9]])
    return features, np.array([0, 1, 2, 3, 4, 5])


def test_a_given_transformer_finds_the_neighbours_that_vote():
    features, labels = _cosine_and_euclidean_disagree()
    transformer = KNeighborsTransformer(n_neighbors=1)  # euclidean
    builder = NeighborCandidateBuilder(n_neighbors=3, neighbors=transformer)
    builder.fit(features, labels)
    expected = NearestNeighbors(n_neighbors=1).fit(features).kneighbors()[1]
    np.testing.assert_array_equal(builder.neighbors_, expected)  # its 1, not n_neighbors=3
    assert builder.neighbors_[0, 0] == 2
    default = NeighborCandidateBuilder(n_neighbors=1).fit(features, labels)
    assert default.neighbors_[0, 0] == 1  # cosine
    assert builder.candidate_votes_[0].tolist() == [1, 0, 1, 0, 0, 0]  # its neighbour votes
    np.testing.assert_array_equal(
        builder.candidate_votes_, candidate_votes(labels, expected, 6, self_weight=1.0)
    )
    assert not hasattr(transformer, "n_samples_fit_")  # a clone was fitted, not it


def test_a_given_graph_without_kneighbors_is_read_nearest_first():
    # A pipeline has fit_transform but no kneighbors: the graph route.
    features = _clustered(60, 4, 3, 0.5)
    pipeline = make_pipeline(KNeighborsTransformer(n_neighbors=4))
    assert not hasattr(pipeline, "kneighbors")
    builder = NeighborCandidateBuilder(neighbors=pipeline).fit(features, np.zeros(60, int))
    np.testing.assert_array_equal(builder.neighbors_, _brute_force(features, 4, "euclidean"))


def test_a_given_graph_with_copies_leaves_each_image_out():
    # Copies tie at distance 0: a row's graph may hold its copies and not itself.
    features = np.repeat(np.eye(3), 4, axis=0)
    graph_only = make_pipeline(KNeighborsTransformer(n_neighbors=2))
    found = NeighborCandidateBuilder(neighbors=graph_only).fit(features, np.zeros(12, int))
    assert found.neighbors_.shape == (12, 2)
    for row, neighbors in enumerate(found.neighbors_):
        assert row not in neighbors
        assert set(neighbors) <= set(range(4 * (row // 4), 4 * (row // 4) + 4))
        assert neighbors.tolist() == sorted(neighbors)  # equal distances: lower index first


def test_a_given_nearest_neighbors_object_is_used_through_kneighbors():
    features = _clustered(50, 6, 4, 0.4)
    given = NearestNeighbors(n_neighbors=3, metric="cosine", algorithm="brute")
    builder = NeighborCandidateBuilder(neighbors=given).fit(features, np.zeros(50, int))
    np.testing.assert_array_equal(builder.neighbors_, _brute_force(features, 3, "cosine"))
    assert clone(builder).get_params()["neighbors"].get_params() == given.get_params()


def test_a_given_graph_of_the_wrong_shape_or_without_neighbours_is_a_clear_error():
    class Identity:
        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return X

        def get_params(self, deep=True):
            return {}

    with pytest.raises(ValueError, match=r"gave a graph of shape \(5, 3\); expected \(5, 5\)"):
        NeighborCandidateBuilder(neighbors=Identity()).fit(np.ones((5, 3)), np.zeros(5, int))
    far_apart = np.array([[0.0], [0.1], [10.0]])  # 2 has no other row within the radius
    with pytest.raises(ValueError, match="gave an image no neighbour other than itself"):
        NeighborCandidateBuilder(neighbors=RadiusNeighborsTransformer(radius=1.0)).fit(
            far_apart, [0, 0, 1]
        )


def test_recount_gives_what_a_fit_on_the_new_names_gives_without_a_search(monkeypatch):
    import skvf.candidates
    from skvf.candidates import recount_candidate_votes

    rng = np.random.default_rng(3)
    features = rng.normal(size=(40, 6))
    first, second = rng.integers(0, 5, size=40), rng.integers(0, 3, size=40)
    builder = NeighborCandidateBuilder(n_neighbors=4).fit(features, first, n_classes=5)
    expected = NeighborCandidateBuilder(n_neighbors=4).fit(features, second, n_classes=3)

    def no_search(*args, **kwargs):
        raise AssertionError("searched again")

    monkeypatch.setattr(skvf.candidates, "nearest_neighbors", no_search)
    votes, agreement = recount_candidate_votes(builder, features, second, 3)
    np.testing.assert_array_equal(votes, expected.candidate_votes_)
    np.testing.assert_array_equal(builder.name_agreement_, expected.name_agreement_)
    assert agreement == pytest.approx(expected.name_agreement_.mean())
    with pytest.raises(ValueError, match=r"labels has shape \(39,\)"):
        builder.recount(second[:39])


def test_recount_candidate_votes_fits_a_builder_without_recount_again():
    from skvf.candidates import recount_candidate_votes

    class CountingBuilder:
        fits = 0

        def fit(self, features, labels, n_classes=None):
            CountingBuilder.fits += 1
            self.candidate_votes_ = np.eye(n_classes)[labels]
            return self

    votes, agreement = recount_candidate_votes(CountingBuilder(), np.zeros((3, 2)), [0, 1, 1], 2)
    assert CountingBuilder.fits == 1 and agreement is None
    np.testing.assert_array_equal(votes, np.eye(2)[[0, 1, 1]])
