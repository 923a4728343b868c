"""Chapters 07, 08 and 13 teach the idea first (issue 27, items 1 and 3, and 13's page defects).

Each chapter opens with "The idea first": a drawn diagram and a minimal version of a few dozen lines, and later
checks that minimal version against the exported one on the same inputs; code cells where the idea is taught stay
short; the chapter ends with a summary that links other chapters, and exercises with hints. In 13, tables reach the
page as markdown tables (no pandas HTML with its index column), and exercise 1 no longer asks for a collective in a
single process (a group of one cannot split a sequence over 2 or 4 ranks).
"""
import json
import re
from pathlib import Path

import pytest

NBS = Path(__file__).resolve().parents[1] / "nbs"
# chapter: (names of the minimal version, a cell that checks them against the exported code must name both)
CHAPTERS = {"07_rflow": (["rf_loss", "rf_sample", "tiny_transform"], ["RFlow(", "timestep_transform("]),
            "08_masking": (["tiny_mask"], ["apply_mask_strategy("]),
            "13_parallel": (["simulated_all_to_all", "sp_attention"], ["SeqParallelAttention", "all_to_all("])}


def _cells(name):
    return [(c["cell_type"], "".join(c["source"]), c.get("outputs", []))
            for c in json.loads((NBS / f"{name}.ipynb").read_text())["cells"]]


def _sections(cells):
    "[(heading, [cells])] for the `## ` sections."
    out = []
    for kind, src, outs in cells:
        h = re.search(r"^## (.+)$", src, re.M) if kind == "markdown" else None
        if h: out.append((h.group(1), []))
        if out: out[-1][1].append((kind, src, outs))
    return out


@pytest.mark.parametrize("name", CHAPTERS)
def test_idea_first_with_a_picture_and_a_checked_minimal_version(name):
    minimal, exported = CHAPTERS[name]
    secs = _sections(_cells(name))
    title, idea = secs[0]
    assert title.startswith("The idea first"), f"{name}: the first section is {title!r}"
    code = [s for k, s, _ in idea if k == "code"]
    assert all(f"def {m}(" in "\n".join(code) for m in minimal)
    assert not any(s.startswith("#| export") for s in code), "the minimal version is not exported"
    assert max(len(s.splitlines()) for s in code) <= 40
    assert any("image/png" in o.get("data", {}) for _, _, outs in idea for o in outs), "a drawn diagram"
    later = [s for _, cells in secs[1:] for k, s, _ in cells if k == "code"]
    assert any(all(m + "(" in s for m in minimal[:1]) and any(e in s for e in exported) for s in later), \
        f"{name}: no cell checks {minimal[0]} against {exported}"


@pytest.mark.parametrize("name", CHAPTERS)
def test_summary_with_links_and_exercises_with_hints(name):
    text = "\n".join(s for k, s, _ in _cells(name) if k == "markdown")
    summary = text[text.index("## Summary"):text.index("## Exercises")]
    assert len(re.findall(r"\]\(\d\d[a-z_]*\.ipynb\)", summary)) >= 3, "the summary links other chapters"
    exercises = text[text.index("## Exercises"):]
    assert exercises.count("*Hint:*") >= 3


def test_13_tables_are_markdown_and_exercise_1_can_be_done():
    cells = _cells("13_parallel")
    outs = [o for _, _, oo in cells for o in oo]
    assert not any("<table" in "".join(o.get("data", {}).get("text/html", "")) for o in outs), "pandas HTML table"
    md = ["".join(o["data"]["text/markdown"]) for o in outs if "text/markdown" in o.get("data", {})]
    assert any(m.startswith("| sp | dp |") for m in md), "the memory table is a markdown table without an index"
    text = "\n".join(s for k, s, _ in cells if k == "markdown")
    ex1 = text[text.index("## Exercises"):].split("\n2. ")[0]
    assert "single-process tests" not in ex1 and "simulated_all_to_all" in ex1
    code = "\n".join(s for k, s, _ in cells if k == "code")
    assert "def run_on_threads(" in code and "def simulated_all_to_all(" in code  # the tools it names exist
