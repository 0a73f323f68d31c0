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

The chapters on another Keras backend (their stored outputs stay TensorFlow's)::

    CHOLLET_VIZ_MIRROR=../shared/data .venv/bin/python -m chollet_viz.reexecute --backend jax --compare

runs a copy of each chapter whose backend switch, the line ``SWITCH_LINE`` in its first
code cell, names the backend instead (what a student edits), in a fresh kernel whose
environment sets ``KERAS_BACKEND`` too; it saves the executed copy in a
temporary folder (``--out`` to choose it; the stored notebooks are never written), and
compares every text output with the stored one, after the nbval sanitizers of
``tests/nbval_sanitize.cfg``. A line that is identical passes; a line that differs only in
its numbers passes *within tolerance* when each number with a decimal point or exponent
is within ``rtol * |stored| + atol`` of the stored one (default 1e-3 and 1e-6), or one unit
of its last printed digit from it (the rounding of a value within tolerance can flip that
digit), and each integer is equal; anything else *differs*, and every such line is
reported with both texts. Images are not compared; the cells tagged ``backend-<name>``
(each backend's own key lines, see ``chollet_viz.notebook``) are expected to differ and
are skipped, as are the cells nbval skips or ignores (``nbval-skip``,
``nbval-ignore-output``). An error in a cell is a failure, unless the stored cell has the
same error. A table per chapter is printed and written as JSON (``--json``); the command
fails when any chapter has differing lines or errors.
"""

from __future__ import annotations

import argparse
import configparser
import datetime
import difflib
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["chapters", "compare_notebooks", "compare_text", "execute", "main"]

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


def _nbformat():
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as exc:
        raise ImportError("Re-executing the chapters needs nbclient: pip install -e '.[test]'.") from exc
    return nbformat, NotebookClient


def execute(notebook: Path, timeout: int = 1800, env: dict | None = None) -> tuple[float, float | None]:
    """Run ``notebook`` in place; return (wall seconds, the kernel's peak memory in MiB or None).

    ``env``: the kernel's environment (default: this process's)."""
    nbformat, _ = _nbformat()
    nb = nbformat.read(notebook, as_version=4)
    seconds, peak = _run(nb, notebook.parent, timeout, env=env)
    nbformat.write(nb, notebook)
    return seconds, peak


def _run(nb, folder: Path, timeout: int, env: dict | None = None, allow_errors: bool = False):
    """Execute ``nb`` (in memory) in a fresh kernel started in ``folder``; return (seconds, peak MiB)."""
    _, NotebookClient = _nbformat()
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", store_widget_state=False, record_timing=False,
        coalesce_streams=True, allow_errors=allow_errors,
        resources={"metadata": {"path": str(folder)}},
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
    client.execute(stderr=subprocess.DEVNULL, **({"env": env} if env is not None else {}))
    seconds = time.perf_counter() - start
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:  # timestamps of an earlier run would only make diffs noisy
        cell.metadata.pop("execution", None)
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
    env = dict(os.environ, KERAS_BACKEND="tensorflow")  # the stored outputs are TensorFlow's
    if threads:
        env["TF_NUM_INTRAOP_THREADS"] = str(threads)
    label = f"TF_NUM_INTRAOP_THREADS={threads}" if threads else "TensorFlow's default threads"
    print(f"nbval, {label}:", flush=True)
    parallel = ["-n", "2", "--dist", "loadfile"] if importlib.util.find_spec("xdist") else []  # a notebook per worker
    return subprocess.call([sys.executable, "-m", "pytest", "-q", *parallel, "book"], cwd=root, env=env)


# --- Comparing a run on another backend with the stored (TensorFlow) outputs -------------

# A number as Python prints it: optional sign, digits with an optional decimal point, an
# optional exponent ("-0.25", "3e-05", "1.5E+3", "42").
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
RTOL, ATOL = 1e-3, 1e-6
SANITIZE_FILE = Path("tests/nbval_sanitize.cfg")
# Outputs nbval does not compare either: pictures and widget ids.
UNCOMPARED_DATA = ("image/", "application/vnd.jupyter.widget")
UNCOMPARED_TAGS = ("nbval-skip", "nbval-ignore-output")


def _last_digit_unit(text: str) -> float:
    """One unit of the last printed digit of a float literal: "0.844" -> 0.001, "2.1e-05" -> 1e-06."""
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def _number_matches(new: str, stored: str, rtol: float, atol: float) -> bool:
    if not any(c in stored + new for c in ".eE"):
        return int(new) == int(stored)  # counts, indices, sizes: exactly
    a, b = float(new), float(stored)
    allowed = max(rtol * abs(b) + atol, _last_digit_unit(stored), _last_digit_unit(new))
    return abs(a - b) <= allowed


def compare_text(new: str, stored: str, rtol: float = RTOL, atol: float = ATOL) -> tuple[str, list[dict]]:
    """Compare two output texts line by line.

    Returns ("equal" | "within tolerance" | "differing", details): a line is equal when
    identical; within tolerance when only its numbers differ and each matches (see the
    module's docstring); anything else differs. ``details`` holds each line that is not
    identical: ``{"stored", "new", "status", "numbers": [(stored, new), ...]}``.
    """
    if new == stored:
        return "equal", []
    old_lines, new_lines = stored.splitlines(), new.splitlines()
    details = []
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if op == "replace" and i2 - i1 == j2 - j1:
            details += [_compare_line(n, o, rtol, atol) for o, n in zip(old_lines[i1:i2], new_lines[j1:j2])]
        else:  # lines only on one side
            details += [{"stored": o, "new": None, "status": "differing", "numbers": []} for o in old_lines[i1:i2]]
            details += [{"stored": None, "new": n, "status": "differing", "numbers": []} for n in new_lines[j1:j2]]
    if not details:  # only line endings differ
        details = [{"stored": stored, "new": new, "status": "differing", "numbers": []}]
    status = "differing" if any(d["status"] == "differing" for d in details) else "within tolerance"
    return status, details


def _compare_line(new: str, stored: str, rtol: float, atol: float) -> dict:
    old_numbers, new_numbers = NUMBER.findall(stored), NUMBER.findall(new)
    same_words = NUMBER.split(stored) == NUMBER.split(new)
    pairs = list(zip(old_numbers, new_numbers)) if same_words and len(old_numbers) == len(new_numbers) else []
    within = bool(pairs) and all(_number_matches(n, o, rtol, atol) for o, n in pairs)
    differing_pairs = [(o, n) for o, n in pairs if o != n]
    return {"stored": stored, "new": new, "status": "within tolerance" if within else "differing", "numbers": differing_pairs}


def _sanitizers(root: Path) -> list[tuple[re.Pattern, str]]:
    """The regex replacements nbval applies (``tests/nbval_sanitize.cfg``), in file order."""
    path = root / SANITIZE_FILE
    if not path.is_file():
        return []
    config = configparser.ConfigParser(interpolation=None)
    config.read(path)
    return [(re.compile(config[s]["regex"]), config[s]["replace"]) for s in config.sections()]


def _cell_text(cell, sanitizers) -> tuple[str, list[str]]:
    """A code cell's comparable text (streams, text-like data, as nbval compares them) and its errors."""
    parts, errors = [], []
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            parts.append(output.get("text", ""))
        elif kind == "error":
            errors.append(f"{output.get('ename')}: {output.get('evalue')}")
        else:
            for mime, value in sorted(output.get("data", {}).items()):
                if not mime.startswith(UNCOMPARED_DATA):
                    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                    parts.append(f"{text}\n" if mime == "text/plain" else f"[{mime}]\n{text}\n")
    text = "".join(parts)
    for pattern, replacement in sanitizers:
        text = pattern.sub(replacement, text)
    return text, errors


def _backend_tag(cell) -> str | None:
    return next((t for t in cell.get("metadata", {}).get("tags", []) if t.startswith("backend-")), None)


def compare_notebooks(stored, executed, *, rtol: float = RTOL, atol: float = ATOL, sanitizers=()) -> dict:
    """Compare the code cells of an executed notebook with the stored one, cell by cell.

    Returns ``{"cells": [...], "summary": {...}}``: per compared cell its index, status
    (equal, within tolerance, differing, error) and details; the summary counts cells
    compared, equal, within tolerance, differing, errors, and the cells skipped
    (``backend-<name>`` tags, nbval's skip/ignore tags).
    """
    stored_code = [c for c in stored.cells if c.cell_type == "code"]
    new_code = [c for c in executed.cells if c.cell_type == "code"]
    if [c.source for c in stored_code] != [c.source for c in new_code]:
        raise ValueError("The executed notebook does not have the stored notebook's code cells.")
    cells, skipped = [], 0
    for index, (old, new) in enumerate(zip(stored_code, new_code)):
        tags = old.get("metadata", {}).get("tags", [])
        if _backend_tag(old) or any(t in tags for t in UNCOMPARED_TAGS):
            skipped += 1
            continue
        old_text, old_errors = _cell_text(old, sanitizers)
        new_text, new_errors = _cell_text(new, sanitizers)
        if new_errors and new_errors != old_errors:
            cells.append({"cell": index, "status": "error", "errors": new_errors, "source": new.source[:200]})
            continue
        if not (old_text or new_text or old_errors):
            continue  # prints nothing on either side: nothing to compare
        status, details = compare_text(new_text, old_text, rtol, atol)
        if old_errors != new_errors:  # the stored cell failed (tagged raises-exception), this one did not
            status, details = "differing", details + [{"stored": "; ".join(old_errors), "new": None, "status": "differing", "numbers": []}]
        cells.append({"cell": index, "status": status, "details": details})
    statuses = [c["status"] for c in cells]
    summary = {
        "compared": len(cells),
        "equal": statuses.count("equal"),
        "within tolerance": statuses.count("within tolerance"),
        "differing": statuses.count("differing"),
        "errors": statuses.count("error"),
        "skipped": skipped,
    }
    return {"cells": cells, "summary": summary}


SWITCH_LINE = 'os.environ["KERAS_BACKEND"] = "tensorflow"'


def switch_backend(nb, backend: str):
    """``nb`` (a notebook node) with its backend switch set to ``backend``, in place.

    Every chapter's first code cell holds ``SWITCH_LINE``; a chapter without it cannot be
    run on another backend, so that is an error naming the chapter's first code cell.
    """
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    if not code or SWITCH_LINE not in code[0].source:
        first = code[0].source.splitlines()[:3] if code else []
        raise ValueError(
            f"The chapter's first code cell has no backend switch line {SWITCH_LINE!r} "
            f"(it starts {first}); every chapter chooses its backend there."
        )
    code[0].source = code[0].source.replace(SWITCH_LINE, SWITCH_LINE.replace("tensorflow", backend))
    return nb


def compare(notebook: Path, backend: str, out: Path, *, timeout: int = 1800, rtol: float = RTOL,
            atol: float = ATOL, sanitizers=()) -> dict:
    """Execute a copy of ``notebook`` with ``KERAS_BACKEND=backend``, save it under ``out``,
    and compare it with the stored notebook (:func:`compare_notebooks`), which is not written."""
    nbformat, _ = _nbformat()
    # Both with the switch set, so that the code cells match; only outputs are compared.
    stored = switch_backend(nbformat.read(notebook, as_version=4), backend)
    executed = switch_backend(nbformat.read(notebook, as_version=4), backend)
    env = dict(os.environ, KERAS_BACKEND=backend)
    failure = None
    start = time.perf_counter()
    try:
        _run(executed, notebook.parent, timeout, env=env, allow_errors=True)
    except Exception as exc:  # a dead kernel or a cell past the timeout: the cells run so far count
        failure = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    seconds = time.perf_counter() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(executed, out)
    result = compare_notebooks(stored, executed, rtol=rtol, atol=atol, sanitizers=sanitizers)
    if failure:
        result["cells"].append({"cell": None, "status": "error", "errors": [failure], "source": ""})
        result["summary"]["errors"] += 1
        result["summary"]["compared"] += 1
    result["summary"]["seconds"] = round(seconds, 1)
    return result


def _compare_table(results: dict[str, dict], backend: str, rtol: float, atol: float) -> str:
    lines = [
        f"Chapters on Keras' {backend} backend against the stored outputs "
        f"(numbers: rtol {rtol:g}, atol {atol:g}, or one unit of the last printed digit; integers exactly):",
        "",
        "| chapter | cells compared | equal | within tolerance | differing | errors | skipped | wall time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in results.items():
        s = result["summary"]
        lines.append(
            f"| {name} | {s['compared']} | {s['equal']} | {s['within tolerance']} | {s['differing']} | "
            f"{s['errors']} | {s['skipped']} | {s['seconds']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


def _report_cells(result: dict) -> list[str]:
    """The lines worth reading: each error, each differing line with both texts."""
    lines = []
    for cell in result["cells"]:
        where = f"cell {cell['cell']}" if cell["cell"] is not None else "run"
        if cell["status"] == "error":
            lines += [f"  {where}: error {e}" for e in cell["errors"]]
        elif cell["status"] == "differing":
            for d in cell["details"]:
                if d["status"] == "differing":
                    lines.append(f"  {where}: stored {d['stored']!r}\n  {' ' * len(where)}  new    {d['new']!r}")
    return lines


def _compare_main(args, root: Path, notebooks: list[Path]) -> int:
    out = args.out or Path(tempfile.mkdtemp(prefix=f"chollet_viz-{args.backend}-"))
    out = out.resolve()
    sanitizers = _sanitizers(root)
    results = {}
    for i, notebook in enumerate(notebooks, 1):
        name = notebook.relative_to(root).with_suffix("").as_posix()
        print(f"[{i}/{len(notebooks)}] {name} on {args.backend} ...", flush=True)
        result = compare(notebook, args.backend, out / notebook.relative_to(root), timeout=args.timeout,
                         rtol=args.rtol, atol=args.atol, sanitizers=sanitizers)
        s = result["summary"]
        print(f"      {s['seconds']:.0f} s: {s['compared']} cells compared, {s['equal']} equal, "
              f"{s['within tolerance']} within tolerance, {s['differing']} differing, {s['errors']} errors", flush=True)
        for line in _report_cells(result):
            print(line, flush=True)
        results[name] = result
    table = _compare_table(results, args.backend, args.rtol, args.atol)
    print(table)
    report = args.json or out / f"compare-{args.backend}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(
        {"backend": args.backend, "rtol": args.rtol, "atol": args.atol, "chapters": results}, indent=1) + "\n")
    print(f"executed copies in {out}; table and every non-identical line in {report}")
    failed = [n for n, r in results.items() if r["summary"]["differing"] or r["summary"]["errors"]]
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="TEXT", help="re-execute only the chapters whose path contains one of these")
    parser.add_argument("--no-nbval", action="store_true", help="do not run nbval afterwards")
    parser.add_argument("--root", type=Path, default=Path("."), help="the checkout (default: here)")
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"), default="tensorflow",
                        help="Keras backend of the kernels (anything but tensorflow needs --compare)")
    parser.add_argument("--compare", action="store_true",
                        help="execute copies and compare their text outputs with the stored ones; writes no notebook")
    parser.add_argument("--rtol", type=float, default=RTOL, help=f"--compare: relative tolerance on numbers (default {RTOL:g})")
    parser.add_argument("--atol", type=float, default=ATOL, help=f"--compare: absolute tolerance on numbers (default {ATOL:g})")
    parser.add_argument("--out", type=Path, help="--compare: folder for the executed copies (default: a new temporary folder)")
    parser.add_argument("--json", type=Path, help="--compare: where to write the results (default: OUT/compare-BACKEND.json)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds a cell may run (default 1800)")
    args = parser.parse_args(argv)
    if args.backend != "tensorflow" and not args.compare:
        parser.error(f"the stored outputs are TensorFlow's: --backend {args.backend} runs only with --compare, "
                     "which executes copies and leaves the stored notebooks as they are")

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

    if args.compare:
        return _compare_main(args, root, notebooks)
    # The kernels' backend, set for them only: a KERAS_BACKEND=jax left in the shell must
    # not reach a chapter's code (a package import in a subprocess, say) while it writes
    # the stored TensorFlow outputs.
    kernel_env = dict(os.environ, KERAS_BACKEND="tensorflow")
    rows = []
    for i, notebook in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {notebook.relative_to(root)} ...", flush=True)
        seconds, peak = execute(notebook, timeout=args.timeout, env=kernel_env)
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
