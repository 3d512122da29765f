"""Shared fixtures of the skvf test suite."""

from __future__ import annotations

import pytest
import torch

from skvf_bench.demo import TINY_BACKBONE, TINY_BACKBONE_KWARGS, TINY_BACKBONE_PARAMS


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One intra-op torch thread during the tests, restored after them.

    The test models are tiny: intra-op threads only add overhead, and on a loaded 2-core
    machine they make each training step ten times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def backbone():
    """The tiny random-init ViT-S-32 backbone, built once per test session."""
    from skvf._backbone import build_backbone

    return build_backbone(TINY_BACKBONE, None, TINY_BACKBONE_KWARGS)


@pytest.fixture(scope="session")
def digit_zero_shot():
    """A tiny ZeroShotCLIP fitted on ten digits with noise-free simulated names.

    Shared by the session: take ``copy.deepcopy`` before changing a parameter.
    """
    from skvf_bench.baselines import ZeroShotCLIP
    from skvf_bench.datasets import load_digits_images
    from skvf_bench.simulation import NoisyOracleLabeler, make_oracle

    images, names = load_digits_images(scale=1)
    labeler = NoisyOracleLabeler(make_oracle(images[:10], names[:10]), noise_rate=0.0)
    return ZeroShotCLIP(labeler=labeler, **TINY_BACKBONE_PARAMS).fit(images[:10])
