"""Number figures and exercises from 1 in each chapter.

Without a numbered table of contents Sphinx numbers them through the whole book, so the
third chapter's first exercise would be "Exercise 19". The chapters' headings carry the
book's own numbers (5.4.1 ...), so a numbered table of contents, the usual way to get
per-chapter numbers ("Fig. 3.1"), would print a second, different number before each.
Renumbering each page's figures and exercises in their order on the page keeps the text
short: a reference within a chapter reads "Fig. 2", and references across chapters are
links to the other chapter's page.
"""


def _renumber(app, env):
    changed = []
    for docname, by_type in env.toc_fignumbers.items():
        for figtype, numbers in by_type.items():
            order = sorted(numbers, key=numbers.get)  # Sphinx numbered them in page order
            renumbered = {figure_id: (i,) for i, figure_id in enumerate(order, start=1)}
            if renumbered != numbers:
                by_type[figtype] = renumbered
                changed.append(docname)
    return sorted(set(changed))


def setup(app):
    # After Sphinx's own numbering (the toctree collector answers env-get-updated at 500).
    app.connect("env-get-updated", _renumber, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
