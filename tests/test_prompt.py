"""Tests of skvf._prompt: the CoOp prompt learner on open_clip's text tower."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from skvf._prompt import PromptLearner, build_prompt_learner, context_token_count, text_tower

NAMES = ["painted bunting", "blue jay", "cat", "northern rough-winged swallow"]


def _reference(backbone, names=NAMES, phrase="a photo of a"):
    tokens = backbone.tokenizer([f"{phrase} {name}." for name in names])
    with torch.no_grad():
        return tokens, backbone.model.encode_text(tokens)


def _real_lengths(tokens):
    return (tokens != 0).sum(dim=1)


@pytest.mark.parametrize("class_specific", [False, True])
def test_initialised_learner_reproduces_encode_text(backbone, class_specific):
    learner = PromptLearner(
        backbone.model,
        backbone.tokenizer,
        NAMES,
        n_ctx=4,
        ctx_init="a photo of a",
        class_specific=class_specific,
    )
    tokens, expected = _reference(backbone)
    length = learner.tokens.shape[1]
    # The inputs of the transformer are bit-for-bit the reference prompts' embeddings...
    with torch.no_grad():
        reference_embeddings = backbone.model.token_embedding(tokens[:, :length])
    assert torch.equal(learner.prompt_embeddings(), reference_embeddings)
    # the token ids agree outside the context positions (which hold placeholder words)
    assert torch.equal(learner.tokens[:, 0], tokens[:, 0])
    assert torch.equal(learner.tokens[:, 5:], tokens[:, 5:length])
    # ...and the outputs agree to float32 rounding (the truncated attention sums fewer zeros).
    with torch.no_grad():
        features = learner()
    assert features.shape == (len(NAMES), 64)
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-6)


def test_context_shapes(backbone):
    shared = PromptLearner(backbone.model, backbone.tokenizer, NAMES, 4, "a photo of a")
    specific = PromptLearner(
        backbone.model, backbone.tokenizer, NAMES, 4, "a photo of a", class_specific=True
    )
    assert shared.context.shape == (4, 64)
    assert specific.context.shape == (len(NAMES), 4, 64)
    assert shared.n_classes == specific.n_classes == len(NAMES)
    # every class starts from the same phrase
    for row in specific.context:
        assert torch.equal(row, shared.context)
    assert shared.context_numpy().dtype == "float32"
    assert shared.context_numpy().shape == (4, 64)


def test_class_specific_contexts_are_independent(backbone):
    learner = PromptLearner(
        backbone.model, backbone.tokenizer, NAMES, 4, "a photo of a", class_specific=True
    )
    with torch.no_grad():
        before = learner()
        learner.context[1] += 0.5
        after = learner()
    assert torch.equal(before[[0, 2, 3]], after[[0, 2, 3]])
    assert not torch.allclose(before[1], after[1])


def test_prompts_are_truncated_to_the_longest_real_prompt(backbone):
    learner = PromptLearner(backbone.model, backbone.tokenizer, NAMES, 4, "a photo of a")
    tokens, _ = _reference(backbone)
    longest = int(_real_lengths(tokens).max())
    assert longest == 12  # SOT + 4 context + "northern rough - winged swallow" + "." + EOT
    assert learner.tokens.shape == (len(NAMES), longest)
    assert learner.tokens.shape[1] < 77
    short = PromptLearner(backbone.model, backbone.tokenizer, ["cat"], 2)
    assert short.tokens.shape == (1, 6)  # SOT X X cat . EOT


def test_gradients_reach_only_the_context(backbone):
    learner = PromptLearner(backbone.model, backbone.tokenizer, NAMES, 4, "a photo of a")
    features = learner()
    target = torch.randn(features.shape, generator=torch.Generator().manual_seed(0))
    ((features - target) ** 2).sum().backward()
    assert learner.context.grad is not None
    assert learner.context.grad.abs().sum() > 0
    for name, parameter in backbone.model.named_parameters():
        assert parameter.requires_grad is False, name
        assert parameter.grad is None, name
    assert [name for name, _ in learner.named_parameters()] == ["context"]


def test_buffers_do_not_enter_the_state_dict(backbone):
    learner = PromptLearner(backbone.model, backbone.tokenizer, NAMES, 4, "a photo of a")
    assert list(learner.state_dict()) == ["context"]


def test_random_context_is_reproducible_with_a_seeded_generator(backbone):
    def build(seed):
        generator = torch.Generator().manual_seed(seed)
        return PromptLearner(backbone.model, backbone.tokenizer, NAMES, 8, generator=generator)

    first, second, other = build(3), build(3), build(4)
    assert first.context.shape == (8, 64)
    assert torch.equal(first.context, second.context)
    assert not torch.equal(first.context, other.context)
    assert 0.01 < float(first.context.detach().std()) < 0.03  # N(0, 0.02^2)
    with torch.no_grad():
        assert torch.equal(first(), second())


def test_random_context_does_not_touch_the_global_rng(backbone):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    PromptLearner(
        backbone.model, backbone.tokenizer, NAMES, 8, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    ("phrase", "count"),
    [("a photo of a", 4), ("a photo of a small", 5), ("X X X", 3), ("a", 1), ("", 0)],
)
def test_context_token_count(backbone, phrase, count):
    assert context_token_count(backbone.tokenizer, phrase) == count


@pytest.mark.parametrize("n_ctx", [80, 70])
def test_too_long_context_does_not_fit(backbone, n_ctx):
    with pytest.raises(
        ValueError,
        match=rf"a prompt with n_ctx={n_ctx} context vectors and the longest class name does "
        r"not fit in the text tower's 77 tokens; use a smaller n_ctx\.",
    ):
        PromptLearner(backbone.model, backbone.tokenizer, NAMES, n_ctx=n_ctx)


def test_longest_context_that_fits(backbone):
    # "cat." is SOT + n_ctx + cat + . + EOT: n_ctx = 72 uses 76 of the 77 positions.
    learner = PromptLearner(backbone.model, backbone.tokenizer, ["cat"], n_ctx=72)
    assert learner.tokens.shape == (1, 76)
    with torch.no_grad():
        assert torch.isfinite(learner()).all()


# ----------------------------------------------------------------------------- text_tower


def test_text_tower_of_a_clip_model(backbone):
    tower = text_tower(backbone.model)
    assert tower.token_embedding is backbone.model.token_embedding
    assert tower.pool_type == "argmax"
    assert tower.positional_embedding.shape == (77, 64)


def _fake_text(**extra):
    text = types.SimpleNamespace(
        token_embedding=nn.Embedding(10, 4),
        positional_embedding=torch.zeros(8, 4),
        transformer=nn.Identity(),
        ln_final=nn.Identity(),
        text_projection=None,
        attn_mask=None,
        pool_type="argmax",
    )
    for key, value in extra.items():
        setattr(text, key, value)
    return types.SimpleNamespace(text=text)


def test_text_tower_rejects_a_class_token_tower():
    model = _fake_text(cls_emb=nn.Parameter(torch.zeros(4)))
    with pytest.raises(
        ValueError,
        match=r"the text tower of this backbone \(SimpleNamespace\) is not supported by the "
        "prompt learner",
    ):
        text_tower(model)


def test_text_tower_rejects_a_tower_without_token_embedding():
    model = types.SimpleNamespace(text=nn.Linear(2, 2))  # e.g. a Hugging Face text tower
    with pytest.raises(
        ValueError, match=r"text tower of this backbone \(Linear\) is not supported"
    ):
        text_tower(model)


def test_text_tower_rejects_a_padding_mask_tower():
    with pytest.raises(ValueError, match="text tower uses a padding mask"):
        text_tower(_fake_text(use_pad_mask=True))


def test_text_tower_accepts_a_custom_text_tower_without_class_token():
    tower = text_tower(_fake_text(cls_emb=None, eos_id=7))
    assert tower.eos_id == 7
    assert tower.pool_type == "argmax"


@pytest.mark.parametrize("pool_type", ["argmax", "last"])
def test_custom_text_clip_reproduces_encode_text(backbone, pool_type):
    import open_clip

    config = backbone.config  # the tiny test config, merged into ViT-S-32's
    text_cfg = dict(config["text_cfg"], pool_type=pool_type)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = open_clip.CustomTextCLIP(
            embed_dim=64, vision_cfg=config["vision_cfg"], text_cfg=text_cfg
        ).eval()
    names = ["blue jay", "northern rough-winged swallow"]
    learner = PromptLearner(model, backbone.tokenizer, names, 4, "a photo of a")
    # 'last' pools the final position, so the prompt keeps its full length there
    assert learner.tokens.shape[1] == (12 if pool_type == "argmax" else 77)
    with torch.no_grad():
        expected = model.encode_text(backbone.tokenizer([f"a photo of a {n}." for n in names]))
        torch.testing.assert_close(learner(), expected, rtol=1e-5, atol=1e-6)


def test_shared_prefix_is_computed_once_and_changes_nothing(backbone):
    # The start token and a shared context are the same in every prompt and attention is
    # causal: computing them once must give the full pass's features and gradients.
    from skvf._prompt import _transformer_with_shared_prefix

    names = ["red", "dark blue jay", "a very long bird name of many words", "x"]
    learner = PromptLearner(
        backbone.model,
        backbone.tokenizer,
        names,
        n_ctx=5,
        generator=torch.Generator().manual_seed(1),
    )
    assert learner.shares_prefix
    tower = learner.tower
    length = learner.tokens.shape[1]

    def encoded(shared):
        learner.context.grad = None
        x = learner.prompt_embeddings() + tower.positional_embedding[:length]
        if shared:
            out = _transformer_with_shared_prefix(tower.transformer, x, 1 + learner.n_ctx)
        else:
            out = tower.transformer(x, attn_mask=tower.attn_mask[:length, :length])
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        return out.detach(), learner.context.grad.clone()

    (full, full_grad), (fast, fast_grad) = encoded(False), encoded(True)
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_grad, full_grad, rtol=1e-4, atol=1e-4)
    whole = PromptLearner(
        backbone.model,
        backbone.tokenizer,
        names,
        n_ctx=5,
        generator=torch.Generator().manual_seed(1),
        share_prefix=False,
    )
    assert not whole.shares_prefix
    torch.testing.assert_close(learner(), whole(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "device",
    [
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA here"),
        ),
    ],
)
def test_a_fit_shares_the_prefix_on_cpu_and_encodes_whole_prompts_on_cuda(device):
    from skvf._backbone import build_backbone
    from skvf_bench.demo import TINY_BACKBONE, TINY_BACKBONE_KWARGS

    backbone = build_backbone(TINY_BACKBONE, None, TINY_BACKBONE_KWARGS, device=device)
    learner = build_prompt_learner(backbone, ["a", "b"], 4, None, False, seed=0)
    assert learner.shares_prefix == (device == "cpu")
    assert learner.context.device.type == device


def test_class_specific_context_is_encoded_whole(backbone):
    learner = PromptLearner(
        backbone.model, backbone.tokenizer, ["a", "b"], n_ctx=3, class_specific=True
    )
    assert not learner.shares_prefix


# ------------------------------------------------------------------ gradients in chunks

CHUNK_NAMES = ["red", "dark blue jay", "a very long bird name of many words", "x", "cat"]


def _features_and_gradient(backbone, grad_chunk_size, **options):
    learner = PromptLearner(
        backbone.model,
        backbone.tokenizer,
        CHUNK_NAMES,
        n_ctx=5,
        generator=torch.Generator().manual_seed(1),
        grad_chunk_size=grad_chunk_size,
        **options,
    )
    features = learner()
    # a loss coupling every class, as the training loss does through its softmax
    logits = nn.functional.normalize(features, dim=-1) @ torch.linspace(-1, 1, 64).tanh()
    (logits.log_softmax(dim=0)[1] + features.square().mean()).backward()
    return features.detach(), learner.context.grad


@pytest.mark.parametrize(
    "options",
    [{}, {"share_prefix": False}, {"class_specific": True}],
    ids=["shared-prefix", "whole", "class-specific"],
)
def test_chunked_pass_gives_the_single_pass_features_and_gradients(backbone, options):
    features, gradient = _features_and_gradient(backbone, len(CHUNK_NAMES), **options)
    chunked_features, chunked_gradient = _features_and_gradient(backbone, 2, **options)
    assert gradient.abs().max() > 0
    torch.testing.assert_close(chunked_features, features, rtol=1e-5, atol=1e-6)
    # Many threads order the float32 sums of the two passes differently (1.7e-6 seen with
    # 16); a wrong chunk would be off by the gradient's own size (above 1e-3).
    torch.testing.assert_close(chunked_gradient, gradient, rtol=1e-4, atol=1e-5)


def _recording_encode(monkeypatch, learner):
    """Record the (start, stop) of every chunk ``learner`` encodes."""
    encoded = []
    encode = learner._encode

    def recording(classes):
        encoded.append((classes.start, classes.stop))
        return encode(classes)

    monkeypatch.setattr(learner, "_encode", recording)
    return encoded


def test_above_the_chunk_size_each_chunk_is_encoded_again_in_backward(backbone, monkeypatch):
    learner = PromptLearner(
        backbone.model, backbone.tokenizer, CHUNK_NAMES, n_ctx=3, grad_chunk_size=2
    )
    encoded = _recording_encode(monkeypatch, learner)
    features = learner()
    chunks = [(0, 1), (1, 3), (3, 5)]  # five prompts in three equal chunks of at most two
    assert encoded == chunks
    features.square().sum().backward()
    # the forward pass kept no activations: backward encoded every chunk once more
    assert sorted(encoded[3:]) == chunks
    assert learner.context.grad.abs().sum() > 0


def test_at_the_chunk_size_or_without_gradients_the_prompts_go_in_one_pass(backbone, monkeypatch):
    learner = PromptLearner(
        backbone.model, backbone.tokenizer, CHUNK_NAMES, n_ctx=3, grad_chunk_size=5
    )
    encoded = _recording_encode(monkeypatch, learner)
    learner().sum().backward()
    assert encoded == [(None, None)]
    learner.grad_chunk_size = 2
    with torch.no_grad():
        learner()
    assert encoded == [(None, None)] * 2
