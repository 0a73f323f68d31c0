"""Run every benchmark in benchmarks/ and write one results table.

    CHOLLET_VIZ_MIRROR=../shared/data .venv/bin/python benchmarks/run_all.py [--quick] [--only NAME[,NAME]]

Each benchmark runs in its own process (this Python, this environment, with
``TF_CPP_MIN_LOG_LEVEL=3``) and is asked for its key results with ``--json``; its own
output is shown as it runs and kept in ``results/logs/NAME.log``. The rows of all of
them go to ``results/latest.json`` and, as one Markdown table with the machine and the
command above it and each benchmark's wall time below, to ``results/latest.md``, which
the book's benchmarks page includes. ``--quick`` gives each benchmark its smoke settings
(``QUICK``), a few minutes in all. A benchmark that fails is a row of the table that says
so, and the runner then exits with status 1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # _common, also when imported from the tests

from _common import result_row  # noqa: E402

# name -> the script in benchmarks/ and its arguments for a quick (smoke) run.
BENCHES = {
    "cam": ("bench_cam.py", ["--quick"]),
    "deconvnet": ("bench_deconvnet.py", ["--repeats", "1"]),
    # One layer, a quarter of the filters, a quarter of the steps, one baseline filter.
    "filters": ("bench_filters.py", ["--layers", "block3_conv1", "--filters", "16", "--steps", "10", "--sample", "1"]),
    "mosaic": ("bench_mosaic.py", ["--repeats", "1"]),
    # The filter grid and Grad-CAM per backend (those installed for this Python): one
    # layer, 4 filters x 2 steps, one Grad-CAM call.
    "backends": ("bench_backends.py", ["--layers", "block1_conv1", "--filters", "4", "--steps", "2", "--repeats", "1"]),
}
TAIL_LINES = 3  # lines of a failed benchmark's output quoted in its row


# --- the report: pure functions of the rows ------------------------------------------


def _cell(text) -> str:
    """``text`` safe in a Markdown table cell (and in MyST): every character with a meaning
    there backslash-escaped (CommonMark lets any ASCII punctuation be), no line breaks."""
    text = " ".join(str(text).split())
    return "".join("\\" + c if c in "\\`*_[]<>|$#~{}" else c for c in text)


def format_ratio(ratio) -> str:
    """Three significant figures, no exponent; ``failed`` where there is no ratio."""
    if ratio is None:
        return "failed"
    return f"{ratio:.0f}" if abs(ratio) >= 100 else f"{ratio:.3g}"


def format_mib(mib) -> str:
    return "–" if mib is None else f"{mib:.0f} MiB"


def markdown_table(rows) -> str:
    """The rows (``_common.result_row`` dicts) as one Markdown table, in their order; a row's
    note, where it has one, is numbered in its measurement cell and listed under the table."""
    lines = ["| benchmark | measurement | ratio | against | peak memory |",
             "| --- | --- | ---: | --- | ---: |"]
    notes = []
    for row in rows:
        measurement = _cell(row["measurement"])
        if row.get("note"):
            notes.append(row["note"])
            measurement += f" (note {len(notes)})"
        lines.append(f"| {_cell(row['benchmark'])} | {measurement} | {format_ratio(row['ratio'])} "
                     f"| {_cell(row['baseline'])} | {format_mib(row['peak_mib'])} |")
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\nNotes:\n\n" + "".join(f"{i}. {_cell(note)}\n" for i, note in enumerate(notes, 1))
    return text


def failed_row(name: str, returncode, output_tail: str, peak_mib=None) -> dict:
    """The row that stands for a benchmark that failed (or wrote no results)."""
    if returncode is None or returncode == 0:
        what = "no results written"
    else:
        what = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    return result_row(name, f"FAILED ({what})", "", None, peak_mib, output_tail or "no output")


def describe_machine_line(machine: dict) -> str:
    return (f"{machine['cpu']}, {machine['cores']} cores, {machine['memory']} memory, GPU: {machine['gpu']}; "
            f"Python {machine['python']}, Keras {machine['keras']}, TensorFlow {machine['tensorflow']}")


def report(machine: dict, command: str, date: str, rows, runs, quick: bool) -> str:
    """latest.md: the machine and the command, the table of all rows, each run's wall time.
    ``runs``: one dict per benchmark run (name, ok, wall_s, peak_mib)."""
    kind = "quick run (smoke settings: read the ratios as indicative)" if quick else "full run"
    head = (f"**Machine:** {_cell(describe_machine_line(machine))}. **Run:** {_cell(date)}, {kind}, "
            f"command `{command}`\n")
    walls = "".join(
        f"- {_cell(r['name'])}: {r['wall_s']:.0f} s, peak memory {format_mib(r['peak_mib'])}"
        f"{'' if r['ok'] else ', FAILED'}\n" for r in runs)
    total = sum(r["wall_s"] for r in runs)
    return f"{head}\n{markdown_table(rows)}\n**Wall time** (each benchmark's process, {total:.0f} s in all):\n\n{walls}"


# --- the machine -----------------------------------------------------------------------


def _read(path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def describe_machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or platform.machine())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    kib = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
                if line.startswith("MemTotal:")), None)
    memory = "unknown" if kib is None else f"{kib / 2**20:.1f} GiB"
    limit = _read("/sys/fs/cgroup/memory.max").strip()
    if limit.isdigit() and kib and int(limit) < kib * 1024:
        memory += f" (container limit {int(limit) / 2**30:.1f} GiB)"
    # The versions and the GPUs as the benchmarks' TensorFlow sees them (a separate process:
    # importing TensorFlow here would add its memory to nothing measured, but costs seconds).
    probe = ("import json, keras, tensorflow as tf; print(json.dumps([keras.__version__, tf.__version__, "
             "[d.name for d in tf.config.list_physical_devices('GPU')]]))")
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), check=True)
        keras_version, tf_version, gpus = json.loads(done.stdout.strip().splitlines()[-1])
        gpu = ", ".join(gpus) if gpus else "none"
    except (subprocess.SubprocessError, OSError, ValueError, IndexError):
        keras_version = tf_version = gpu = "unknown (TensorFlow did not start)"
    return {"cpu": cpu, "cores": cores, "memory": memory, "gpu": gpu, "python": platform.python_version(),
            "keras": keras_version, "tensorflow": tf_version}


# --- running ---------------------------------------------------------------------------


def run_bench(name: str, script, extra: list, json_path: Path, log_path: Path) -> tuple[dict, list]:
    """Run one benchmark in its own process, echoing and logging its output; (run, rows)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, str(HERE / script), *extra, "--json", str(json_path)]
    print(f"\n### {name}: {shlex.join(cmd)}", flush=True)
    start = time.perf_counter()
    lines = []
    with open(log_path, "w", encoding="utf-8") as log:
        # The caller's working folder: a relative CHOLLET_VIZ_MIRROR stays valid.
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
            lines.append(line)
        proc.stdout.close()
        # wait4: the process's own peak resident memory, its children's included (bench_filters
        # runs its parts in subprocesses).
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    peak = usage.ru_maxrss / 1024  # KiB on Linux
    rows = None
    if proc.returncode == 0:
        try:
            rows = json.loads(json_path.read_text())
        except (OSError, ValueError):
            rows = None
    ok = bool(rows)
    if not ok:
        tail = " / ".join([line.strip() for line in lines if line.strip()][-TAIL_LINES:])
        rows = [failed_row(name, proc.returncode, tail, peak)]
    return {"name": name, "ok": ok, "returncode": proc.returncode, "wall_s": wall, "peak_mib": peak,
            "log": os.path.relpath(log_path)}, rows


def main(argv=None, benches=None, machine=None) -> int:
    benches = BENCHES if benches is None else benches
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each benchmark's smoke settings (a few minutes in all)")
    parser.add_argument("--only", help=f"comma-separated benchmarks to run, of {', '.join(benches)} (default all)")
    parser.add_argument("--out", default=str(HERE / "results"), help="folder for latest.json, latest.md and logs/")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(benches)
    for name in names:
        if name not in benches:
            parser.error(f"unknown benchmark {name!r}; valid names are {', '.join(benches)}")

    out = Path(args.out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    machine = describe_machine() if machine is None else machine
    command = shlex.join([os.path.relpath(sys.executable), os.path.relpath(__file__),
                          *(sys.argv[1:] if argv is None else argv)])
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(describe_machine_line(machine), flush=True)
    runs, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            script, quick_args = benches[name]
            run, bench_rows = run_bench(name, script, quick_args if args.quick else [],
                                        Path(tmp) / f"{name}.json", out / "logs" / f"{name}.log")
            runs.append(run)
            rows += bench_rows
            print(f"### {name}: {'ok' if run['ok'] else 'FAILED'}, {run['wall_s']:.0f} s", flush=True)

    text = report(machine, command, date, rows, runs, args.quick)
    (out / "latest.md").write_text(text, encoding="utf-8")
    (out / "latest.json").write_text(json.dumps(
        {"machine": machine, "command": command, "date": date, "quick": args.quick, "runs": runs, "rows": rows},
        indent=1), encoding="utf-8")
    print(f"\n{text}\nwritten: {out / 'latest.md'}, {out / 'latest.json'}")
    failed = [r["name"] for r in runs if not r["ok"]]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
