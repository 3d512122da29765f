"""Every private scikit-learn name skvf uses, imported here and nowhere else.

scikit-learn keeps these names private (a leading underscore in their module path), so a
release may move or change them. skvf's modules import them from this one module: a
scikit-learn release that breaks one breaks this file, and ``pyproject.toml`` caps
scikit-learn below the first release not yet tested (:data:`SUPPORTED_SKLEARN`);
``tests/test_sklearn_compat_module.py`` checks that the cap and the installed version
agree.

- ``fit_context``: scikit-learn's ``_fit_context`` decorator, which validates an
  estimator's parameters against its ``_parameter_constraints`` on ``fit`` unless
  ``sklearn.set_config(skip_parameter_validation=True)`` is in force, and lets nested
  estimators skip their own validation when the caller prefers.
- ``HasMethods``, ``Interval``, ``StrOptions``: parameter constraints.
- ``InvalidParameterError``: what a failed validation raises (a ``ValueError``).
- ``validate_parameter_constraints``: the same validation for a chosen subset of
  parameters (what ``predict`` uses, checked again since ``set_params`` checks nothing).
"""

from sklearn.base import _fit_context as fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Interval,
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
)

__all__ = [
    "SUPPORTED_SKLEARN",
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "StrOptions",
    "fit_context",
    "validate_parameter_constraints",
]

#: The scikit-learn releases these private names were checked against: (lowest, first
#: release not yet checked). Keep in step with the requirement in ``pyproject.toml``.
SUPPORTED_SKLEARN = ("1.6", "1.10")
