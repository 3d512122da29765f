"""Diagnostic plots of a fitted :class:`~skvf.NeaRClassifier` (matplotlib, optional).

- :func:`plot_training_history`: loss and clean fraction per epoch, warm-up shaded.
- :func:`plot_name_frequencies`: how often the labeler gave each name, kept or dropped.
- :func:`plot_name_mapping`: which final class the images of each labeler name went to.

Each function takes a fitted classifier, draws on ``ax`` (or a new figure) and returns
the :class:`matplotlib.figure.Figure`. matplotlib is an optional dependency:
``pip install "skvf[plot]"``.

Examples
--------
``clf`` is a fitted classifier; fitting one takes several seconds even on the tiny
offline setup, too slow for a docstring example, so this one is not run
(``examples/plots.py`` and ``tests/test_plotting.py`` draw all three plots):

>>> from skvf.plotting import plot_training_history
>>> plot_training_history(clf).savefig("history.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.utils.validation import check_is_fitted

__all__ = ["plot_name_frequencies", "plot_name_mapping", "plot_training_history"]

# Above this many cells the heatmap is not annotated with counts.
_MAX_ANNOTATED_CELLS = 400


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            'skvf.plotting needs matplotlib, which is not installed: pip install "skvf[plot]"'
        ) from None
    return plt


def _axes(ax, figsize: tuple[float, float]):
    if ax is not None:
        return ax.figure, ax
    return _pyplot().subplots(figsize=figsize, layout="constrained")


def _name_counts(clf, max_names: int | None) -> list[tuple[str, int]]:
    """The labeler's (normalised) names with their image counts, most frequent first."""
    check_is_fitted(clf, "labeler_names_")
    counts = Counter(str(name) for name in clf.labeler_names_["normalized"])
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ranked if max_names is None else ranked[:max_names]


def plot_training_history(clf, ax=None):
    """Plot the training loss and the clean fraction per epoch.

    The loss (left axis) is the soft cross-entropy the prompts were trained on; the
    clean fraction (right axis) is the share of training names the noise splitter held
    clean, which stays at 1 during warm-up (shaded) and with the splitter off.

    Parameters
    ----------
    clf : NeaRClassifier
        A fitted classifier (its ``history_`` is read).
    ax : matplotlib.axes.Axes or None, default=None
        Where to draw; ``None`` makes a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _pyplot()
    check_is_fitted(clf, "history_")
    epochs = np.asarray([entry["epoch"] for entry in clf.history_])
    loss = np.asarray([entry["loss"] for entry in clf.history_])
    clean = np.asarray([entry["clean_fraction"] for entry in clf.history_])
    warmup = np.asarray([entry["phase"] == "warmup" for entry in clf.history_])
    figure, ax = _axes(ax, (7.0, 4.0))
    if warmup.any():
        ax.axvspan(epochs[0], epochs[warmup][-1], color="0.9", label="warm-up")
    ax.plot(epochs, loss, color="C0", label="loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss", color="C0")
    clean_ax = ax.twinx()
    clean_ax.plot(epochs, clean, color="C1", linestyle="--", label="clean fraction")
    clean_ax.set_ylabel("clean fraction", color="C1")
    clean_ax.set_ylim(0.0, 1.05)
    handles = ax.get_legend_handles_labels()[0] + clean_ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper right")
    ax.set_title("NeaR training")
    return figure


def plot_name_frequencies(clf, max_names: int | None = 30, ax=None):
    """Plot how many training images the labeler gave each name.

    Bars of names that became classes (``classes_``) are coloured; names the label
    filter dropped are grey.

    Parameters
    ----------
    clf : NeaRClassifier
        A fitted classifier (its ``labeler_names_`` and ``classes_`` are read).
    max_names : int or None, default=30
        Show the most frequent names only; ``None`` shows all.
    ax : matplotlib.axes.Axes or None, default=None
        Where to draw; ``None`` makes a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _pyplot()
    ranked = _name_counts(clf, max_names)
    names = [name for name, _ in ranked]
    counts = [count for _, count in ranked]
    kept = set(map(str, clf.classes_))
    colours = ["C0" if name in kept else "0.7" for name in names]
    figure, ax = _axes(ax, (7.0, 1.0 + 0.28 * len(names)))
    positions = np.arange(len(names))
    ax.barh(positions, counts, color=colours)
    ax.set_yticks(positions, labels=names)
    ax.invert_yaxis()
    ax.set_xlabel("training images")
    shown = "" if max_names is None or len(clf.vocabulary_) <= max_names else " (most frequent)"
    ax.set_title(f"labeler names{shown}: coloured = kept as a class, grey = dropped")
    return figure


def _assigned_classes(clf, X) -> np.ndarray:
    """The final class of each training image: predicted on X, else its last target."""
    if X is not None:
        predictions = np.asarray(clf.predict(X), dtype=object)
        if len(predictions) <= int(np.max(clf.train_indices_)):
            raise ValueError(
                f"X has {len(predictions)} items, but the classifier was fitted on at least "
                f"{int(np.max(clf.train_indices_)) + 1}; pass the images given to fit."
            )
        return predictions[clf.train_indices_]
    column_of = {name: index for index, name in enumerate(clf.vocabulary_)}
    columns = np.asarray([column_of[name] for name in clf.classes_])
    targets = np.asarray(clf.refined_targets_)[:, columns]
    return np.asarray(clf.classes_, dtype=object)[targets.argmax(axis=1)]


def plot_name_mapping(clf, X=None, max_names: int | None = 30, ax=None):
    """Plot where the images of each labeler name ended up among the final classes.

    A heatmap: one row per labeler name, one column per class of ``classes_``; a cell
    is the share of the row's training images that went to the column's class (the
    count is written in it when the table is small). A clean labeler gives a diagonal;
    a name the refinement corrected spreads to other columns.

    Parameters
    ----------
    clf : NeaRClassifier
        A fitted classifier.
    X : sequence of images or None, default=None
        The images given to ``fit``: each training image goes to its predicted class.
        ``None`` uses the class its last refined training target favours among
        ``classes_`` (no prediction needed).
    max_names : int or None, default=30
        Rows for the most frequent labeler names only; ``None`` shows all.
    ax : matplotlib.axes.Axes or None, default=None
        Where to draw; ``None`` makes a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _pyplot()
    ranked = _name_counts(clf, max_names)
    row_names = [name for name, _ in ranked]
    classes = [str(name) for name in clf.classes_]
    assigned = _assigned_classes(clf, X)
    given = np.asarray(clf.labeler_names_["normalized"], dtype=object)
    counts = np.zeros((len(row_names), len(classes)), dtype=int)
    row_of = {name: index for index, name in enumerate(row_names)}
    column_of = {name: index for index, name in enumerate(classes)}
    for name, target in zip(given, assigned, strict=True):
        if name in row_of and target in column_of:
            counts[row_of[name], column_of[target]] += 1
    totals = counts.sum(axis=1, keepdims=True)
    shares = counts / np.maximum(totals, 1)

    figure, ax = _axes(ax, (1.5 + 0.45 * len(classes), 1.5 + 0.35 * len(row_names)))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(np.arange(len(classes)), labels=classes, rotation=60, ha="right")
    ax.set_yticks(np.arange(len(row_names)), labels=row_names)
    ax.set_xlabel("final class")
    ax.set_ylabel("labeler name")
    if counts.size <= _MAX_ANNOTATED_CELLS:
        for (row, column), count in np.ndenumerate(counts):
            if count:
                colour = "white" if shares[row, column] > 0.6 else "black"
                ax.text(column, row, str(count), ha="center", va="center", color=colour)
    figure.colorbar(image, ax=ax, label="share of the name's images")
    ax.set_title("labeler names -> final classes")
    return figure
