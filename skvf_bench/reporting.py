"""Tables, paired comparisons and plots of benchmark results, one dict per method and seed.

Every function takes ``results``: a list of dicts with at least ``"method"``, ``"seed"``
and the scores (``"cacc"``, ``"sacc"``), as ``benchmarks/fgvr.py`` and
:func:`skvf_bench.runner.run_trial` produce them.

- :func:`markdown_table`: one row per method, mean ± sd over seeds, calls, cost, times;
- :func:`paired_differences` and :func:`paired_table`: a method minus a reference, paired
  by seed, with a 95% t interval;
- :func:`plot_sweep` and :func:`plot_curves`: accuracy against a swept setting (PNG);
- :func:`write_csv`: every measurement.

Examples
--------
>>> results = [
...     {"method": m, "seed": s, "cacc": c}
...     for m, scores in {"A": [0.5, 0.7, 0.6], "B": [0.4, 0.5, 0.5]}.items()
...     for s, c in enumerate(scores)
... ]
>>> paired = paired_differences(results, "A", "B")
>>> round(paired["mean"], 3), paired["wins"], paired["n"]
(0.133, 3, 3)
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

__all__ = [
    "markdown_table",
    "paired_differences",
    "paired_table",
    "plot_curves",
    "plot_sweep",
    "write_csv",
]

_METRIC_LABELS = {"cacc": "cACC", "sacc": "sACC"}


def _mean_sd(values) -> str:
    values = np.asarray(values, dtype=float)
    if np.all(np.isnan(values)):
        return "—"
    return f"{np.nanmean(values):.3f} ± {np.nanstd(values, ddof=1) if len(values) > 1 else 0:.3f}"


def markdown_table(results: list[dict], methods: list[str], simulated: bool) -> str:
    """One row per method: accuracies mean ± sd over seeds, calls, cost and times.

    Parameters
    ----------
    results : list of dict
        With ``cacc``, ``sacc``, ``fit_calls``, ``calls_per_1000``, ``cost_per_1000``,
        ``fit_s`` and ``predict_ms_per_1000`` for each method and seed.
    methods : list of str
        The rows, in order.
    simulated : bool
        The labeler is simulated: its cost column says so instead of a price.

    Returns
    -------
    str
    """
    cost_header = "labeler cost / 1000 pred. (USD)"
    lines = [
        "| method | cACC | sACC | labeler calls in fit | labeler calls / 1000 pred. "
        f"| {cost_header} | fit (s) | predict (ms / 1000 img.) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        rows = [r for r in results if r["method"] == method]
        cost = (
            "— (simulated)" if simulated else f"{np.mean([r['cost_per_1000'] for r in rows]):.4f}"
        )
        lines.append(
            f"| {method} | {_mean_sd([r['cacc'] for r in rows])} "
            f"| {_mean_sd([r['sacc'] for r in rows])} "
            f"| {np.mean([r['fit_calls'] for r in rows]):.0f} "
            f"| {np.mean([r['calls_per_1000'] for r in rows]):.0f} | {cost} "
            f"| {np.mean([r['fit_s'] for r in rows]):.2f} "
            f"| {np.mean([r['predict_ms_per_1000'] for r in rows]):.1f} |"
        )
    return "\n".join(lines)


def paired_differences(
    results: list[dict], method: str, reference: str, metric: str = "cacc"
) -> dict | None:
    """``metric`` of ``method`` minus ``reference``, paired by seed: mean, 95% CI, wins.

    The seeds share the split, the labeler's names and the features, so the paired
    difference removes the between-seed spread that the ± sd columns show.

    Parameters
    ----------
    results : list of dict
    method, reference : str
    metric : {"cacc", "sacc"}, default="cacc"

    Returns
    -------
    dict or None
        ``mean``, ``low`` and ``high`` (the 95% t interval of the mean), ``wins`` (seeds
        where ``method`` is ahead) and ``n``; ``None`` for fewer than two pairs or a
        method against itself.
    """
    from scipy import stats

    by_seed = {r["seed"]: r[metric] for r in results if r["method"] == reference}
    pairs = [(r[metric], by_seed[r["seed"]]) for r in results if r["method"] == method]
    if len(pairs) < 2 or method == reference:
        return None
    differences = np.array([a - b for a, b in pairs])
    half_width = stats.t.ppf(0.975, len(differences) - 1) * stats.sem(differences)
    return {
        "mean": float(differences.mean()),
        "low": float(differences.mean() - half_width),
        "high": float(differences.mean() + half_width),
        "wins": int(np.sum(differences > 0)),
        "n": len(differences),
    }


def paired_table(
    results: list[dict], methods: list[str], references: list[str], metric: str = "cacc"
) -> str:
    """Markdown table of every method's paired difference in ``metric`` to each reference.

    References that were not run are left out; an empty string when none was run.
    """
    references = [r for r in references if r in methods]
    if not references:
        return ""
    label = _METRIC_LABELS[metric]
    lines = [
        "| method | " + " | ".join(f"Δ {label} vs {r} (95% CI), wins" for r in references) + " |",
        "|---|" + "---|" * len(references),
    ]
    for method in methods:
        cells = []
        for reference in references:
            paired = paired_differences(results, method, reference, metric)
            cells.append(
                "—"
                if paired is None
                else f"{paired['mean']:+.3f} ({paired['low']:+.3f}, {paired['high']:+.3f}), "
                f"{paired['wins']}/{paired['n']}"
            )
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sweep(results: list[dict], key: str, label: str, title: str, path: Path) -> None:
    """Save mean ± sd cACC of each method against the numeric setting ``key``."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in results):
        values = sorted({r[key] for r in results if r["method"] == method})
        scores = [
            [r["cacc"] for r in results if r["method"] == method and r[key] == v] for v in values
        ]
        axes.errorbar(
            values,
            [np.mean(s) for s in scores],
            yerr=[np.std(s, ddof=1) if len(s) > 1 else 0.0 for s in scores],
            marker="o",
            capsize=3,
            label=method,
        )
    axes.set_xlabel(label)
    axes.set_ylabel("cluster accuracy (test)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_curves(
    results: list[dict], key: str, panel: str, label: str, title: str, path: Path
) -> None:
    """Save mean ± sd cACC and sACC of each method against ``key``, a panel per ``panel``.

    ``key`` takes any values (``3`` or ``"1-10"``), shown in the order they first
    appear; a row of panels per metric (cACC, then sACC when measured), a column per
    value of ``panel`` (e.g. the labeler's profile).
    """
    plt = _pyplot()
    panels = list(dict.fromkeys(r[panel] for r in results))
    metrics = [m for m in _METRIC_LABELS if not all(np.isnan(r[m]) for r in results)]
    figure, grid = plt.subplots(
        len(metrics),
        len(panels),
        figsize=(5 * len(panels), 3.6 * len(metrics)),
        squeeze=False,
        sharey="row",
    )
    for column, value in enumerate(panels):
        shown = [r for r in results if r[panel] == value]
        positions = {v: i for i, v in enumerate(dict.fromkeys(r[key] for r in shown))}
        for row, metric in enumerate(metrics):
            axes = grid[row, column]
            for method in dict.fromkeys(r["method"] for r in shown):
                scores = [
                    [r[metric] for r in shown if r["method"] == method and r[key] == v]
                    for v in positions
                ]
                axes.errorbar(
                    list(positions.values()),
                    [np.mean(s) if s else np.nan for s in scores],
                    yerr=[np.std(s, ddof=1) if len(s) > 1 else 0.0 for s in scores],
                    marker="o",
                    capsize=3,
                    label=method,
                )
            axes.set_xticks(list(positions.values()), [str(v) for v in positions])
            axes.set_xlabel(label)
            axes.set_ylabel(f"{_METRIC_LABELS[metric]} (test)")
            axes.set_title(f"{title}, {value}")
            axes.grid(alpha=0.3)
    grid[0, -1].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_csv(results: list[dict], path: Path) -> None:
    """Save every measurement, one row per method, seed and setting."""
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(results[0]))
        writer.writeheader()
        writer.writerows(results)
