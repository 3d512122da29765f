"""The NeaR training loop: prompt tuning on frozen image features with refined targets.

Every step is full-batch: the image features are fixed, so one step costs one pass of the
text tower over the K class prompts plus an (N x K) matrix product, whatever N is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import softmax

from ._refinement import one_hot, refined_targets

__all__ = ["TrainingConfig", "TrainingResult", "tune_prompts"]

#: CLIP caps its logit scale at 100; so does the prompt tuner.
MAX_LOGIT_SCALE = 100.0


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of :func:`tune_prompts`, each given explicitly.

    :class:`skvf.NeaRClassifier` builds one from its parameters (``"auto"`` values
    resolved); the meaning of each field is that of the estimator's parameter of the
    same name. ``logit_scale`` is the initial scale, ``clean_threshold`` the clean
    probability above which a name counts as clean.
    """

    max_epochs: int
    warmup_epochs: int
    learning_rate: float
    optimizer: str
    logit_scale: float
    learn_logit_scale: bool
    clean_threshold: float
    refinement: str
    clean_vote_weight: float
    candidate_weighting: str
    sharpen_temperature: float
    verbose: int


@dataclass
class TrainingResult:
    """What :func:`tune_prompts` learned, as numpy arrays."""

    context: np.ndarray
    logit_scale: float
    probabilities: np.ndarray
    clean_probability: np.ndarray
    targets: np.ndarray
    history: list = field(default_factory=list)


def tune_prompts(
    learner,
    features: np.ndarray,
    labels: np.ndarray,
    candidate_votes: np.ndarray,
    noise_splitter,
    config: TrainingConfig,
) -> TrainingResult:
    """Tune the context of ``learner`` so its class prompts fit the refined targets.

    Parameters
    ----------
    learner : skvf._prompt.PromptLearner
        Training runs on the device of its context (bfloat16 autocast on CUDA); its
        context is the only trained tensor besides the logit scale.
    features : ndarray of shape (n_samples, embed_dim)
        Unit-norm image features in the text embedding space.
    labels : ndarray of int, shape (n_samples,)
        Labeler names as class indices.
    candidate_votes : ndarray of shape (n_samples, n_classes)
    noise_splitter : estimator or None
        Fitted each epoch after warm-up on the per-sample losses; exposes
        ``clean_probability_``. ``None`` trusts every name (plain cross-entropy).
    config : TrainingConfig

    Returns
    -------
    TrainingResult
    """
    import torch
    import torch.nn.functional as F

    device = learner.context.device
    image_features = torch.as_tensor(features, dtype=torch.float32, device=device)
    n_samples, n_classes = len(labels), learner.n_classes
    label_tensor = torch.as_tensor(labels, dtype=torch.long, device=device)
    log_scale = torch.nn.Parameter(
        torch.tensor(math.log(config.logit_scale), device=device),
        requires_grad=config.learn_logit_scale,
    )
    parameters = [learner.context] + ([log_scale] if config.learn_logit_scale else [])
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    else:
        optimizer = torch.optim.SGD(parameters, lr=config.learning_rate, momentum=0.9)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.max_epochs)
    use_autocast = device.type == "cuda"

    def forward_logits(autocast=use_autocast):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            text_features = learner()
        text_features = F.normalize(text_features.float(), dim=-1)
        return log_scale.exp() * image_features @ text_features.T

    clean_probability = np.ones(n_samples)
    targets = one_hot(labels, n_classes)
    history = []
    epochs = range(config.max_epochs)
    if config.verbose:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc="prompt tuning", unit="epoch")
    for epoch in epochs:
        logits = forward_logits()
        log_probabilities = F.log_softmax(logits, dim=1)
        refining = epoch >= config.warmup_epochs and noise_splitter is not None
        if refining:
            with torch.no_grad():
                name_loss = -log_probabilities.gather(1, label_tensor[:, None])[:, 0]
                probabilities = log_probabilities.exp()
            noise_splitter.fit(name_loss.cpu().numpy())
            clean_probability = np.asarray(noise_splitter.clean_probability_, dtype=np.float64)
            targets = refined_targets(
                labels,
                probabilities.double().cpu().numpy(),
                clean_probability,
                candidate_votes,
                rule=config.refinement,
                clean_vote_weight=config.clean_vote_weight,
                threshold=config.clean_threshold,
                weighting=config.candidate_weighting,
                temperature=config.sharpen_temperature,
            )
        target_tensor = torch.as_tensor(targets, dtype=torch.float32, device=device)
        loss = -(target_tensor * log_probabilities).sum(dim=1).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the training loss became {loss.item()} at epoch {epoch}; lower learning_rate."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            log_scale.clamp_(max=math.log(MAX_LOGIT_SCALE))
        history.append(
            {
                "epoch": epoch,
                "phase": "refine" if refining else "warmup",
                "loss": float(loss.item()),
                "clean_fraction": float(np.mean(clean_probability > config.clean_threshold)),
                "logit_scale": float(log_scale.exp().item()),
            }
        )
    with torch.no_grad():
        # In float32, as predict scores: the label filter and the prior read these.
        final_logits = forward_logits(autocast=False).float().cpu().numpy()
    return TrainingResult(
        context=learner.context_numpy(),
        logit_scale=float(log_scale.exp().item()),
        probabilities=softmax(final_logits.astype(np.float64), axis=1),
        clean_probability=clean_probability,
        targets=targets,
        history=history,
    )
