"""Tests of skvf_bench.standin: pretraining a stand-in CLIP, loading it, checking its digest."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from skvf._backbone import build_backbone
from skvf_bench import standin
from skvf_bench.standin import (
    RECIPES,
    StandInDigestError,
    pretrain_standin,
    standin_params,
)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """The tiny recipe, built once for the module through standin_params."""
    cache = tmp_path_factory.mktemp("standin")
    return cache, standin_params("tiny", cache_dir=cache)


def test_pretraining_is_deterministic(tiny_weights, tmp_path):
    _, params = tiny_weights
    digest = pretrain_standin(tmp_path / "again.pt", "tiny")
    assert digest == standin._file_sha256(params["pretrained"])
    first = torch.load(params["pretrained"], weights_only=True)
    second = torch.load(tmp_path / "again.pt", weights_only=True)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_pretraining_changes_every_tower_from_its_random_init(tiny_weights):
    _, params = tiny_weights
    trained = _build(params).model.state_dict()
    initial = build_backbone(params["backbone"], None, params["backbone_kwargs"]).model
    initial = initial.state_dict()
    for name in (
        "visual.conv1.weight",
        "transformer.resblocks.0.attn.in_proj_weight",
        "text_projection",
        "visual.attnpool.c_proj.weight",
    ):
        assert not torch.allclose(trained[name].float(), initial[name].float()), name


def test_text_learning_rate_scale_slows_the_text_tower_alone(tiny_weights, tmp_path):
    _, params = tiny_weights
    default = torch.load(params["pretrained"], weights_only=True)
    recipe = dataclasses.replace(RECIPES["tiny"], text_learning_rate_scale=0.0)
    assert recipe.fingerprint() != RECIPES["tiny"].fingerprint()
    pretrain_standin(tmp_path / "frozen_text.pt", recipe)
    frozen = torch.load(tmp_path / "frozen_text.pt", weights_only=True)
    initial = build_backbone(params["backbone"], None, params["backbone_kwargs"]).model
    initial = {name: tensor.half() for name, tensor in initial.state_dict().items()}
    text = ["token_embedding.weight", "transformer.resblocks.0.attn.in_proj_weight"]
    for name in text + ["positional_embedding", "ln_final.weight", "text_projection"]:
        assert torch.equal(frozen[name], initial[name]), name  # a rate of 0: never moved
        assert not torch.equal(default[name], initial[name]), name
    for name in ("visual.conv1.weight", "visual.attnpool.c_proj.weight", "logit_scale"):
        assert not torch.equal(frozen[name], initial[name]), name  # the image side learns


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA here")
def test_pretraining_on_cuda_writes_weights_the_cpu_loads(tiny_weights, tmp_path):
    _, params = tiny_weights
    pretrain_standin(tmp_path / "cuda.pt", "tiny", device="cuda")
    on_cuda = torch.load(tmp_path / "cuda.pt", map_location="cpu", weights_only=True)
    on_cpu = torch.load(params["pretrained"], weights_only=True)
    assert on_cuda.keys() == on_cpu.keys()
    for name, tensor in on_cuda.items():
        assert tensor.device.type == "cpu" and tensor.dtype == on_cpu[name].dtype, name
    backbone = build_backbone(params["backbone"], tmp_path / "cuda.pt", params["backbone_kwargs"])
    assert backbone.source == os.fspath(tmp_path / "cuda.pt")


def test_pretraining_on_another_device_is_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match="device='tpu'"):
        pretrain_standin(tmp_path / "w.pt", "tiny", device="tpu")
    assert not (tmp_path / "w.pt").exists()


def test_params_load_through_the_real_path(tiny_weights):
    _, params = tiny_weights
    recipe = RECIPES["tiny"]
    assert params["backbone"] == recipe.backbone
    assert params["backbone_kwargs"] == recipe.backbone_kwargs
    backbone = _build(params)
    assert backbone.source == os.fspath(params["pretrained"])
    context = recipe.backbone_kwargs["text_cfg"]["context_length"]
    assert backbone.tokenizer(["navy pinstriped trouser"]).shape == (1, context)
    saved = torch.load(params["pretrained"], weights_only=True)
    loaded = backbone.model.state_dict()
    for name, tensor in saved.items():
        assert torch.equal(loaded[name].half(), tensor), name


def test_classifier_uses_the_standin_image_tower_by_default(tiny_weights):
    from skvf_bench import ZeroShotCLIP, load_fine_garments, make_oracle
    from skvf_bench.simulation import NoisyOracleLabeler

    _, params = tiny_weights
    data = load_fine_garments("benchmark", n_per_class=1, garments=["trouser"], image_size=32)
    labeler = NoisyOracleLabeler(make_oracle(data.images, data.names), noise_rate=0.0)
    model = ZeroShotCLIP(labeler=labeler, device="cpu", **params).fit(data.images)
    backbone = _build(params)
    with torch.no_grad():
        pixels = torch.stack([backbone.preprocess(_pil(image)) for image in data.images])
        image = backbone.model.encode_image(pixels, normalize=True).numpy()
        text = backbone.model.encode_text(
            backbone.tokenizer([f"a photo of a {name}." for name in model.classes_]),
            normalize=True,
        ).numpy()
    expected = model.classes_[np.argmax(image @ text.T, axis=1)]
    np.testing.assert_array_equal(model.predict(data.images), expected)


def _build(params):
    return build_backbone(params["backbone"], params["pretrained"], params["backbone_kwargs"])


def _pil(array):
    from PIL import Image

    return Image.fromarray(array)


def test_weights_are_built_once_and_reused(tiny_weights, monkeypatch):
    cache, params = tiny_weights
    monkeypatch.setattr(standin, "pretrain_standin", _refuse)
    again = standin_params("tiny", cache_dir=cache)
    assert again == params


def _refuse(*args, **kwargs):
    raise AssertionError("the weights were built again")


def test_damaged_cached_weights_are_built_again(tmp_path):
    params = standin_params("tiny", cache_dir=tmp_path)
    path = params["pretrained"]
    digest = (tmp_path / (os.path.basename(path) + ".sha256")).read_text()
    with open(path, "r+b") as handle:
        handle.truncate(os.path.getsize(path) // 2)
    assert standin._file_sha256(path) == ""
    standin_params("tiny", cache_dir=tmp_path)
    assert standin._file_sha256(path) == digest


def test_committed_weights_with_another_digest_are_refused(tiny_weights, tmp_path, monkeypatch):
    _, params = tiny_weights
    committed = tmp_path / "weights"
    committed.mkdir()
    (committed / "shipped.pt").write_bytes(open(params["pretrained"], "rb").read())
    recipe = dataclasses.replace(RECIPES["tiny"], sha256="0" * 64)
    monkeypatch.setattr(standin, "WEIGHTS_DIR", committed)
    monkeypatch.setitem(RECIPES, "shipped", recipe)
    monkeypatch.setattr(standin, "pretrain_standin", _refuse)
    with pytest.raises(
        StandInDigestError, match=r"shipped\.pt have SHA-256 .* not the recorded 0+"
    ):
        standin_params("shipped", cache_dir=tmp_path / "cache")
    right = dataclasses.replace(recipe, sha256=standin._file_sha256(params["pretrained"]))
    monkeypatch.setitem(RECIPES, "shipped", right)
    assert standin_params("shipped")["pretrained"] == str(committed / "shipped.pt")


def test_weights_not_shipped_are_built_in_the_user_cache(tiny_weights, tmp_path, monkeypatch):
    # Installed from a wheel: no weights beside the module, so even a recipe with a
    # recorded digest builds them on first use into the user cache folder.
    _, params = tiny_weights
    digest = standin._file_sha256(params["pretrained"])
    monkeypatch.setattr(standin, "WEIGHTS_DIR", tmp_path / "site-packages" / "weights")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    recipe = dataclasses.replace(RECIPES["tiny"], sha256=digest)
    monkeypatch.setitem(RECIPES, "shipped", recipe)
    built = []

    def pretrain(path, *args, **kwargs):
        built.append(path)
        path.parent.mkdir(parents=True)
        path.write_bytes(open(params["pretrained"], "rb").read())
        return digest

    monkeypatch.setattr(standin, "pretrain_standin", pretrain)
    expected = tmp_path / "cache" / "skvf" / "standin" / f"shipped-{recipe.fingerprint()}.pt"
    assert standin_params("shipped")["pretrained"] == str(expected)
    assert built == [expected]
    assert standin_params("shipped")["pretrained"] == str(expected)  # not built again
    assert built == [expected]
    assert not (tmp_path / "site-packages").exists()


def test_unknown_recipe_is_named():
    with pytest.raises(ValueError, match=r"recipe must be one of \['garments', 'tiny'\]"):
        standin_params("huge")


def test_committed_garments_weights_load_with_their_digest(monkeypatch):
    from PIL import Image

    from skvf_bench import load_fine_garments

    monkeypatch.setattr(standin, "pretrain_standin", _refuse)
    params = standin_params("garments")
    assert os.path.dirname(params["pretrained"]) == os.fspath(standin.WEIGHTS_DIR)
    assert standin._file_sha256(params["pretrained"]) == RECIPES["garments"].sha256
    backbone = _build(params)
    data = load_fine_garments("benchmark", n_per_class=1)
    with torch.no_grad():
        images = torch.stack([backbone.preprocess(Image.fromarray(x)) for x in data.images])
        image = backbone.model.encode_image(images, normalize=True)
        text = backbone.model.encode_text(
            backbone.tokenizer([f"a photo of a {name}." for name in data.classes]),
            normalize=True,
        )
    zero_shot = np.mean(data.classes[(image @ text.T).argmax(dim=1).numpy()] == data.names)
    # Pretrained, not random: 160 classes put chance at .006 (random weights score it).
    assert zero_shot > 0.15


def test_batches_by_garment_hold_few_garment_types_and_their_sibling_classes():
    from skvf_bench.finegrained import load_fine_garments

    data = load_fine_garments("pretraining", n_per_class=3, image_size=8)
    garment_of = np.array([data.attributes[name]["garment"] for name in data.names])
    batches = list(standin._batches(data, 64, 30, 2, 2, np.random.default_rng(0)))
    assert len(batches) == 30
    for step, (rows, column) in enumerate(batches):
        assert len(rows) == 64 == len(set(rows.tolist()))
        assert len(set(garment_of[rows])) <= 2
        # A new caption per image once a pool's worth (480) has been drawn; 2 at most.
        assert column == min(step * 64 // 480, 1)
    # Each batch holds classes that differ in shade only (the hard negatives).
    rows = batches[0][0]
    kept = {
        (data.attributes[n]["garment"], data.attributes[n]["pattern"]) for n in data.names[rows]
    }
    shades_per_pair = [
        len(
            {
                data.attributes[n]["shade"]
                for n in data.names[rows]
                if (data.attributes[n]["garment"], data.attributes[n]["pattern"]) == key
            }
        )
        for key in kept
    ]
    assert max(shades_per_pair) >= 2
    # Without grouping: slices of a new permutation per pass, every image once per pass.
    plain = list(standin._batches(data, 64, 45, 2, None, np.random.default_rng(0)))
    first_pass = np.concatenate([rows for rows, column in plain if column == 0])
    assert len(plain) == 45 and len(first_pass) == 480 // 64 * 64
    assert len(set(first_pass.tolist())) == len(first_pass)
    assert {column for _, column in plain} == {0, 1}


def test_image_only_objective_groups_a_class_and_leaves_no_head_in_the_weights(tmp_path):
    from skvf_bench.finegrained import nearest_neighbour_agreement

    agreement, keys = {}, {}
    for weight in (0.0, 5.0):
        recipe = dataclasses.replace(RECIPES["tiny"], epochs=8.0, class_loss_weight=weight)
        path = tmp_path / f"weight{weight}.pt"
        pretrain_standin(path, recipe, n_threads=1)
        keys[weight] = set(torch.load(path, weights_only=True))
        backbone = _build(
            {
                "backbone": recipe.backbone,
                "pretrained": str(path),
                "backbone_kwargs": recipe.backbone_kwargs,
            }
        )
        data = standin.pretraining_pool(recipe)
        with torch.no_grad():
            pixels = standin._preprocessed(data.images, backbone.preprocess)
            features = backbone.model.encode_image(pixels, normalize=True).numpy()
        agreement[weight] = nearest_neighbour_agreement(features, data)["class"]
    # The classifier of the second objective is dropped: the same open_clip state.
    assert keys[0.0] == keys[5.0]
    # Its images' nearest neighbours share their fine class twice as often or more.
    assert agreement[5.0] >= 2 * agreement[0.0] > 0
