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
* the chapter order (sorted notebook names), grouped into the parts of `PARTS` in the sidebar, each chapter
  with the number a reader follows (`3.2` for the second chapter of part 3; appendices `A`, `B`, ...; the
  notebook files keep their names), with nbs/index.ipynb (the README) as the home page, whose chapter table
  links to the chapters;
* under each chapter's title, one line: its number and part, a link to its notebook, its run time on a CPU in
  test mode and the papers it builds on (links into the references page), read from `nbs/_chapters.json`;
  the references page is `nbs/references.md`;
* stderr outputs (progress bars, library warnings) are dropped, unless they show an error (kept, so that the
  book test sees it); pandas tables lose a plain 0, 1, 2, ... index column;
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
# an error on stderr stays on the page (the book test fails on it); any other stderr (progress bars, warnings) goes
ERROR_TEXT = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception): |^ERROR\b", re.MULTILINE)
# the parts of the book: (title, the first notebook name of the part); a notebook belongs to the last part whose
# first name sorts at or before its own, so a new notebook finds its part by its number
PARTS = [("Video and sample worlds", "01"), ("Encoders: pixels and words", "03"), ("The denoiser", "05"),
         ("Diffusion", "07"), ("Data", "09"), ("Training", "10c"), ("Inference", "12"), ("Scale", "13"),
         ("The command line", "16"), ("Appendices", "90")]
CHAPTERS_JSON = NBS / "_chapters.json"  # per chapter: its CPU run time in test mode, the references it cites
REFERENCES = NBS / "references.md"
GIT_URL, BRANCH = "https://github.com/opensora-nb/opensora-nb", "main"  # settings.ini's git_url and branch


def chapters(nbs=NBS):
    "The chapter notebooks, in book order (sorted file names), without the home page."
    return sorted(p for p in Path(nbs).glob("*.ipynb") if p.stem != "index" and not p.name.startswith("_"))


def parts(chs=None):
    "[(part title, [chapter notebooks])] in book order; empty parts are left out."
    chs = chapters() if chs is None else chs
    out = [(t, []) for t, _ in PARTS]
    for p in chs:
        i = max((i for i, (_, first) in enumerate(PARTS) if first <= p.stem), default=0)
        out[i][1].append(p)
    return [(t, ps) for t, ps in out if ps]


def numbers(chs=None):
    "{notebook stem: (number a reader follows, part number, part title)}: `3.2`, and `A`, `B`, ... for appendices."
    out = {}
    for k, (t, ps) in enumerate(parts(chs), 1):
        for j, p in enumerate(ps):
            out[p.stem] = (chr(ord("A") + j) if t == "Appendices" else f"{k}.{j + 1}", k, t)
    return out


def chapter_info(path=CHAPTERS_JSON):
    "The committed table of chapters: {stem: {'cpu_s': seconds in test mode, 'cites': [reference anchors]}}."
    path = Path(path)
    return {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")} if path.exists() else {}


def reference_anchors(path=REFERENCES):
    "The anchors of the references page: {every `(name)=` target in it: the bold name that follows it, or itself}."
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    found = re.findall(r"^\((\S+)\)=[ \t]*\n+(?:\*\*(.+?)\.?\*\*)?", text, re.MULTILINE)
    return {key: name or key for key, name in found}


def _seconds(s):
    return f"about {max(5, round(s / 5) * 5):.0f} s" if s < 90 else f"about {s / 60:.0f} min"


def page_header(stem, info=None, nums=None, refs=None):
    "The line under a chapter's title: number and part, notebook link, CPU run time, references."
    info = chapter_info() if info is None else info
    nums = numbers() if nums is None else nums
    refs = reference_anchors() if refs is None else refs
    num, k, part = nums[stem]
    entry = info.get(stem, {})
    bits = [f"{'Appendix' if part == 'Appendices' else 'Chapter'} {num} (part {k}, {part})",
            f"notebook [`nbs/{stem}.ipynb`]({GIT_URL}/blob/{BRANCH}/nbs/{stem}.ipynb)"]
    if "cpu_s" in entry:
        bits.append(f"runs in {_seconds(entry['cpu_s'])} on one CPU core (`nbdev_test`, test mode)")
    if entry.get("cites"):
        bits.append("references: " + ", ".join(f"[{refs.get(c, c)}](references.md#{c})" for c in entry["cites"]))
    return {"cell_type": "markdown", "metadata": {"tags": ["book-header"]},
            "source": "<div class=\"book-header\">\n\n" + " · ".join(bits) + "\n\n</div>"}


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
        if o.get("output_type") == "stream" and o.get("name") == "stderr" and not ERROR_TEXT.search("".join(o["text"])):
            continue  # progress bars and warnings: not the chapter's content (and they show the machine's paths)
        if "text/html" in o.get("data", {}):
            html = "".join(o["data"]["text/html"])
            o["data"]["text/html"] = _drop_range_index(html)
        kept.append(o)
    cell["outputs"] = kept
    tags = cell.setdefault("metadata", {}).setdefault("tags", [])
    if d.get("echo") == ["false"] or not cell["source"].strip():
        if not kept:
            return None
        tags.append("remove-input")
    return cell


_re_row_head = re.compile(r"(<tr[^>]*>\s*)<th[^>]*>(.*?)</th>", re.DOTALL)


def _drop_range_index(html):
    "A pandas table without its index column when that index is only the row numbers 0, 1, 2, ..."
    if "dataframe" not in html or "<tbody>" not in html:
        return html
    head, body = html.split("<tbody>", 1)
    rows = _re_row_head.findall(body)
    if not rows or [r[1].strip() for r in rows] != [str(i) for i in range(len(rows))]:
        return html
    if len(re.findall(r"<tr", head)) != 1:  # a header of several rows (a named index, column levels): keep it
        return html
    return _re_row_head.sub(r"\1", head, count=1) + "<tbody>" + _re_row_head.sub(r"\1", body)


def process_notebook(src, dst, extra_md=(), link_table=False, header=None):
    """Writes the book's copy of notebook `src` to `dst`: cells processed, widget state dropped, `header` (a markdown
    cell) put after the title's cell, `extra_md` appended."""
    nb = json.loads(Path(src).read_text())
    cells = [c for c in map(process_cell, nb["cells"]) if c is not None]
    if header is not None:
        at = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                   and re.search(r"^#\s", c["source"], re.MULTILINE)), None)
        if at is None:
            cells.insert(0, header)
        else:  # right under the title and its one-line summary (`> ...`), before the cell's prose
            m = re.search(r"^#\s[^\n]*\n(?:\s*\n)*(?:>[^\n]*\n?)*", cells[at]["source"], re.MULTILINE)
            rest = cells[at]["source"][m.end():]
            cells[at]["source"] = cells[at]["source"][:m.end()]
            extra = [{**cells[at], "id": f"{cells[at].get('id', 'c')}-rest", "source": rest}] if rest.strip() else []
            cells[at + 1:at + 1] = [header] + extra
    if link_table:  # the home page's chapter table: notebook names become links, with the numbers of the sidebar
        nums = {k: v[0] for k, v in numbers(chapters(Path(src).parent)).items()}
        for c in cells:
            if c["cell_type"] == "markdown":
                c["source"] = _link_table(c["source"], nums)
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


def _link_table(md, nums):
    def link(m):
        names = [n.strip() for n in m.group(1).split(",")]
        if not all(n in nums for n in names):
            return m.group(0)
        return "| " + ", ".join(f"{nums[n]} [{n}]({n}.ipynb)" for n in names) + " |"
    return re.sub(r"^\|([^|\n]+)\|", link, md, flags=re.MULTILINE)


def title(nb_path, number=None):
    "A chapter's entry in the sidebar: its number and its first heading (`7.2 The demo: ...`)."
    stem = Path(nb_path).stem
    number = number or stem.split("_")[0]
    nb = json.loads(Path(nb_path).read_text())
    for c in nb["cells"]:
        m = re.search(r"^#\s+(.+)$", _source(c), re.MULTILINE) if c["cell_type"] == "markdown" else None
        if m:
            return f"{number} {m.group(1).replace('`', '').strip()} <{stem}>"
    return stem


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
            if isinstance(obj, Path) and obj.is_absolute() and obj.is_relative_to(ROOT):  # not the builder's folders
                value = f"Path('{obj.relative_to(ROOT)}')"
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
    nums, info, refs = numbers(chs), chapter_info(), reference_anchors()
    home_extra = [toctree(f"{'' if t == 'Appendices' else f'Part {k}: '}{t}", [title(p, nums[p.stem][0]) for p in ps])
                  for k, (t, ps) in enumerate(parts(chs), 1)]
    home_extra += [toctree("References", ["references"]), toctree("API reference", ["api/index"])]
    process_notebook(NBS / "index.ipynb", src / "index.ipynb", home_extra, link_table=True)
    for p in chs:
        process_notebook(p, src / p.name, header=page_header(p.stem, info, nums, refs))
    if REFERENCES.exists():
        write(src / "references.md", REFERENCES.read_text())
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


def measure(names, path=CHAPTERS_JSON):
    """Runs `nbdev_test --path nbs/NAME.ipynb --n_workers 1` for each notebook, one thread, and writes the CPU seconds
    it took (user + system, its processes together) into `path`: the `cpu_s` the page header shows. CPU time, not
    wall time, so that a busy machine does not inflate it; on an idle CPU the wall time is about the same (more
    for the notebooks that launch two ranks, whose CPU time is summed). A notebook that fails is named and keeps its
    old time."""
    import resource
    import subprocess
    table = json.loads(Path(path).read_text()) if Path(path).exists() else {}
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    for name in names:
        stem = Path(name).stem
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run(["nbdev_test", "--path", str(NBS / f"{stem}.ipynb"), "--n_workers", "1"], cwd=ROOT,
                           capture_output=True, text=True, check=False, env=env)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode:
            print(f"{stem}: nbdev_test failed, time not recorded:\n{r.stderr[-1000:]}", file=sys.stderr)
            continue
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        table.setdefault(stem, {})["cpu_s"] = round(cpu, 1)
        print(f"{stem}: {table[stem]['cpu_s']} s")
        Path(path).write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n")


def size(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "_site"), help="where the site lands (default: _site/)")
    ap.add_argument("--work", default=str(ROOT / "_book"), help="Sphinx's sources and caches (default: _book/)")
    ap.add_argument("--fresh", action="store_true", help="rebuild every page (default: only the changed ones)")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only warnings and the summary")
    ap.add_argument("--measure", nargs="+", metavar="NB",
                    help="instead of building: time `nbdev_test` on these notebooks into nbs/_chapters.json")
    a = ap.parse_args(argv)
    if a.measure:
        return measure(a.measure)
    t = time.time()
    warnings = build(a.out, a.work, a.fresh, a.quiet)
    if warnings.strip():
        print(warnings.rstrip(), file=sys.stderr)
    n = len(list(Path(a.out).rglob("*.html")))
    print(f"book: {n} pages, {size(a.out) / 2**20:.1f} MiB in {a.out} ({time.time() - t:.0f} s); "
          f"open {Path(a.out) / 'index.html'}")


if __name__ == "__main__":
    main()
