"""Benchmark reporting (skvf_bench.reporting): paired differences by seed and their tables."""

from __future__ import annotations

import numpy as np
import pytest

from skvf_bench.reporting import paired_differences, paired_table


def _rows(method, scores):
    return [{"method": method, "seed": seed, "cacc": s} for seed, s in enumerate(scores)]


def test_paired_differences_pair_by_seed():
    results = _rows("A", [0.5, 0.7, 0.6]) + _rows("B", [0.4, 0.5, 0.6])
    results.reverse()  # pairing goes by seed, not by order
    paired = paired_differences(results, "A", "B")
    assert paired["mean"] == pytest.approx(0.1)
    assert paired["wins"] == 1 + 1  # a tie is not a win
    assert paired["n"] == 3
    # t(0.975, 2) = 4.303; sd of (0.1, 0.2, 0.0) = 0.1; sem = 0.1 / sqrt(3)
    half_width = 4.3027 * 0.1 / np.sqrt(3)
    assert paired["low"] == pytest.approx(0.1 - half_width, abs=1e-3)
    assert paired["high"] == pytest.approx(0.1 + half_width, abs=1e-3)
    assert paired_differences(results, "A", "A") is None


def test_paired_table_names_each_reference():
    results = _rows("A", [0.5, 0.7]) + _rows("B", [0.4, 0.5])
    table = paired_table(results, ["A", "B"], ["B", "not run"])
    lines = table.splitlines()
    assert "vs B" in lines[0] and "not run" not in lines[0]
    assert lines[2].startswith("| A | +0.150 (") and lines[2].endswith("2/2 |")
    assert lines[3] == "| B | — |"
    assert paired_table(results, ["A"], ["not run"]) == ""


def test_paired_differences_of_another_metric():
    results = [
        {"method": m, "seed": seed, "cacc": 0.5, "sacc": s}
        for m, scores in {"A": [0.9, 0.8], "B": [0.7, 0.7]}.items()
        for seed, s in enumerate(scores)
    ]
    paired = paired_differences(results, "A", "B", metric="sacc")
    assert paired["mean"] == pytest.approx(0.15) and paired["wins"] == 2
    assert paired_differences(results, "A", "B")["mean"] == 0.0  # cACC by default
    assert paired_table(results, ["A", "B"], ["B"], metric="sacc").splitlines()[0] == (
        "| method | Δ sACC vs B (95% CI), wins |"
    )
