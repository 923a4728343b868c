"""Builds the book: a static website of the notebooks in nbs/, rendered from their committed outputs (never run).

    python tools/book.py                       # -> _site/index.html (work files in _book/)
    python tools/book.py --out DIR --work DIR  # elsewhere (the test builds into a temporary folder)

Needs the `docs` extra (`pip install -c constraints.txt -e ".[docs]"`): Sphinx + myst-nb + Furo, and MathJax 3
from the `django-static-mathjax` wheel, copied into the site so that math renders with no network.
Why this renderer: see tools/book/conf.py. What this script adds to Sphinx:

* nbdev's cell directives, as nbdev's own doc processors read them: `#| hide` and `#| include: false` cells are
  dropped, `#| echo: false` shows only the outputs, `#| output: false` only the code, `#| hide_line` and
  `#| filter_stream WORDS` are applied, `#| export` cells are shown as code, and every `#|` line is removed;
  markdown headings that end in ` -` are dropped (nbdev's `rm_header_dash`). Widget outputs, which need the
  live kernel, are dropped.
* the chapter order (sorted notebook names), with nbs/index.ipynb (the README) as the home page, whose
  chapter table links to the chapters;
* one API page per module of `opensora_nb`: every name in its `__all__` with signature and docstring (autodoc).
"""
import argparse
import copy
import importlib
import inspect
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "book"
NBS, PKG = ROOT / "nbs", "opensora_nb"
MATHJAX_FILES = ["tex-chtml-full.js", "output/chtml/fonts/woff-v2"]
ABOUT = """## How this site is made

`python tools/book.py` renders the notebooks with Sphinx and myst-nb, with execution off: every page shows the
outputs its notebook was committed with, so the book builds in about half a minute and needs no GPU, data or
weights. myst-nb reads the notebooks as they are (figures, videos, tables, MyST math), autodoc writes these API
pages from the package itself, and MathJax is served from the site, so it reads offline. nbdev's own
`nbdev_docs` would need Quarto, which cannot be installed without a download from GitHub."""
_re_directive = re.compile(r"^\s*#\|\s?(.*)$")
_re_header_dash = re.compile(r"^#+\s+.*\s+-\s*$", re.MULTILINE)
WIDGET = "application/vnd.jupyter.widget-view+json"


def chapters(nbs=NBS):
    "The chapter notebooks, in book order (sorted file names), without the home page."
    return sorted(p for p in Path(nbs).glob("*.ipynb") if p.stem != "index" and not p.name.startswith("_"))


def directives(source):
    "nbdev directives of a code cell: {'hide': [], 'eval': ['false'], ...} (leading `#|` lines only)."
    out = {}
    for line in source.splitlines():
        m = _re_directive.match(line)
        if not m:
            if line.strip():
                break
            continue
        words = m.group(1).split()
        if words:
            out[words[0].rstrip(":")] = words[1:]
    return out


def _source(cell):
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def process_cell(cell):
    "The cell as the book shows it (nbdev's doc processors, see the module docstring), or None to drop it."
    cell = copy.deepcopy(cell)
    src = _source(cell)
    if cell["cell_type"] == "markdown":
        cell["source"] = _re_header_dash.sub("", src)
        return cell
    if cell["cell_type"] != "code":
        return None
    d = directives(src)
    if "hide" in d or d.get("include") == ["false"]:
        return None
    lines = [l for l in src.splitlines() if not _re_directive.match(l)]
    lines = [l for l in lines if not re.search(r"#\|\s*hide_line\s*$", l)]
    cell["source"] = "\n".join(lines).strip("\n")
    outputs = [] if d.get("output") == ["false"] else cell.get("outputs", [])
    words = d.get("filter_stream", [])
    kept = []
    for o in outputs:
        if o.get("output_type") == "stream" and words:
            text = [l for l in "".join(o["text"]).splitlines(keepends=True) if not any(w in l for w in words)]
            if not text:
                continue
            o["text"] = text
        if o.get("output_type") in ("display_data", "execute_result") and WIDGET in o.get("data", {}):
            continue  # a live widget (a progress bar): nothing to show without its kernel
        kept.append(o)
    cell["outputs"] = kept
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    if d.get("echo") == ["false"] or not cell["source"].strip():
        if not kept:
            return None
        tags.append("remove-input")
    return cell


def process_notebook(src, dst, extra_md=(), link_table=False):
    "Writes the book's copy of notebook `src` to `dst`: cells processed, widget state dropped, `extra_md` appended."
    nb = json.loads(Path(src).read_text())
    cells = [c for c in map(process_cell, nb["cells"]) if c is not None]
    if link_table:  # the home page's chapter table: notebook names become links
        stems = {p.stem for p in chapters(Path(src).parent)}
        for c in cells:
            if c["cell_type"] == "markdown":
                c["source"] = _link_table(c["source"], stems)
    for md in extra_md:
        cells.append({"cell_type": "markdown", "metadata": {}, "source": md})
    for i, c in enumerate(cells):  # nbformat 4.5 wants an id on every cell
        c.setdefault("id", f"book-{i}")
    nb["cells"] = cells
    nb.setdefault("metadata", {}).pop("widgets", None)
    nb["metadata"].setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    nb["metadata"].setdefault("language_info", {"name": "python"})
    write(dst, json.dumps(nb, indent=1, ensure_ascii=False))


def write(path, text):
    "Writes only a changed file, so that Sphinx rebuilds only the pages whose source changed."
    path = Path(path)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _link_table(md, stems):
    def link(m):
        names = [n.strip() for n in m.group(1).split(",")]
        if not all(n in stems for n in names):
            return m.group(0)
        return "| " + ", ".join(f"[{n}]({n}.ipynb)" for n in names) + " |"
    return re.sub(r"^\|([^|\n]+)\|", link, md, flags=re.MULTILINE)


def title(nb_path):
    "A chapter's entry in the sidebar: its number and its first heading (`12b The demo: ...`)."
    nb = json.loads(Path(nb_path).read_text())
    for c in nb["cells"]:
        m = re.search(r"^#\s+(.+)$", _source(c), re.MULTILINE) if c["cell_type"] == "markdown" else None
        if m:
            return f"{Path(nb_path).stem.split('_')[0]} {m.group(1).replace('`', '').strip()} <{Path(nb_path).stem}>"
    return Path(nb_path).stem


def toctree(caption, entries):
    return "```{toctree}\n:hidden:\n:caption: " + caption + "\n\n" + "\n".join(entries) + "\n```"


def modules():
    "The modules of the package, in chapter order (by the notebook each is exported from), then the rest."
    order = {p.stem: i for i, p in enumerate(chapters())}
    mods = []
    for f in sorted((ROOT / PKG).glob("*.py")):
        if f.stem.startswith("_"):
            continue
        m = re.search(r"File to edit: \.\./nbs/(\S+)\.ipynb", f.read_text()[:2000])
        nb = m.group(1) if m else None
        mods.append((order.get(nb, len(order)), f.stem, nb))
    return [(name, nb) for _, name, nb in sorted(mods)]


def import_modules(names):
    "Imports every module (autodoc will too); returns {name: module} and the missing packages to mock."
    mocks, mods = [], {}
    for name in names:
        for _ in range(10):
            try:
                mods[name] = importlib.import_module(f"{PKG}.{name}")
                break
            except ModuleNotFoundError as e:
                root = (e.name or "").split(".")[0]
                if not root or root == PKG or root in mocks:
                    raise
                mocks.append(root)
                from sphinx.ext.autodoc.mock import mock
                mock([root]).__enter__()  # the same mock autodoc uses, for the rest of this process
    return mods, mocks


def api_page(name, module, nb):
    "MyST source of the API page of one module: every name in __all__ with its signature and docstring."
    full = f"{PKG}.{name}"
    head = [f"# `{full}`", ""]
    if nb:
        head += [f"<p class=\"book-source\">Exported from chapter <a href=\"../{nb}.html\">{nb}</a>.</p>", ""]
    rst = [f".. automodule:: {full}", "   :no-members:", ""]
    for obj_name in getattr(module, "__all__", []):
        obj = getattr(module, obj_name, None)
        if inspect.isclass(obj):
            rst += [f".. autoclass:: {full}.{obj_name}", "   :members:", "   :show-inheritance:", ""]
        elif callable(obj):
            rst += [f".. autofunction:: {full}.{obj_name}", ""]
        else:  # data: its type and a short value (autodata would print the docstring of the value's type)
            value = repr(obj)
            opt = f"   :value: {value}" if len(value) <= 80 and "\n" not in value else f"   :type: {type(obj).__name__}"
            rst += [f".. py:data:: {full}.{obj_name}", opt, ""]
    return "\n".join(head + ["```{eval-rst}"] + rst + ["```", ""])


def stage_mathjax(static):
    "Copies the MathJax 3 files the site needs (one bundle and its woff fonts, ~1.5 MB) into `static`/mathjax."
    try:
        import mathjax  # the django-static-mathjax wheel: MathJax 3 as static files
    except ImportError:
        sys.exit('MathJax is missing: pip install -c constraints.txt -e ".[docs]"')
    src = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    for rel in MATHJAX_FILES:
        s, d = src / rel, static / "mathjax" / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(s, d, dirs_exist_ok=True) if s.is_dir() else shutil.copy2(s, d)


def stage(src):
    "Writes the book's sources into `src`: the processed notebooks, the API pages and the static files."
    src.mkdir(parents=True, exist_ok=True)
    chs = chapters()
    mods = modules()
    loaded, mocks = import_modules([m for m, _ in mods])
    home_extra = [toctree("Chapters", [title(p) for p in chs]), toctree("API reference", ["api/index"])]
    process_notebook(NBS / "index.ipynb", src / "index.ipynb", home_extra, link_table=True)
    for p in chs:
        process_notebook(p, src / p.name)
    api = src / "api"
    api.mkdir(exist_ok=True)
    listing = [f"- [`{PKG}.{m}`]({m}.md)" + (f": chapter [{nb}](../{nb}.ipynb)" if nb else "") for m, nb in mods]
    write(api / "index.md", "# API reference\n\nOne page per module of the package, in chapter order: every "
                                  "name in the module's `__all__`, with its signature and docstring.\n\n"
                                  + "\n".join(listing) + "\n\n" + ABOUT + "\n\n" + toctree("Modules", [m for m, _ in mods]) + "\n")
    for m, nb in mods:
        write(api / f"{m}.md", api_page(m, loaded[m], nb))
    if (NBS / "images").is_dir():  # pictures the markdown cells link (e.g. the demo's GIF on the home page)
        shutil.copytree(NBS / "images", src / "images", dirs_exist_ok=True)
    static = src / "_static"
    static.mkdir(exist_ok=True)
    stage_mathjax(static)
    write(static / "book.css", (HERE / "book.css").read_text())
    # a rebuild must not keep pages of notebooks that were renamed or removed
    keep = {p.name for p in chs} | {"index.ipynb"}
    for old in src.glob("*.ipynb"):
        if old.name not in keep:
            old.unlink()
    for old in api.glob("*.md"):
        if old.stem != "index" and old.stem not in {m for m, _ in mods}:
            old.unlink()
    return mocks, static


def build(out=ROOT / "_site", work=ROOT / "_book", fresh=False, quiet=False):
    "Builds the site into `out` (Sphinx's own files under `work`); returns the warnings Sphinx printed."
    from io import StringIO

    from sphinx.application import Sphinx
    os.environ.setdefault("MPLBACKEND", "Agg")
    out, work = Path(out).resolve(), Path(work).resolve()
    if fresh and work.exists():
        shutil.rmtree(work)
    src, html = work / "src", work / "html"
    mocks, static = stage(src)
    warnings = StringIO()
    overrides = {"html_static_path": [str(static)], "autodoc_mock_imports": mocks}
    app = Sphinx(str(src), str(HERE), str(html), str(work / "doctrees"), "html", confoverrides=overrides,
                 status=None if quiet else sys.stdout, warning=warnings, freshenv=fresh, parallel=1)
    app.build()
    if app.statuscode:
        sys.exit(f"sphinx failed ({app.statuscode}):\n{warnings.getvalue()}")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(html, out, ignore=shutil.ignore_patterns(".buildinfo", ".doctrees", "_sources"))
    return warnings.getvalue()


def size(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "_site"), help="where the site lands (default: _site/)")
    ap.add_argument("--work", default=str(ROOT / "_book"), help="Sphinx's sources and caches (default: _book/)")
    ap.add_argument("--fresh", action="store_true", help="rebuild every page (default: only the changed ones)")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only warnings and the summary")
    a = ap.parse_args(argv)
    t = time.time()
    warnings = build(a.out, a.work, a.fresh, a.quiet)
    if warnings.strip():
        print(warnings.rstrip(), file=sys.stderr)
    n = len(list(Path(a.out).rglob("*.html")))
    print(f"book: {n} pages, {size(a.out) / 2**20:.1f} MiB in {a.out} ({time.time() - t:.0f} s); "
          f"open {Path(a.out) / 'index.html'}")


if __name__ == "__main__":
    main()
