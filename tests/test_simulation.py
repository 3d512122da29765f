from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone

from skvf.exceptions import ImageInputError
from skvf_bench.datasets import DIGIT_NAMES, FASHION_MNIST_NAMES, load_digits_images
from skvf_bench.simulation import (
    NoisyOracleLabeler,
    confusions_from_groups,
    digits_confusions,
    digits_synonyms,
    fashion_mnist_confusions,
    fashion_mnist_synonyms,
    item_keys,
    make_oracle,
)


@pytest.fixture(scope="module")
def digits():
    images, names = load_digits_images(scale=1)
    return images, names, make_oracle(images, names)


def test_no_noise_returns_the_truth(digits):
    images, names, oracle = digits
    answers = NoisyOracleLabeler(oracle, noise_rate=0.0).fit(images).transform(images)
    assert answers.dtype == object and answers.shape == (len(images),)
    assert np.array_equal(answers, names)


def test_realised_noise_rate_is_close_to_the_parameter(digits):
    images, names, oracle = digits
    for noise_rate in (0.1, 0.4, 0.7):
        for random_state in (0, 1):
            labeler = NoisyOracleLabeler(oracle, noise_rate=noise_rate, random_state=random_state)
            answers = labeler.fit(images).transform(images)
            # 1797 images: the standard error of the rate is at most 0.012.
            assert abs(np.mean(answers != names) - noise_rate) < 0.04
            assert set(answers) <= set(DIGIT_NAMES)


def test_confusable_classes_dominate_wrong_answers(digits):
    images, names, oracle = digits
    confusions = digits_confusions()

    def confusable_share(confusable_rate):
        labeler = NoisyOracleLabeler(
            oracle, noise_rate=0.5, confusable_rate=confusable_rate, confusions=confusions
        )
        answers = labeler.fit(images).transform(images)
        wrong = np.flatnonzero(answers != names)
        return np.mean([answers[i] in confusions.get(names[i], []) for i in wrong])

    # "two" has no confusions (always uniform); the others: 0.75 + 0.25 * uniform share.
    assert confusable_share(0.75) > 0.65
    assert confusable_share(1.0) > 0.85
    assert confusable_share(0.0) < 0.3


def test_without_confusions_wrong_answers_cover_every_other_class(digits):
    images, names, oracle = digits
    answers = NoisyOracleLabeler(oracle, noise_rate=0.6).fit(images).transform(images)
    threes = names == "three"
    wrong_for_three = set(answers[threes]) - {"three"}
    assert wrong_for_three == set(DIGIT_NAMES) - {"three"}


def test_answers_do_not_depend_on_order_subset_or_refit(digits):
    images, names, oracle = digits
    labeler = NoisyOracleLabeler(oracle, confusions=digits_confusions(), random_state=3)
    full = labeler.fit(images).transform(images)
    order = np.random.default_rng(0).permutation(len(images))
    assert np.array_equal(labeler.transform(images[order]), full[order])
    subset = clone(labeler).fit(images[100:200]).transform(images[150:400])
    assert np.array_equal(subset, full[150:400])
    other_seed = clone(labeler).set_params(random_state=4).fit(images).transform(images)
    assert np.mean(other_seed != full) > 0.2


def test_raising_the_noise_rate_keeps_earlier_wrong_answers(digits):
    images, names, oracle = digits
    low = NoisyOracleLabeler(oracle, noise_rate=0.2).fit(images).transform(images)
    high = NoisyOracleLabeler(oracle, noise_rate=0.4).fit(images).transform(images)
    assert np.all(high[low != names] != names[low != names])


def test_same_picture_as_path_pil_and_array_gets_the_same_name(tmp_path, digits):
    images, names, oracle = digits
    paths = []
    for index in range(20):
        path = tmp_path / f"digit{index}.png"
        Image.fromarray(images[index]).save(path)
        paths.append(str(path))
    labeler = NoisyOracleLabeler(oracle, noise_rate=0.5).fit(images)
    from_arrays = labeler.transform(images[:20])
    assert np.array_equal(labeler.transform(paths), from_arrays)
    assert np.array_equal(labeler.transform([Image.open(p) for p in paths]), from_arrays)


def test_synonyms_and_generic_names(digits):
    images, names, oracle = digits
    synonyms = digits_synonyms()
    all_synonyms = NoisyOracleLabeler(
        oracle, noise_rate=0.0, synonym_rate=1.0, synonyms=synonyms
    ).fit(images)
    answers = all_synonyms.transform(images)
    assert all(answer in synonyms[name] for answer, name in zip(answers, names, strict=True))

    half = all_synonyms.set_params(synonym_rate=0.5).fit(images).transform(images)
    assert abs(np.mean(half != names) - 0.5) < 0.05

    generic = NoisyOracleLabeler(oracle, generic_rate=1.0, generic_name="digit").fit(images)
    assert set(generic.transform(images)) == {"digit"}
    by_class = {"zero": "round digit", "six": "round digit"}
    generic.set_params(noise_rate=0.0, generic_name=by_class).fit(images)
    answers = generic.transform(images)
    assert set(answers[np.isin(names, ["zero", "six"])]) == {"round digit"}
    assert np.array_equal(
        answers[~np.isin(names, ["zero", "six"])], names[~np.isin(names, ["zero", "six"])]
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"noise_rate": 1.5}, "'noise_rate' parameter"),
        ({"confusable_rate": -0.1}, "'confusable_rate' parameter"),
        ({"random_state": "seed"}, "'random_state' parameter"),
        ({"oracle": 5}, "'oracle' parameter"),
        ({"confusions": {"three": ["thre"]}}, r"confusions\['three'\] names \['thre'\]"),
        ({"confusions": {"ten": ["three"]}}, "confusions has an entry for 'ten'"),
        ({"confusions": {"three": "five"}}, r"confusions\['three'\] must be a list of str"),
        ({"synonym_rate": 0.5}, "synonym_rate > 0 needs synonyms"),
        ({"synonyms": {"tree": ["3"]}}, "synonyms has an entry for 'tree'"),
        ({"generic_rate": 0.5}, "generic_rate > 0 needs generic_name"),
        ({"classes": []}, "classes is empty"),
    ],
)
def test_invalid_parameters_are_named(digits, params, message):
    images, _, oracle = digits
    labeler = NoisyOracleLabeler(oracle).set_params(**params)
    with pytest.raises((ValueError, TypeError), match=message):
        labeler.fit(images[:5])


def test_unknown_images_and_bad_items_are_reported(digits):
    images, _, oracle = digits
    labeler = NoisyOracleLabeler(oracle).fit(images)
    stranger = np.full((1, 8, 8, 3), 7, dtype=np.uint8)
    with pytest.raises(ValueError, match=r"X\[1\] \(ndarray\) is not in the oracle"):
        labeler.transform(np.concatenate([images[:1], stranger]))
    with pytest.raises(ImageInputError, match=r"X\[0\] \('/no/such.png'\): file not found"):
        labeler.transform(["/no/such.png"])


def test_make_oracle_checks_its_input(digits):
    images, names, _ = digits
    with pytest.raises(ValueError, match="X has 3 items but names has 2"):
        make_oracle(images[:3], names[:2])
    duplicated = np.concatenate([images[:2], images[:1]])
    with pytest.raises(ValueError, match=r"X\[0\] and X\[2\] are the same image"):
        make_oracle(duplicated, ["zero", "one", "seven"])
    assert len(make_oracle(duplicated, ["zero", "one", "zero"])) == 2


def test_numeric_rows_with_a_callable_or_dict_oracle():
    X = np.random.default_rng(0).normal(size=(400, 5))
    truth = np.where(X[:, 0] > 0, "positive", "negative")
    by_row = NoisyOracleLabeler(lambda row: "positive" if row[0] > 0 else "negative")
    answers = clone(by_row).set_params(noise_rate=0.3).fit(X).transform(X)
    assert by_row.fit(X).classes_.tolist() == ["negative", "positive"]
    assert abs(np.mean(answers != truth) - 0.3) < 0.08
    assert np.array_equal(
        clone(by_row).set_params(noise_rate=0.3).fit(X).transform(X[::-1]), answers[::-1]
    )

    by_key = NoisyOracleLabeler(make_oracle(X, truth), noise_rate=0.3).fit(X)
    assert np.array_equal(by_key.transform(X), answers)  # same keys, same seed, same answers
    assert len(set(item_keys(X))) == len(X)


def test_callable_oracle_receives_items_as_given(tmp_path, digits):
    images, names, _ = digits
    paths = []
    for index in range(30):
        folder = tmp_path / names[index]
        folder.mkdir(exist_ok=True)
        paths.append(folder / f"{index}.png")
        Image.fromarray(images[index]).save(paths[-1])
    labeler = NoisyOracleLabeler(lambda path: Path(path).parent.name, classes=DIGIT_NAMES)
    answers = labeler.set_params(noise_rate=0.0).fit(paths[:3]).transform(paths)
    assert np.array_equal(answers, names[:30])
    assert labeler.classes_.tolist() == sorted(DIGIT_NAMES)


def test_confusion_and_synonym_maps_use_the_dataset_names():
    for confusions, class_names in (
        (digits_confusions(), DIGIT_NAMES),
        (fashion_mnist_confusions(), FASHION_MNIST_NAMES),
    ):
        assert set(confusions) <= set(class_names)
        for name, others in confusions.items():
            assert name not in others
            assert all(name in confusions[other] for other in others)  # symmetric
    assert set(digits_confusions()["three"]) == {"five", "eight"}
    assert set(fashion_mnist_confusions()["sneaker"]) == {"sandal", "ankle boot"}
    assert set(fashion_mnist_synonyms()) == set(FASHION_MNIST_NAMES)
    assert set(digits_synonyms()) == set(DIGIT_NAMES)
    assert confusions_from_groups([["a", "b"], ["a", "c"]])["a"] == ["b", "c"]


@pytest.fixture(scope="module")
def garments():
    from skvf_bench.finegrained import load_fine_garments

    return load_fine_garments("benchmark", n_per_class=20, image_size=12)


def _kinds(answers, data):
    """Each answer's kind: fine (right), generic, partial, sibling, random."""
    kinds = []
    for answer, truth in zip(answers, data.names, strict=True):
        levels = data.taxonomy[truth]
        if answer == truth:
            kinds.append("fine")
        elif answer in levels[:2]:
            kinds.append("generic")
        elif answer in levels[2:-1]:
            kinds.append("partial")
        else:
            differing = [
                axis
                for axis, value in data.attributes[answer].items()
                if data.attributes[truth][axis] != value
            ]
            kinds.append("sibling" if len(differing) == 1 else "random")
    return np.asarray(kinds)


@pytest.mark.parametrize("profile", ["strong", "weak"])
def test_simulated_mllm_realises_its_profile_rates(garments, profile):
    from skvf_bench.simulated_mllm import MLLM_PROFILES, make_simulated_mllm

    labeler = make_simulated_mllm(garments, profile=profile, variant_rate=0.0)
    answers = labeler.fit().transform(garments.images)
    kinds = _kinds(answers, garments)
    rates = MLLM_PROFILES[profile]
    # 3200 images: the standard error of a share is at most 0.009.
    for kind in ("generic", "partial", "sibling"):
        assert abs(np.mean(kinds == kind) - rates[f"{kind}_rate"]) < 0.035, kind
    # A random class can also happen to be one attribute off (3 in 159 classes).
    assert abs(np.mean(kinds == "random") - rates["random_rate"]) < 0.035
    expected_fine = 1 - sum(rates[f"{k}_rate"] for k in ("generic", "partial", "sibling", "random"))
    assert abs(np.mean(kinds == "fine") - expected_fine) < 0.035


def test_simulated_mllm_siblings_miss_one_attribute_by_a_similar_value(garments):
    from skvf_bench.simulated_mllm import make_simulated_mllm

    labeler = make_simulated_mllm(
        garments,
        sibling_rate=1.0,
        generic_rate=0.0,
        partial_rate=0.0,
        random_rate=0.0,
        variant_rate=0.0,
    )
    answers = labeler.fit().transform(garments.images[::7])
    for answer, truth in zip(answers, garments.names[::7], strict=True):
        (axis,) = [
            a for a, v in garments.attributes[answer].items() if garments.attributes[truth][a] != v
        ]
        assert axis in ("shade", "pattern")
        similar = garments.similar_values[axis][garments.attributes[truth][axis]]
        assert garments.attributes[answer][axis] in similar


def test_simulated_mllm_variants_name_the_same_thing(garments):
    from skvf_bench.garment_names import taxonomy_variants
    from skvf_bench.simulated_mllm import make_simulated_mllm

    labeler = make_simulated_mllm(
        garments,
        generic_rate=0.0,
        partial_rate=0.0,
        sibling_rate=0.0,
        random_rate=0.0,
        variant_rate=0.5,
    )
    answers = labeler.fit().transform(garments.images)
    changed = answers != garments.names
    assert abs(changed.mean() - 0.5) < 0.035
    for answer, truth in zip(answers[changed], garments.names[changed], strict=True):
        assert answer in taxonomy_variants(**garments.attributes[truth])[truth]


def test_simulated_mllm_answers_depend_on_the_image_not_its_position(garments):
    from skvf_bench.simulated_mllm import make_simulated_mllm

    labeler = make_simulated_mllm(garments, profile="weak").fit()
    subset = garments.images[:300]
    full = labeler.transform(subset)
    order = np.random.default_rng(0).permutation(len(subset))
    assert np.array_equal(labeler.transform(subset[order]), full[order])
    assert np.array_equal(clone(labeler).fit().transform(subset), full)
    other = clone(labeler).set_params(random_state=1).fit().transform(subset)
    assert 0.2 < np.mean(other != full) < 0.9


def test_simulated_mllm_rejects_rates_summing_above_one_and_bad_taxonomies(garments):
    from skvf_bench.simulated_mllm import SimulatedMLLM, make_simulated_mllm

    with pytest.raises(ValueError, match="must be at most 1, got 1.3"):
        make_simulated_mllm(garments, generic_rate=0.9, sibling_rate=0.3).fit()
    taxonomy = {"a": ["x", "a"]}
    with pytest.raises(ValueError, match="must list at least 3 names"):
        SimulatedMLLM({}, taxonomy, {"a": {"k": "v"}}, variant_rate=0.0).fit()
    with pytest.raises(ValueError, match="variant_rate > 0 needs variants"):
        SimulatedMLLM({}, {"a": ["x", "y", "a"]}, {"a": {"k": "v"}}).fit()
    with pytest.raises(ValueError, match="profile"):
        SimulatedMLLM({}, {"a": ["x", "y", "a"]}, {"a": {"k": "v"}}, profile="gpt").fit()


def test_simulated_mllm_chooses_with_its_profiles_choice_accuracy(garments):
    from skvf_bench.simulated_mllm import MLLM_PROFILES, make_simulated_mllm

    images, truth = garments.images[::2], garments.names[::2]  # 1600 images
    others = np.roll(truth, 10)  # another class: 10 images of each, class by class
    for profile in ("strong", "weak"):
        labeler = make_simulated_mllm(garments, profile=profile).fit()
        accuracy = labeler.rates_["choice_accuracy"]
        assert accuracy == MLLM_PROFILES[profile]["choice_accuracy"]
        offered = [[other, name] for other, name in zip(others, truth, strict=True)]
        names, valid = labeler.choose(images, offered)
        # Standard error of a share over 1600 images: at most 0.0125.
        assert abs(np.mean(names == truth) - accuracy) < 0.04
        mistakes = names[names != truth]
        assert abs(np.mean(mistakes == None) - 0.5) < 0.08  # noqa: E711 - wrong or none
        assert set(mistakes[mistakes != None]) <= set(others)  # noqa: E711
        # Without the true name, "none of these" is right.
        names, valid = labeler.choose(images, [[other] for other in others])
        assert abs(np.mean(~valid) - accuracy) < 0.04
        assert set(names[valid]) <= set(others)


def test_simulated_mllm_choice_knows_variants_and_is_deterministic(garments):
    from skvf_bench.garment_names import taxonomy_variants
    from skvf_bench.simulated_mllm import make_simulated_mllm

    labeler = make_simulated_mllm(garments, choice_accuracy=1.0).fit()
    truth = garments.names[0]
    variant = taxonomy_variants(**garments.attributes[truth])[truth][0]
    offered = [[garments.names[-1], variant.upper()]]
    names, valid = labeler.choose(garments.images[:1], offered)
    assert names.tolist() == [variant.upper()] and valid.tolist() == [True]
    assert labeler.names_the_truth([variant, truth, garments.names[-1]], [truth] * 3).tolist() == [
        True,
        True,
        False,
    ]
    guessing = make_simulated_mllm(garments, choice_accuracy=0.5).fit()
    offered = [[truth, garments.names[-1]]] * 200
    first = guessing.choose(garments.images[:200], offered)[0]
    assert np.array_equal(guessing.choose(garments.images[:200], offered)[0], first)
    with pytest.raises(ValueError, match="2 lists of choices for 1 items"):
        guessing.choose(garments.images[:1], offered[:2])


def test_simulated_mllm_groups_wordings_at_its_synonym_recall_and_never_other_names(garments):
    from skvf_bench.garment_names import taxonomy_variants
    from skvf_bench.simulated_mllm import MLLM_PROFILES, make_simulated_mllm

    classes = list(garments.classes)
    wordings = {name: taxonomy_variants(**garments.attributes[name])[name] for name in classes}
    offered = classes + [wording for name in classes for wording in wordings[name]]
    meaning = {wording: name for name in classes for wording in [name, *wordings[name]]}
    for profile in ("strong", "weak"):
        labeler = make_simulated_mllm(garments, profile=profile).fit()
        recall = labeler.rates_["synonym_recall"]
        assert recall == MLLM_PROFILES[profile]["synonym_recall"]
        groups = labeler.group_synonyms(offered)
        # Every group is one class's wordings, the class name among them.
        assert all(len({meaning[name] for name in group}) == 1 for group in groups)
        assert all(meaning[group[0]] in group for group in groups)
        grouped = sum(len(group) - 1 for group in groups)
        n_wordings = len(offered) - len(classes)
        # Standard error of a share over ~1,800 wordings: about 0.011.
        assert abs(grouped / n_wordings - recall) < 0.04
    # Deterministic, and the same names in another order give the same groups.
    assert labeler.group_synonyms(offered[::-1]) == labeler.group_synonyms(offered)
    certain = make_simulated_mllm(garments, synonym_recall=1.0).fit()
    assert len(certain.group_synonyms(offered)) == len(classes)
    assert make_simulated_mllm(garments, synonym_recall=0.0).fit().group_synonyms(offered) == []
