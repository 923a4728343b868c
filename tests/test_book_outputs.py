"""The book reads without running: committed pictures where chapters draw, a kernelspec, no errors, a light nbs/.

The rule for "a chapter that draws": a code cell that is run by `nbdev_test` (not `#| export`-style, not flagged with
a settings.ini tst_flag, not `#| eval: false`) whose source calls one of DRAWS below. Such a notebook must have at
least one committed picture: an `image/*` output (PNG from matplotlib, GIF from `show_video`) or an HTML `<video>`/
`<img>` output. `python tools/execute_book.py NOTEBOOK` runs a notebook as nbdev_test does and commits its outputs.
"""
import configparser
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
NOTEBOOKS = sorted(NBS.glob("*.ipynb"))
DRAWS = re.compile(r"\bplt\.(show|subplots|figure|imshow|plot)\(|\.plot\(|\.imshow\(|\bshow_frames\(|\bshow_video\("
                   r"|\bcontact_sheet\(|\bdisplay\(\s*Image\(|\bdraw_mask_strategy\(|_widget\(|\bplot_\w+\(")
NOT_RUN = {"export", "exports", "exporti"}
MAX_NBS_MB = 15
MAX_TEXT_CHARS = 20_000


def _flags():
    cfg = configparser.ConfigParser(delimiters=["="])
    cfg.read(ROOT / "settings.ini")
    return set(cfg["DEFAULT"].get("tst_flags", "").split())


def _directives(src):
    "nbdev's leading `#| name args` lines of a cell, as {name: args}."
    d = {}
    for line in src.splitlines():
        if not line.strip(): continue
        m = re.match(r"\s*#\|\s*([\w-]+:?)\s*(.*)", line)
        if not m: break
        d[m.group(1)] = m.group(2).split()
    return d


def _src(c): return "".join(c["source"])


def _is_picture(o):
    data = o.get("data", {})
    if any(k.startswith("image/") for k in data): return True
    html = "".join(data.get("text/html", []))
    return "<video" in html or "<img" in html


def _load(p): return json.loads(p.read_text())


def drawing_cells(nb, flags):
    "Indices of the code cells nbdev_test runs that call a drawing or showing function (DRAWS)."
    out = []
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code": continue
        d = _directives(_src(c))
        if NOT_RUN & d.keys() or flags & d.keys() or d.get("eval:", [""])[0] == "false": continue
        body = "\n".join(re.sub(r"#.*", "", l) for l in _src(c).splitlines())  # comments do not draw
        if DRAWS.search(body): out.append(i)
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_chapter_that_draws_commits_its_pictures(path):
    nb, flags = _load(path), _flags()
    cells = drawing_cells(nb, flags)
    if not cells: pytest.skip("draws nothing")
    pictures = [i for i, c in enumerate(nb["cells"]) for o in c.get("outputs", []) if _is_picture(o)]
    assert pictures, (f"{path.name}: cells {cells} draw, but no picture is committed: "
                      f"run `python tools/execute_book.py nbs/{path.name}`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_has_a_kernelspec(path):
    ks = _load(path)["metadata"].get("kernelspec", {})
    assert ks.get("name") == "python3" and ks.get("language") == "python", f"{path.name}: kernelspec {ks}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_committed_errors_or_text_dumps(path):
    for i, c in enumerate(_load(path)["cells"]):
        for o in c.get("outputs", []):
            assert o["output_type"] != "error", f"{path.name} cell {i}: an error output ({o.get('ename')}: {o.get('evalue')})"
            text = "".join(o.get("text", [])) + "".join(o.get("data", {}).get("text/plain", []))
            assert "Traceback (most recent call last)" not in text, f"{path.name} cell {i}: a traceback in its output"
            assert len(text) <= MAX_TEXT_CHARS, f"{path.name} cell {i}: {len(text)} characters of text output"


def test_nbs_stays_light():
    total = sum(p.stat().st_size for p in NBS.rglob("*") if p.is_file())
    print(f"nbs/: {total / 2**20:.2f} MB in {len(NOTEBOOKS)} notebooks")
    assert total < MAX_NBS_MB * 2**20, f"nbs/ is {total / 2**20:.1f} MB (limit {MAX_NBS_MB} MB)"


def test_the_draw_rule():
    "What counts as drawing: calls in cells that run, not definitions in exported cells, not comments."
    nb = {"cells": [{"cell_type": "code", "source": s} for s in
                    ["#| export\ndef f(): plt.show()", "x = 1  # plt.show() later", "show_video(clip)", "#| slow\nplt.show()",
                     "fig = plot_bench(rows)", "ax.plot(x, y)"]]}
    assert drawing_cells(nb, {"slow"}) == [2, 4, 5]
