"""The book as a reader sees it: `python tools/book.py` builds the site, and every page is opened in headless Chromium.

A page fails when it does not load, when it shows an error output (a traceback, or an error on stderr), when it
has fewer loaded figures (<img> with naturalWidth > 0, <video> with a decoded frame size) than its notebook has
image and video outputs, when any image on it is broken, when its math does not typeset, or when it asks for
anything outside the site (the book must read offline), or when it shows what a reader should not have to see:
a code block that scrolls sideways (its scrollWidth over its clientWidth, measured in Chromium at the test's
1280-pixel window), a path of the machine that built it (a virtualenv, site-packages, a home, /root/, /work/ or
/tmp/ folder, anywhere in the page's text), or any stderr output (the build keeps stderr only when it shows an
error). These three are reported together, every offending block of the page at once. Screenshots of the home page, the chapter with the most
figures and one API page go to $BOOK_SCREENSHOTS (default: a temporary folder); their paths are printed.
Needs Debian's `chromium` and `chromium-driver` (skipped, with the reason, when they are missing) and the `docs`
extra.
"""
import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium") if p and
                 Path(p).exists()), None)
DRIVER = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
               if p and Path(p).exists()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="headless Chromium is not installed: apt-get install -y chromium chromium-driver")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required", "--window-size=1280,1000"]
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif", "image/svg+xml", "image/webp")
ERROR_TEXT = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception): |^ERROR\b", re.MULTILINE)
# a path of the machine that built the book: a virtualenv, an installed package, a home, work or temporary folder
MACHINE_PATH = re.compile(r"site-packages|dist-packages|/\.?venv[\w.-]*/|\.virtualenvs/|\.pyenv/|/home/[\w.-]+|/Users/[\w.-]+"
                          r"|/root/|(?<![\w.])/work/|(?<![\w.])/tmp/|/var/folders/|[A-Z]:\\Users\\")


def _book_module():
    spec = importlib.util.spec_from_file_location("book", ROOT / "tools" / "book.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


book = _book_module()


def expected(nb_path):
    "What the notebook promises the page shows, counted from its cells as the book keeps them."
    nb = json.loads(Path(nb_path).read_text())
    imgs = videos = 0
    has_math = False
    for cell in nb["cells"]:
        cell = book.process_cell(cell)
        if cell is None:
            continue
        if cell["cell_type"] == "markdown":
            prose = re.sub(r"```.*?```|`[^`\n]*`", "", cell["source"], flags=re.DOTALL)  # no code spans
            has_math |= bool(re.search(r"\$[^$\n]+\$", prose))
            continue
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if "text/html" in data:  # the renderer's own priority: html before images
                html = "".join(data["text/html"])
                imgs += len(re.findall(r"<img\b", html))
                videos += len(re.findall(r"<video\b", html))
            elif any(m in data for m in IMAGE_MIMES):
                imgs += 1
    return {"imgs": imgs, "videos": videos, "math": has_math}


def pages():
    "(page path in the site, notebook or None) for every page the book must have."
    out = [("index.html", ROOT / "nbs" / "index.ipynb")]
    out += [(f"{p.stem}.html", p) for p in book.chapters()]
    out += [("references.html", None)] if book.REFERENCES.exists() else []
    out += [("api/index.html", None)] + [(f"api/{m}.html", None) for m, _ in book.modules()]
    return out


PAGES = pages()
SHOT_API = "api/io.html"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "Builds the book once (the one build of CI) and serves it on the loopback address."
    for pkg in ("sphinx", "myst_nb", "furo", "mathjax", "selenium"):
        if importlib.util.find_spec(pkg) is None:
            pytest.fail(f"{pkg} is missing: the book needs the docs extra: pip install -c constraints.txt -e \".[docs]\"")
    tmp = tmp_path_factory.mktemp("book")
    out = tmp / "site"
    t = time.time()
    r = subprocess.run([sys.executable, "tools/book.py", "--out", str(out), "--work", str(tmp / "work"), "-q"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(f"\nbook built in {time.time() - t:.0f} s: {r.stdout.strip().splitlines()[-1]}")
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in CHROMIUM_ARGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_page_load_timeout(30)
    drv.set_script_timeout(45)
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def screenshots():
    d = Path(os.environ.get("BOOK_SCREENSHOTS") or tempfile.mkdtemp(prefix="book-screenshots-"))
    d.mkdir(parents=True, exist_ok=True)
    return d


# after load: wait (in the page) for MathJax and for every image and video to load or fail, then report
PAGE_STATE = """
const done = arguments[arguments.length - 1];
const settle = (el) => new Promise((ok) => {
  if (el.tagName === 'IMG') { if (el.complete) return ok(); el.onload = el.onerror = () => ok(); return; }
  if (el.readyState >= 1 || el.error) return ok();
  el.addEventListener('loadedmetadata', () => ok()); el.addEventListener('error', () => ok(), true);
  el.load();
});
const math = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
const media = [...document.querySelectorAll('article img, article video')];
Promise.race([Promise.all([math, ...media.map(settle)]), new Promise((ok) => setTimeout(ok, 15000))]).then(() => {
  const art = document.querySelector('article');
  const imgs = [...document.querySelectorAll('img')];
  const vids = [...document.querySelectorAll('article video')];
  done({
    title: document.title,
    article: art ? art.innerText.length : 0,
    imgs_ok: [...(art ? art.querySelectorAll('img') : [])].filter((i) => i.complete && i.naturalWidth > 0).length,
    broken: imgs.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.src.slice(0, 120)),
    videos_ok: vids.filter((v) => v.readyState >= 1 && v.videoWidth > 0).length,
    videos: vids.length,
    tracebacks: document.querySelectorAll('.output.traceback, .output.error').length,
    stderr: [...document.querySelectorAll('.output.stderr')].map((e) => e.innerText),
    // code blocks (cells' code and markdown's code, not outputs) wider than their box: they scroll sideways
    scrolling: [...(art ? art.querySelectorAll('pre') : [])].filter((p) => !p.closest('.cell_output'))
      .filter((p) => p.scrollWidth > p.clientWidth + 1)
      .map((p) => ({over: p.scrollWidth - p.clientWidth,
                    line: p.innerText.split('\\n').reduce((a, b) => (b.length > a.length ? b : a), '').slice(0, 120)})),
    text: art ? art.innerText : '',
    mathjax: window.MathJax && MathJax.version ? MathJax.version : null,
    math_ok: document.querySelectorAll('mjx-container').length,
    math_errors: [...document.querySelectorAll('mjx-merror')].map((e) => e.getAttribute('data-mjx-error') || e.textContent),
    next: !!document.querySelector('a.next-page'), prev: !!document.querySelector('a.prev-page'),
    sidebar: [...document.querySelectorAll('.sidebar-tree a.reference')].map((a) => a.getAttribute('href')),
    resources: performance.getEntriesByType('resource').map((r) => r.name),
  });
}).catch((e) => done({article: 0, title: 'script error: ' + e, broken: [], next: false, prev: false}));
"""


def reader_noise(s):
    "What a page shows that it should not, one line per block: sideways-scrolling code, machine paths, stderr."
    out = [f"  code block scrolls sideways by {b['over']} px; its longest line: {b['line']!r}" for b in s["scrolling"]]
    for line in s["text"].splitlines():
        if MACHINE_PATH.search(line):
            out.append(f"  a path of the building machine: {line.strip()[:160]!r}")
    out += [f"  stderr output: {t.strip()[:160]!r}" for t in s["stderr"]]
    return out


def _complete(s, html, want):
    "Whether a page state looks whole: content, the links its built file has, and the figures its notebook promises."
    if s["article"] == 0 or s["broken"]:
        return False
    if ('class="next-page"' in html and not s["next"]) or ('class="prev-page"' in html and not s["prev"]):
        return False
    return want is None or (s["imgs_ok"] >= want["imgs"] and s["videos_ok"] >= want["videos"])


def _settled_state(browser, url, html, want, tries=3):
    """The page's state after it settles, loaded afresh up to `tries` times.

    On this 2-core machine under CI load, headless Chromium now and then answers before a page has settled (a script
    timeout, or a DOM without the links the built file has); a fresh load then reads it whole. A page that is broken
    stays broken on every try, and the last state is what the assertions judge.
    """
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait
    s = None
    for attempt in range(tries):
        try:
            browser.get(url)
            WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")
            s = browser.execute_async_script(PAGE_STATE)
        except (TimeoutException, WebDriverException) as e:
            if attempt == tries - 1:
                raise
            print(f"\n{url}: try {attempt + 1} failed ({type(e).__name__}), loading it again")
            time.sleep(2)
            continue
        if _complete(s, html, want):
            return s
        if attempt < tries - 1:
            print(f"\n{url}: try {attempt + 1} looked incomplete, loading it again")
            time.sleep(2)
    return s


def _figure_chapter():
    counts = {p: expected(nb) for p, nb in PAGES if nb is not None and p != "index.html"}
    figures = {p: c["imgs"] + c["videos"] for p, c in counts.items()}
    return max(counts, key=lambda p: (counts[p]["math"] and figures[p] > 0, figures[p]))


SHOTS = {"index.html": "home.png", _figure_chapter(): "chapter.png", SHOT_API: "api.png"}


@pytest.mark.parametrize("page,nb", PAGES, ids=[p for p, _ in PAGES])
def test_page(site, browser, screenshots, page, nb):
    out, base = site
    assert (out / page).exists(), f"{page} was not built"
    html = (out / page).read_text()
    external = re.findall(r"<(?:script|link|img|video|source|iframe)\b[^>]*?(?:src|href)=\"(https?://[^\"]+)\"", html)
    assert not external, f"{page} loads from the network: {external[:5]}"
    dangling = re.findall(r'href="((?!https?:)[^"]*\.(?:ipynb|md)\b[^"]*)"', html)
    assert not dangling, f"{page} links to pages the book does not have (misspelt?): {dangling[:5]}"
    want = expected(nb) if nb is not None else None
    s = _settled_state(browser, base + page, html, want)
    assert s["article"] > 0, f"{page} has no content (title {s['title']!r})"
    assert "404" not in s["title"] and "Page not found" not in s["title"], s["title"]
    assert not s["broken"], f"{page}: images that did not load: {s['broken']}"
    assert all(u.startswith((base, "data:")) for u in s["resources"]), \
        [u for u in s["resources"] if not u.startswith(base)]
    assert s["tracebacks"] == 0, f"{page} shows {s['tracebacks']} traceback(s)"
    errors = [t[:300] for t in s["stderr"] if ERROR_TEXT.search(t)]
    assert not errors, f"{page} shows errors on stderr: {errors}"
    assert not s["math_errors"], f"{page}: math that MathJax could not typeset: {s['math_errors'][:5]}"
    shown = reader_noise(s)
    assert not shown, f"{page} shows what a reader should not see:\n" + "\n".join(shown)
    # the link is in the page as built (read from the file: under load the browser's DOM was once seen without it, flaky)
    assert s["next"] or 'class="next-page"' in html or page == PAGES[-1][0], f"{page} has no link to the next page"
    assert s["prev"] or 'class="prev-page"' in html or page == "index.html", f"{page} has no link to the previous page"
    if page == "index.html":
        stems = [p.stem for p in book.chapters()]
        linked = [h.split("#")[0].removesuffix(".html") for h in s["sidebar"]]
        assert [x for x in linked if x in stems] == stems, "the sidebar does not list every chapter, in order"
        assert "api/index.html" in s["sidebar"], "the sidebar has no API reference"
    if nb is not None:
        assert s["imgs_ok"] >= want["imgs"], f"{page}: {s['imgs_ok']} images shown, its notebook has {want['imgs']}"
        assert s["videos_ok"] >= want["videos"], \
            f"{page}: {s['videos_ok']} of {s['videos']} videos play, its notebook has {want['videos']}"
        if want["math"]:  # Sphinx adds MathJax to the pages that have math
            assert s["mathjax"] and s["mathjax"].startswith("3"), f"{page}: MathJax did not load from the site"
            assert s["math_ok"] > 0, f"{page}: its notebook has math, none was typeset"
    elif page.startswith("api/") and page != "api/index.html":
        module = book.PKG + "." + page[4:-5]
        n_docs = len(browser.find_elements("css selector", "dl.py > dt[id]"))
        assert n_docs >= len(getattr(__import__(module, fromlist=["_"]), "__all__", [])), \
            f"{page}: {n_docs} documented names, fewer than {module}.__all__"
    if page in SHOTS:
        browser.execute_script("const f = document.querySelector('article .cell_output img, article video');"
                               "if (f && !location.pathname.endsWith('index.html')) f.scrollIntoView({block: 'center', behavior: 'instant'});")
        time.sleep(0.5)
        path = screenshots / SHOTS[page]
        browser.save_screenshot(str(path))
        print(f"\nscreenshot of {page}: {path}")
