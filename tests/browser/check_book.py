"""Open every page of the built HTML book in headless Chromium and check what a reader sees.

Usage (after the book build)::

    .venv/bin/python tests/browser/check_book.py [_build/html] [--source .]
        [--screenshots _build/screenshots | --no-screenshots]

The script serves the built HTML over HTTP on 127.0.0.1 only (a free port, ``http.server``
in a thread) and drives Debian's system Chromium (``/usr/bin/chromium``, package
``chromium``) through Playwright's sync API (``pip install -e ".[browser]"``; no browser
is downloaded, never run ``playwright install``). For every HTML page of the book
(``_static`` and ``_sources`` excepted), each in a fresh browser context as a reader's
first visit, it checks that

* the page loads with no page error and no console error. Requests to any host other than
  127.0.0.1 are aborted, since CI is offline (MathJax, require.js and the widget manager
  come from CDNs); the console errors that are exactly those aborted loads are not
  failures, and a summary says what was blocked. Any other console error is a failure;
* every local request succeeds (no failed request, no HTTP status >= 400);
* every ``<img>`` has loaded (``naturalWidth > 0``);
* every internal link (``<a href>``, and the ``<link rel=next|prev|...>`` navigation)
  resolves: the target answers HTTP 200 and, for ``#anchor`` links, an element with that
  ``id`` (or an ``<a name>``) exists on the target page;
* widget explorers show their static fallback. The book drops widget views from the HTML
  (``nb_mime_priority_overrides`` in ``_config.yml``), so a widget output that also stores
  an ``image/png`` or ``image/jpeg`` must appear as exactly that image in the same code cell
  (the still image the notebook stores, compared by sha256 with the file the page loads; the notebooks are read
  from ``--source``, the folder holding ``_toc.yml``). No widget view may
  be left in the page (no ``application/vnd.jupyter.widget-view+json`` script, no empty
  ``.jupyter-widgets`` element, no visible "Loading widget" text), and a widget output
  without an image (a tqdm progress bar) must not leave an unfinished text fallback
  ("0%|          | 0/40") on the page;
* every exercise has its solution, and each solution's body is closed on loading (open
  when the book was built with ``CHOLLET_VIZ_SOLUTIONS=shown``, absent with ``removed``;
  the check reads the same variable).
* every group of per-backend key lines (``book/_ext/backend_tabs.py``) is a tab set of three
  tabs, TensorFlow, JAX and PyTorch, with TensorFlow's shown on loading; choosing JAX in the
  first group shows JAX in every group of the page (the tabs are synced). Checked after the
  screenshot, which shows the TensorFlow tabs.

A page that redirects to another page of the book (``index.html``) is reported as such;
its target is checked as a page of its own.

It saves a full-page screenshot of each chapter (every page under ``book/``) as
``<screenshots>/<chapter>.png`` (``companions/x`` becomes ``companions-x``), clipped to
20,000 px high. It prints one line per page, a summary, and exits with status 1 on any
failure (2 when it cannot run at all).

This is a standalone script, not a pytest module (its name does not match ``test_*.py``);
``.ci/run`` runs it after the book build.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import http.server
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps trying Google's hosts, which this
# closed network refuses; they are noise, not the book's requests.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}
MAX_SCREENSHOT_HEIGHT = 20_000
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# tqdm's text fallback of a progress-bar widget: "name:   0%|          | 0/40 [00:00<?, ?it/s]";
# frozen when the count is short of the total (a finished "40/40" bar is a true record).
PROGRESS = re.compile(r"\d+%\|[^|\n]*\|\s*(\d+)/(\d+)")
PAGE_TIMEOUT_MS = 60_000


# --------------------------------------------------------------------------- serving
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Chromium drops connections it no longer needs (a page closed mid-load): not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve(root: Path) -> tuple[_Server, str]:
    """Serve ``root`` on 127.0.0.1 (port 0: the OS picks a free one) in a daemon thread."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


# --------------------------------------------------------------------------- the book's pages
def html_pages(root: Path) -> list[str]:
    """Every HTML page of the build, as paths relative to ``root`` ('book/intro.html')."""
    skip = {"_static", "_sources", "_images"}
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.html")
        if not skip.intersection(p.relative_to(root).parts[:-1])
    )


def chapter_name(page: str) -> str | None:
    """Screenshot name of a chapter page, or None for the build's own pages (search, ...)."""
    if not page.startswith("book/"):
        return None
    return page[len("book/") : -len(".html")].replace("/", "-")


def widget_fallbacks(notebook: Path) -> tuple[int, dict[int, list[str]], list[int]]:
    """What the HTML must show for the notebook's widget outputs.

    Returns (number of code cells the page shows, {code-cell index: [sha256 of each
    still image a widget output carries]}, [code-cell indices with a widget output that
    carries no image]). myst-nb renders one ``div.cell`` per code cell, in order (none for
    a cell tagged remove-cell, nor for a solution's cells when CHOLLET_VIZ_SOLUTIONS=removed),
    so the index finds the cell on the page.
    """
    with_image: dict[int, list[str]] = {}
    without_image: list[int] = []
    removed = os.environ.get("CHOLLET_VIZ_SOLUTIONS", "hidden").strip().lower() == "removed"
    cells, in_solution = [], False
    for cell in json.loads(notebook.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":  # a built book without solutions has no cells of theirs
            in_solution = (in_solution or "{solution-start}" in source) and "{solution-end}" not in source
        elif "remove-cell" not in cell["metadata"].get("tags", []) and not (removed and in_solution):
            cells.append(cell)
    for index, cell in enumerate(cells):
        if "remove-output" in cell["metadata"].get("tags", []):
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW not in data:
                continue
            still = data.get("image/png") or data.get("image/jpeg")  # the explorer's still image
            if still is None:
                without_image.append(index)
            else:
                still = "".join(still) if isinstance(still, list) else still
                digest = hashlib.sha256(base64.b64decode(still)).hexdigest()
                with_image.setdefault(index, []).append(digest)
    return len(cells), with_image, without_image


class _Anchors(HTMLParser):
    """Collects the ids and <a name> of an HTML file (for link targets not opened in the browser)."""

    def __init__(self):
        super().__init__()
        self.anchors: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if value and (key == "id" or (tag == "a" and key == "name")):
                self.anchors.add(value)


# --------------------------------------------------------------------------- in-page probes
# Runs in the page: make every image load now (none should be lazy), wait for each, report it.
IMAGES_JS = """
async () => {
  const imgs = Array.from(document.images);
  await Promise.all(imgs.map(img => {
    img.loading = "eager";
    if (img.complete) return null;
    return new Promise(r => { img.addEventListener("load", r); img.addEventListener("error", r);
                              setTimeout(r, 15000); });
  }));
  return imgs.map(img => ({src: img.currentSrc || img.src, alt: img.alt,
                           complete: img.complete, width: img.naturalWidth}));
}
"""

LINKS_JS = """
() => ({
  // <a> links, and the <link rel=next|prev|index|search> navigation that readers' tools follow
  links: Array.from(document.querySelectorAll("a[href], link[href]")).map(a => ({
      href: a.href, text: a.tagName === "LINK" ? `<link rel=${a.rel}>`
                                               : (a.textContent || "").trim().slice(0, 60)})),
  anchors: Array.from(document.querySelectorAll("[id]")).map(e => e.id).concat(
      Array.from(document.querySelectorAll("a[name]")).map(a => a.name)),
})
"""

WIDGETS_JS = """
() => {
  const visible = e => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);
  const cells = Array.from(document.querySelectorAll("div.cell")).map(cell => {
    const out = cell.querySelector(".cell_output");
    return {images: out ? Array.from(out.querySelectorAll("img")).map(i => i.currentSrc || i.src) : [],
            text: out ? out.innerText : ""};
  });
  return {
    cells,
    viewScripts: document.querySelectorAll('script[type="%s"]').length,
    emptyWidgets: Array.from(document.querySelectorAll(".jupyter-widgets")).filter(
        e => !e.textContent.trim() && !e.querySelector("img, canvas, svg")).length,
    loadingText: Array.from(document.querySelectorAll("body *")).some(
        e => visible(e) && e.children.length === 0 && /Loading widget/i.test(e.textContent)),
  };
}
""" % WIDGET_VIEW


# Exercises and their solutions (sphinx-exercise): a solution's body is what a reader sees
# only after clicking, unless the book was built with CHOLLET_VIZ_SOLUTIONS=shown.
SOLUTIONS_JS = """
() => {
  // sphinx-togglebutton closes a dropdown by collapsing its body to zero height.
  const visible = e => e.getBoundingClientRect().height > 0;
  return {
    exercises: document.querySelectorAll(".admonition.exercise").length,
    solutions: Array.from(document.querySelectorAll(".admonition.solution")).map(s => ({
      title: (s.querySelector(".admonition-title") || s).textContent.trim().slice(0, 60),
      bodyVisible: Array.from(s.children).some(c => !c.classList.contains("admonition-title") && visible(c)),
    })),
  };
}
"""


# The per-backend key lines (book/_ext/backend_tabs.py): each group a sphinx-design tab set.
BACKEND_TABS = ["TensorFlow", "JAX", "PyTorch"]
BACKEND_TABS_JS = """
() => Array.from(document.querySelectorAll(".sd-tab-set.backend-tabs")).map(set => {
  const labels = Array.from(set.querySelectorAll(":scope > label.sd-tab-label")).map(l => l.textContent.trim());
  const shown = Array.from(set.querySelectorAll(":scope > .sd-tab-content")).map(c => c.getBoundingClientRect().height > 0);
  return {labels, shown: labels.filter((_, i) => shown[i])};
})
"""


# --------------------------------------------------------------------------- checking
class Checker:
    def __init__(self, root: Path, source: Path, base: str, screenshots: Path | None):
        self.root, self.source, self.base, self.screenshots = root, source, base, screenshots
        self.host = urlsplit(base).netloc
        self.blocked: list[str] = []  # external URLs aborted, every page together
        self.anchors: dict[str, set[str]] = {}  # page URL (no fragment) -> ids on it
        self.links: dict[str, list[tuple[str, str]]] = {}  # page -> [(link URL, link text)]
        self.status: dict[str, int] = {}
        self.n_images = 0  # <img> elements checked, every page together
        self.n_fallbacks = 0  # widget outputs whose static image was found in its cell
        self.n_solutions = 0  # exercise solutions whose open/closed state was checked
        self.n_backend_tabs = 0  # groups of per-backend key lines checked
        self.redirects: dict[str, str] = {}  # page -> the page it sends the reader to

    # -- helpers
    def local_path(self, url: str) -> Path:
        path = unquote(urlsplit(url).path).lstrip("/")
        target = self.root / path
        return target / "index.html" if target.is_dir() else target

    def http_status(self, url: str) -> int:
        if url not in self.status:
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    self.status[url] = response.status
            except urllib.error.HTTPError as error:
                self.status[url] = error.code
        return self.status[url]

    def anchors_of(self, url: str) -> set[str]:
        if url not in self.anchors:
            parser = _Anchors()
            parser.feed(self.local_path(url).read_text(errors="replace"))
            self.anchors[url] = parser.anchors
        return self.anchors[url]

    # -- one page in the browser
    def check_page(self, browser, page_name: str) -> list[str]:
        failures: list[str] = []
        blocked_here: set[str] = set()
        url = self.base + page_name

        def route(route_, request):
            if urlsplit(request.url).netloc == self.host or request.url.startswith(("data:", "blob:")):
                route_.continue_()
            else:
                blocked_here.add(request.url)
                route_.abort()

        def on_console(message):
            if message.type != "error":
                return
            source = (message.location or {}).get("url", "")
            # Chromium logs each aborted load as "Failed to load resource: net::ERR_FAILED"
            # located at the blocked URL: the expected consequence of running offline.
            if source in blocked_here and "net::ERR_FAILED" in message.text:
                return
            failures.append(f"console error: {message.text} (at {source or 'unknown'})")

        def on_response(response):
            if urlsplit(response.url).netloc == self.host and response.status >= 400:
                failures.append(f"HTTP {response.status} for {response.url}")

        # A fresh context per page: each page is checked as a reader's first visit would
        # see it (no localStorage or cache left by the pages checked before).
        context = browser.new_context(viewport=VIEWPORT, service_workers="block")
        page = context.new_page()
        page.route("**/*", route)
        page.on("console", on_console)
        page.on("pageerror", lambda error: failures.append(f"page error: {error}"))
        page.on("response", on_response)
        page.on("requestfailed", lambda request: failures.append(
            f"request failed: {request.url} ({request.failure})")
            if urlsplit(request.url).netloc == self.host else None)
        try:
            page.goto(url, wait_until="networkidle", timeout=PAGE_TIMEOUT_MS)
            final_url = urldefrag(page.url)[0]
            if final_url == url:
                failures += self.inspect(page, page_name)
            else:  # index.html sends the reader to the root page
                target = final_url[len(self.base):]
                if self.local_path(final_url).is_file() and target.endswith(".html"):
                    self.redirects[page_name] = target  # checked as a page of its own
                else:
                    failures.append(f"redirects to {final_url}, which is not a page of the book")
        except Exception as error:  # a page that cannot be opened is a failure, not a crash
            failures.append(f"could not check the page: {type(error).__name__}: {error}")
        finally:
            context.close()
            self.blocked += sorted(blocked_here)
        return failures

    def inspect(self, page, page_name: str) -> list[str]:
        """Images, links, widgets and the screenshot of a loaded page."""
        failures = []
        for image in page.evaluate(IMAGES_JS):
            self.n_images += 1
            if not image["complete"] or image["width"] == 0:
                failures.append(f"image not loaded: {image['src']} (alt {image['alt'][:60]!r})")

        found = page.evaluate(LINKS_JS)
        self.anchors[self.base + page_name] = set(found["anchors"])
        self.links[page_name] = [(link["href"], link["text"]) for link in found["links"]
                                 if urlsplit(link["href"]).netloc == self.host]

        failures += self.check_widgets(page, page_name)
        failures += self.check_solutions(page)

        name = chapter_name(page_name)
        if self.screenshots is not None and name is not None:
            height = min(page.evaluate("document.documentElement.scrollHeight"),
                         MAX_SCREENSHOT_HEIGHT)
            self.screenshots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(self.screenshots / f"{name}.png"), full_page=True,
                            clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height})
        failures += self.check_backend_tabs(page)  # after the screenshot: it clicks a tab
        return failures

    def check_backend_tabs(self, page) -> list[str]:
        """Each group of key lines has the three backends' tabs, TensorFlow's open, synced on the page."""
        groups = page.evaluate(BACKEND_TABS_JS)
        self.n_backend_tabs += len(groups)
        failures = []
        for i, group in enumerate(groups):
            if group["labels"] != BACKEND_TABS:
                failures.append(f"backend tab group {i + 1} has the tabs {group['labels']}, not {BACKEND_TABS}")
            if group["shown"] != ["TensorFlow"]:
                failures.append(f"backend tab group {i + 1} shows {group['shown']} on loading, not ['TensorFlow']")
        if groups and not failures:
            page.locator(".sd-tab-set.backend-tabs").first.locator("label.sd-tab-label", has_text="JAX").click()
            shown = [group["shown"] for group in page.evaluate(BACKEND_TABS_JS)]
            if shown != [["JAX"]] * len(groups):
                failures.append(f"after choosing JAX in the first backend tab group the groups show {shown}")
        return failures

    def check_solutions(self, page) -> list[str]:
        """Each exercise has its solution, closed or open as CHOLLET_VIZ_SOLUTIONS built them."""
        mode = os.environ.get("CHOLLET_VIZ_SOLUTIONS", "hidden").strip().lower()
        found = page.evaluate(SOLUTIONS_JS)
        solutions = found["solutions"]
        self.n_solutions += len(solutions)
        expected = 0 if mode == "removed" else found["exercises"]
        failures = [] if len(solutions) == expected else [
            f"{found['exercises']} exercises but {len(solutions)} solutions (CHOLLET_VIZ_SOLUTIONS={mode})"]
        for solution in solutions:
            if solution["bodyVisible"] != (mode == "shown"):
                state = "open" if solution["bodyVisible"] else "closed"
                failures.append(f"solution {solution['title']!r} is {state} on loading (CHOLLET_VIZ_SOLUTIONS={mode})")
        return failures

    def check_widgets(self, page, page_name: str) -> list[str]:
        failures = []
        state = page.evaluate(WIDGETS_JS)
        if state["viewScripts"]:
            failures.append(f"{state['viewScripts']} widget view(s) left in the HTML")
        if state["emptyWidgets"]:
            failures.append(f"{state['emptyWidgets']} empty .jupyter-widgets element(s)")
        if state["loadingText"]:
            failures.append('"Loading widget" text is visible')

        notebook = (self.source / page_name).with_suffix(".ipynb")
        if not notebook.is_file():  # a Markdown page (intro) or the build's own pages
            if page_name.startswith("book/") and not notebook.with_suffix(".md").is_file():
                failures.append(f"no source found for this page ({notebook} or .md)")
            return failures
        n_cells, with_image, without_image = widget_fallbacks(notebook)
        cells = state["cells"]
        if (with_image or without_image) and len(cells) != n_cells:
            failures.append(f"the page shows {len(cells)} code cells, {notebook.name} has {n_cells}: "
                            "cannot find its widget outputs on the page")
            return failures
        for index, expected in with_image.items():
            shown = set()
            for src in cells[index]["images"]:
                target = self.local_path(src)
                if target.is_file():
                    shown.add(hashlib.sha256(target.read_bytes()).hexdigest())
            for digest in expected:
                self.n_fallbacks += digest in shown
                if digest not in shown:
                    failures.append(f"widget in code cell {index + 1}: its static image "
                                    f"(sha256 {digest[:12]}...) is not shown in that cell")
        for index in sorted(set(without_image)):
            for line in cells[index]["text"].splitlines():
                bar = PROGRESS.search(line)
                if bar and int(bar.group(1)) < int(bar.group(2)):
                    failures.append(f"frozen progress bar in code cell {index + 1}: {line.strip()!r}")
        return failures

    # -- links, once every page has been opened
    def check_links(self, page_name: str) -> list[str]:
        failures = []
        for href, text in self.links.get(page_name, []):
            target, fragment = urldefrag(href)
            status = self.http_status(target)
            if status != 200:
                failures.append(f"broken link {href} ({text!r}): HTTP {status}")
                continue
            if fragment and target.endswith((".html", "/")):
                anchor = unquote(fragment)
                if anchor not in self.anchors_of(target):
                    failures.append(f"broken anchor {href} ({text!r}): no id {anchor!r} on the page")
        return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", nargs="?", default="_build/html", type=Path,
                        help="the built HTML book (default: _build/html)")
    parser.add_argument("--source", type=Path, default=None,
                        help="the book's source folder, holding _toc.yml (default: <html>/../..)")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="where the chapter screenshots go (default: <html>/../screenshots)")
    parser.add_argument("--no-screenshots", action="store_true", help="skip the screenshots")
    args = parser.parse_args(argv)

    root = args.html.resolve()
    if not (root / "index.html").is_file():
        print(f"error: {args.html} has no index.html; build the book first", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).is_file():
        print(f"error: {CHROMIUM} not found; install Debian's chromium package", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print('error: playwright is not installed; pip install -e ".[browser]"', file=sys.stderr)
        return 2
    source = (args.source or root.parent.parent).resolve()
    if not (source / "_toc.yml").is_file():
        print(f"error: {source} has no _toc.yml; pass the book's source folder with --source",
              file=sys.stderr)
        return 2
    screenshots = None if args.no_screenshots else (args.screenshots or root.parent / "screenshots").resolve()

    start = time.monotonic()
    pages = html_pages(root)
    server, base = serve(root)
    checker = Checker(root, source, base, screenshots)
    results: dict[str, list[str]] = {}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=CHROMIUM_ARGS)
            for page_name in pages:
                results[page_name] = checker.check_page(browser, page_name)
            browser.close()
        for page_name in pages:
            results[page_name] += checker.check_links(page_name)
    finally:
        server.shutdown()

    for page_name in pages:
        failures = results[page_name]
        note = f" (redirects to {checker.redirects[page_name]})" if page_name in checker.redirects else ""
        print(f"{'OK  ' if not failures else 'FAIL'} {page_name}{note}")
        for failure in failures:
            print(f"       - {failure}")
    hosts = Counter(urlsplit(url).netloc for url in checker.blocked)
    print(f"external resources blocked (offline): {len(checker.blocked)}, hosts: "
          + (", ".join(f"{host} ({n})" for host, n in sorted(hosts.items())) or "none"))
    n_links = sum(len(links) for links in checker.links.values())
    failed = [p for p in pages if results[p]]
    shots = f", screenshots in {screenshots}" if screenshots else ""
    print(f"{len(pages)} pages, {checker.n_images} images, {n_links} internal links, "
          f"{checker.n_fallbacks} widget static fallbacks, {checker.n_solutions} solutions, "
          f"{checker.n_backend_tabs} backend tab groups checked{shots}; "
          f"{len(failed)} page(s) failed; {time.monotonic() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
