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
(:mod:`~skvf_bench.demo`). The product (``fit`` and ``predict``) never
imports this package; importing it registers its estimators with
:func:`skvf.serialization.trusted_types`, so that models built with them load.

Examples
--------
>>> import numpy as np
>>> from skvf_bench import ImagePixels, NoisyOracleLabeler, make_oracle
>>> images = np.zeros((2, 8, 8), dtype=np.uint8) + np.array([0, 200])[:, None, None]
>>> NoisyOracleLabeler(make_oracle(images, ["dark", "light"]), noise_rate=0.0).fit(
...     images
... ).transform(images)
array(['dark', 'light'], dtype=object)
>>> ImagePixels(size=4).fit_transform(images).shape
(2, 16)
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
]
