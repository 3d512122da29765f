import re

import numpy as np
import pytest

from skvf_bench.captions import garment_captions
from skvf_bench.finegrained import (
    few_shot_draws,
    imbalanced_split,
    load_fine_garments,
    nearest_neighbour_agreement,
)
from skvf_bench.garment_names import (
    GARMENTS,
    PATTERN_WORDS,
    PATTERNS,
    SHADE_COARSE_WORD,
    SHADE_WORDS,
    SHADES,
    class_name,
    class_taxonomy,
    name_variants,
)


@pytest.fixture(scope="module")
def pool():
    return load_fine_garments("benchmark", n_per_class=6, image_size=24)


def test_a_pool_has_160_named_classes_with_their_attributes(pool):
    assert len(pool.classes) == 160 >= 150
    assert pool.images.shape == (160 * 6, 24, 24, 3)
    assert pool.images.dtype == np.uint8
    assert sorted(set(pool.names)) == list(pool.classes)
    assert all(np.sum(pool.names == name) == 6 for name in pool.classes)
    triples = {tuple(a.values()) for a in pool.attributes.values()}
    assert triples == {(g, s, p) for g in GARMENTS for s in SHADES for p in PATTERNS}
    for name, attributes in pool.attributes.items():
        assert class_name(**attributes) == name
        # Human-readable: lowercase words, the garment's name last.
        assert re.fullmatch(r"[a-z][a-z -]*[a-z]", name)
        assert name.endswith(attributes["garment"]) and attributes["shade"] in name


def test_taxonomy_goes_from_generic_to_the_class_name(pool):
    for name, levels in pool.taxonomy.items():
        attributes = pool.attributes[name]
        assert levels[-1] == name and levels[1] == attributes["garment"]
        assert levels[2] == f"{attributes['shade']} {attributes['garment']}"
        assert levels[0] in {"clothing", "footwear", "accessory"}
    # No coarser level is itself a class: a partial answer is never another class's.
    coarse = {level for levels in pool.taxonomy.values() for level in levels[:-1]}
    assert not coarse & set(pool.classes)


def test_the_same_seed_builds_the_same_pool_and_another_seed_another():
    first = load_fine_garments(n_per_class=2, garments=["bag", "coat"], image_size=16)
    again = load_fine_garments(n_per_class=2, garments=["bag", "coat"], image_size=16)
    other = load_fine_garments(
        n_per_class=2, garments=["bag", "coat"], image_size=16, random_state=1
    )
    assert np.array_equal(first.images, again.images)
    assert np.array_equal(first.names, again.names)
    assert np.array_equal(first.source_indices, again.source_indices)
    assert not np.array_equal(first.source_indices, other.source_indices)
    assert np.array_equal(first.names, other.names)


def test_pools_come_from_disjoint_photos_used_once_each():
    pretraining = load_fine_garments("pretraining", n_per_class=20, image_size=8)
    benchmark = load_fine_garments("benchmark", n_per_class=20, image_size=8)
    for data in (pretraining, benchmark):
        assert len(set(data.source_indices.tolist())) == len(data.source_indices)
    assert not set(pretraining.source_indices.tolist()) & set(benchmark.source_indices.tolist())
    assert pretraining.source_indices.max() < 60_000 <= benchmark.source_indices.min()


def test_too_many_images_per_class_says_how_many_fit():
    with pytest.raises(ValueError, match="lower n_per_class to at most 62"):
        load_fine_garments("benchmark", n_per_class=63, garments=["bag"])
    with pytest.raises(ValueError, match="pool must be 'benchmark' or 'pretraining'"):
        load_fine_garments("test")
    with pytest.raises(ValueError, match="unknown \\['hat'\\]"):
        load_fine_garments(garments=["hat"])
    with pytest.raises(ValueError, match="scale must be a pair"):
        load_fine_garments(scale=(0.9, 0.5))


def test_few_shot_draws_give_m_per_class_and_disjoint_held_out(pool):
    draws = few_shot_draws(pool.names, random_state=0)
    assert sorted(draws) == [1, 2, 3, 5]
    for m, (fit_indices, test_indices) in draws.items():
        _, counts = np.unique(pool.names[fit_indices], return_counts=True)
        assert len(counts) == 160 and set(counts) == {m}
        assert not set(fit_indices) & set(test_indices)
        assert len(fit_indices) + len(test_indices) == len(pool.names)


def test_imbalanced_split_draws_between_one_and_ten_per_class():
    names = np.repeat([f"class {i}" for i in range(200)], 12)
    fit_indices, test_indices = imbalanced_split(names, random_state=0)
    _, counts = np.unique(names[fit_indices], return_counts=True)
    assert len(counts) == 200 and counts.min() == 1 and counts.max() == 10
    assert abs(counts.mean() - 5.5) < 0.6
    assert not set(fit_indices) & set(test_indices)
    with pytest.raises(ValueError, match="fewer than high=10"):
        imbalanced_split(names[:30], random_state=0)


def test_neighbours_share_the_garment_more_often_than_the_fine_class(pool):
    from skvf_bench.encoders import HOGFeatures

    features = HOGFeatures(size=24).fit_transform(pool.images)
    agreement = nearest_neighbour_agreement(features, pool)
    assert agreement["class"] < agreement["garment"]
    with pytest.raises(ValueError, match="n_images = 960"):
        nearest_neighbour_agreement(features[:5], pool)


def test_name_variants_keep_every_attribute():
    variants = name_variants("trouser", "navy", "pinstriped")
    assert "navy pinstriped trouser" not in variants
    assert {"pinstriped navy trouser", "navy blue pinstriped trouser"} <= set(variants)
    assert class_taxonomy("bag", "crimson", "plain")[2] == "crimson bag"
    with pytest.raises(ValueError, match="shade must be one of"):
        name_variants("trouser", "teal")


def test_captions_are_deterministic_partial_and_seldom_exact():
    data = load_fine_garments("pretraining", n_per_class=10, image_size=8)
    captions = garment_captions(data, n_captions=2)
    assert captions.shape == (len(data.names), 2)
    assert np.array_equal(captions, garment_captions(data, n_captions=2))
    flat = [
        (name, caption) for name, row in zip(data.names, captions, strict=True) for caption in row
    ]
    exact = np.mean([name in caption for name, caption in flat])
    garment_named = np.mean([data.attributes[name]["garment"] in caption for name, caption in flat])
    assert 0 < exact < 0.2 and exact < garment_named
    # The fine shade is written less often than the coarse colour alone.
    fine_words = (
        *("navy", "midnight", "dark blue", "indigo", "royal", "cobalt", "sapphire", "bright blue"),
        *("burgundy", "maroon", "wine", "oxblood", "dark red"),
        *("crimson", "scarlet", "cherry", "bright red", "vermilion"),
    )
    fine = np.mean([any(word in c for word in fine_words) for _, c in flat])
    coarse_only = np.mean(
        [
            bool(re.search(r"\b(blue|red)\b", c)) and not any(w in c for w in fine_words)
            for _, c in flat
        ]
    )
    assert 0 < fine < coarse_only
    with pytest.raises(ValueError, match="kind_rates must give shares"):
        garment_captions(data, kind_rates={"full": 0.5})
    with pytest.raises(ValueError, match="kind_rates must give shares"):
        garment_captions(data, kind_rates={"full": 0.5, "pattern only": 0.5})
    # Partial descriptions that pair the garment with one fine attribute.
    pairs = garment_captions(
        data,
        kind_rates={"colour and garment": 0.5, "pattern and garment": 0.5},
        attribute_noise=0.0,
    )
    for name, (caption,) in zip(data.names, pairs, strict=True):
        shade, pattern = data.attributes[name]["shade"], data.attributes[name]["pattern"]
        named = [
            any(w in caption for w in (*SHADE_WORDS[shade], SHADE_COARSE_WORD[shade]))
            and not any(w in caption for w in PATTERN_WORDS[pattern]),
            any(w in caption for w in PATTERN_WORDS[pattern])
            and not any(w in caption for w in SHADE_WORDS[shade]),
        ]
        assert sum(named) == 1, caption


def test_class_word_noise_blurs_only_the_class_names_own_fine_words():
    data = load_fine_garments("pretraining", n_per_class=12, image_size=8, garments=["coat"])
    full_descriptions = {"full": 1.0, "garment": 0.0, "colour": 0.0, "generic": 0.0}
    sibling = {"navy": "royal blue", "royal blue": "navy", "burgundy": "crimson"}
    sibling["crimson"] = "burgundy"

    def shade_words_used(noise):
        captions = garment_captions(
            data,
            n_captions=3,
            kind_rates=full_descriptions,
            fine_word_rate=1.0,
            attribute_noise=0.0,
            canonical_word_rate=0.5,
            class_word_noise=noise,
        )
        counts = {"own class word": 0, "sibling's class word": 0, "sibling's synonym": 0}
        for name, row in zip(data.names, captions, strict=True):
            shade = data.attributes[name]["shade"]
            for caption in (c.replace("navy blue", "") for c in row):
                counts["own class word"] += shade in caption
                counts["sibling's class word"] += sibling[shade] in caption
                counts["sibling's synonym"] += any(
                    word in caption for word in SHADE_WORDS[sibling[shade]][1:]
                )
        return counts

    clean, loose = shade_words_used(0.0), shade_words_used(0.5)
    assert clean["sibling's class word"] == 0 and clean["own class word"] > 30
    # Half the class-name words now name the sibling shade; synonyms stay right.
    share = loose["sibling's class word"] / (
        loose["own class word"] + loose["sibling's class word"]
    )
    assert 0.35 < share < 0.65
    assert loose["sibling's synonym"] == clean["sibling's synonym"] == 0
