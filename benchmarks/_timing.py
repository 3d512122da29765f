"""Side-by-side timing shared by the benchmarks."""

from __future__ import annotations

import time

import numpy as np


def interleaved_medians(functions, repeats: int) -> list[float]:
    """Median seconds of each function, run alternately so load changes hit all alike."""
    timings = [[] for _ in functions]
    for _ in range(repeats):
        for function, record in zip(functions, timings, strict=True):
            start = time.perf_counter()
            function()
            record.append(time.perf_counter() - start)
    return [float(np.median(record)) for record in timings]
