"""The book's small Sphinx extensions under book/_ext (the solutions switch has its own file)."""

from __future__ import annotations

import importlib.util
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "book" / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_source_maps_and_the_comments_naming_them_are_removed(tmp_path):
    no_source_maps = _load("no_source_maps")
    static = tmp_path / "_static"
    (static / "scripts").mkdir(parents=True)
    (static / "styles").mkdir()
    js = b'(()=>{"use strict";s(654)})();\n//# sourceMappingURL=theme.js.map'
    css = b'a{color:red}\n/*# sourceMappingURL=theme.css.map*/\n'
    other = b"// a script that names no map\nlet x = 1;\n"
    (static / "scripts" / "theme.js").write_bytes(js)
    (static / "scripts" / "theme.js.map").write_bytes(b"{}")
    (static / "styles" / "theme.css").write_bytes(css)
    (static / "styles" / "theme.css.map").write_bytes(b"{}")
    (static / "scripts" / "other.js").write_bytes(other)
    app = types.SimpleNamespace(outdir=str(tmp_path), builder=types.SimpleNamespace(format="html"))

    no_source_maps._remove_source_maps(app, None)

    assert sorted(p.name for p in static.rglob("*")) == ["other.js", "scripts", "styles", "theme.css", "theme.js"]
    assert (static / "scripts" / "theme.js").read_bytes() == b'(()=>{"use strict";s(654)})();'
    assert (static / "styles" / "theme.css").read_bytes() == b"a{color:red}\n"
    assert (static / "scripts" / "other.js").read_bytes() == other


def test_nothing_is_removed_after_a_failed_build_or_for_another_builder(tmp_path):
    no_source_maps = _load("no_source_maps")
    (tmp_path / "_static").mkdir()
    kept = tmp_path / "_static" / "a.js.map"
    kept.write_bytes(b"{}")
    no_source_maps._remove_source_maps(types.SimpleNamespace(outdir=str(tmp_path), builder=types.SimpleNamespace(format="html")), RuntimeError())
    no_source_maps._remove_source_maps(types.SimpleNamespace(outdir=str(tmp_path), builder=types.SimpleNamespace(format="latex")), None)
    assert kept.exists()


def test_figures_and_exercises_are_numbered_from_one_on_each_page():
    chapter_numbering = _load("chapter_numbering")
    env = types.SimpleNamespace(toc_fignumbers={  # as Sphinx numbers them through the book
        "book/a": {"figure": {"fig-a-2": (2,), "fig-a-1": (1,)}, "exercise": {"ex-a": (1,)}},
        "book/b": {"figure": {"fig-b-1": (3,), "fig-b-3": (10,), "fig-b-2": (4,)}, "exercise": {"ex-b-2": (3,), "ex-b-1": (2,)}},
    })
    assert chapter_numbering._renumber(None, env) == ["book/b"]  # the pages to write again
    assert env.toc_fignumbers == {
        "book/a": {"figure": {"fig-a-2": (2,), "fig-a-1": (1,)}, "exercise": {"ex-a": (1,)}},
        "book/b": {"figure": {"fig-b-1": (1,), "fig-b-2": (2,), "fig-b-3": (3,)}, "exercise": {"ex-b-1": (1,), "ex-b-2": (2,)}},
    }
