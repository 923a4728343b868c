"""The book's build steps that need no browser (tools/book.py) and the code formatter (tools/format_code.py).

tests/test_book.py opens the built pages in Chromium; these check, in a second, what the build puts on them: the
parts and chapter numbers of the sidebar, the header line of every chapter (its notebook, CPU time, references,
all resolvable), stderr kept off the page unless it is an error, pandas tables without their row-number index,
no building machine's path in an API page; and that tools/format_code.py brings code to 100 characters without
changing the program, idempotently.
"""
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


book = _load("book")
fmt = _load("format_code")


def test_parts_cover_every_chapter_once_in_order():
    chs = book.chapters()
    parts = book.parts(chs)
    flat = [p for _, ps in parts for p in ps]
    assert flat == chs, "the parts must list every chapter once, in book order"
    assert len(parts) >= 8, [t for t, _ in parts]
    nums = book.numbers(chs)
    shown = [nums[p.stem][0] for p in chs]
    assert len(set(shown)) == len(shown), "two chapters show the same number"
    assert nums["01_video_io"][0] == "1.1" and nums["06_stdit"][0] == "3.2"
    assert nums["90_appendix_model_speed"][0] == "A"
    # the numbers a reader follows are plain: no letters inside a part (the files keep 03ab, 10b, ...)
    assert all(re.fullmatch(r"\d+\.\d+|[A-Z]", n) for n in shown), shown


def test_chapter_table_and_references_resolve():
    info, refs = book.chapter_info(), book.reference_anchors()
    stems = {p.stem for p in book.chapters()}
    assert set(info) == stems, f"nbs/_chapters.json: missing {stems - set(info)}, unknown {set(info) - stems}"
    unknown = {s: [c for c in v.get("cites", []) if c not in refs] for s, v in info.items()}
    assert not {s: c for s, c in unknown.items() if c}, unknown
    for key in ("latte", "pixart-alpha", "dit", "rectified-flow", "sd3", "ul2", "ulysses", "zero", "rope", "t5",
                "minilm", "opensora-reports", "opensora-2", "opensora-plan", "iddpm", "ddpm", "vae", "magvit2"):
        assert key in refs, f"nbs/references.md has no ({key})= entry"


def test_page_header():
    info = {"06_stdit": {"cpu_s": 23.0, "cites": ["latte", "dit"]}}
    h = book.page_header("06_stdit", info, book.numbers(), book.reference_anchors())["source"]
    assert "Chapter 3.2" in h and "The denoiser" in h
    assert "nbs/06_stdit.ipynb" in h and "about 25 s" in h
    assert "[Latte](references.md#latte)" in h and "[DiT](references.md#dit)" in h


def _stream(name, text):
    return {"output_type": "stream", "name": name, "text": [text]}


def test_stderr_is_dropped_unless_it_is_an_error():
    cell = {"cell_type": "code", "source": "x = 1", "metadata": {}, "outputs": [
        _stream("stderr", "100%|##########| 4/4 [00:01<00:00]\n"),
        _stream("stderr", "/root/.venv/lib/site-packages/x.py:3: UserWarning: careful\n"),
        _stream("stdout", "kept\n")]}
    out = book.process_cell(cell)["outputs"]
    assert [o["name"] for o in out] == ["stdout"]
    cell["outputs"] = [_stream("stderr", "Traceback (most recent call last):\n  ...\nValueError: bad\n")]
    assert len(book.process_cell(cell)["outputs"]) == 1, "an error on stderr must stay visible (the test fails on it)"


TABLE = ('<div><table border="1" class="dataframe">\n  <thead>\n    <tr style="text-align: right;">\n      <th></th>\n'
         '      <th>a</th>\n    </tr>\n  </thead>\n  <tbody>\n    <tr>\n      <th>0</th>\n      <td>1</td>\n    </tr>\n'
         '    <tr>\n      <th>1</th>\n      <td>2</td>\n    </tr>\n  </tbody>\n</table>\n</div>')


def test_tables_lose_a_row_number_index_only():
    out = book._drop_range_index(TABLE)
    assert "<th>0</th>" not in out and "<th></th>" not in out and "<th>a</th>" in out and "<td>2</td>" in out
    named = TABLE.replace("<th>0</th>", "<th>x</th>").replace("<th>1</th>", "<th>y</th>")
    assert book._drop_range_index(named) == named


def test_api_values_show_no_machine_path():
    import opensora_nb.vae_hub as m
    page = book.api_page("vae_hub", m, "03a_vae_hub")
    assert str(ROOT) not in page, "an API page shows the path of the machine that built it"


needs_ruff = pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is missing (the dev extra has it)")
CELL = '''#| export
def f(x):
    "Build from a dict (e.g. an official config.json) and keyword overrides. transformers metadata keys are ignored; any other key that is not a field is an error naming it."
    # a long comment that goes on and on about what this function does, and why, and what it does not do at all
    return dict(a=1, b=[x, x, x], c="a long value of a string", d={"key": "another long value"}, e=x + 1, f=None)
%timeit f(1)
def h():
    """A docstring of several lines, whose first line is long enough to pass the limit of one hundred chars.
    The second line is short."""
raise ValueError(
    f"STDiT3Config: hidden_size {f(1)['a']} not divisible by num_heads {f(2)['e']} and a long tail of words"
)'''


@needs_ruff
def test_format_code_fits_100_and_keeps_the_program():
    out = fmt.format_source(CELL)
    assert out is not None
    assert max(map(len, out.split("\n"))) <= 100, out
    assert out.startswith("#| export\n") and "\n%timeit f(1)\n" in out
    assert fmt.format_source(out) == out, "formatting is not idempotent"
    strip = lambda s: "\n".join(l for l in s.split("\n") if not l.startswith("%"))
    assert fmt.same_program(strip(CELL), strip(out))


@needs_ruff
def test_format_code_check_mode(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": CELL.splitlines(keepends=True), "metadata": {}, "outputs": [],
                     "execution_count": None}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb, indent=1) + "\n")
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "tools" / "format_code.py"), *a, str(path)],
                                    capture_output=True, text=True)
    before = path.read_text()
    assert run("--check").returncode == 1 and path.read_text() == before, "--check must not write"
    assert run().returncode == 0 and path.read_text() != before
    assert run("--check").returncode == 0, "a formatted notebook must pass --check"
