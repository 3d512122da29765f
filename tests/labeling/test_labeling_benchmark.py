"""benchmarks/labeling.py end to end: one row per run, each measured on its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_benchmark_measures_each_run_apart_and_reruns_from_the_cache():
    environment = dict(os.environ, PYTHONPATH=str(ROOT), LITELLM_LOCAL_MODEL_COST_MAP="True")
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "labeling.py"),
        "--n-images", "6",
        "--latency", "0.5",
        "--serial-images", "2",
        "--max-concurrency", "3", "2",
        "--processes", "1", "2",
    ]  # fmt: skip
    result = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=300, check=True
    )
    rows = [line.split() for line in result.stdout.splitlines() if line[:6].strip().isdigit()]
    # (in flight, processes, peak requests the server saw at once): the server's peak is
    # reset for every run, so the run with 2 in flight after the one with 3 shows 2; two
    # worker processes with 3 in flight keep one each (3 // 2) in flight.
    assert [(row[1], row[2], row[-1]) for row in rows] == [
        ("1", "1", "1"),
        ("3", "1", "3"),
        ("2", "1", "2"),
        ("3", "2", "2"),
        ("2", "2", "2"),
    ]
    assert "start-up of 2 worker processes" in result.stdout
    assert "6 cache hits, 0 requests" in result.stdout
