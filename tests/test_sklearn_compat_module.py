"""skvf._sklearn_compat: the one door to private scikit-learn API, and the version cap."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import sklearn
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from sklearn import config_context

from skvf._sklearn_compat import SUPPORTED_SKLEARN, InvalidParameterError
from skvf.candidates import NeighborCandidateBuilder
from skvf.filtering import LabelFilter
from skvf.noise import FixedNoiseSplitter, GMMNoiseSplitter

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def sklearn_requirement() -> SpecifierSet:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (requirement,) = [d for d in dependencies if re.match(r"scikit-learn\b", d)]
    return SpecifierSet(requirement.removeprefix("scikit-learn"))


def test_requirement_caps_scikit_learn_at_the_first_unchecked_release():
    lowest, first_unchecked = SUPPORTED_SKLEARN
    assert sklearn_requirement() == SpecifierSet(f">={lowest},<{first_unchecked}")
    assert Version(first_unchecked) not in sklearn_requirement()
    assert Version(lowest) in sklearn_requirement()


def test_installed_scikit_learn_is_within_the_checked_range():
    assert Version(sklearn.__version__) in sklearn_requirement()


# Each stage with a parameter its constraints refuse, and valid input for its fit.
BAD_STAGES = [
    (lambda: GMMNoiseSplitter(tol=-1.0), lambda s: s.fit(np.linspace(0, 1, 20))),
    (lambda: FixedNoiseSplitter(clean_probability=2.0), lambda s: s.fit(np.zeros(4))),
    (lambda: LabelFilter(min_supported=-1.0), lambda s: s.fit(np.eye(3), np.eye(3))),
    (
        lambda: NeighborCandidateBuilder(n_neighbors=0),
        lambda s: s.fit(np.random.default_rng(0).normal(size=(6, 3)), np.arange(6) % 2),
    ),
]


@pytest.mark.parametrize(("make", "fit"), BAD_STAGES, ids=lambda f: "")
def test_stages_validate_through_fit_context_and_honour_skip(make, fit):
    with pytest.raises(InvalidParameterError):
        fit(make())
    # scikit-learn's global switch turns the validation off, as for its own estimators:
    # whatever the stage does with the bad value, it is not a parameter-validation error.
    with config_context(skip_parameter_validation=True):
        try:
            fit(make())
        except InvalidParameterError:  # pragma: no cover - the failure this test is for
            pytest.fail("parameter validation ran although skip_parameter_validation=True")
        except (ValueError, TypeError, IndexError):
            pass
