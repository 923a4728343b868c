"""Execute book notebooks top to bottom, as `nbdev_test` does, and save their outputs into the notebooks.

    python tools/execute_book.py [NOTEBOOKS...]        (default: every notebook in nbs/)
    python tools/execute_book.py --flags slow NB       (also run the cells flagged `#| slow`)

Each notebook runs in a fresh process, in its own folder as the working directory, with the project root on
`sys.path` and `IN_TEST=1`: exactly `nbdev_test`'s conditions (execnb's `CaptureShell.run_all`). Cells flagged with
one of `tst_flags` from settings.ini (`#| slow`, `#| gpu`, `#| dist`) and `#| eval: false` cells are not run and
keep the outputs they already have; every other code cell gets fresh outputs (none, if it prints nothing).
A notebook whose run raises is reported (notebook, cell, traceback) and left untouched. After a good run the
notebook is written, ipywidgets' state is stored in its metadata (so a page read without a kernel still draws the
widgets), a kernelspec is set, and `nbdev_clean` tidies it. Figures are stored as PNG at their own dpi (not
execnb's retina default, which triples the bytes) so that the book stays light (tests/test_book_outputs.py).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
WIDGET_VIEW, WIDGET_STATE = "application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json"


def _skip_fn(flags):
    "The `preproc` nbdev_test gives `run_all`: True for a cell that is not run."
    from nbdev.process import extract_directives

    def skip(cell):
        if cell.cell_type != "code": return True
        if "nbdev_export" + "(" in cell.source: return True
        d = _directives(cell.source, extract_directives)
        if d.get("eval:", [""])[0].lower() == "false": return True
        return bool(flags & d.keys())
    return skip


def _directives(source, extract_directives):
    from fastcore.basics import AttrDict
    return extract_directives(AttrDict(source=source, cell_type="code"), remove=False)


def _widget_ids(cells):
    return {o["data"][WIDGET_VIEW]["model_id"] for c in cells for o in c.get("outputs", []) or []
            if WIDGET_VIEW in o.get("data", {})}


def execute_one(path, flags, mpl_format="png"):
    "Run notebook `path` in this process; write it back with its outputs. Returns (ok, seconds)."
    from execnb.nbio import read_nb, write_nb
    from execnb.shell import CaptureShell
    from fastcore.xtras import working_directory
    from nbdev.clean import nbdev_clean
    from nbdev.config import get_config
    from nbdev.process import NBProcessor
    from nbdev.frontmatter import FrontmatterProc

    path = Path(path).resolve()
    os.environ["IN_TEST"] = "1"
    sys.path.insert(0, str(get_config().config_path))
    fm = getattr(NBProcessor(path, procs=FrontmatterProc, process=True).nb, "frontmatter_", {})
    if str(fm.get("skip_exec", "")).lower() in ("true", "1", "yes"):
        print(f"{path.name}: skip_exec in its front matter, not run"); return True, 0.0
    nb = read_nb(path)
    skip, kept_widgets = _skip_fn(flags), set()
    old_state = ((nb.metadata.get("widgets") or {}).get(WIDGET_STATE) or {}).get("state", {})

    def pre(cell):
        if skip(cell):
            if cell.cell_type == "code": kept_widgets.update(_widget_ids([cell]))
            return True
        cell.outputs, cell.execution_count = [], None
        return False

    t0 = time.time()
    k = CaptureShell(path, mpl_format=mpl_format)
    # bitsandbytes (imported by diffusers, transformers and peft) warns at import, on CPUs with AVX512-BF16, that an
    # optional 4-bit kernel package is missing: a fact about this machine, not the book, so it stays out of the outputs
    k.run_cell('import logging as _l; _l.getLogger("bitsandbytes").setLevel(_l.ERROR); del _l')
    try:
        with working_directory(path.parent):
            k.run_all(nb, exc_stop=True, preproc=pre)
    except Exception:
        sys.stderr.write(k.prettytb(fname=path) + "\n")
        return False, time.time() - t0
    secs = time.time() - t0
    for c in nb.cells:
        if c.cell_type == "code" and c.get("outputs") is None: c.outputs = []
    ids = _widget_ids(nb.cells)
    if ids:
        from ipywidgets import Widget
        new = Widget.get_manager_state(drop_defaults=True)
        state = {**{i: old_state[i] for i in kept_widgets if i in old_state}, **new["state"]}
        nb.metadata["widgets"] = {WIDGET_STATE: {**new, "state": state}}
    else:
        nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    write_nb(nb, path)
    nbdev_clean(fname=str(path))
    return True, secs


def _report(path):
    "Size, and the largest outputs, of a written notebook; complain about error outputs."
    d = json.loads(Path(path).read_text())
    sizes, errors = [], []
    for i, c in enumerate(d["cells"]):
        for o in c.get("outputs", []):
            if o["output_type"] == "error": errors.append(i)
            sizes.append((len(json.dumps(o)), i, o["output_type"], ",".join(o.get("data", {}).keys()) or o.get("name", "")))
    big = sorted(sizes, reverse=True)[:3]
    kb = Path(path).stat().st_size / 1024
    print(f"  {Path(path).name}: {kb:.0f} KB; largest outputs: " + "; ".join(f"cell {i} {k} {n / 1024:.0f} KB" for n, i, _, k in big))
    if errors: print(f"  ERROR outputs in cells {errors}")
    return not errors


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="notebooks to execute (default: every notebook in nbs/)")
    ap.add_argument("--flags", default="", help="space-separated test flags to run anyway (e.g. 'slow')")
    ap.add_argument("--mpl-format", default="png", help="matplotlib inline format: png (default) at the figure's dpi; "
                    "execnb's own default, retina, doubles the resolution and triples the bytes")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: run one notebook in this process
    a = ap.parse_args(argv)
    from nbdev.config import get_config
    cfg = get_config()
    flags = set(cfg.get("tst_flags", "").split()) - set(a.flags.split())
    if a.one:
        ok, secs = execute_one(a.notebooks[0], flags, a.mpl_format)
        sys.exit(0 if ok else 1)
    nbs = [Path(p) for p in a.notebooks] or sorted(Path(cfg.nbs_path).glob("*.ipynb"))
    failed = []
    for p in nbs:
        t0 = time.time()
        r = subprocess.run([sys.executable, __file__, "--one", str(p), "--flags", a.flags, "--mpl-format", a.mpl_format])
        status = "ok" if r.returncode == 0 else "FAILED"
        print(f"{p.name}: {status} in {time.time() - t0:.0f} s", flush=True)
        if r.returncode or not _report(p): failed.append(p.name)
    if failed:
        sys.exit("failed: " + " ".join(failed))


if __name__ == "__main__":
    main()
