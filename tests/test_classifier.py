"""Behaviour of NeaRClassifier end to end, on real images with a simulated labeler."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from skvf import LabelFilter, NeaRClassifier
from skvf.exceptions import ImageInputError
from skvf.metrics import cluster_accuracy
from skvf.noise import FixedNoiseSplitter
from skvf_bench.datasets import few_shot_split, load_digits_images
from skvf_bench.demo import offline_demo_classifier
from skvf_bench.simulation import NoisyOracleLabeler, make_oracle


@pytest.fixture(autouse=True)
def _quiet_open_clip(caplog):
    # open_clip warns on the root logger that random-init models have no pretrained
    # weights; caplog restores the level after each test.
    caplog.set_level(logging.ERROR)


class CountingLabeler(NoisyOracleLabeler):
    """A simulated labeler that counts the images it is asked to name."""

    calls: list = []

    def transform(self, X):
        CountingLabeler.calls.append(len(X))
        return super().transform(X)


class ConstantLabeler:
    """A labeler that answers one fixed string for every image."""

    def __init__(self, answer="sparrow"):
        self.answer = answer

    def get_params(self, deep=True):
        return {"answer": self.answer}

    def set_params(self, **params):
        self.answer = params.get("answer", self.answer)
        return self

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.asarray([self.answer] * len(X), dtype=object)


@pytest.fixture(scope="module")
def digits():
    images, names = load_digits_images(scale=4)  # 32x32, the tiny tower's input size
    return images, names


@pytest.fixture(scope="module")
def split(digits):
    images, names = digits
    fit_index, test_index = few_shot_split(names, 30, random_state=0, max_test_per_class=40)
    return fit_index, test_index


def make_classifier(images, names, noise_rate=0.4, **params):
    params = {"max_epochs": 200, "warmup_epochs": 50, **params}
    return offline_demo_classifier(images, names, noise_rate=noise_rate, random_state=0, **params)


@pytest.fixture(scope="module")
def fitted(digits, split):
    images, names = digits
    return make_classifier(images, names).fit(images[split[0]])


@pytest.mark.slow
def test_near_beats_coop_on_raw_names(digits, split):
    """The product's claim: with 40% wrong names, refinement beats plain prompt tuning."""
    images, names = digits
    fit_index, test_index = split
    truth = names[test_index]
    coop = make_classifier(images, names, noise_splitter="passthrough", label_filter="passthrough")
    coop_accuracy = cluster_accuracy(truth, coop.fit(images[fit_index]).predict(images[test_index]))
    near = make_classifier(images, names).fit(images[fit_index])
    near_accuracy = cluster_accuracy(truth, near.predict(images[test_index]))
    raw_accuracy = cluster_accuracy(names[fit_index], near.labeler_names_["normalized"])
    assert near_accuracy > coop_accuracy + 0.03, (near_accuracy, coop_accuracy)
    assert near_accuracy > raw_accuracy + 0.05, (near_accuracy, raw_accuracy)


def test_predict_and_proba_follow_classes(fitted, digits, split):
    images, _ = digits
    test = images[split[1][:50]]
    predictions = fitted.predict(test)
    probabilities = fitted.predict_proba(test)
    assert set(predictions) <= set(fitted.classes_)
    assert probabilities.shape == (50, len(fitted.classes_))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(fitted.classes_[probabilities.argmax(axis=1)], predictions)
    assert list(fitted.classes_) == sorted(fitted.classes_)


def test_fitted_diagnostics(fitted, split):
    n_train, n_names = len(split[0]), len(fitted.vocabulary_)
    assert fitted.candidate_sets_.shape == (n_train, n_names)
    own = np.searchsorted(fitted.vocabulary_, fitted.labeler_names_["normalized"])
    assert fitted.candidate_sets_[np.arange(n_train), own].all()  # own name is a candidate
    assert fitted.clean_mask_.shape == (n_train,) and 0 < fitted.clean_mask_.mean() < 1
    np.testing.assert_allclose(fitted.refined_targets_.sum(axis=1), 1.0, atol=1e-9)
    assert len(fitted.history_) == 200
    assert [h["phase"] for h in fitted.history_[49:51]] == ["warmup", "refine"]
    assert fitted.history_[-1]["loss"] < fitted.history_[0]["loss"]
    assert fitted.device_ == ("cuda" if torch.cuda.is_available() else "cpu")  # "auto"
    builder = fitted.candidate_builder_
    own = fitted.labeler_names_["normalized"]
    by_hand = (own[builder.neighbors_] == own[:, None]).mean()
    assert fitted.neighbor_agreement_ == pytest.approx(by_hand)
    assert set(fitted.classes_) <= set(fitted.vocabulary_)


def test_clean_split_is_better_than_chance(fitted, digits, split):
    """Names the GMM calls clean are right more often than the labeler's base rate."""
    _, names = digits
    correct = fitted.labeler_names_["normalized"] == names[split[0]][fitted.train_indices_]
    assert correct[fitted.clean_mask_].mean() > correct.mean() + 0.05


def test_passthrough_stages_give_the_coop_baseline(digits, split):
    images, names = digits
    clf = make_classifier(
        images,
        names,
        candidate_builder="passthrough",
        noise_splitter="passthrough",
        label_filter="passthrough",
        max_epochs=20,
    ).fit(images[split[0]])
    codes = np.searchsorted(clf.vocabulary_, clf.labeler_names_["normalized"])
    assert clf.candidate_sets_.sum(axis=1).tolist() == [1] * len(codes)
    assert clf.clean_mask_.all()
    np.testing.assert_array_equal(clf.refined_targets_.argmax(axis=1), codes)
    assert clf.refined_targets_.max(axis=1).tolist() == [1.0] * len(codes)
    np.testing.assert_array_equal(clf.classes_, clf.vocabulary_)
    assert clf.candidate_builder_ is None and clf.noise_splitter_ is None


def test_all_noisy_ablation_teaches_candidates_only(digits, split):
    images, names = digits
    clf = make_classifier(
        images, names, noise_splitter=FixedNoiseSplitter(0.0), max_epochs=55, warmup_epochs=50
    ).fit(images[split[0]])
    assert not clf.clean_mask_.any()
    assert np.all(clf.refined_targets_[~clf.candidate_sets_] == 0)


@pytest.mark.parametrize("max_epochs, refined_from", [(12, 3), (240, 50)])
def test_auto_warmup_is_a_quarter_of_the_steps_at_most_50(digits, split, max_epochs, refined_from):
    images, names = digits
    clf = make_classifier(images, names, max_epochs=max_epochs, warmup_epochs="auto")
    clf.fit(images[split[0][:60]])
    phases = [entry["phase"] for entry in clf.history_]
    assert phases.index("refine") == refined_from and len(phases) == max_epochs
    assert clf.get_params()["warmup_epochs"] == "auto"  # the parameter is left as given


@pytest.mark.parametrize("image_tower, steps", [("own", 60), ("image_encoder", 200)])
def test_auto_steps_depend_on_whose_image_features_are_tuned_to(digits, split, image_tower, steps):
    images, names = digits
    extra = {"image_encoder": None} if image_tower == "own" else {}
    clf = make_classifier(images, names, max_epochs="auto", warmup_epochs="auto", **extra)
    clf.fit(images[split[0][:40]])
    phases = [entry["phase"] for entry in clf.history_]
    assert len(phases) == steps and phases.index("refine") == min(50, steps // 4)


def _variant_labeler(images, names):
    """True names, but a third of the threes come back as 'threes' or 'thr-ee', and a
    third of the sevens as 'seven digit' or 'digit seven' (one name, words reordered)."""
    return NoisyOracleLabeler(
        make_oracle(images, names),
        noise_rate=0.0,
        synonym_rate=0.3,
        synonyms={"three": ["threes", "thr-ee"], "seven": ["seven digit", "digit seven"]},
        random_state=0,
    )


def test_spelling_variants_are_merged_before_training(digits, split):
    images, names = digits
    train = images[split[0]]
    labeler = _variant_labeler(images, names)
    merged = make_classifier(images, names, labeler=labeler, max_epochs=5, warmup_epochs=2)
    merged.fit(train)
    reordered = {"seven digit", "digit seven"}
    assert {"threes", "thr-ee"} & set(merged.labeler_names_["raw"])  # what the labeler said
    assert reordered <= set(merged.labeler_names_["raw"])
    assert not {"threes", "thr-ee"} & set(merged.vocabulary_)
    # The reordered pair is one name: its more frequent wording.
    (kept_wording,) = reordered & set(merged.vocabulary_)
    assert merged.name_merges_ == {
        "threes": "three",
        "thr-ee": "three",
        (reordered - {kept_wording}).pop(): kept_wording,
    }
    is_three = names[split[0]] == "three"
    assert (merged.labeler_names_["normalized"][is_three] == "three").all()

    kept = make_classifier(
        images, names, labeler=labeler, merge_name_variants=False, max_epochs=5, warmup_epochs=2
    ).fit(train)
    assert kept.name_merges_ == {}
    assert {"threes", "thr-ee"} | reordered <= set(kept.vocabulary_)
    assert len(kept.vocabulary_) == len(merged.vocabulary_) + 3


class SynonymLabeler(NoisyOracleLabeler):
    """A simulated labeler that says "nine" and "eight" are one kind, and counts the asks."""

    asked: list = []

    def group_synonyms(self, names):
        SynonymLabeler.asked.append(list(names))
        return [("eight", "nine")]


def test_auto_asks_for_synonyms_only_where_the_predicted_rule_applies(digits, split, monkeypatch):
    import skvf.candidates

    searches = []
    search = skvf.candidates.nearest_neighbors
    monkeypatch.setattr(
        skvf.candidates,
        "nearest_neighbors",
        lambda *args, **kwargs: searches.append(1) or search(*args, **kwargs),
    )
    images, names = digits
    train, params = images[split[0]], dict(max_epochs=5, warmup_epochs=2)
    labeler = SynonymLabeler(make_oracle(images, names), noise_rate=0.0, random_state=0)
    SynonymLabeler.asked = []
    asked = make_classifier(images, names, labeler=labeler, **params).fit(train)
    assert asked.synonyms_asked_ and len(SynonymLabeler.asked) == 1
    assert sorted(SynonymLabeler.asked[0]) == sorted(set(names[split[0]]))
    assert asked.synonym_merges_ in ({"nine": "eight"}, {"eight": "nine"})
    assert len(asked.vocabulary_) == len(set(names[split[0]])) - 1

    # The merged names are counted over the neighbours already found: one search, and
    # the candidate sets a fit on the merged names gives.
    assert len(searches) == 1
    fresh = clone(asked.candidate_builder_)
    merged_labels = np.searchsorted(asked.vocabulary_, asked.labeler_names_["normalized"])
    encoded = asked.image_encoder_.transform(train)
    refitted = fresh.fit(encoded, merged_labels, n_classes=len(asked.vocabulary_))
    np.testing.assert_array_equal(asked.candidate_sets_, refitted.candidate_sets_)

    # Answers the filter calls broad: the predicted rule is off, so nothing is asked.
    broad = LabelFilter(min_answer_spread=1.0)
    kept = make_classifier(images, names, labeler=labeler, label_filter=broad, **params)
    kept.fit(train)
    assert not kept.synonyms_asked_ and len(SynonymLabeler.asked) == 1
    assert kept.synonym_merges_ == {} and "predicted" not in kept.label_filter_.rules_applied_

    # A labeler that cannot group names is not asked, and the fit goes on.
    plain = make_classifier(images, names, **params).fit(train)
    assert not plain.synonyms_asked_ and plain.synonym_merges_ == {}


def test_the_label_filter_sees_how_the_labeler_spread_its_answers(digits, split):
    images, names = digits
    clf = make_classifier(images, names, max_epochs=5, warmup_epochs=2).fit(images[split[0]])
    given = clf.labeler_names_["normalized"]
    shares = np.array([np.mean(given == name) for name in clf.vocabulary_])
    expected = 1 / np.sum(shares**2) / len(clf.vocabulary_)
    assert clf.label_filter_.answer_spread_ == pytest.approx(expected)
    # Told that such answers are broad, the filter leaves the predicted rule off.
    broad = make_classifier(
        images,
        names,
        max_epochs=5,
        warmup_epochs=2,
        label_filter=LabelFilter(min_answer_spread=min(1.0, expected + 0.01)),
    ).fit(images[split[0]])
    assert "predicted" not in broad.label_filter_.rules_applied_


def test_same_random_state_same_predictions_and_y_is_ignored(digits, split):
    images, names = digits
    train, test = images[split[0]], images[split[1][:60]]
    first = make_classifier(images, names, max_epochs=60).fit(train)
    second = make_classifier(images, names, max_epochs=60).fit(train, names[split[0]][::-1])
    np.testing.assert_array_equal(first.predict(test), second.predict(test))
    np.testing.assert_array_equal(first.predict_proba(test), second.predict_proba(test))


def test_score_is_cluster_accuracy(fitted, digits, split):
    images, names = digits
    test = images[split[1][:80]]
    expected = cluster_accuracy(names[split[1][:80]], fitted.predict(test))
    assert fitted.score(test, names[split[1][:80]]) == pytest.approx(expected)


def test_clip_image_tower_path_paths_pil_and_arrays_agree(digits, tmp_path):
    """With no image_encoder the frozen CLIP image tower gives the features."""
    images, names = digits
    index = np.r_[0:40, 1000:1040]
    clf = make_classifier(images, names, image_encoder=None, max_epochs=10, warmup_epochs=5)
    clf.fit(images[index])
    assert clf.image_encoder_ is None and clf.projection_ is None
    paths = []
    for position in range(5):
        path = tmp_path / f"digit_{position}.png"
        Image.fromarray(images[position]).save(path)
        paths.append(str(path))
    pil_images = [Image.fromarray(image) for image in images[:5]]
    from_paths = clf.predict_proba(paths)
    np.testing.assert_allclose(from_paths, clf.predict_proba(pil_images), atol=1e-6)
    np.testing.assert_allclose(from_paths, clf.predict_proba(images[:5]), atol=1e-6)


@pytest.mark.parametrize(
    "params, expected_rows",
    [
        ({"image_encoder": None}, 4),  # "auto": "a photo of a", 4 tokens
        ({"image_encoder": None, "n_ctx": 8}, 8),  # a given n_ctx: a random context
        ({}, 16),  # with an image_encoder: a random context of 16
        ({"image_encoder": None, "ctx_init": None}, 16),
    ],
)
def test_ctx_init_auto_starts_from_the_zero_shot_prompt_on_the_own_tower(
    digits, params, expected_rows
):
    from skvf._prompt import build_prompt_learner

    images, names = digits
    clf = make_classifier(images, names, max_epochs=1, warmup_epochs=0, **params)
    clf.fit(images[np.r_[0:20, 1000:1020]])
    assert clf.ctx_init == "auto" or "ctx_init" in params
    assert clf.context_.shape[0] == expected_rows
    if expected_rows == 4:  # the phrase's own token embeddings, moved by one Adam step
        backbone = clf._runtime_backbone()
        phrase = build_prompt_learner(backbone, ["x"], None, "a photo of a", False)
        moved = np.abs(clf.context_ - phrase.context_numpy())
        assert 0 < moved.max() <= 1.01 * clf.learning_rate


def test_model_fitted_for_cuda_predicts_on_cpu_after_loading(digits):
    """Fitted state is numpy only, so a GPU-fitted model needs no GPU to predict."""
    import pickle

    import torch

    images, names = digits
    index = np.r_[0:40, 1000:1040]
    clf = make_classifier(images, names, image_encoder=None, max_epochs=5, warmup_epochs=2)
    expected = clf.fit(images[index]).predict_proba(images[:20])
    clf.set_params(device="cuda").device_ = "cuda"  # as fitted on a GPU
    loaded = pickle.loads(pickle.dumps(clf))
    assert "_backbone" not in vars(loaded)
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the CPU fallback cannot be exercised")
    state = dict(vars(loaded))
    with pytest.warns(UserWarning, match="device='cuda' is not available here") as record:
        probabilities = loaded.predict_proba(images[:20])
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    assert record[0].filename == __file__  # the warning points at the caller's line
    assert vars(loaded).keys() == state.keys()  # predict stores nothing
    assert loaded.device_ == "cuda"


def test_memory_makes_refits_free(digits, tmp_path):
    images, names = digits
    index = np.r_[0:40, 1000:1040]
    labeler = CountingLabeler(make_oracle(images, names), noise_rate=0.3, random_state=0)
    params = dict(labeler=labeler, image_encoder=None, max_epochs=5, memory=tmp_path)
    CountingLabeler.calls = []
    first = make_classifier(images, names, **params).fit(images[index])
    assert first.n_labeler_calls_ == 80 and first.n_images_encoded_ == 80
    assert CountingLabeler.calls == [80]
    second = make_classifier(images, names, **params).fit(images[index[::2]])  # a "CV fold"
    assert second.n_labeler_calls_ == 0 and second.n_images_encoded_ == 0
    assert CountingLabeler.calls == [80]
    changed = make_classifier(
        images, names, **{**params, "labeler": labeler.set_params(noise_rate=0.5)}
    ).fit(images[index])
    assert changed.n_labeler_calls_ == 80  # labeler parameters are part of the key
    assert changed.n_images_encoded_ == 0


class PacedLabeler(CountingLabeler):
    """A labeler with a parameter that changes how fast it answers, not what."""

    answer_neutral_params = frozenset({"pace"})

    def __init__(self, oracle, noise_rate=0.4, random_state=0, pace=1):
        super().__init__(oracle, noise_rate=noise_rate, random_state=random_state)
        self.pace = pace


def test_the_labeler_names_its_answer_neutral_parameters(digits, tmp_path):
    # The classifier names no labeler parameter: the labeler says which of its own
    # leave the answers unchanged, and only those stay out of the answer-cache key.
    images, names = digits
    index = np.r_[0:20, 1000:1020]
    oracle = make_oracle(images, names)

    def fit(labeler):
        params = dict(labeler=labeler, max_epochs=2, warmup_epochs=1, memory=tmp_path)
        return make_classifier(images, names, **params).fit(images[index]).n_labeler_calls_

    assert fit(PacedLabeler(oracle, pace=1)) == 40
    assert fit(PacedLabeler(oracle, pace=8)) == 0
    assert fit(PacedLabeler(oracle, pace=8, random_state=1)) == 40


# -- bad input ------------------------------------------------------------------------------


class SelfStoringLabeler(CountingLabeler):
    """A labeler that says it stores its own answers."""

    keeps_answers = True


def test_memory_stores_no_answer_of_a_labeler_that_keeps_its_own(digits, tmp_path):
    # Each answer lives in one store: the labeler's, not memory.
    images, names = digits
    index = np.r_[0:20, 1000:1020]
    labeler = SelfStoringLabeler(make_oracle(images, names), noise_rate=0.3, random_state=0)
    params = dict(labeler=labeler, max_epochs=2, warmup_epochs=1, memory=tmp_path)
    CountingLabeler.calls = []
    first = make_classifier(images, names, **params).fit(images[index])
    second = make_classifier(images, names, **params).fit(images[index])
    assert CountingLabeler.calls == [40, 40]  # memory answered nothing: the labeler was asked
    assert first.n_labeler_calls_ == second.n_labeler_calls_ == 40
    assert not [path for path in tmp_path.iterdir() if path.name.startswith("labels-")]


def test_empty_input_is_refused(digits):
    images, names = digits
    with pytest.raises(ValueError, match="X is empty"):
        make_classifier(images, names).fit([])


def test_single_distinct_name_is_refused(digits):
    images, names = digits
    clf = make_classifier(images, names, labeler=ConstantLabeler("sparrow"), image_encoder=None)
    with pytest.raises(ValueError, match="same name \\('sparrow'\\) to all 30"):
        clf.fit(images[:30])


def test_too_few_images_for_the_neighbours(digits):
    images, names = digits
    few = images[np.r_[0, 1, 2, 1000]]
    with pytest.raises(ValueError, match="n_neighbors=5 needs at least 6 images, got 4"):
        make_classifier(images, names, noise_rate=0.0, image_encoder=None).fit(few)


def test_empty_name_from_labeler_is_refused(digits):
    images, names = digits
    clf = make_classifier(images, names, labeler=ConstantLabeler('"..."'), image_encoder=None)
    with pytest.raises(ValueError, match="empty after normalisation"):
        clf.fit(images[:10])


def test_bad_image_is_named_by_index_and_path(digits, tmp_path):
    images, names = digits
    items = [images[0], images[1], str(tmp_path / "missing.png"), images[2]]
    with pytest.raises(ImageInputError, match=r"X\[2\] \('.*missing.png'\): file not found"):
        make_classifier(images, names).fit(items)


def test_skip_drops_bad_images_in_fit_and_marks_them_in_predict(digits, split, tmp_path):
    images, names = digits
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg at all")
    train = list(images[split[0]])
    train.insert(7, str(corrupt))
    clf = make_classifier(images, names, on_error="skip", max_epochs=20, warmup_epochs=10)
    with pytest.warns(UserWarning, match="1 training item") as record:
        clf.fit(train)
    assert record[0].filename == __file__  # the caller's line, not skvf's
    with pytest.warns(UserWarning, match="1 training item") as record:
        GridSearchCV(clf, {"max_epochs": [20]}, cv=[(np.arange(len(train)), np.arange(4))]).fit(
            train
        )
    ours = [w for w in record if "training item" in str(w.message)]
    assert {warning.filename for warning in ours} == {__file__}  # through sklearn and joblib
    assert len(clf.train_indices_) == len(split[0]) and 7 not in clf.train_indices_
    assert "X[7]" in clf.skipped_[0] and "corrupt.jpg" in clf.skipped_[0]
    predictions = clf.predict([images[0], str(corrupt), images[1]])
    assert predictions[1] is None and predictions[0] in clf.classes_
    assert np.isnan(clf.predict_proba([str(corrupt)])).all()


def test_bad_image_in_a_later_predict_chunk_keeps_its_index(fitted, digits, tmp_path):
    images, _ = digits
    items = list(images[:300]) + [str(tmp_path / "gone.png")]
    with pytest.raises(ImageInputError, match=r"X\[300\]"):
        fitted.predict(items)


def test_feature_rows_need_an_image_encoder(digits):
    images, names = digits
    clf = make_classifier(images, names, image_encoder=None)
    with pytest.raises(ValueError, match="2-D numeric array of shape \\(10, 4\\)"):
        clf.fit(np.zeros((10, 4)))


def test_labeler_must_return_one_name_per_image(digits):
    images, names = digits

    class ShortLabeler(ConstantLabeler):
        def transform(self, X):
            return np.asarray(["a", "b"], dtype=object)

    with pytest.raises(ValueError, match="returned 2 names for 10 images"):
        make_classifier(images, names, labeler=ShortLabeler(), image_encoder=None).fit(images[:10])


def test_invalid_parameter_is_named(digits):
    images, names = digits
    with pytest.raises(ValueError, match="'warmup_epochs' parameter"):
        make_classifier(images, names, warmup_epochs=-1).fit(images[:20])


def test_unknown_weights_are_refused_without_network(digits):
    from skvf.exceptions import BackboneError

    images, names = digits
    with pytest.raises(BackboneError, match="neither a weights file nor a known tag"):
        make_classifier(images, names, pretrained="/no/such/weights.bin").fit(images[:20])


def test_nested_params_reach_default_components():
    from sklearn.base import clone

    from skvf import GMMNoiseSplitter, NeighborCandidateBuilder

    clf = clone(NeaRClassifier()).set_params(
        candidate_builder__n_neighbors=3, noise_splitter__threshold=0.6
    )
    assert isinstance(clf.candidate_builder, NeighborCandidateBuilder)
    assert clf.candidate_builder.n_neighbors == 3
    assert isinstance(clf.noise_splitter, GMMNoiseSplitter)
    assert clf.noise_splitter.threshold == 0.6
    assert clf.label_filter is None  # untouched components keep their default marker


# -- the fitted state -------------------------------------------------------------------


def fitted_attribute_assignments():
    """(method, attribute) for every ``self.<name>_ = ...`` in classifier.py."""
    import ast
    import inspect

    import skvf.classifier

    tree = ast.parse(inspect.getsource(skvf.classifier))
    found = []
    for method in ast.walk(tree):
        if not isinstance(method, ast.FunctionDef):
            continue
        for node in ast.walk(method):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                for leaf in ast.walk(target):
                    if (
                        isinstance(leaf, ast.Attribute)
                        and isinstance(leaf.value, ast.Name)
                        and leaf.value.id == "self"
                        and leaf.attr.endswith("_")
                        and not leaf.attr.startswith("_")
                    ):
                        found.append((method.name, leaf.attr))
    return found


def test_every_fitted_attribute_is_assigned_in_fit():
    assignments = fitted_attribute_assignments()
    assert len(assignments) > 20
    assert {method for method, _ in assignments} == {"fit"}


def test_every_fitted_attribute_is_documented(digits, split):
    images, names = digits
    clf = make_classifier(images, names, max_epochs=4, warmup_epochs=2).fit(images[split[0]])
    fitted = {name for name in vars(clf) if name.endswith("_") and not name.startswith("_")}
    documented = set(re.findall(r"^    (\w+_)(?: :|,)", NeaRClassifier.__doc__, re.M))
    documented |= set(re.findall(r"^    \w+_, (\w+_)", NeaRClassifier.__doc__, re.M))
    documented |= set(re.findall(r"^    \w+_, \w+_, (\w+_)", NeaRClassifier.__doc__, re.M))
    assert fitted - documented == set()
    assert {"context_", "logit_scale_", "class_text_features_", "feature_mean_"} <= documented
