"""Tests of skvf.candidates: nearest neighbours and candidate-set votes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from skvf import candidates
from skvf._sklearn_compat import InvalidParameterError
from skvf.candidates import NeighborCandidateBuilder, candidate_votes, nearest_neighbors


def _brute_force(features, n_neighbors, metric):
    """Neighbours by a double loop over scipy-free distances, self excluded."""
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


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_neighbors_match_brute_force(metric):
    features = np.random.default_rng(0).normal(size=(40, 7))
    found = nearest_neighbors(features, 4, metric=metric, algorithm="exact")
    assert found.shape == (40, 4)
    np.testing.assert_array_equal(found, _brute_force(features, 4, metric))
    assert not np.any(found == np.arange(40)[:, None])  # never one's own neighbour


def _full_matrix_search(features, n_neighbors, metric):
    """The exact search skvf had before 0.2: one N x N float64 matrix, ties unordered."""
    features = np.asarray(features, dtype=np.float64)
    if metric == "cosine":
        unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
        similarity = unit @ unit.T
    else:
        squared = np.einsum("ij,ij->i", features, features)
        similarity = -(squared[:, None] + squared[None, :] - 2.0 * features @ features.T)
    np.fill_diagonal(similarity, -np.inf)
    top = np.argpartition(-similarity, n_neighbors - 1, axis=1)[:, :n_neighbors]
    order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1), similarity


@pytest.fixture(params=["blocks", "screen"])
def search_path(request, monkeypatch):
    """Both exact searches: float64 blocks (small N) and the screen (large N)."""
    if request.param == "screen":
        monkeypatch.setattr(candidates, "_SCREEN_MIN_SAMPLES", 1)
    return request.param


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("n_samples", "n_features", "n_neighbors"), [(7, 3, 6), (300, 24, 5)])
def test_exact_search_is_bit_identical_to_the_full_matrix_search(
    search_path, metric, dtype, n_samples, n_features, n_neighbors
):
    rng = np.random.default_rng(n_samples)
    centres = rng.normal(size=(6, n_features))
    features = centres[rng.integers(0, 6, n_samples)] + 0.3 * rng.normal(
        size=(n_samples, n_features)
    )
    features = features.astype(dtype)
    expected, _ = _full_matrix_search(features, n_neighbors, metric)
    found = nearest_neighbors(features, n_neighbors, metric=metric, algorithm="exact")
    assert found.dtype == np.int64
    np.testing.assert_array_equal(found, expected)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_equal_similarities_go_to_the_lower_index(search_path, metric):
    # 12 points, each 9 times: a row's 8 copies tie exactly, and so do their copies.
    rng = np.random.default_rng(0)
    distinct = rng.normal(size=(12, 5))
    copy_of = rng.permutation(np.repeat(np.arange(12), 9))
    features = distinct[copy_of]
    found = nearest_neighbors(features, 5, metric=metric, algorithm="exact")
    for row, neighbors in enumerate(found):
        copies = [i for i in np.flatnonzero(copy_of == copy_of[row]) if i != row]
        assert neighbors.tolist() == copies[:5]
    # the old search found neighbours just as near, in an order of its own
    old, similarity = _full_matrix_search(features, 5, metric)
    np.testing.assert_allclose(
        np.take_along_axis(similarity, found, axis=1),
        np.take_along_axis(similarity, old, axis=1),
        atol=1e-12,
    )


def test_screen_searches_again_where_its_rounding_could_misorder(monkeypatch):
    # Two screened candidates per row leave many unscreened points as near as the
    # kept ones (copies): those rows must be searched again in float64.
    monkeypatch.setattr(candidates, "_SCREEN_MIN_SAMPLES", 1)
    monkeypatch.setattr(candidates, "_EXTRA_CANDIDATES", 0)
    searched_again = []
    exact_rows = candidates._exact_rows

    def recording(features, rows, n_neighbors, metric):
        searched_again.extend(rows.tolist())
        return exact_rows(features, rows, n_neighbors, metric)

    monkeypatch.setattr(candidates, "_exact_rows", recording)
    rng = np.random.default_rng(1)
    features = np.r_[np.tile(rng.normal(size=(1, 8)), (10, 1)), rng.normal(size=(40, 8))]
    features = features.astype(np.float32)
    found = nearest_neighbors(features, 3, algorithm="exact")
    assert set(range(10)) <= set(searched_again) < set(range(50))
    assert found[:10].tolist() == [[j for j in range(10) if j != i][:3] for i in range(10)]
    expected, similarity = _full_matrix_search(features, 3, "cosine")
    np.testing.assert_allclose(
        np.take_along_axis(similarity, found, axis=1),
        np.take_along_axis(similarity, expected, axis=1),
        atol=1e-12,
    )
    untied = ~np.isin(expected, range(10)).any(axis=1)  # no copy among the neighbours
    np.testing.assert_array_equal(found[untied], expected[untied])


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


def test_cosine_ignores_length_and_euclidean_does_not():
    query = [1.0, 0.0]
    same_direction_far = [10.0, 0.0]  # cosine 1, distance 9
    other_direction_near = [0.8, 0.6]  # cosine 0.8, distance 0.63
    features = np.array([query, same_direction_far, other_direction_near])
    cosine = nearest_neighbors(features, 1, metric="cosine", algorithm="exact")
    euclidean = nearest_neighbors(features, 1, metric="euclidean", algorithm="exact")
    assert cosine[0, 0] == 1
    assert euclidean[0, 0] == 2


def test_auto_switches_to_approximate_search_above_exact_max_samples(monkeypatch):
    calls = []

    def fake(features, n_neighbors, metric, random_state):
        calls.append((features.dtype, len(features), n_neighbors, metric, random_state))
        return np.zeros((len(features), n_neighbors), dtype=np.int64)

    monkeypatch.setattr(candidates, "_approximate_neighbors", fake)
    features = np.random.default_rng(0).normal(size=(12, 3))
    nearest_neighbors(features, 2, algorithm="auto", exact_max_samples=12)
    assert calls == []  # at the limit: exact
    nearest_neighbors(features, 2, metric="euclidean", exact_max_samples=11, random_state=7)
    assert calls == [(np.float32, 12, 2, "euclidean", 7)]
    nearest_neighbors(features, 2, algorithm="exact", exact_max_samples=1)
    assert len(calls) == 1


@pytest.mark.slow
def test_nndescent_agrees_with_exact_search():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16))
    features = centres[rng.integers(0, 20, 2000)] + 0.3 * rng.normal(size=(2000, 16))
    exact = nearest_neighbors(features, 5, algorithm="exact")
    approximate = nearest_neighbors(features, 5, algorithm="nndescent", random_state=0)
    assert approximate.shape == (2000, 5)
    assert not np.any(approximate == np.arange(2000)[:, None])
    same_sets = np.mean([set(a) == set(b) for a, b in zip(exact, approximate, strict=True)])
    assert same_sets > 0.9


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
        "exact_max_samples": 30_000,
        "self_weight": 1.0,
        "random_state": None,
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
        ({"exact_max_samples": 0}, "exact_max_samples"),
        ({"self_weight": 0.0}, "self_weight"),
        ({"self_weight": -1.0}, "self_weight"),
        ({"random_state": "seed"}, "random_state"),
    ],
)
def test_parameter_validation_names_the_parameter(params, name):
    with pytest.raises(
        InvalidParameterError, match=f"The '{name}' parameter of NeighborCandidateBuilder"
    ):
        features = np.random.default_rng(0).random((10, 3))
        NeighborCandidateBuilder(**params).fit(features, np.zeros(10, dtype=int))


def test_random_state_makes_the_builder_deterministic(monkeypatch):
    seeds = []

    def fake(features, n_neighbors, metric, random_state):
        seeds.append(random_state)
        return np.tile(np.arange(1, n_neighbors + 1), (len(features), 1))

    monkeypatch.setattr(candidates, "_approximate_neighbors", fake)
    features = np.random.default_rng(0).normal(size=(8, 2))
    for _ in range(2):
        NeighborCandidateBuilder(n_neighbors=2, algorithm="nndescent", random_state=3).fit(
            features, np.zeros(8, dtype=int)
        )
    assert seeds[0] == seeds[1]
    assert isinstance(seeds[0], int)


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
