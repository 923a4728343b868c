"""Screenshots of built book pages, for comparing the book before and after a change.

    python tools/book.py                                       # build the site into _site/
    python tools/book_screenshots.py --prefix after            # -> benchmarks/results/book/after_06_stdit_1.png ...
    python tools/book_screenshots.py --site DIR --prefix before --pages 06_stdit 13_parallel --screens 3

Each page is opened in headless Chromium (Debian's `chromium` and `chromium-driver`, driven by selenium from the
`docs` extra) at a full desktop width; the first screenshot is the top of the page, the next ones are taken with
the page scrolled to its widest code blocks (the ones a reader would scroll sideways, if any, else the longest),
so that a before/after pair shows the same kind of place. The site is served on the loopback address, as the book
test serves it.
"""
import argparse
import functools
import http.server
import shutil
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["06_stdit", "13_parallel"]
WIDTH, HEIGHT = 1600, 1000

# code blocks, widest first: (their scroll width - their visible width, then their height); the top of each
WIDEST = """
const blocks = [...document.querySelectorAll('article div.cell_input pre, article div.highlight pre')];
return blocks.map((b, i) => [i, b.scrollWidth - b.clientWidth, b.scrollHeight,
                             b.getBoundingClientRect().top + window.scrollY])
             .sort((a, b) => (b[1] - a[1]) || (b[2] - a[2])).map((x) => x[3]);
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(site):
    "Serves `site` on 127.0.0.1 in a thread; returns (server, base url)."
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def browser(width=WIDTH, height=HEIGHT):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    chromium = next(p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).exists())
    driver = next(p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver") if p and Path(p).exists())
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
              "--force-device-scale-factor=1", f"--window-size={width},{height}"]:
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(driver), options=opts)


def shoot(site, out, prefix, pages=PAGES, screens=3, width=WIDTH, height=HEIGHT):
    "Takes `screens` screenshots of each page; returns their paths."
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    server, base = serve(site)
    drv = browser(width, height)
    paths = []
    try:
        for page in pages:
            drv.get(base + page + ".html")
            time.sleep(1.5)  # images, MathJax
            tops = [0] + [max(0, int(y) - 80) for y in drv.execute_script(WIDEST)]
            shown = []
            for y in tops:
                if len(shown) == screens:
                    break
                if any(abs(y - s) < height * 0.6 for s in shown):
                    continue  # already on a screenshot
                shown.append(y)
            for i, y in enumerate(sorted(shown), 1):
                drv.execute_script(f"window.scrollTo(0, {y});")
                time.sleep(0.3)
                path = out / f"{prefix}_{page}_{i}.png"
                drv.save_screenshot(str(path))
                paths.append(path)
    finally:
        drv.quit()
        server.shutdown()
    return paths


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--site", default=str(ROOT / "_site"), help="the built book (default: _site/)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "book"), help="where the PNGs go")
    ap.add_argument("--prefix", default="after", help="file names start with this (before, after)")
    ap.add_argument("--pages", nargs="+", default=PAGES, help="page names without .html")
    ap.add_argument("--screens", type=int, default=3, help="screenshots per page")
    ap.add_argument("--width", type=int, default=WIDTH)
    ap.add_argument("--height", type=int, default=HEIGHT)
    a = ap.parse_args(argv)
    if not (Path(a.site) / "index.html").exists():
        raise SystemExit(f"{a.site} has no index.html: build the book first (python tools/book.py)")
    for p in shoot(a.site, a.out, a.prefix, a.pages, a.screens, a.width, a.height):
        print(p)


if __name__ == "__main__":
    main()
