"""Tests of skvf._backbone: building the frozen open_clip model reproducibly and identifiably."""

from __future__ import annotations

import time

import pytest
import torch

from skvf import _backbone as backbone_module
from skvf._backbone import backbone_config, build_backbone, weights_digest
from skvf._features import feature_store
from skvf._process_cache import ProcessCache
from skvf._store import stable_hash
from skvf.exceptions import BackboneError
from skvf_bench.demo import TINY_BACKBONE

TINY_TEXT = {"width": 64, "heads": 2, "layers": 2}


def _tiny(backbone):
    """The overrides the session backbone was built with, recovered from its config."""
    config = backbone.config
    return {
        "embed_dim": config["embed_dim"],
        "vision_cfg": {
            key: config["vision_cfg"][key]
            for key in ("image_size", "width", "layers", "patch_size")
        },
        "text_cfg": {key: config["text_cfg"][key] for key in ("width", "heads", "layers")},
    }


@pytest.fixture
def fresh_cache(monkeypatch):
    """An empty process cache of built backbones, so a build really builds."""
    monkeypatch.setattr(backbone_module, "_BUILT", ProcessCache(max_entries=2))


def test_two_fresh_builds_give_the_same_weights(backbone, fresh_cache):
    rebuilt = build_backbone("ViT-S-32", None, _tiny(backbone))
    assert rebuilt.model is not backbone.model
    assert rebuilt.digest == backbone.digest
    assert weights_digest(rebuilt.model) == rebuilt.digest
    for (name, left), (_, right) in zip(
        backbone.model.state_dict().items(), rebuilt.model.state_dict().items(), strict=True
    ):
        assert torch.equal(left, right), name
    assert rebuilt.source == "random-init"


def test_random_init_does_not_disturb_the_global_rng(backbone, fresh_cache):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    build_backbone("ViT-S-32", None, _tiny(backbone))
    assert torch.equal(torch.rand(3), expected)


def test_build_is_reused_within_the_process(backbone):
    again = build_backbone("ViT-S-32", None, _tiny(backbone))
    assert again.digest == backbone.digest


def test_a_built_backbone_records_its_name_and_device(backbone):
    assert backbone.name == TINY_BACKBONE
    assert backbone.device == "cpu"
    assert {str(parameter.device) for parameter in backbone.model.parameters()} == {"cpu"}


def test_the_feature_store_is_keyed_by_the_backbone_name_and_weights(backbone, tmp_path):
    """The key of the features cached before backbones knew their name: those still hit."""
    store = feature_store(tmp_path, backbone)
    key = stable_hash({"backbone": TINY_BACKBONE, "weights": backbone.digest})
    assert store.directory == tmp_path / f"features-{key}"
    assert feature_store(None, backbone) is None


@pytest.mark.parametrize(
    "device",
    [
        "meta",  # a second device every machine has: the weights are not kept there
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA here"),
        ),
    ],
)
def test_another_device_is_another_build_sharing_the_feature_store(
    backbone, fresh_cache, tmp_path, device
):
    on_cpu = build_backbone(TINY_BACKBONE, None, _tiny(backbone))
    elsewhere = build_backbone(TINY_BACKBONE, None, _tiny(backbone), device=device)
    assert elsewhere is not on_cpu and elsewhere.model is not on_cpu.model
    assert on_cpu.device == "cpu"
    assert torch.device(elsewhere.device).type == device
    assert next(elsewhere.model.parameters()).device == torch.device(elsewhere.device)
    assert elsewhere.name == on_cpu.name == TINY_BACKBONE
    assert elsewhere.digest == on_cpu.digest  # hashed on the CPU, before the move
    assert build_backbone(TINY_BACKBONE, None, _tiny(backbone), device=device) is elsewhere
    assert build_backbone(TINY_BACKBONE, None, _tiny(backbone)) is on_cpu
    # Features do not depend on where they were computed: one store for both.
    assert feature_store(tmp_path, elsewhere).directory == feature_store(tmp_path, on_cpu).directory


def test_digest_changes_with_any_weight(backbone, fresh_cache):
    rebuilt = build_backbone("ViT-S-32", None, _tiny(backbone))
    with torch.no_grad():
        rebuilt.model.ln_final.bias[0] += 1e-3
    assert weights_digest(rebuilt.model) != backbone.digest


def test_model_is_frozen_and_in_eval_mode(backbone):
    model = backbone.model
    assert not model.training
    assert all(not module.training for module in model.modules())
    assert all(not parameter.requires_grad for parameter in model.parameters())
    assert sum(parameter.numel() for parameter in model.parameters()) > 0


def test_tiny_config_is_applied(backbone):
    model = backbone.model
    assert model.token_embedding.weight.shape[1] == 64
    assert model.text_projection.shape == (64, 64)
    image = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        assert model.encode_image(image).shape == (1, 64)
    assert backbone.tokenizer(["a cat"]).shape == (1, 77)


def test_tokenizer_follows_a_context_length_given_in_backbone_kwargs(backbone, fresh_cache):
    overrides = _tiny(backbone)
    overrides["text_cfg"]["context_length"] = 24
    short = build_backbone("ViT-S-32", None, overrides)
    tokens = short.tokenizer(["a navy pinstriped trouser"])
    assert tokens.shape == (1, 24)
    assert short.model.positional_embedding.shape[0] == 24
    with torch.no_grad():
        assert short.model.encode_text(tokens).shape == (1, 64)


def test_backbone_config_merges_nested_overrides_deeply():
    base = backbone_config("ViT-S-32")
    merged = backbone_config("ViT-S-32", {"vision_cfg": {"width": 64}, "embed_dim": 32})
    assert merged["embed_dim"] == 32
    assert merged["vision_cfg"]["width"] == 64
    # every other key of the nested config is kept
    for key, value in base["vision_cfg"].items():
        if key != "width":
            assert merged["vision_cfg"][key] == value, key
    assert merged["text_cfg"] == base["text_cfg"]
    # the base config is not modified
    assert backbone_config("ViT-S-32") == base


def test_backbone_config_override_replaces_non_dict_values():
    merged = backbone_config("ViT-S-32", {"text_cfg": TINY_TEXT, "new_key": {"a": 1}})
    assert merged["text_cfg"]["width"] == 64
    assert (
        merged["text_cfg"]["context_length"]
        == backbone_config("ViT-S-32")["text_cfg"]["context_length"]
    )
    assert merged["new_key"] == {"a": 1}


def test_backbone_config_does_not_share_state_with_the_overrides():
    overrides = {"text_cfg": {"width": 64}}
    merged = backbone_config("ViT-S-32", overrides)
    merged["text_cfg"]["width"] = 128
    assert overrides == {"text_cfg": {"width": 64}}


def test_unknown_model_name_lists_examples():
    import open_clip

    first = sorted(open_clip.list_models())[0]
    with pytest.raises(
        BackboneError,
        match=rf"backbone='ViT-Nope-99' is not an open_clip model name; examples: {first}, .*"
        r"\(open_clip\.list_models\(\) lists them all\)",
    ):
        build_backbone("ViT-Nope-99")


def test_backbone_error_is_a_value_error():
    assert issubclass(BackboneError, ValueError)


@pytest.mark.parametrize("name", ["ViT-S-32", "ViT-B-32"])
def test_unknown_tag_fails_fast_naming_known_tags_and_a_local_file(name, fresh_cache):
    start = time.perf_counter()
    with pytest.raises(BackboneError) as info:
        build_backbone(name, "no-such-tag")
    assert time.perf_counter() - start < 5  # no download attempt, no retries
    message = str(info.value)
    assert "pretrained='no-such-tag' is neither a weights file nor a known tag for " in message
    assert f"backbone={name!r} (known tags: " in message
    assert "Pass an existing local weights file" in message
    if name == "ViT-B-32":
        assert "'openai'" in message  # a model with hub tags lists them
    else:
        assert "(known tags: none)" in message


def test_local_weights_file_gives_the_same_digest(backbone, tmp_path, fresh_cache):
    path = tmp_path / "tiny.pt"
    torch.save(backbone.model.state_dict(), path)
    loaded = build_backbone("ViT-S-32", path, _tiny(backbone))
    assert loaded.digest == backbone.digest
    assert loaded.source == str(path)
    # and given as a str, with the digest it must have
    again = build_backbone("ViT-S-32", str(path), _tiny(backbone), expected_digest=backbone.digest)
    assert again.digest == backbone.digest


def test_local_weights_file_with_other_values_gives_another_digest(backbone, tmp_path, fresh_cache):
    state = {key: value.clone() for key, value in backbone.model.state_dict().items()}
    state["ln_final.weight"] += 0.5
    path = tmp_path / "other.pt"
    torch.save(state, path)
    loaded = build_backbone("ViT-S-32", path, _tiny(backbone))
    assert loaded.digest != backbone.digest
    with pytest.raises(BackboneError, match=f"hash to {loaded.digest}, but the model was fitted"):
        build_backbone("ViT-S-32", path, _tiny(backbone), expected_digest=backbone.digest)


def test_weights_of_another_architecture_are_a_backbone_error(backbone, tmp_path, fresh_cache):
    path = tmp_path / "tiny.pt"
    torch.save(backbone.model.state_dict(), path)
    other = dict(_tiny(backbone), embed_dim=32)
    with pytest.raises(
        BackboneError,
        match=r"(?s)pretrained=.*tiny.pt' is not a usable weights file for "
        r"backbone='ViT-S-32' \(RuntimeError: .*size mismatch",
    ):
        build_backbone("ViT-S-32", path, other)


@pytest.mark.parametrize(
    "content",
    [b"this is not a checkpoint" * 40, bytes(range(256)) * 4, b""],
    ids=["text", "binary", "empty"],
)
def test_corrupt_weights_file_is_a_backbone_error(backbone, tmp_path, fresh_cache, content):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(content)
    with pytest.raises(BackboneError) as caught:
        build_backbone("ViT-S-32", path, _tiny(backbone))
    message = str(caught.value)
    assert "corrupt.pt' is not a usable weights file for backbone='ViT-S-32'" in message
    assert "internet" not in message  # the file is local: a download hint does not apply


def test_expected_digest_mismatch(backbone):
    with pytest.raises(
        BackboneError,
        match=rf"the weights of backbone='ViT-S-32' from 'random-init' hash to {backbone.digest}, "
        r"but the model was fitted with weights hashing to 0+\. Pass the weights file used at "
        r"fit time\.",
    ):
        build_backbone("ViT-S-32", None, _tiny(backbone), expected_digest="0" * 32)


def test_expected_digest_match(backbone):
    built = build_backbone("ViT-S-32", None, _tiny(backbone), expected_digest=backbone.digest)
    assert built.digest == backbone.digest
