"""Leave the theme's source maps out of the built book.

pydata-sphinx-theme ships a ``.map`` beside each of its bundled scripts and style sheets
(3.4 MB of the 7 MB of theme files): they serve only a developer debugging the theme's
own sources and are never loaded by a reader's browser. They are deleted after the build,
with the ``sourceMappingURL`` comments that point to them, so that no browser's developer
tools ask for a missing file.
"""

import re
from pathlib import Path

_COMMENT = re.compile(rb"\n?(?://|/\*)# sourceMappingURL=\S+?\.map(?: ?\*/)?[ \t]*(?=\n|$)")


def _remove_source_maps(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    for source_map in static.rglob("*.map"):
        target = source_map.with_suffix("")  # fontawesome.js.map -> fontawesome.js
        if target.is_file():
            target.write_bytes(_COMMENT.sub(b"", target.read_bytes()))
        source_map.unlink()


def setup(app):
    # After the theme copies its files (its own build-finished handler runs at the default priority).
    app.connect("build-finished", _remove_source_maps, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
