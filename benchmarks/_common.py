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


# --- results as rows (``--json PATH``; benchmarks/run_all.py gathers them into one table) ---

ROW_KEYS = ("benchmark", "measurement", "baseline", "ratio", "peak_mib", "note")


def result_row(benchmark: str, measurement: str, baseline: str, ratio, peak_mib=None, note: str = "") -> dict:
    """One key result: ``ratio`` is ``measurement`` over ``baseline`` (which one divides
    which the measurement's words say); None where it could not be measured (``note``
    says why). ``peak_mib``: the peak resident memory of the process that measured it."""
    return {"benchmark": benchmark, "measurement": measurement, "baseline": baseline,
            "ratio": None if ratio is None else float(ratio),
            "peak_mib": None if peak_mib is None else float(peak_mib), "note": note}


def add_json_option(parser) -> None:
    parser.add_argument("--json", metavar="PATH",
                        help="also write the key results as JSON rows to PATH (benchmarks/run_all.py reads them)")


def write_rows(path, rows) -> None:
    """Write ``rows`` (from :func:`result_row`) to ``path`` as JSON; nothing when ``path`` is None."""
    if path is None:
        return
    import json

    rows = list(rows)
    for row in rows:
        if set(row) != set(ROW_KEYS):
            raise ValueError(f"a result row needs exactly the keys {ROW_KEYS}, got {sorted(row)}")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
