"""Tests of skvf.filtering: the final vocabulary is predicted-on-train and candidate-supported."""

from __future__ import annotations

import numpy as np
import pytest

from skvf._sklearn_compat import InvalidParameterError
from skvf.filtering import LabelFilter, filter_vocabulary


def _label_filter(**params):
    """A LabelFilter whose support rule applies to these few images (see the last tests)."""
    return LabelFilter(**{"min_images_per_supported_name": None, **params})


def test_docstring_example():
    proba = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    votes = np.array([[3, 0, 1], [0, 4, 0], [2, 1, 0]])
    label_filter = LabelFilter().fit(proba, votes)
    assert label_filter.keep_mask_.tolist() == [True, True, False]
    assert label_filter.predicted_counts_.tolist() == [1, 2, 0]
    assert label_filter.supported_counts_.tolist() == [2, 1, 0]


def test_intersection_rule():
    # class 0: predicted and supported -> kept
    # class 1: predicted, never a top candidate -> dropped
    # class 2: top candidate, never predicted -> dropped
    # class 3: neither -> dropped
    proba = np.array(
        [
            [0.7, 0.1, 0.1, 0.1],
            [0.1, 0.7, 0.1, 0.1],
            [0.6, 0.2, 0.1, 0.1],
        ]
    )
    votes = np.array(
        [
            [3, 1, 0, 1],
            [1, 0, 4, 0],
            [1, 2, 3, 0],
        ]
    )
    label_filter = _label_filter().fit(proba, votes)
    assert label_filter.predicted_counts_.tolist() == [2, 1, 0, 0]
    assert label_filter.supported_counts_.tolist() == [1, 0, 2, 0]
    assert label_filter.keep_mask_.tolist() == [True, False, False, False]


def test_predicted_and_supported_on_different_images_is_enough():
    # name 1 is predicted on image 0 only and is the top candidate of image 1 only
    proba = np.array([[0.2, 0.8], [0.9, 0.1]])
    votes = np.array([[2, 1], [1, 3]])
    assert _label_filter().fit(proba, votes).keep_mask_.tolist() == [True, True]


def _counts_case():
    # predicted counts [3, 2, 1], supported counts [1, 2, 3]
    proba = np.eye(3)[[0, 0, 0, 1, 1, 2]] * 0.8 + 0.2 / 3
    votes = np.eye(3)[[0, 1, 1, 2, 2, 2]] * 5 + 1
    return proba, votes


@pytest.mark.parametrize(
    ("min_predicted", "min_supported", "kept"),
    [
        (1, 1, [True, True, True]),
        (2, 1, [True, True, False]),
        (3, 1, [True, False, False]),
        (4, 1, [False, False, False]),
        (1, 2, [False, True, True]),
        (1, 3, [False, False, True]),
        (2, 2, [False, True, False]),
        (3, 3, [False, False, False]),
    ],
)
def test_min_predicted_and_min_supported_thresholds(min_predicted, min_supported, kept):
    proba, votes = _counts_case()
    label_filter = _label_filter(min_predicted=min_predicted, min_supported=min_supported)
    label_filter.fit(proba, votes)
    assert label_filter.predicted_counts_.tolist() == [3, 2, 1]
    assert label_filter.supported_counts_.tolist() == [1, 2, 3]
    assert label_filter.keep_mask_.tolist() == kept


def test_counts_cover_every_class_and_sum_to_n_samples():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(7), size=25)
    votes = rng.random((25, 7)) * 4  # no ties
    label_filter = _label_filter().fit(proba, votes)
    assert label_filter.predicted_counts_.shape == (7,)
    assert label_filter.supported_counts_.shape == (7,)
    assert label_filter.predicted_counts_.sum() == 25
    assert label_filter.supported_counts_.sum() == 25
    assert label_filter.keep_mask_.dtype == bool


def test_accepts_lists():
    label_filter = _label_filter().fit([[0.9, 0.1]], [[1, 0]])
    assert label_filter.keep_mask_.tolist() == [True, False]


def test_tied_top_candidates_do_not_depend_on_class_order():
    # Image 0 was named "2" and its one neighbour "0": a 1-1 tie. The model predicts 2.
    proba = np.array([[0.1, 0.1, 0.8], [0.8, 0.1, 0.1]])
    votes = np.array([[1, 0, 1], [1, 0, 0]])
    kept = _label_filter().fit(proba, votes).keep_mask_
    # reversing the class order must reverse the decision, name for name
    kept_reversed = _label_filter().fit(proba[:, ::-1], votes[:, ::-1]).keep_mask_
    assert kept.tolist() == kept_reversed[::-1].tolist()


def test_tied_top_votes_are_shared():
    # image 0: names 0 and 2 tie; image 1: names 0, 1 and 2 tie; image 2: name 1 alone
    votes = np.array([[2, 0, 2], [1, 1, 1], [0, 3, 1]])
    proba = np.eye(3)[[0, 1, 2]]
    label_filter = _label_filter(min_support_share=0).fit(proba, votes)
    assert label_filter.supported_counts_ == pytest.approx(
        [1 / 2 + 1 / 3, 1 / 3 + 1, 1 / 2 + 1 / 3]
    )
    assert label_filter.supported_counts_.sum() == pytest.approx(3)
    # name 0 and name 2 only ever share a top vote: below one image's worth of support
    assert label_filter.keep_mask_.tolist() == [False, True, False]
    assert _label_filter(min_supported=0.8, min_support_share=0).fit(proba, votes).keep_mask_.all()


def _synonym_case():
    # 40 images of each of two classes, named "a" and "b"; 4 images of class a are named
    # with its synonym "a2", whose neighbours are class-a images named "a": "a2" leads
    # no neighbourhood but is predicted on the images that carry it.
    labels = np.r_[np.zeros(36), np.full(4, 2), np.ones(40)].astype(int)
    votes = np.zeros((80, 3))
    votes[np.arange(80), labels] = 1  # own name
    votes[:40, 0] += 4  # four neighbours named "a"
    votes[40:, 1] += 4
    votes[[36, 37], 2] += 4  # two of the "a2" images are each other's neighbours...
    votes[[36, 37], 0] -= 4  # ...and so lead their own neighbourhood
    proba = np.eye(3)[labels]
    return proba, votes


def test_support_share_drops_names_that_lead_no_real_neighbourhood():
    proba, votes = _synonym_case()
    lenient = _label_filter(min_support_share=0).fit(proba, votes)
    assert lenient.supported_counts_.tolist() == [38, 40, 2]
    assert lenient.keep_mask_.tolist() == [True, True, True]
    strict = _label_filter().fit(proba, votes)  # 2 < 0.25 * mean(38, 40, 2) = 6.67
    assert strict.keep_mask_.tolist() == [True, True, False]
    assert _label_filter(min_support_share=0.05).fit(proba, votes).keep_mask_.all()


def test_support_share_is_scale_free():
    proba, votes = _synonym_case()
    small = _label_filter().fit(proba, votes).keep_mask_
    # ten times as many images of every kind: the same names survive
    large = _label_filter().fit(np.repeat(proba, 10, axis=0), np.repeat(votes, 10, axis=0))
    assert large.keep_mask_.tolist() == small.tolist()


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"min_predicted": 0}, "min_predicted"),
        ({"min_predicted": 1.5}, "min_predicted"),
        ({"min_supported": 0}, "min_supported"),
        ({"min_support_share": 1.0}, "min_support_share"),
        ({"min_support_share": -0.1}, "min_support_share"),
        ({"min_images_per_name": -1.0}, "min_images_per_name"),
        ({"min_images_per_name": "many"}, "min_images_per_name"),
    ],
)
def test_parameter_validation_names_the_parameter(params, name):
    with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter of LabelFilter"):
        _label_filter(**params).fit([[0.9, 0.1]], [[1, 0]])


def test_rules_apply_only_when_neighbours_share_names():
    # Four names: the third leads no neighbourhood, the fourth is never predicted.
    proba = np.array([[0.9, 0.05, 0.03, 0.02], [0.1, 0.8, 0.05, 0.05], [0.1, 0.1, 0.7, 0.1]])
    votes = np.array([[3, 1, 1, 1], [0, 4, 1, 1], [2, 1, 1, 0]])
    both = ("predicted", "supported")
    shared = _label_filter().fit(proba, votes, name_agreement=0.4)
    assert shared.rules_applied_ == both and shared.keep_mask_.tolist() == [1, 1, 0, 0]
    unknown = _label_filter().fit(proba, votes)
    assert unknown.rules_applied_ == both and unknown.keep_mask_.tolist() == [1, 1, 0, 0]
    # Neighbours seldom carry an image's own name, and there are fewer images than
    # names (0.75 per name): no evidence, every name is kept.
    seldom = _label_filter().fit(proba, votes, name_agreement=0.06)
    assert seldom.rules_applied_ == () and seldom.keep_mask_.all()
    always = _label_filter(min_name_agreement=0.0).fit(proba, votes, name_agreement=0.06)
    assert always.keep_mask_.tolist() == [True, True, False, False]


def test_recurring_names_keep_the_predicted_rule_when_neighbours_disagree():
    # The same four names over 6 images (1.5 per name): the third, unsupported but
    # predicted, stays; the fourth, never predicted, goes.
    proba = np.array([[0.9, 0.05, 0.03, 0.02], [0.1, 0.8, 0.05, 0.05], [0.1, 0.1, 0.7, 0.1]])
    votes = np.array([[3, 1, 1, 1], [0, 4, 1, 1], [2, 1, 1, 0]])
    proba, votes = np.repeat(proba, 2, axis=0), np.repeat(votes, 2, axis=0)
    recurring = _label_filter().fit(proba, votes, name_agreement=0.06)
    assert recurring.rules_applied_ == ("predicted",)
    assert recurring.keep_mask_.tolist() == [True, True, True, False]
    # One image fewer than 1.5 per name, or the gate switched off: every name is kept.
    fewer = _label_filter().fit(proba[:5], votes[:5], name_agreement=0.06)
    assert fewer.rules_applied_ == () and fewer.keep_mask_.all()
    off = _label_filter(min_images_per_name=None).fit(proba, votes, name_agreement=0.06)
    assert off.rules_applied_ == () and off.keep_mask_.all()
    # A lower threshold reaches fewer images per name.
    lower = _label_filter(min_images_per_name=1.0).fit(proba[:5], votes[:5], name_agreement=0.06)
    assert lower.keep_mask_.tolist() == [True, True, True, False]


def test_filter_vocabulary_passes_agreement_only_to_filters_that_take_it():
    proba = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    votes = np.array([[3, 1, 1], [0, 4, 1], [2, 1, 1]])

    class TwoArgumentFilter:
        def fit(self, probabilities, candidate_votes):
            self.keep_mask_ = np.array([True, False, True])
            return self

    assert filter_vocabulary(_label_filter(), proba, votes, 0.06).all()
    assert not filter_vocabulary(_label_filter(), proba, votes, 0.4).all()
    assert filter_vocabulary(TwoArgumentFilter(), proba, votes, 0.06).tolist() == [
        True,
        False,
        True,
    ]


def _generic_answers():
    """Six images: a generic name (0) given to four, two fine names to one each.

    The model, trained mostly toward the generic name, predicts it on every image.
    """
    probabilities = np.array([[0.8, 0.1, 0.1]] * 4 + [[0.6, 0.35, 0.05], [0.6, 0.05, 0.35]])
    votes = np.eye(3)[[0, 0, 0, 0, 1, 2]] * 3  # every image supports its own name
    labels = np.array([0, 0, 0, 0, 1, 2])
    return probabilities, votes, labels


def test_concentrated_answers_turn_the_predicted_rule_off():
    probabilities, votes, labels = _generic_answers()
    label_filter = _label_filter().fit(probabilities, votes, labels=labels)
    shares = np.array([4, 1, 1]) / 6
    assert label_filter.answer_spread_ == pytest.approx(1 / np.sum(shares**2) / 3)  # 0.67
    assert label_filter.predicted_counts_.tolist() == [6, 0, 0]
    # Answers spread over 0.67 of the names: the rule applies and drops the fine names.
    assert label_filter.rules_applied_ == ("predicted", "supported")
    assert label_filter.keep_mask_.tolist() == [True, False, False]
    # A stricter spread calls these answers broad: the model's argmax is no evidence.
    broad = _label_filter(min_answer_spread=0.7).fit(probabilities, votes, labels=labels)
    assert broad.rules_applied_ == ("supported",)
    assert broad.keep_mask_.tolist() == [True, True, True]


def test_the_answer_spread_gate_needs_the_labels_and_can_be_switched_off():
    probabilities, votes, labels = _generic_answers()
    unknown = _label_filter(min_answer_spread=0.7).fit(probabilities, votes)
    assert np.isnan(unknown.answer_spread_)
    assert unknown.keep_mask_.tolist() == [True, False, False]
    off = _label_filter(min_answer_spread=None).fit(probabilities, votes, labels=labels)
    assert off.keep_mask_.tolist() == [True, False, False]


def test_filter_vocabulary_hands_the_labels_to_filters_that_take_them():
    probabilities, votes, labels = _generic_answers()
    broad = _label_filter(min_answer_spread=0.7)
    assert filter_vocabulary(broad, probabilities, votes, 0.5, labels).all()
    assert not filter_vocabulary(broad, probabilities, votes, 0.5).all()


@pytest.mark.parametrize(
    "labels", [np.array([0, 0, 1]), np.array([0, 0, 0, 0, 1, 3]), np.array([0.0] * 6)]
)
def test_labels_of_the_wrong_shape_or_range_are_refused(labels):
    probabilities, votes, _ = _generic_answers()
    with pytest.raises(ValueError, match="labels must"):
        _label_filter().fit(probabilities, votes, labels=labels)


@pytest.mark.parametrize("value", [-0.1, 1.5, "auto"])
def test_min_answer_spread_is_validated(value):
    probabilities, votes, labels = _generic_answers()
    with pytest.raises(InvalidParameterError, match="min_answer_spread"):
        _label_filter(min_answer_spread=value).fit(probabilities, votes, labels=labels)


def _few_images_per_name(n_repeats: int):
    """Two names, two images each, repeated: name 1 is predicted but leads no neighbourhood."""
    probabilities = np.tile(
        np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8]]), (n_repeats, 1)
    )
    votes = np.tile(np.array([[3, 0], [3, 1], [2, 1], [3, 1]]), (n_repeats, 1))
    return probabilities, votes


def test_support_rule_needs_names_that_fill_neighbourhoods():
    probabilities, votes = _few_images_per_name(1)  # 2 images per name
    few = LabelFilter(min_images_per_supported_name=3.0).fit(probabilities, votes, 0.5)
    assert few.rules_applied_ == ("predicted",)
    assert few.keep_mask_.tolist() == [True, True]
    # Six images per name, the same answers: the rule applies and drops name 1.
    many = LabelFilter(min_images_per_supported_name=3.0).fit(*_few_images_per_name(3), 0.5)
    assert many.rules_applied_ == ("predicted", "supported")
    assert many.keep_mask_.tolist() == [True, False]
    # None: whatever the number of images per name.
    always = LabelFilter(min_images_per_supported_name=None).fit(probabilities, votes, 0.5)
    assert always.keep_mask_.tolist() == [True, False]


def test_the_default_leaves_support_to_ten_images_per_name():
    assert LabelFilter().fit(*_few_images_per_name(4), 0.5).rules_applied_ == ("predicted",)
    assert LabelFilter().fit(*_few_images_per_name(5), 0.5).rules_applied_ == (
        "predicted",
        "supported",
    )


@pytest.mark.parametrize("value", [-1.0, "many"])
def test_min_images_per_supported_name_is_validated(value):
    probabilities, votes = _few_images_per_name(1)
    with pytest.raises(InvalidParameterError, match="min_images_per_supported_name"):
        LabelFilter(min_images_per_supported_name=value).fit(probabilities, votes)


@pytest.mark.parametrize("agreement", [None, 0.05, 0.5])
@pytest.mark.parametrize(
    "labels",
    [
        [0, 0, 1, 1, 2, 2],  # names recur over many names
        [0] * 17 + [1, 2, 3],  # one name takes most answers
        [0, 1, 2, 3],  # one image per name
        list(range(4)) * 12,  # twelve images per name: support fills neighbourhoods
    ],
)
def test_rules_for_tells_before_fit_which_rules_fit_applies(labels, agreement):
    labels = np.asarray(labels)
    n_classes = labels.max() + 1
    probabilities = np.eye(n_classes)[labels] * 0.5 + 0.5 / n_classes
    votes = np.eye(n_classes)[labels] * 2
    expected = LabelFilter().fit(probabilities, votes, agreement, labels).rules_applied_
    assert LabelFilter().rules_for(labels, n_classes, agreement) == expected
