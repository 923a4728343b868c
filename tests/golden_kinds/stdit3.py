"""Golden checks for `stdit3_*` cases: the STDiT3 denoiser of Open-Sora 1.2 (strict load, forward, x_mask)."""
import torch
from golden_compare import close

from opensora_nb.stdit import STDiT3, STDiT3Config, stdit3_from_state_dict

TOL = 1e-4


def _model(case) -> STDiT3:
    return stdit3_from_state_dict(case.meta["config"], case.t, prefix="model.", strict_name=f"golden {case.stem}")


def _kwargs(case):
    t = case.t
    return dict(mask=t.get("in.mask"), fps=t["in.fps"], height=t["in.height"], width=t["in.width"])


# a sample with no caption token: the reference's softmax over nothing (NaN) vs the project's zero cross-attention
DIVERGENCES = ("cross_attention_no_caption_token",)


def check_stdit3_strict_load(case):
    "Every `model.*` tensor is a key of STDiT3 with the same shape, and every STDiT3 key is in the file."
    cfg = STDiT3Config.from_dict(case.meta["config"])
    with torch.device("meta"):
        own = STDiT3(cfg).state_dict()
    gold = {k[len("model."):]: v for k, v in case.t.items() if k.startswith("model.")}
    assert set(own) == set(gold), (f"{case.stem}: missing {sorted(set(own) - set(gold))[:5]}, "
                                   f"unexpected {sorted(set(gold) - set(own))[:5]}")
    for k, v in gold.items():
        assert tuple(own[k].shape) == tuple(v.shape), f"{case.stem}: {k} {tuple(own[k].shape)} != {tuple(v.shape)}"
    _model(case)  # the real strict load


def check_stdit3_forward_plain(case):
    t = case.t
    m = _model(case)
    with torch.no_grad():
        out = m(t["in.x"], t["in.timestep"], t["in.y"], **_kwargs(case))
    close(case, "out.plain", out, t["out.plain"], TOL, divergences=DIVERGENCES)


def check_stdit3_forward_x_mask(case):
    t = case.t
    m = _model(case)
    with torch.no_grad():
        out = m(t["in.x"], t["in.timestep"], t["in.y"], x_mask=t["in.x_mask"], **_kwargs(case))
    close(case, "out.x_mask", out, t["out.x_mask"], TOL, divergences=DIVERGENCES)
