"""CoOp prompt learning on open_clip's text tower.

The prompt of class ``k`` is ``[SOT] v_1 ... v_M name_k . [EOT]``: the token embeddings
of the context words are replaced by learnable vectors ``v_1 ... v_M`` (shared by all
classes, or one set per class), and the frozen text tower encodes the result. Only the
context receives gradients.

open_clip 3.x text towers are batch-first and pool with ``text_global_pool``; this module
uses the tower's own modules (token embedding, transformer, final norm, projection) and
its pooling function, so a learner initialised from ``"a photo of a"`` reproduces
``model.encode_text(tokenizer("a photo of a {name}."))`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = [
    "GRAD_CHUNK_SIZE",
    "PromptLearner",
    "TextTower",
    "build_prompt_learner",
    "context_token_count",
    "prompt_text_features",
    "text_tower",
]

# A placeholder word for the context positions; its embeddings are replaced.
_PLACEHOLDER = "X"

#: Most class prompts a pass with gradients encodes at once (``PromptLearner``'s
#: ``grad_chunk_size``): a ViT-B-16 fit on a CPU stays under 3 GB with class names of
#: about six tokens, and K = 300 classes still take a single pass.
GRAD_CHUNK_SIZE = 320


@dataclass
class TextTower:
    """The parts of an open_clip text tower the prompt learner drives."""

    token_embedding: nn.Module
    positional_embedding: torch.Tensor
    transformer: nn.Module
    ln_final: nn.Module
    text_projection: object
    attn_mask: torch.Tensor | None
    pool_type: str
    eos_id: int | None


def text_tower(model) -> TextTower:
    """Return the text-tower parts of an open_clip ``CLIP`` or ``CustomTextCLIP`` model.

    Raises
    ------
    ValueError
        The model's text tower is not an open_clip ``TextTransformer`` that a prompt
        learner can drive (e.g. a Hugging Face text tower or a CoCa class token).
    """
    text = getattr(model, "text", None)
    if text is None:  # CLIP keeps the text tower's modules on the model itself
        return _tower_from(model, pool_attribute="text_pool_type", eos_attribute="text_eos_id")
    if not hasattr(text, "token_embedding") or getattr(text, "cls_emb", None) is not None:
        raise ValueError(
            f"the text tower of this backbone ({type(text).__name__}) is not supported by the "
            "prompt learner; use a backbone with an open_clip TextTransformer text tower "
            "(e.g. ViT-B-16, ViT-L-14, RN50)."
        )
    if getattr(text, "use_pad_mask", False):
        raise ValueError(
            "backbones whose text tower uses a padding mask are not supported by the "
            "prompt learner; use a backbone with a causal text tower (e.g. ViT-B-16)."
        )
    return _tower_from(text, pool_attribute="pool_type", eos_attribute="eos_id")


def _tower_from(owner, pool_attribute: str, eos_attribute: str) -> TextTower:
    return TextTower(
        token_embedding=owner.token_embedding,
        positional_embedding=owner.positional_embedding,
        transformer=owner.transformer,
        ln_final=owner.ln_final,
        text_projection=owner.text_projection,
        attn_mask=owner.attn_mask,
        pool_type=getattr(owner, pool_attribute),
        eos_id=getattr(owner, eos_attribute, None),
    )


def context_token_count(tokenizer, phrase: str) -> int:
    """Return how many tokens ``phrase`` occupies between the start and end tokens."""
    tokens = tokenizer([phrase])[0]
    return int(_sequence_length(tokens[None], "argmax", None)[0]) - 2


def _sequence_length(tokens: torch.Tensor, pool_type: str, eos_id: int | None) -> torch.Tensor:
    """Length of each tokenised prompt, end token included."""
    if pool_type == "eos" and eos_id is not None:
        return (tokens == eos_id).int().argmax(dim=-1) + 1
    return tokens.argmax(dim=-1) + 1  # the end token has the largest id


class PromptLearner(nn.Module):
    """Learnable CoOp context in front of each class name.

    Parameters
    ----------
    model : open_clip model
        Its text tower is used frozen.
    tokenizer : callable
        open_clip tokenizer of the model.
    class_names : list of str
        One name per class.
    n_ctx : int
        Number of context vectors. Must equal the token count of ``ctx_init`` when
        that is given.
    ctx_init : str or None
        Phrase whose token embeddings initialise the context (``"a photo of a"``);
        ``None`` draws the context from N(0, 0.02²).
    class_specific : bool
        One context per class instead of one shared context.
    generator : torch.Generator or None
        Source of randomness for a random context.
    share_prefix : bool, default=True
        Compute the prefix every prompt shares once per pass (see :attr:`shares_prefix`);
        ``False`` encodes every prompt whole (the same result, K times the prefix work).
    grad_chunk_size : int, default=GRAD_CHUNK_SIZE
        Above this many classes, a pass with gradients encodes the prompts in chunks
        under activation checkpointing (see :meth:`forward`).
    """

    def __init__(
        self,
        model,
        tokenizer,
        class_names: list[str],
        n_ctx: int,
        ctx_init: str | None = None,
        class_specific: bool = False,
        generator: torch.Generator | None = None,
        share_prefix: bool = True,
        grad_chunk_size: int = GRAD_CHUNK_SIZE,
    ):
        super().__init__()
        self.share_prefix = share_prefix
        self.grad_chunk_size = grad_chunk_size
        self.tower = text_tower(model)
        self.n_ctx = n_ctx
        embedding = self.tower.token_embedding
        device = embedding.weight.device
        prefix = " ".join([_PLACEHOLDER] * n_ctx)
        full_tokens = tokenizer([f"{prefix} {name}." for name in class_names]).to(device)
        context_length = int(self.tower.positional_embedding.shape[0])
        lengths = _sequence_length(full_tokens, self.tower.pool_type, self.tower.eos_id)
        if int(lengths.max()) >= context_length:
            raise ValueError(
                f"a prompt with n_ctx={n_ctx} context vectors and the longest class name "
                f"does not fit in the text tower's {context_length} tokens; use a smaller n_ctx."
            )
        # Truncate to the longest real prompt: attention over padding is wasted work, and
        # with a causal mask the padding cannot change the pooled token. Pooling from the
        # last position ('last') depends on the length, so keep it whole there.
        keep = context_length if self.tower.pool_type == "last" else int(lengths.max())
        self.register_buffer("tokens", full_tokens[:, :keep], persistent=False)
        with torch.no_grad():
            token_embeds = embedding(self.tokens).float()
        self.register_buffer("prefix_embeds", token_embeds[:, :1].clone(), persistent=False)
        self.register_buffer(
            "suffix_embeds", token_embeds[:, 1 + n_ctx :].clone(), persistent=False
        )

        n_classes = len(class_names)
        width = embedding.weight.shape[1]
        if ctx_init is not None:
            init_tokens = tokenizer([ctx_init]).to(device)
            with torch.no_grad():
                init = embedding(init_tokens)[0, 1 : 1 + n_ctx].float().clone()
        else:
            init = torch.empty(n_ctx, width, device="cpu").normal_(0.0, 0.02, generator=generator)
            init = init.to(device)
        if class_specific:
            init = init.unsqueeze(0).repeat(n_classes, 1, 1)
        self.context = nn.Parameter(init)

    @property
    def shares_prefix(self) -> bool:
        """Whether the forward pass computes the shared prefix once for every class.

        The start token and a shared context are the same in every class prompt, and
        the text tower's attention is causal, so their hidden states are the same in
        every prompt too: they are computed once, and the class-name positions attend
        to them. This needs a shared context, a causal mask, pooling at the end token
        and open_clip's standard residual blocks; otherwise every prompt is encoded
        whole.
        """
        transformer = self.tower.transformer
        return (
            self.share_prefix
            and self.context.dim() == 2
            and self.tower.attn_mask is not None
            and self.tower.pool_type in ("argmax", "eos")
            and getattr(transformer, "batch_first", False)
            and all(_is_standard_block(block) for block in transformer.resblocks)
        )

    @property
    def n_classes(self) -> int:
        """Number of class prompts."""
        return int(self.tokens.shape[0])

    def prompt_embeddings(self, classes: slice = slice(None)) -> torch.Tensor:
        """Return the token embeddings of the class prompts ``classes``, context inserted."""
        suffix = self.suffix_embeds[classes]
        context = self.context
        if context.dim() == 2:
            context = context.unsqueeze(0).expand(suffix.shape[0], -1, -1)
        else:
            context = context[classes]
        return torch.cat([self.prefix_embeds[classes], context, suffix], dim=1)

    def forward(self) -> torch.Tensor:
        """Encode every class prompt; returns unnormalised text features (K, embed_dim).

        With gradients on and more than ``grad_chunk_size`` classes, the prompts are
        encoded in equal chunks of at most ``grad_chunk_size``, each under activation
        checkpointing: the forward pass keeps no activations, and the backward pass
        encodes each chunk again and backpropagates it before the next. The text
        tower's activation memory then stops growing with K, for one more forward pass;
        the features and gradients are those of a single pass, up to float rounding.
        """
        if not torch.is_grad_enabled() or self.n_classes <= self.grad_chunk_size:
            return self._encode(slice(None))
        from torch.utils.checkpoint import checkpoint

        n_chunks = -(-self.n_classes // self.grad_chunk_size)
        bounds = [self.n_classes * index // n_chunks for index in range(n_chunks + 1)]
        return torch.cat(
            [
                checkpoint(self._encode, slice(start, stop), use_reentrant=False)
                for start, stop in zip(bounds[:-1], bounds[1:], strict=True)
            ]
        )

    def _encode(self, classes: slice) -> torch.Tensor:
        """Unnormalised text features of the class prompts ``classes``."""
        from open_clip.transformer import text_global_pool

        tower = self.tower
        tokens = self.tokens[classes]
        length = tokens.shape[1]
        cast_dtype = tower.transformer.get_cast_dtype()
        x = self.prompt_embeddings(classes).to(cast_dtype)
        x = x + tower.positional_embedding[:length].to(cast_dtype)
        attn_mask = None if tower.attn_mask is None else tower.attn_mask[:length, :length]
        if self.shares_prefix:
            x = _transformer_with_shared_prefix(tower.transformer, x, 1 + self.n_ctx)
        else:
            x = tower.transformer(x, attn_mask=attn_mask)
        x = tower.ln_final(x)
        x = text_global_pool(x, tokens, tower.pool_type, eos_token_id=tower.eos_id)
        projection = tower.text_projection
        if projection is not None:
            x = projection(x) if isinstance(projection, nn.Module) else x @ projection
        return x

    def context_numpy(self) -> np.ndarray:
        """The learned context as a float32 array (for fitted state)."""
        return self.context.detach().float().cpu().numpy()


def build_prompt_learner(
    backbone, classnames, n_ctx, ctx_init, class_specific, context=None, seed=None
) -> PromptLearner:
    """A prompt learner for ``classnames`` on the backbone's device, from a context or a seed.

    Parameters
    ----------
    backbone : skvf._backbone.Backbone
        The learner goes to its ``device``. On CUDA every prompt is encoded whole
        (``share_prefix=False``): there a pass is bound by kernel launches, not
        arithmetic, and the K whole prompts in one batch take half the time of the
        shared prefix and its K suffixes (``benchmarks/fit_cost.py --device cuda``,
        ViT-B-16 on an H200: 0.03 against 0.05 s a step at K = 300, 0.06 against 0.13 s
        at K = 500). Elsewhere the prefix is shared.
    classnames : sequence of str
    n_ctx : int or None
        Context vectors; ``None`` is 16, or the token count of ``ctx_init``.
    ctx_init : str or None
        Phrase initialising the context; ``None`` draws it at random.
    class_specific : bool
        One context per class.
    context : ndarray or None, default=None
        A learnt context to load (a fitted model's ``context_``).
    seed : int or None, default=None
        Seed of the random context.

    Returns
    -------
    PromptLearner
    """
    device = backbone.device
    generator = torch.Generator()
    if seed is not None:
        generator.manual_seed(seed)
    learner = PromptLearner(
        backbone.model,
        backbone.tokenizer,
        list(classnames),
        n_ctx=_context_size(backbone.tokenizer, n_ctx, ctx_init),
        ctx_init=ctx_init,
        class_specific=class_specific,
        generator=generator,
        share_prefix=not device.startswith("cuda"),
    )
    if context is not None:
        with torch.no_grad():
            learner.context.copy_(torch.as_tensor(context))
    return learner.to(device)


def _context_size(tokenizer, n_ctx, ctx_init) -> int:
    if ctx_init is None:
        return 16 if n_ctx is None else n_ctx
    init_tokens = context_token_count(tokenizer, ctx_init)
    if n_ctx is not None and n_ctx != init_tokens:
        raise ValueError(
            f"n_ctx={n_ctx} does not match ctx_init={ctx_init!r}, which is {init_tokens} "
            f"tokens; pass n_ctx=None (or {init_tokens}), or ctx_init=None for a random context."
        )
    return init_tokens


def prompt_text_features(learner: PromptLearner) -> np.ndarray:
    """Unit-norm text features of every class prompt, as float32 numpy."""
    with torch.no_grad():
        text = nn.functional.normalize(learner().float(), dim=-1)
    return text.cpu().numpy().astype(np.float32)


def _is_standard_block(block) -> bool:
    attention = getattr(block, "attn", None)
    return (
        type(block).__name__ == "ResidualAttentionBlock"
        and not hasattr(block, "ln_1_kv")
        and isinstance(attention, nn.MultiheadAttention)
        and attention.batch_first
        and attention._qkv_same_embed_dim
    )


def _transformer_with_shared_prefix(transformer, x: torch.Tensor, n_prefix: int) -> torch.Tensor:
    """The causal ``transformer`` on prompts whose first ``n_prefix`` positions are equal.

    The prefix goes through each block once; the suffix positions of every prompt attend
    to the prefix's keys and values and, causally, to their own. Equal to
    ``transformer(x, attn_mask=causal)`` up to float rounding.
    """
    n_prompts, length, _ = x.shape
    prefix, suffix = x[:1, :n_prefix], x[:, n_prefix:]
    allowed = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
    for block in transformer.resblocks:
        heads = block.attn.num_heads
        q_p, k_p, v_p = (_by_head(t, heads) for t in _qkv(block.attn, block.ln_1(prefix)))
        out_p = nn.functional.scaled_dot_product_attention(
            q_p, k_p, v_p, attn_mask=allowed[:n_prefix, :n_prefix]
        )
        out_s = _suffix_attention(
            block.attn, block.ln_1(suffix), k_p[0], v_p[0], allowed[n_prefix:, n_prefix:]
        )
        prefix = prefix + block.ls_1(block.attn.out_proj(_by_position(out_p)))
        prefix = prefix + block.ls_2(block.mlp(block.ln_2(prefix)))
        suffix = suffix + block.ls_1(block.attn.out_proj(out_s))
        suffix = suffix + block.ls_2(block.mlp(block.ln_2(suffix)))
    return torch.cat([prefix.expand(n_prompts, -1, -1), suffix], dim=1)


def _suffix_attention(
    attention: nn.MultiheadAttention,
    x: torch.Tensor,
    prefix_keys: torch.Tensor,
    prefix_values: torch.Tensor,
    allowed: torch.Tensor,
) -> torch.Tensor:
    """Attention of every prompt's suffix ``x`` to the shared prefix and, causally, to itself.

    Parameters
    ----------
    attention : nn.MultiheadAttention
        The block's attention; its packed projections give the suffix's queries, keys and
        values.
    x : Tensor of shape (n_prompts, n_suffix, width)
        The normalised suffix states.
    prefix_keys, prefix_values : Tensor of shape (heads, n_prefix, head_width)
        The shared prefix's keys and values, the same for every prompt.
    allowed : bool Tensor of shape (n_suffix, n_suffix)
        Which suffix positions each suffix position attends to (the causal mask).

    Returns
    -------
    Tensor of shape (n_prompts, n_suffix, width)
        The attention output before the output projection.

    Notes
    -----
    The prefix's keys and values are never copied per prompt: the scores against them
    are one matrix product per head over all prompts' queries, so what backward keeps per
    prompt is its own queries, keys and values and its attention weights, not the
    concatenated keys and values a single attention call would need (a third of the
    step's activation memory at ViT-B-16 scale).
    """
    n_prompts, n_suffix, width = x.shape
    heads = attention.num_heads
    head_width = width // heads
    n_prefix = prefix_keys.shape[1]
    packed = nn.functional.linear(x, attention.in_proj_weight, attention.in_proj_bias)
    # (3, heads, prompts, positions, head width), so that prompts and positions merge
    queries, keys, values = (
        packed.view(n_prompts, n_suffix, 3, heads, head_width).permute(2, 3, 0, 1, 4).contiguous()
    )
    rows = (heads, n_prompts * n_suffix, -1)
    to_prefix = torch.bmm(queries.reshape(rows), prefix_keys.transpose(1, 2))
    to_suffix = (queries @ keys.transpose(-1, -2)).masked_fill(~allowed, float("-inf"))
    scores = torch.cat([to_prefix.view(heads, n_prompts, n_suffix, n_prefix), to_suffix], -1)
    weights = (scores * head_width**-0.5).softmax(dim=-1)
    out = torch.bmm(weights[..., :n_prefix].reshape(rows), prefix_values)
    out = out.view(heads, n_prompts, n_suffix, head_width) + weights[..., n_prefix:] @ values
    return out.permute(1, 2, 0, 3).reshape(n_prompts, n_suffix, width)


def _by_head(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, positions, width) -> (batch, heads, positions, width // heads)."""
    batch, positions, width = x.shape
    return x.reshape(batch, positions, heads, width // heads).transpose(1, 2)


def _by_position(x: torch.Tensor) -> torch.Tensor:
    """(batch, heads, positions, head width) -> (batch, positions, width)."""
    batch, heads, positions, head_width = x.shape
    return x.transpose(1, 2).reshape(batch, positions, heads * head_width)


def _qkv(attention: nn.MultiheadAttention, x: torch.Tensor):
    """Query, key and value projections of ``x`` with the attention's packed weights."""
    return nn.functional.linear(x, attention.in_proj_weight, attention.in_proj_bias).chunk(3, -1)
