"""benchmarks/run_all.py: the results table and how a failing benchmark is reported.

References: the expected Markdown is written out by hand here (not produced by the code
under test); the benchmark processes are tiny scripts written by the tests, so nothing
heavy runs.
"""

import json
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import run_all  # noqa: E402
from _common import result_row, write_rows  # noqa: E402

MACHINE = {"cpu": "Test CPU @ 1.00GHz", "cores": 2, "memory": "7.8 GiB", "gpu": "none", "python": "3.11.9",
           "keras": "3.15.0", "tensorflow": "2.21.0"}

ROWS = [
    {"benchmark": "mosaic", "measurement": "speed-up of the mosaic", "baseline": "one subplot per channel",
     "ratio": 12.3456, "peak_mib": 512.4, "note": ""},
    {"benchmark": "filters", "measurement": "fraction of the conv limit reached, all 4 layers",
     "baseline": "one large conv", "ratio": 0.41234, "peak_mib": None, "note": "package 10.0 GFLOP/s"},
    {"benchmark": "cam", "measurement": "small-convnet: time of Score-CAM (full, 128 channels), one image",
     "baseline": "forward pass", "ratio": 1234.5, "peak_mib": 2048.0, "note": "r > 0.9999, max|d| < 1e-04"},
    {"benchmark": "deconvnet", "measurement": "FAILED (exit code 2)", "baseline": "", "ratio": None,
     "peak_mib": 100.0, "note": "boom"},
]


def test_markdown_table_of_hand_written_rows():
    expected = textwrap.dedent("""\
        | benchmark | measurement | ratio | against | peak memory |
        | --- | --- | ---: | --- | ---: |
        | mosaic | speed-up of the mosaic | 12.3 | one subplot per channel | 512 MiB |
        | filters | fraction of the conv limit reached, all 4 layers (note 1) | 0.412 | one large conv | – |
        | cam | small-convnet: time of Score-CAM (full, 128 channels), one image (note 2) | 1234 | forward pass | 2048 MiB |
        | deconvnet | FAILED (exit code 2) (note 3) | failed |  | 100 MiB |

        Notes:

        1. package 10.0 GFLOP/s
        2. r \\> 0.9999, max\\|d\\| \\< 1e-04
        3. boom
        """)
    assert run_all.markdown_table(ROWS) == expected


def test_table_cells_cannot_break_the_table():
    # A pipe would end the cell, a newline the row; underscores and $ mean emphasis and math in MyST.
    row = result_row("cam", "max|d| of\nmax_N=16", "a $5 baseline", 2.0)
    line = run_all.markdown_table([row]).splitlines()[2]
    assert line == "| cam | max\\|d\\| of max\\_N=16 | 2 | a \\$5 baseline | – |"
    assert line.count("|") - line.count("\\|") == 6  # five cells


def test_report_names_the_machine_the_command_and_each_run():
    runs = [{"name": "mosaic", "ok": True, "wall_s": 12.4, "peak_mib": 600.0},
            {"name": "deconvnet", "ok": False, "wall_s": 3.0, "peak_mib": 100.0}]
    text = run_all.report(MACHINE, ".venv/bin/python benchmarks/run_all.py --quick", "2026-12-01 15:00 UTC",
                          ROWS, runs, quick=True)
    first = text.splitlines()[0]
    for part in ("Test CPU @ 1.00GHz", "2 cores", "7.8 GiB", "GPU: none", "Python 3.11.9", "Keras 3.15.0",
                 "TensorFlow 2.21.0", "2026-12-01 15:00 UTC", "`.venv/bin/python benchmarks/run_all.py --quick`",
                 "quick run"):
        assert part in first, part
    assert text.count("| benchmark | measurement |") == 1  # one table
    assert "- mosaic: 12 s, peak memory 600 MiB\n" in text
    assert "- deconvnet: 3 s, peak memory 100 MiB, FAILED\n" in text
    assert "15 s in all" in text


def _script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_a_failing_benchmark_is_a_failed_row_and_a_nonzero_exit(tmp_path):
    common = Path(run_all.__file__).parent
    good = _script(tmp_path, "good.py", f"""\
        import sys
        sys.path.insert(0, {str(common)!r})
        from _common import result_row, write_rows
        path = sys.argv[sys.argv.index("--json") + 1]
        quick = "--fast" in sys.argv
        print("good runs")
        write_rows(path, [result_row("good", "speed-up", "the slow way", 4.0 if quick else 3.0, 10.0)])
        """)
    bad = _script(tmp_path, "bad.py", """\
        import sys
        print("line one"); print("line two")
        print("Traceback: ValueError: something broke", file=sys.stderr)
        sys.exit(3)
        """)
    silent = _script(tmp_path, "silent.py", "print('forgot to write the rows')\n")
    benches = {"good": (good, ["--fast"]), "bad": (bad, []), "silent": (silent, [])}
    out = tmp_path / "results"

    code = run_all.main(["--out", str(out)], benches=benches, machine=MACHINE)

    assert code == 1
    md = (out / "latest.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert table[2] == "| good | speed-up | 3 | the slow way | 10 MiB |"
    assert table[3].startswith("| bad | FAILED (exit code 3) (note 1) | failed |")
    assert table[4].startswith("| silent | FAILED (no results written) (note 2) | failed |")
    assert "Traceback: ValueError: something broke" in md  # the failure's last lines, under the table
    assert "- bad: " in md and md.split("- bad: ")[1].splitlines()[0].endswith("FAILED")
    saved = json.loads((out / "latest.json").read_text())
    assert [r["ok"] for r in saved["runs"]] == [True, False, False]
    assert saved["runs"][1]["returncode"] == 3
    assert (out / "logs" / "bad.log").read_text().startswith("line one\nline two\n")


def test_quick_and_only(tmp_path):
    common = Path(run_all.__file__).parent
    good = _script(tmp_path, "good.py", f"""\
        import sys
        sys.path.insert(0, {str(common)!r})
        from _common import result_row, write_rows
        path = sys.argv[sys.argv.index("--json") + 1]
        write_rows(path, [result_row("good", "speed-up", "the slow way", 4.0 if "--fast" in sys.argv else 3.0)])
        """)
    bad = _script(tmp_path, "bad.py", "raise SystemExit(1)\n")
    benches = {"good": (good, ["--fast"]), "bad": (bad, [])}
    out = tmp_path / "results"
    assert run_all.main(["--quick", "--only", "good", "--out", str(out)], benches=benches, machine=MACHINE) == 0
    saved = json.loads((out / "latest.json").read_text())
    assert [r["ratio"] for r in saved["rows"]] == [4.0]  # the quick arguments reached the benchmark
    assert [r["name"] for r in saved["runs"]] == ["good"]
    with pytest.raises(SystemExit):  # argparse: unknown name, valid ones listed
        run_all.main(["--only", "nope", "--out", str(out)], benches=benches, machine=MACHINE)


def test_write_rows_refuses_a_row_with_the_wrong_keys(tmp_path):
    with pytest.raises(ValueError, match="needs exactly the keys"):
        write_rows(tmp_path / "rows.json", [{"benchmark": "x", "ratio": 1.0}])


def test_every_benchmark_script_exists_and_takes_json():
    for name, (script, _) in run_all.BENCHES.items():
        source = (Path(run_all.__file__).parent / script).read_text()
        assert "add_json_option(parser)" in source and "write_rows(args.json" in source, name
