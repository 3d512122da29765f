"""Refined soft targets: what each training image is taught, given how noisy its name is.

Pure functions over numpy arrays; the training loop calls :func:`refined_targets` each
epoch after warm-up.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "one_hot",
    "normalise_rows",
    "sharpen",
    "candidate_targets",
    "posterior_targets",
    "refined_targets",
]


def one_hot(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Return the one-hot matrix of integer ``labels``, shape (n_samples, n_classes)."""
    matrix = np.zeros((len(labels), n_classes))
    matrix[np.arange(len(labels)), labels] = 1.0
    return matrix


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Divide each row by its sum; an all-zero row stays zero."""
    totals = matrix.sum(axis=1, keepdims=True)
    return matrix / np.where(totals > 0, totals, 1.0)


def sharpen(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Raise each row to the power ``1 / temperature`` and renormalise.

    ``temperature < 1`` makes a distribution more peaked; ``1`` leaves it unchanged.
    """
    if temperature == 1.0:
        return normalise_rows(probabilities)
    # Work in log space so tiny probabilities do not underflow to an all-zero row.
    logs = np.log(np.maximum(probabilities, 1e-300)) / temperature
    logs -= logs.max(axis=1, keepdims=True)
    powered = np.exp(logs) * (probabilities > 0)
    return normalise_rows(powered)


def candidate_targets(
    probabilities: np.ndarray,
    candidate_votes: np.ndarray,
    weighting: str = "votes",
    temperature: float = 0.5,
) -> np.ndarray:
    """The model's prediction restricted to each image's candidate set.

    Parameters
    ----------
    probabilities : ndarray of shape (n_samples, n_classes)
        The model's current class probabilities.
    candidate_votes : ndarray of shape (n_samples, n_classes)
        Votes from :func:`skvf.candidates.candidate_votes`; zero outside the set.
    weighting : {"votes", "mask"}
        ``"votes"`` multiplies the prediction by the vote counts (names more of the
        neighbours agree on weigh more); ``"mask"`` only zeroes non-candidates.
    temperature : float
        Sharpening temperature applied after renormalising.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        Rows sum to one and are zero outside the candidate set.
    """
    weights = candidate_votes if weighting == "votes" else (candidate_votes > 0).astype(float)
    restricted = probabilities * weights
    empty = restricted.sum(axis=1) <= 0
    restricted[empty] = weights[empty]  # prediction vanished on the set: fall back to votes
    return sharpen(normalise_rows(restricted), temperature)


def posterior_targets(
    labels: np.ndarray,
    probabilities: np.ndarray,
    clean_probability: np.ndarray,
    candidate_votes: np.ndarray,
    clean_vote_weight: float = 2.0,
    weighting: str = "votes",
    temperature: float = 1.0,
) -> np.ndarray:
    """The model's prediction times a candidate prior in which clean names weigh more.

    ``t_i ∝ p_i * (s_i + clean_vote_weight * w_i * onehot(y_i))`` where ``s_i`` is the
    candidate votes (or the candidate mask) of image ``i``: the neighbours' names form
    the prior, and the image's own name gets extra votes in proportion to its clean
    probability ``w_i``. Every sample is refined; none keeps a wrong name outright.

    Parameters
    ----------
    labels : ndarray of int, shape (n_samples,)
    probabilities : ndarray of shape (n_samples, n_classes)
    clean_probability : ndarray of shape (n_samples,)
    candidate_votes : ndarray of shape (n_samples, n_classes)
    clean_vote_weight : float
        Extra votes of a surely-clean sample's own name.
    weighting : {"votes", "mask"}
    temperature : float
        Sharpening temperature.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        Rows sum to one and are zero outside the candidate set.
    """
    prior = candidate_votes if weighting == "votes" else (candidate_votes > 0).astype(float)
    prior = prior + clean_vote_weight * clean_probability[:, None] * one_hot(
        labels, probabilities.shape[1]
    )
    return candidate_targets(probabilities, prior, "votes", temperature)


def refined_targets(
    labels: np.ndarray,
    probabilities: np.ndarray,
    clean_probability: np.ndarray,
    candidate_votes: np.ndarray,
    rule: str = "posterior",
    clean_vote_weight: float = 2.0,
    threshold: float = 0.5,
    weighting: str = "votes",
    temperature: float = 1.0,
) -> np.ndarray:
    """Soft training targets for one epoch.

    ``rule="posterior"`` is :func:`posterior_targets`. ``rule="dividemix"``: a clean
    sample (``w_i > threshold``) keeps its name, blended with the prediction,
    ``w_i * onehot(y_i) + (1 - w_i) * p_i``; a noisy sample is taught the prediction
    restricted to its candidate set (:func:`candidate_targets`).

    Parameters
    ----------
    labels : ndarray of int, shape (n_samples,)
        Labeler names as class indices.
    probabilities : ndarray of shape (n_samples, n_classes)
        The model's current prediction ``p``.
    clean_probability : ndarray of shape (n_samples,)
        ``w``, e.g. from :class:`skvf.GMMNoiseSplitter`.
    candidate_votes : ndarray of shape (n_samples, n_classes)
    rule : {"posterior", "dividemix"}
    clean_vote_weight : float
        Used by the posterior rule.
    threshold : float
        Used by the dividemix rule.
    weighting : {"votes", "mask"}
    temperature : float

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        Rows sum to one.
    """
    if rule == "posterior":
        return posterior_targets(
            labels,
            probabilities,
            clean_probability,
            candidate_votes,
            clean_vote_weight=clean_vote_weight,
            weighting=weighting,
            temperature=temperature,
        )
    n_classes = probabilities.shape[1]
    weight = clean_probability[:, None]
    clean = weight * one_hot(labels, n_classes) + (1.0 - weight) * probabilities
    noisy = candidate_targets(probabilities, candidate_votes, weighting, temperature)
    is_clean = (clean_probability > threshold)[:, None]
    return np.where(is_clean, clean, noisy)
