"""Re-asking: which images are asked again, with which names, and what fit does with it."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.base import BaseEstimator

from skvf import NeaRClassifier
from skvf.labeling import cached_choices, cached_labels
from skvf.reasking import (
    check_reask_labeler,
    choice_indices,
    contradiction,
    generic_names,
    reask_contradicted,
    select_for_reasking,
)
from skvf_bench.demo import TINY_BACKBONE_PARAMS
from skvf_bench.finegrained import load_fine_garments
from skvf_bench.simulated_mllm import make_simulated_mllm
from skvf_bench.simulation import NoisyOracleLabeler, make_oracle

# Four images, three names; self weight 1 and three neighbours each.
LABELS = np.array([0, 0, 1, 2])
VOTES = np.array(
    [
        [4.0, 0.0, 0.0],  # every neighbour agrees: consistent
        [1.0, 3.0, 0.0],  # every neighbour names 1: contradicted
        [1.0, 2.0, 1.0],  # own name 1 leads: consistent
        [2.0, 0.0, 2.0],  # a tie with name 0: contradicted, less strongly
    ]
)


def test_contradiction_is_the_strongest_rivals_lead_over_the_own_name():
    np.testing.assert_allclose(contradiction(LABELS, VOTES), [-1.0, 0.5, -0.25, 0.0])


def test_a_contradicted_image_is_selected_and_a_consistent_one_is_not():
    selected = select_for_reasking(LABELS, VOTES, budget=1.0)
    assert selected.tolist() == [1, 3]  # most contradicted first


def test_the_budget_is_a_share_of_the_images_rounded_down():
    assert select_for_reasking(LABELS, VOTES, budget=0.25).tolist() == [1]
    assert select_for_reasking(LABELS, VOTES, budget=0.49).tolist() == [1]
    assert select_for_reasking(LABELS, VOTES, budget=0.2).tolist() == []
    assert select_for_reasking(LABELS, VOTES, budget=0.0).tolist() == []
    with pytest.raises(ValueError, match="budget must be a share"):
        select_for_reasking(LABELS, VOTES, budget=1.5)


def test_the_order_is_deterministic_ties_broken_by_rival_share_then_position():
    labels = np.array([0, 1, 0, 1, 0])
    votes = np.array(
        [
            [2.0, 2.0],  # tie, own share 1/2
            [3.0, 1.0],  # out-voted 3 to 1
            [1.0, 1.0],  # tie, own share 1/2
            [5.0, 1.0],  # out-voted 5 to 1: the most contradicted
            [2.0, 2.0],  # tie, own share 1/2
        ]
    )
    first = select_for_reasking(labels, votes, budget=1.0)
    assert first.tolist() == [3, 1, 0, 2, 4]
    shuffled = np.random.default_rng(0).permutation(5)
    again = select_for_reasking(labels[shuffled], votes[shuffled], budget=1.0)
    assert shuffled[again].tolist()[:2] == [3, 1]  # strengths do not depend on position


def test_a_generic_name_is_selected_when_neighbours_offer_another():
    # Name 0 is given to 10 of 14 images: generic; its images lead their own votes.
    labels = np.array([0] * 10 + [1, 2, 3, 4])
    votes = np.zeros((14, 5))
    votes[np.arange(14), labels] = 3.0
    votes[0, 1] = 1.0  # a neighbour of image 0 names 1
    votes[10, 0] = 1.0  # a fine name's image with a generic neighbour: consistent
    assert generic_names(labels, 5).tolist() == [True, False, False, False, False]
    # Image 0 is selected; the other images of the generic name have no other name to
    # choose, and image 10's own name leads.
    assert select_for_reasking(labels, votes, budget=1.0).tolist() == [0]
    assert select_for_reasking(labels, votes, budget=1.0, coverage=20.0).tolist() == []


def test_choices_are_the_own_name_and_the_most_voted_others_in_index_order():
    votes = np.array([[1.0, 0.0, 2.0, 3.0, 2.0, 1.0]])
    labels = np.array([5])
    assert choice_indices(labels, votes, np.array([0]), 3)[0].tolist() == [2, 3, 5]
    assert choice_indices(labels, votes, np.array([0]), 4)[0].tolist() == [2, 3, 4, 5]
    assert choice_indices(labels, votes, np.array([0]), 9)[0].tolist() == [0, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="at least 2"):
        choice_indices(labels, votes, np.array([0]), 1)


class ChoosingLabeler(BaseEstimator):
    """Names every item "cat"; chooses the last name offered, except "none" for item 'b'."""

    def __init__(self, tag="x"):
        self.tag = tag

    def fit(self, X, y=None):
        self.asked_ = []
        return self

    def transform(self, X):
        return np.asarray(["cat"] * len(X), dtype=object)

    def choose(self, X, choices):
        self.asked_.append([list(options) for options in choices])
        names = [
            None if item == "b" else options[-1] for item, options in zip(X, choices, strict=True)
        ]
        return names, [name is not None for name in names]


def test_reask_replaces_a_name_only_with_a_choice_and_counts_the_calls(tmp_path):
    vocabulary = np.array(["cat", "dog", "owl"], dtype=object)
    items, digests = ["a", "b", "c", "d"], ["da", "db", "dc", "dd"]
    raw = np.array(["Cat", "Cat", "Dog", "OWL"], dtype=object)
    labeler = ChoosingLabeler().fit(items)
    result = reask_contradicted(
        labeler, 1.0, 5, items, digests, np.arange(4), raw, LABELS, VOTES, vocabulary, tmp_path
    )
    assert result.positions.tolist() == [1, 3] and result.n_asked == 2
    assert labeler.asked_ == [[["cat", "dog"], ["cat", "owl"]]]
    # Item b answered none of these: it keeps its name; item d chose "owl", its own.
    assert result.changed.tolist() == [False, False]
    assert result.first_names.tolist() == ["cat", "owl"]
    assert result.raw_names.tolist() == raw.tolist()

    labels = np.array([0, 0, 1, 0])  # item d named "cat": now its choice changes it
    again = reask_contradicted(
        labeler, 1.0, 5, items, digests, np.arange(4), raw, labels, VOTES, vocabulary, tmp_path
    )
    # The same names are offered to the same images: both answers come from the store.
    assert again.positions.tolist() == [1, 3] and again.n_asked == 0
    assert len(labeler.asked_) == 1
    assert again.changed.tolist() == [False, True]
    assert again.raw_names.tolist() == ["Cat", "Cat", "Dog", "owl"]


def test_the_memory_store_keeps_first_names_and_choices_apart(tmp_path):
    labeler = ChoosingLabeler().fit(None)
    names, n_named = cached_labels(labeler, ["a"], ["da"], tmp_path)
    assert names.tolist() == ["cat"] and n_named == 1
    chosen, n_asked = cached_choices(labeler, ["a"], ["da"], [["cat", "dog"]], tmp_path)
    assert chosen.tolist() == ["dog"] and n_asked == 1  # not the stored first name
    chosen, n_asked = cached_choices(labeler, ["a"], ["da"], [["cat", "owl"]], tmp_path)
    assert chosen.tolist() == ["owl"] and n_asked == 1  # other names: asked again
    chosen, n_asked = cached_choices(labeler, ["a"], ["da"], [["cat", "dog"]], tmp_path)
    assert chosen.tolist() == ["dog"] and n_asked == 0
    assert cached_labels(labeler, ["a"], ["da"], tmp_path)[1] == 0


def test_a_choice_that_was_not_offered_is_refused(tmp_path):
    class Wayward(ChoosingLabeler):
        def choose(self, X, choices):
            return ["lion"] * len(X), [True] * len(X)

    with pytest.raises(ValueError, match="chose 'lion' for image 0, which is not one of"):
        cached_choices(Wayward().fit(None), ["a"], ["da"], [["cat", "dog"]], None)


def test_reask_needs_a_labeler_that_can_choose():
    check_reask_labeler(object(), 0.0)  # off: any labeler
    check_reask_labeler(ChoosingLabeler(), 0.2)
    with pytest.raises(TypeError, match=r"reask=0.2 .* NoisyOracleLabeler has no choose"):
        check_reask_labeler(NoisyOracleLabeler({}), 0.2)


# -- in NeaRClassifier ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def _quiet_open_clip(caplog):
    caplog.set_level(logging.ERROR)  # open_clip: random-init weights


@pytest.fixture(scope="module")
def garments():
    return load_fine_garments("benchmark", n_per_class=4, image_size=32, garments=["trouser"])


def _classifier(labeler, **params):
    # Without merging, a training name is the labeler's answer normalised, nothing else.
    return NeaRClassifier(
        labeler=labeler,
        **TINY_BACKBONE_PARAMS,
        merge_name_variants=False,
        merge_synonyms=False,  # the names and the choices are every request
        max_epochs=4,
        random_state=0,
        **params,
    )


def test_fit_reasks_at_most_its_share_and_changes_names_only_to_choices(garments, tmp_path):
    labeler = make_simulated_mllm(garments, profile="weak", random_state=0)
    plain = _classifier(labeler).fit(garments.images)
    assert plain.reasked_.tolist() == [] and plain.reask_changed_.tolist() == []

    clf = _classifier(labeler, reask=0.2, memory=tmp_path).fit(garments.images)
    n_train = len(clf.train_indices_)
    assert 0 < len(clf.reasked_) <= 0.2 * n_train
    assert np.all(np.diff(clf.reasked_) > 0)
    assert clf.n_labeler_calls_ == n_train + len(clf.reasked_)
    assert clf.reask_changed_.any()
    first = plain.labeler_names_["normalized"]
    np.testing.assert_array_equal(clf.reask_first_names_, first[clf.reasked_])
    # Names change only where re-asked, and only to a name of the first vocabulary
    # other than the first one, that the neighbours voted for.
    now = clf.labeler_names_["normalized"]
    changed = np.flatnonzero(now != first)
    assert set(changed) == set(clf.reasked_[clf.reask_changed_])
    votes = plain.candidate_sets_
    for row in changed:
        assert votes[row, np.searchsorted(plain.vocabulary_, now[row])]
    # The candidate sets are rebuilt from the new names.
    own = np.searchsorted(clf.vocabulary_, now)
    assert clf.candidate_sets_[np.arange(n_train), own].all()

    again = _classifier(labeler, reask=0.2, memory=tmp_path).fit(garments.images)
    assert again.n_labeler_calls_ == 0  # first names and choices from memory
    np.testing.assert_array_equal(again.labeler_names_["normalized"], now)


def test_a_labeler_without_choose_is_refused_before_anything_runs(garments):
    labeler = NoisyOracleLabeler(make_oracle(garments.images, garments.names))
    with pytest.raises(TypeError, match="reask=0.5 asks the labeler to choose"):
        _classifier(labeler, reask=0.5).fit(garments.images)
