"""Sphinx 7.4 writes every inline script twice into each page's <head> when an extension
adds it with ``filename=None`` (sphinx-doc/sphinx#13402, fixed in Sphinx 8.2, which
Jupyter Book 1.x cannot use): the second copy of sphinx-thebe's ``const THEBE_JS_URL``
is a console error on every page. Passing ``""`` instead of ``None`` takes the code path
that writes the script once.
"""


def setup(app):
    add_js_file = app.add_js_file

    def add_js_file_once(filename, *args, **kwargs):
        return add_js_file(filename or "", *args, **kwargs)

    app.add_js_file = add_js_file_once
    return {"parallel_read_safe": True, "parallel_write_safe": True}
