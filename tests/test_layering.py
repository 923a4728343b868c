"""The package's shape: imports follow the chapter order, and a static check finds nothing (issue 14)."""
import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "opensora_nb"


def chapter_order() -> list:
    "Modules in the order of the notebooks that export them (the book's order), from each notebook's `default_exp`."
    order = []
    for nb in sorted((ROOT / "nbs").glob("*.ipynb")):
        for c in json.loads(nb.read_text())["cells"]:
            src = "".join(c["source"])
            if c["cell_type"] == "code" and src.startswith("#| default_exp"):
                order.append(src.split()[2]); break
    return order


def imports_of(module: str) -> dict:
    "{imported package module: [line numbers]} of every import in `module`, at the top or inside functions."
    tree, found = ast.parse((PKG / f"{module}.py").read_text()), {}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1 and mod: names = [mod.split(".")[0]]
            elif node.level == 1: names = [a.name for a in node.names]
            elif mod.startswith("opensora_nb."): names = [mod.split(".")[1]]
            elif mod == "opensora_nb": names = [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("opensora_nb.")]
        for n in names: found.setdefault(n, []).append(node.lineno)
    return found


def test_every_module_belongs_to_a_chapter():
    order = chapter_order()
    modules = {p.stem for p in PKG.glob("*.py") if not p.stem.startswith("_")}
    assert modules == set(order), modules ^ set(order)


def test_imports_point_back():
    "A module imports only modules of earlier chapters (the CLI, the last chapter, may import any)."
    order = chapter_order()
    bad = []
    for i, mod in enumerate(order):
        for target, lines in imports_of(mod).items():
            if target == mod or target == "_modidx": continue
            assert target in order, f"{mod} imports unknown module {target}"
            if order.index(target) > i: bad.append(f"{mod}.py:{lines} imports {target} (a later chapter)")
    assert not bad, "\n".join(bad)


def test_the_import_check_sees_imports_inside_functions(tmp_path, monkeypatch):
    (tmp_path / "a.py").write_text("def f():\n    from opensora_nb.b import g\n    from .c import h\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", tmp_path)
    assert imports_of("a") == {"b": [2], "c": [3]}


def test_sampling_needs_no_training_code():
    "inference (and everything it imports, transitively) never imports train, demo or dist."
    seen, todo = set(), ["inference"]
    while todo:
        m = todo.pop()
        if m in seen: continue
        seen.add(m); todo += [t for t in imports_of(m) if t != m]
    assert not seen & {"train", "demo", "dist", "vae_train", "curation", "scores", "captions", "curation_run", "curation_pipeline"}, seen


def test_static_check_finds_nothing():
    "pyflakes' rules (ruff F): no undefined names (a NameError outside the notebook), no unused imports or variables."
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "F", "--output-format", "concise", "--exclude", "opensora_nb/_modidx.py",
                        "opensora_nb"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
