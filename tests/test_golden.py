"""Golden vectors: every file in the golden directory is checked against this project's implementation.

Files are grouped by stem (`stdit3_tiny.json` + `stdit3_tiny.safetensors` is one case) and dispatched on
their name prefix to the checks in `tests/golden_kinds/<kind>*.py` (every `check_*` function there runs on
every case of that kind). A file whose prefix has no checker fails: nothing in the directory goes unchecked.
Run against another directory with `pytest tests/test_golden.py --golden-dir DIR`.
"""
import importlib.util
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import golden_dir

KINDS_DIR = Path(__file__).parent / "golden_kinds"
# longest prefix first, so `stdit3_` is not mistaken for another kind
KINDS = ["vae_temporal", "rflow_transform", "aspect_ratios", "stdit_v1", "stdit3", "bucket", "iddpm"]
SKIP = {"README.md"}


def kind_of(stem: str):
    for k in KINDS:
        if stem == k or stem.startswith(k + "_") or stem.startswith(k):
            return k
    return None


def checks_for(kind: str):
    "Every `check_*` function of `golden_kinds/<kind>.py` and `golden_kinds/<kind>__*.py`."
    fns = []
    for path in sorted(KINDS_DIR.glob(f"{kind}*.py")):
        if path.stem != kind and not path.stem.startswith(kind + "__"):
            continue
        spec = importlib.util.spec_from_file_location(f"golden_kinds.{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        fns += [getattr(mod, n) for n in sorted(dir(mod)) if n.startswith("check_") and callable(getattr(mod, n))]
    return fns


def cases(d: Path):
    stems = sorted({p.name.split(".")[0] for p in d.iterdir() if p.is_file() and p.name not in SKIP})
    return stems


class Case:
    "One golden case: its json (`meta`) and, when present, its tensors (`t`)."

    def __init__(self, d: Path, stem: str):
        self.dir, self.stem = d, stem
        js, st = d / f"{stem}.json", d / f"{stem}.safetensors"
        self.meta = json.loads(js.read_text()) if js.exists() else {}
        self.t = load_file(str(st)) if st.exists() else {}
        self.files = sorted(p.name for p in d.glob(f"{stem}.*"))

    def __repr__(self):
        return f"Case({self.stem})"


def pytest_generate_tests(metafunc):
    if "golden_case" not in metafunc.fixturenames:
        return
    d = golden_dir(metafunc.config)
    if not d.is_dir():
        metafunc.parametrize("golden_case,check", [pytest.param(None, None, marks=pytest.mark.skip(reason=f"no golden dir {d}"))])
        return
    params = []
    for stem in cases(d):
        kind = kind_of(stem)
        fns = checks_for(kind) if kind else []
        if not fns:
            params.append(pytest.param(stem, None, id=f"{stem}-NO_CHECKER"))
        for fn in fns:
            params.append(pytest.param(stem, fn, id=f"{stem}-{fn.__name__}"))
    metafunc.parametrize("golden_case,check", params)


def test_golden(golden_case, check, request):
    d = golden_dir(request.config)
    assert check is not None, f"golden file {golden_case!r} in {d} has no checker (kinds: {KINDS})"
    check(Case(d, golden_case))
