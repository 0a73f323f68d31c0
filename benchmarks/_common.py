"""Timing and memory helpers shared by the benchmarks (run them as ``python benchmarks/bench_*.py``)."""

from __future__ import annotations

import resource
import statistics
import sys
import time


def interleaved_seconds(candidates: dict, repeats: int, warmup: int = 1) -> dict:
    """Per candidate, the wall times of ``repeats`` rounds in which the candidates take turns.

    Taking turns within each round spreads the load of other processes over all of them,
    so ratios between candidates stay meaningful on a busy machine. Warm-up calls
    (tracing, first-call allocations) are not measured.
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median_seconds(candidates: dict, repeats: int, warmup: int = 1) -> dict:
    """The median of :func:`interleaved_seconds` per candidate."""
    return {name: statistics.median(t) for name, t in interleaved_seconds(candidates, repeats, warmup).items()}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux
