"""Golden checks for `stdit2_*` cases: Open-Sora 1.1's STDiT2 (strict load, forward with and without a frame mask,
the official folder layout). Made by tests/golden/make_stdit2_golden.py from the reference at tag v1.1.0."""
import json

import torch
from golden_compare import close

from opensora_nb.stdit import load_state_dict_strict
from opensora_nb.stdit_v1_1 import STDiT2, STDiT2Config

TOL = 1e-4
INFO = ("num_frames", "height", "width", "ar", "fps")


def _state(case):
    return {k[len("model."):]: v for k, v in case.t.items() if k.startswith("model.")}


def _model(case) -> STDiT2:
    m = STDiT2(STDiT2Config.from_dict(case.meta["config"]))
    return load_state_dict_strict(m, _state(case), f"golden {case.stem}").eval()


def _run(m, t, x_mask=None):
    with torch.no_grad():
        return m(t["in.x"], t["in.timestep"], t["in.y"], mask=t["in.mask"], x_mask=x_mask, **{k: t[f"in.{k}"] for k in INFO})


def check_stdit2_reference_named(case):
    "Each case names the reference commit it was made from and the script that made it."
    ref = case.meta["reference"]
    assert ref["tag"] == "v1.1.0" and len(ref["commit"]) == 40 and case.meta["made_by"].endswith("make_stdit2_golden.py")


def check_stdit2_strict_load(case):
    _model(case)


def check_stdit2_forward_plain(case):
    close(case, "out.plain", _run(_model(case), case.t), case.t["out.plain"], TOL)


def check_stdit2_forward_x_mask(case):
    close(case, "out.x_mask", _run(_model(case), case.t, case.t["in.x_mask"]), case.t["out.x_mask"], TOL)


def check_stdit2_official_folder(case):
    "Written as the published folders are (config.json with transformers' keys + model.safetensors), read back strictly."
    import tempfile
    from pathlib import Path

    from safetensors.torch import save_file
    d = Path(tempfile.mkdtemp())
    cfg = dict(case.meta["config"], architectures=["STDiT2"], model_type="STDiT2", torch_dtype="float32",
               transformers_version="4.36.2", input_size=[None, None, None])
    (d / "config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in _state(case).items()}, str(d / "model.safetensors"), metadata={"format": "pt"})
    close(case, "out.plain (official folder)", _run(STDiT2.from_pretrained(d), case.t), case.t["out.plain"], TOL)
