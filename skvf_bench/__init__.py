"""The evaluation harness: what skvf is measured with, never what it runs.

Simulated labelers (:mod:`~skvf_bench.simulation`, and simulated vision LLMs with
profiles in :mod:`~skvf_bench.simulated_mllm`), offline data sets
(:mod:`~skvf_bench.datasets`; the 160-class fine-grained garment benchmark in
:mod:`~skvf_bench.finegrained`, its words in :mod:`~skvf_bench.garment_names` and
web-like captions for it in :mod:`~skvf_bench.captions`), a stand-in for a pretrained
CLIP pretrained here on them (:mod:`~skvf_bench.standin`), stand-in image encoders
that need no weights (:mod:`~skvf_bench.encoders`), the baselines NeaR is compared with
(:mod:`~skvf_bench.baselines`), the runs of the paper's regime offline
(:mod:`~skvf_bench.runner`) with their tables and plots (:mod:`~skvf_bench.reporting`),
and the offline demo builders used by the examples and ``skvf demo``
(:mod:`~skvf_bench.demo`).

It sits beside the product, which never imports it: ``fit`` and ``predict`` run without
it, and the ``skvf`` command imports it only on the paths that ask for simulated or
offline parts (``--labeler simulated``, ``--image-encoder pixels|hog``, ``--tiny``,
``skvf demo``). Importing it trusts nothing: :func:`skvf.serialization.trusted_types`
lists the product's types whatever was imported before, and a model built with the
harness's estimators loads with :func:`trusted_types`, asked for by name.

Examples
--------
>>> import numpy as np
>>> from skvf_bench import ImagePixels, NoisyOracleLabeler, make_oracle, trusted_types
>>> images = np.zeros((2, 8, 8), dtype=np.uint8) + np.array([0, 200])[:, None, None]
>>> NoisyOracleLabeler(make_oracle(images, ["dark", "light"]), noise_rate=0.0).fit(
...     images
... ).transform(images)
array(['dark', 'light'], dtype=object)
>>> ImagePixels(size=4).fit_transform(images).shape
(2, 16)
>>> "skvf_bench.simulation.NoisyOracleLabeler" in trusted_types()
True
"""

from .baselines import LabelerDirect, ZeroShotCLIP, method_configs
from .captions import garment_captions
from .encoders import HOGFeatures, ImagePixels, RandomConvFeatures
from .finegrained import FineGarments, few_shot_draws, imbalanced_split, load_fine_garments
from .simulated_mllm import SimulatedMLLM, make_simulated_mllm
from .simulation import NoisyOracleLabeler, make_oracle
from .standin import standin_params

__all__ = [
    "FineGarments",
    "HOGFeatures",
    "ImagePixels",
    "LabelerDirect",
    "NoisyOracleLabeler",
    "RandomConvFeatures",
    "SimulatedMLLM",
    "ZeroShotCLIP",
    "few_shot_draws",
    "garment_captions",
    "imbalanced_split",
    "load_fine_garments",
    "make_oracle",
    "make_simulated_mllm",
    "method_configs",
    "standin_params",
    "trusted_types",
]

# The harness's estimators that a saved model may hold.
_SAVED_TYPES = (
    HOGFeatures,
    ImagePixels,
    LabelerDirect,
    NoisyOracleLabeler,
    RandomConvFeatures,
    SimulatedMLLM,
    ZeroShotCLIP,
)


def trusted_types() -> list[str]:
    """Type names to trust when loading a model built with the harness's estimators.

    The product's :func:`skvf.serialization.trusted_types` and the harness's estimators
    that a model may hold (simulated labelers, offline encoders, baselines). Models
    fitted by ``skvf fit --labeler simulated`` or ``--image-encoder pixels|hog`` load
    with these (``skvf predict --trust-harness``); a model from someone else should
    not need them.

    Returns
    -------
    list of str
        Fully qualified type names, sorted, for ``skvf.serialization.load(...,
        trusted=...)`` or ``skops.io.load(..., trusted=...)``.
    """
    from skvf.serialization import trusted_types as product_types

    harness = (f"{cls.__module__}.{cls.__name__}" for cls in _SAVED_TYPES)
    return sorted({*product_types(), *harness})
