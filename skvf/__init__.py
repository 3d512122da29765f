"""skvf: vocabulary-free fine-grained visual recognition as a scikit-learn estimator.

``NeaRClassifier().fit(images).predict(new_images)`` names images with no vocabulary
given: a multimodal LLM names a small training set, nearest neighbours in a frozen
image-feature space refine those noisy names, and a prompt-tuned CLIP predicts alone.

The evaluation harness (simulated labelers, data sets, offline encoders, baselines,
demo builders) is the package ``skvf_bench`` beside this one; nothing here imports it.

Heavy dependencies (torch, open_clip, LiteLLM, skops) are imported on first
use, so ``import skvf`` stays fast.
"""

from importlib import import_module

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "NeaRClassifier": "skvf.classifier",
    "MLLMLabeler": "skvf.labeling",
    "NeighborCandidateBuilder": "skvf.candidates",
    "GMMNoiseSplitter": "skvf.noise",
    "FixedNoiseSplitter": "skvf.noise",
    "LabelFilter": "skvf.filtering",
    "ImageInputError": "skvf.exceptions",
    "SkippedImagesWarning": "skvf.exceptions",
    "BackboneError": "skvf.exceptions",
    "normalize_name": "skvf.names",
    "cluster_accuracy": "skvf.metrics",
    "semantic_accuracy": "skvf.metrics",
    "trusted_types": "skvf.serialization",
    "clear_caches": "skvf._process_cache",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'skvf' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
