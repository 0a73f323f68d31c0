"""Re-execute every chapter of the course in place, in the book's order, then check it with nbval.

For instructors and maintainers, from the root of a checkout::

    CHOLLET_VIZ_MIRROR=../shared/data .venv/bin/python -m chollet_viz.reexecute

1. Each notebook of ``_toc.yml`` runs top to bottom in a fresh kernel started in its own
   folder and is saved with its new outputs, without progress bars
   (``CHOLLET_VIZ_PROGRESS=0``) and without widget state (the static book cannot run
   widgets; each explorer stores its figure instead). A line per chapter reports its wall
   time and the kernel's peak resident memory (``VmHWM``, Linux).
2. The times are written to ``book/appendix/chapter-times.md``, the table the book's page
   on running the course includes, with the machine they were measured on.
3. nbval checks the stored outputs twice: with ``TF_NUM_INTRAOP_THREADS=1`` and with
   TensorFlow's default thread count, since an output that moves with the thread count
   would fail on another machine.

``--only 5-4-2 deconvnet`` re-executes the chapters whose path contains one of those
texts (and writes no table); ``--no-nbval`` skips step 3.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["chapters", "execute", "main"]

TIMES_PAGE = Path("book/appendix/chapter-times.md")


def chapters(root: Path) -> list[Path]:
    """The notebooks of ``root/_toc.yml``, in the book's order."""
    toc = root / "_toc.yml"
    if not toc.is_file():
        raise FileNotFoundError(f"No _toc.yml in {root.resolve()}: run this from the root of a chollet_viz checkout.")
    files = re.findall(r"^\s*-?\s*(?:file|root):\s*(\S+)\s*$", toc.read_text(), flags=re.M)
    return [root / f"{name}.ipynb" for name in files if (root / f"{name}.ipynb").is_file()]


def _peak_memory_mib(pid: int | None) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return None  # not Linux, or the kernel is gone
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, flags=re.M)
    return int(match.group(1)) / 1024 if match else None


def execute(notebook: Path, timeout: int = 1800) -> tuple[float, float | None]:
    """Run ``notebook`` in place; return (wall seconds, the kernel's peak memory in MiB or None)."""
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as exc:
        raise ImportError("Re-executing the chapters needs nbclient: pip install -e '.[test]'.") from exc

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", store_widget_state=False, record_timing=False,
        coalesce_streams=True,
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    peak: list[float] = []

    def measure(**_):
        # VmHWM only grows, so the value after the last cell is the kernel's peak.
        provisioner = getattr(client.km, "provisioner", None)
        value = _peak_memory_mib(getattr(provisioner, "pid", None))
        if value is not None:
            peak.append(value)

    client.on_cell_executed = measure
    start = time.perf_counter()
    # The kernel process's own stderr carries only start-up notices (plain-TCP warnings,
    # C++ log lines); what cells print reaches the notebook through the kernel's messages.
    client.execute(stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:  # timestamps of an earlier run would only make diffs noisy
        cell.metadata.pop("execution", None)
    nbformat.write(nb, notebook)
    return seconds, max(peak, default=None)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), flags=re.M).group(1)
    except (OSError, AttributeError):
        pass
    try:
        memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        memory = "unknown memory"
    return f"{os.cpu_count()} CPU cores ({cpu}), {memory}, {'a GPU' if _has_gpu() else 'no GPU'}"


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _times_table(rows: list[tuple[Path, float, float | None]], root: Path) -> str:
    import keras
    import tensorflow as tf

    lines = [
        f"Measured on {datetime.date.today().isoformat()} by `python -m chollet_viz.reexecute` on "
        f"{_machine()}, Keras {keras.__version__} on TensorFlow {tf.__version__}. Wall time is the whole notebook "
        "in a fresh kernel, start-up included; peak memory is the kernel's largest resident size.",
        "",
        "| chapter | wall time | peak memory |",
        "|---|---:|---:|",
    ]
    for notebook, seconds, peak in rows:
        name = notebook.relative_to(root).with_suffix("").as_posix()
        memory = f"{peak / 1024:.1f} GiB" if peak else "n/a"
        lines.append(f"| {{doc}}`/{name}` | {seconds:.0f} s | {memory} |")
    total = sum(seconds for _, seconds, _ in rows)
    lines.append(f"| all chapters | {total:.0f} s ({total / 60:.0f} min) | |")
    return "\n".join(lines) + "\n"


def _nbval(root: Path, threads: int | None) -> int:
    env = dict(os.environ)
    if threads:
        env["TF_NUM_INTRAOP_THREADS"] = str(threads)
    label = f"TF_NUM_INTRAOP_THREADS={threads}" if threads else "TensorFlow's default threads"
    print(f"nbval, {label}:", flush=True)
    parallel = ["-n", "2", "--dist", "loadfile"] if importlib.util.find_spec("xdist") else []  # a notebook per worker
    return subprocess.call([sys.executable, "-m", "pytest", "-q", *parallel, "book"], cwd=root, env=env)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="TEXT", help="re-execute only the chapters whose path contains one of these")
    parser.add_argument("--no-nbval", action="store_true", help="do not run nbval afterwards")
    parser.add_argument("--root", type=Path, default=Path("."), help="the checkout (default: here)")
    args = parser.parse_args(argv)

    root = args.root.resolve()
    notebooks = chapters(root)
    if args.only:
        notebooks = [nb for nb in notebooks if any(text in nb.as_posix() for text in args.only)]
        if not notebooks:
            parser.error(f"no chapter path contains any of {args.only}; chapters: {[str(n.relative_to(root)) for n in chapters(root)]}")
    os.environ["CHOLLET_VIZ_PROGRESS"] = "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if os.environ.get("CHOLLET_VIZ_MIRROR"):  # kernels start in the notebook's folder
        os.environ["CHOLLET_VIZ_MIRROR"] = str(Path(os.environ["CHOLLET_VIZ_MIRROR"]).resolve())

    rows = []
    for i, notebook in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {notebook.relative_to(root)} ...", flush=True)
        seconds, peak = execute(notebook)
        memory = f", peak {peak / 1024:.1f} GiB" if peak else ""
        print(f"      {seconds:.0f} s{memory}", flush=True)
        rows.append((notebook, seconds, peak))
    if not args.only:
        (root / TIMES_PAGE).write_text(_times_table(rows, root))
        print(f"times written to {TIMES_PAGE}")
    if args.no_nbval:
        return 0
    return _nbval(root, threads=1) or _nbval(root, threads=None)


if __name__ == "__main__":
    sys.exit(main())
