"""Golden vectors: every file in the golden directory is checked against this project's implementation.

Files are grouped by stem (`stdit3_tiny.json` + `stdit3_tiny.safetensors` is one case) and dispatched on
their name prefix to the checks in `tests/golden_kinds/<kind>*.py` (every `check_*` function there runs on
every case of that kind). A file whose prefix has no checker fails: nothing in the directory goes unchecked.
Run against another directory with `pytest tests/test_golden.py --golden-dir DIR`. A subdirectory is one case
too, dispatched on its name (`official/`: the published config.json files of the official checkpoints).

Where the reference records a meaningless value (NaN) and the project deliberately returns a defined one, the
comparison (`golden_compare.close`) applies the divergence registered by name in `golden_compare.DIVERGENCES`, only
at those golden NaNs, checks the project's documented value there, and reports it: a `GoldenDivergenceWarning`, a
`golden_divergence` property of the test (`record_property`, e.g. in --junitxml) and a section of the terminal
summary. The tests at the end of this file show it on golden directories built under tmp_path.
"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import golden_dir
from golden_compare import DIVERGENCES, GoldenDivergenceWarning, close

KINDS_DIR = Path(__file__).parent / "golden_kinds"
# longest prefix first, so `stdit3_` is not mistaken for another kind
KINDS = ["vae_temporal", "rflow_transform", "aspect_ratios", "stdit_v1", "stdit3", "bucket", "iddpm", "official"]
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
    "File stems (`x.json` + `x.safetensors` = case `x`) and subdirectory names."
    stems = {p.name.split(".")[0] for p in d.iterdir() if p.is_file() and p.name not in SKIP}
    stems |= {p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    return sorted(stems)


class Case:
    "One golden case: its json (`meta`) and, when present, its tensors (`t`); a subdirectory case has `path`."

    def __init__(self, d: Path, stem: str):
        self.dir, self.stem, self.path = d, stem, d / stem
        js, st = d / f"{stem}.json", d / f"{stem}.safetensors"
        self.meta = json.loads(js.read_text()) if js.exists() else {}
        self.t = load_file(str(st)) if st.exists() else {}
        self.files = sorted(p.name for p in d.glob(f"{stem}.*"))
        self.divergences = []  # (name, message) of each registered divergence the checks applied
        self.notes = []  # non-finite golden values the project reproduced exactly

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


def test_golden(golden_case, check, request, record_property):
    d = golden_dir(request.config)
    assert check is not None, f"golden file {golden_case!r} in {d} has no checker (kinds: {KINDS})"
    case = Case(d, golden_case)
    check(case)
    for _, msg in case.divergences:
        record_property("golden_divergence", msg)
    for note in case.notes:
        record_property("golden_note", note)


# ------------------------------------------------------- the divergence logic, on golden directories under tmp_path

ROOT = Path(__file__).resolve().parents[1]


def _check(kind, name):
    return next(f for f in checks_for(kind) if f.__name__ == name)


def _stdit3_golden(tmp_path, src: Path, edit):
    "A copy of the golden `stdit3_*` case of `src` with some tensors replaced (`edit(tensors)`), in tmp_path."
    if not Path(src).is_dir(): pytest.skip(f"no golden dir {src}")
    stem = next((s for s in cases(src) if kind_of(s) == "stdit3"), None)
    if stem is None: pytest.skip(f"no stdit3_* case in {src}")
    t = load_file(str(src / f"{stem}.safetensors"))
    edit(t)
    save_file({k: v.contiguous() for k, v in t.items()}, str(tmp_path / f"{stem}.safetensors"))
    (tmp_path / f"{stem}.json").write_text((src / f"{stem}.json").read_text())
    return stem


def _no_frame_in_loss(t):
    "Sample 1 keeps every frame clean: the reference's loss for it is 0/0 = NaN; the others are unchanged."
    if t["in.x_mask"].shape[0] < 2: pytest.skip("needs a golden batch of 2 or more")
    t["in.x_mask"][1] = False
    t["loss.out"][1] = float("nan")


def test_divergence_registry_names_and_explains():
    assert {"rflow_loss_no_denoised_frame", "cross_attention_no_caption_token"} <= set(DIVERGENCES)
    for name, div in DIVERGENCES.items():
        assert len(div.explanation) > 40 and div.project_value, name


def test_divergence_rflow_loss_nan_row(tmp_path, request):
    src = golden_dir(request.config)
    stem = _stdit3_golden(tmp_path, src, _no_frame_in_loss)
    case = Case(tmp_path, stem)
    with pytest.warns(GoldenDivergenceWarning, match="rflow_loss_no_denoised_frame"):
        _check("stdit3", "check_rflow_loss")(case)
    assert [k for k, _ in case.divergences] == ["rflow_loss_no_denoised_frame"]
    assert "samples [1]" in case.divergences[0][1] and "exactly 0" in case.divergences[0][1]


def test_divergence_only_where_the_golden_value_is_meaningless(tmp_path, request):
    "A NaN on a sample that has frames in the loss is not the divergence: it fails, naming what is registered."
    def edit(t):
        t["loss.out"][0] = float("nan")  # sample 0 keeps its denoised frames
    stem = _stdit3_golden(tmp_path, golden_dir(request.config), edit)
    with pytest.raises(AssertionError, match="no registered divergence explains"):
        _check("stdit3", "check_rflow_loss")(Case(tmp_path, stem))


class _FakeCase:
    def __init__(self, **t):
        self.stem, self.t, self.divergences, self.notes = "fake", t, [], []


def test_close_helper_rules():
    x_mask = torch.tensor([[True, False], [False, False], [True, True]])
    case = _FakeCase(**{"in.x_mask": x_mask})
    want = torch.tensor([0.5, float("nan"), 0.25])
    with pytest.warns(GoldenDivergenceWarning):
        assert close(case, "loss.out", torch.tensor([0.5, 0.0, 0.25]), want,
                     divergences=["rflow_loss_no_denoised_frame"]) == ["rflow_loss_no_denoised_frame"]
    assert case.divergences and not case.notes
    # the documented value must hold where the divergence is applied
    with pytest.raises(AssertionError, match="not exactly 0"):
        close(_FakeCase(**{"in.x_mask": x_mask}), "loss.out", torch.tensor([0.5, float("nan"), 0.25]), want,
              divergences=["rflow_loss_no_denoised_frame"])
    # a divergence the check does not list is never applied
    with pytest.raises(AssertionError, match="no registered divergence explains"):
        close(_FakeCase(**{"in.x_mask": x_mask}), "loss.out", torch.tensor([0.5, 0.0, 0.25]), want)
    # finite golden values are compared as before, also on the diverging sample's neighbours
    with pytest.raises(AssertionError, match="max abs diff"):
        close(_FakeCase(**{"in.x_mask": x_mask}), "loss.out", torch.tensor([0.6, 0.0, 0.25]), want,
              divergences=["rflow_loss_no_denoised_frame"])
    # no divergence applies: a non-finite golden value passes only when the project reproduces it
    plain = _FakeCase()
    close(plain, "x", torch.tensor([1.0, float("nan"), float("inf")]), torch.tensor([1.0, float("nan"), float("inf")]))
    assert plain.notes and not plain.divergences
    with pytest.raises(AssertionError, match="no registered divergence"):
        close(_FakeCase(), "x", torch.tensor([1.0, 2.0]), torch.tensor([1.0, float("inf")]))
    with pytest.raises(AssertionError, match="shape"):
        close(_FakeCase(), "x", torch.zeros(2), torch.zeros(3))


def test_divergence_cross_attention_without_caption(tmp_path, request):
    "A sample whose caption mask is all 0: golden NaN (softmax over nothing) vs the project's finite output."
    def edit(t):
        if "in.mask" not in t or t["in.mask"].shape[0] < 2: pytest.skip("needs a caption mask and a batch of 2 or more")
        t["in.mask"][1] = 0
        t["out.plain"][1] = float("nan")
    stem = _stdit3_golden(tmp_path, golden_dir(request.config), edit)
    case = Case(tmp_path, stem)
    with pytest.warns(GoldenDivergenceWarning, match="cross_attention_no_caption_token"):
        _check("stdit3", "check_stdit3_forward_plain")(case)  # sample 0 still matches the reference within 1e-4
    assert [k for k, _ in case.divergences] == ["cross_attention_no_caption_token"]


def test_divergence_reported_by_pytest(tmp_path, request):
    "Through pytest itself: the golden test passes, and the terminal summary and junit xml name the divergence."
    stem = _stdit3_golden(tmp_path, golden_dir(request.config), _no_frame_in_loss)
    xml = tmp_path / "junit.xml"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--golden-dir", str(tmp_path),
                        f"--junitxml={xml}", f"tests/test_golden.py::test_golden[{stem}-check_rflow_loss]"],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "golden divergences applied" in r.stdout and "rflow_loss_no_denoised_frame" in r.stdout, r.stdout[-3000:]
    assert 'name="golden_divergence"' in xml.read_text()


@pytest.mark.parametrize("check_name", ["check_stdit3_forward_plain", "check_stdit3_forward_x_mask"])
def test_stdit3_golden_on_the_onednn_path(check_name, request, monkeypatch):
    """The golden STDiT3 is small (a few hundred token rows), below `ONEDNN_MIN_ROWS`, and the golden tests above run
    the plain model; here the CPU fast paths are swapped in (`enable_cpu_fast_paths`, as the trainer and the pipeline
    do) with their thresholds at 1, so every linear layer takes the oneDNN path and every block's LayerNorm +
    modulation the fused `norm_modulate`, and the model must meet the same golden values."""
    from opensora_nb import fastpaths as layers
    if layers._ONEDNN_LINEAR is None: pytest.skip("no oneDNN linear kernel in this build")
    src = golden_dir(request.config)
    stem = next((s for s in cases(src) if kind_of(s) == "stdit3"), None) if Path(src).is_dir() else None
    if stem is None: pytest.skip(f"no stdit3_* case in {src}")
    monkeypatch.setattr(layers, "ONEDNN_MIN_ROWS", 1)
    monkeypatch.setattr(layers, "NORM_MODULATE_MIN_PER_SAMPLE", 1)
    calls, fused = [], []
    real = layers._OneDNNLinearFn.apply
    monkeypatch.setattr(layers._OneDNNLinearFn, "apply", lambda *a: calls.append(1) or real(*a))
    real_nm = layers.norm_modulate
    monkeypatch.setattr(layers, "norm_modulate", lambda *a: fused.append(1) or real_nm(*a))
    check = _check("stdit3", check_name)
    plain_model = check.__globals__["_model"]  # the kind module's model builder (loaded from its file, not sys.modules)
    monkeypatch.setitem(check.__globals__, "_model", lambda case: layers.enable_cpu_fast_paths(plain_model(case)))
    check(Case(src, stem))
    assert calls, "no linear layer took the oneDNN path"
    assert fused or check_name.endswith("x_mask"), "no block took the fused norm_modulate"
