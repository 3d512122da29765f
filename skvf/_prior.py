"""The tuned model's prior over its names, and the score offsets that correct for it.

A tuned prompt does not score every name alike: a generic name ("shirt"), a name given to
many training images, or one whose text lands where many images lie draws images of
other classes. Averaged over the training images, the model's probabilities say how
much each name draws (its prior); dividing the probabilities by that prior (adding
``-log(prior)`` to the scores) removes the head start, the prior-shift correction of
Saerens et al. (2002) toward names used alike. Only the training images enter it, so
``predict`` stays a function of one image.
"""

from __future__ import annotations

import numpy as np

from ._refinement import normalise_rows

__all__ = ["PRIOR_PSEUDO_COUNT", "name_prior", "prior_offsets"]

#: Images' worth of probability added to every name's mass, so that a name the model
#: almost never predicts on the training images gets a bounded offset.
PRIOR_PSEUDO_COUNT = 0.1


def name_prior(probabilities: np.ndarray) -> np.ndarray:
    """The mean of the model's probabilities over the training images, smoothed.

    Parameters
    ----------
    probabilities : ndarray of shape (n_samples, n_classes)
        The tuned model's probabilities over the final vocabulary; rows need not sum
        to one (they are renormalised, e.g. after names were dropped).

    Returns
    -------
    ndarray of shape (n_classes,)
        ``(mass + PRIOR_PSEUDO_COUNT) / (n_samples + n_classes * PRIOR_PSEUDO_COUNT)``,
        ``mass`` being each name's summed probability; sums to one.

    Examples
    --------
    >>> import numpy as np
    >>> name_prior(np.array([[0.9, 0.1], [0.7, 0.3]])).round(3)
    array([0.773, 0.227])
    """
    rows = normalise_rows(np.asarray(probabilities, dtype=np.float64))
    mass = rows.sum(axis=0) + PRIOR_PSEUDO_COUNT
    return mass / mass.sum()


def prior_offsets(prior: np.ndarray, strength: float) -> np.ndarray:
    """Score offsets ``-strength * log(prior)``, centred on zero.

    Added to the scaled similarities, they divide each name's probability by its prior
    raised to ``strength`` (0: no correction, 1: the full prior shift).

    Parameters
    ----------
    prior : ndarray of shape (n_classes,)
    strength : float

    Returns
    -------
    ndarray of shape (n_classes,)

    Examples
    --------
    >>> prior_offsets(np.array([0.5, 0.25, 0.25]), 1.0).round(3)
    array([-0.462,  0.231,  0.231])
    """
    offsets = -strength * np.log(np.asarray(prior, dtype=np.float64))
    return offsets - offsets.mean()
