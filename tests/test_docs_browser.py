"""The documentation site as a reader sees it: built, served on 127.0.0.1, opened in
headless Chromium with every other host unreachable.

Checks that the mermaid diagrams are drawn from the script served with the site (no
CDN), and that nothing on the pages most readers open first runs wider than the
content column at a 1280 px window. Needs Debian's ``chromium`` and ``chromium-driver``
and the ``selenium`` package (``.ci/run`` installs them); skipped without them.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Every host but the local server fails to resolve, as on a machine with no internet,
    # so a diagram drawn by a script fetched from a CDN cannot pass.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
)
WINDOW = (1280, 900)
# The pages whose overflow a reader met at 1280 px.
WIDTH_CHECKED_PAGES = ("", "getting-started/", "results/")


def _browser_binaries() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium driven through chromedriver, with an empty profile."""
    if importlib.util.find_spec("selenium") is None:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    binaries = _browser_binaries()
    if binaries is None:
        pytest.skip(
            "chromium or chromedriver is not installed (apt-get install chromium chromium-driver)"
        )
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binaries[0]
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    driver = webdriver.Chrome(options=options, service=Service(binaries[1]))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def served_site(tmp_path_factory):
    """The site built with ``mkdocs build --strict`` and served on 127.0.0.1; its URL."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    site_dir = tmp_path_factory.mktemp("browser-site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
    )
    assert result.returncode == 0, result.stdout + result.stderr

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    class QuietServer(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            # The browser drops connections it no longer needs: not the site's fault.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    server = QuietServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _open(browser, url: str) -> None:
    browser.get(url)
    deadline = time.monotonic() + 30
    while browser.execute_script("return document.readyState") != "complete":
        assert time.monotonic() < deadline, f"{url} did not finish loading"
        time.sleep(0.1)


def _shadow_svg_count(browser) -> int:
    """SVG elements inside the shadow roots of ``div.mermaid`` elements.

    Material draws each diagram into a *closed* shadow root, which page scripts cannot
    read; the DevTools protocol's DOM tree, pierced, shows it.
    """
    tree = browser.execute_cdp_cmd("DOM.getDocument", {"depth": -1, "pierce": True})

    def svgs(node) -> int:
        own = int(node.get("localName") == "svg")
        children = node.get("children", []) + node.get("shadowRoots", [])
        return own + sum(svgs(child) for child in children)

    def diagrams(node) -> int:
        attributes = node.get("attributes", [])
        classes = dict(zip(attributes[::2], attributes[1::2], strict=True)).get("class", "")
        if node.get("localName") == "div" and "mermaid" in classes.split():
            return sum(svgs(root) for root in node.get("shadowRoots", []))
        return sum(diagrams(child) for child in node.get("children", []))

    return diagrams(tree["root"])


@pytest.mark.parametrize("page", ["how-it-works", "architecture"])
def test_mermaid_diagrams_are_drawn_offline(browser, served_site, page):
    n_fences = (ROOT / "docs" / f"{page}.md").read_text().count("```mermaid")
    assert n_fences >= 1, f"docs/{page}.md has no mermaid diagram"
    _open(browser, served_site + f"{page}/")
    deadline = time.monotonic() + 30
    while _shadow_svg_count(browser) < n_fences:
        assert time.monotonic() < deadline, (
            f"{page}: {_shadow_svg_count(browser)} of {n_fences} diagrams drawn; "
            "left as text: "
            + repr(
                browser.execute_script(
                    "return [...document.querySelectorAll('pre')]"
                    ".filter(e => e.textContent.trim().startsWith('flowchart'))"
                    ".map(e => e.textContent.trim().slice(0, 40))"
                )
            )
        )
        time.sleep(0.2)
    # Every fence was replaced: none of the diagrams' source is left on the page.
    assert "flowchart" not in browser.execute_script("return document.body.innerText")
    # The script came from the site itself.
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    mermaid_scripts = [name for name in resources if "mermaid" in name]
    assert mermaid_scripts == [served_site + "js/mermaid.min.js"], resources


def test_the_served_mermaid_keeps_its_license(served_site):
    import urllib.request

    with urllib.request.urlopen(served_site + "js/mermaid.min.js", timeout=30) as response:
        head = response.read(400).decode()
    assert "mermaid" in head and "The MIT License" in head and "Knut Sveidqvist" in head


# Elements wider than the content column, or scrolling sideways inside it (a code block
# or table with a scroll bar), as "tag.class: width" strings.
OVERFLOW_SCRIPT = """
const column = document.querySelector('.md-content__inner');
// A few pixels of slack: an inline code span's padding reaches past the edge it wraps at.
const limit = column.getBoundingClientRect().right + 4;
const found = [];
for (const element of column.querySelectorAll('*')) {
  const box = element.getBoundingClientRect();
  if (box.width === 0) continue;
  const scrolls = element.scrollWidth > element.clientWidth + 1
    && ['auto', 'scroll'].includes(getComputedStyle(element).overflowX);
  // Material's table wrapper reaches 0.8rem into the margin by design: inside it, what
  // counts is whether the wrapper scrolls.
  const past = !element.closest('.md-typeset__scrollwrap') && box.right > limit;
  if (past || scrolls) {
    const text = (element.textContent || '').trim().slice(0, 60);
    found.push(`${element.tagName.toLowerCase()}.${element.className}: right `
      + `${Math.round(box.right)} of ${Math.round(limit)}, scroll width `
      + `${element.scrollWidth} of ${element.clientWidth}: ${text}`);
  }
}
return found;
"""


@pytest.mark.parametrize("page", WIDTH_CHECKED_PAGES)
def test_nothing_runs_off_the_page_at_1280_px(browser, served_site, page):
    _open(browser, served_site + page)
    width = browser.execute_script("return window.innerWidth")
    assert width == WINDOW[0], f"window is {width} px wide"
    too_wide = browser.execute_script(OVERFLOW_SCRIPT)
    assert too_wide == [], f"/{page}: " + "\n".join(too_wide)
