"""Golden checks for `stdit_v1_*` cases: Open-Sora 1.0's STDiT (strict load, forward, recomputable position tables)."""
import torch
from golden_compare import close

from opensora_nb.stdit import load_state_dict_strict
from opensora_nb.stdit_v1 import STDiT

TOL = 1e-4
# a sample with no caption token: the reference's softmax over nothing (NaN) vs the project's zero cross-attention
DIVERGENCES = ("cross_attention_no_caption_token",)


def _state(case):
    return {k[len("model."):]: v for k, v in case.t.items() if k.startswith("model.")}


def _model(case) -> STDiT:
    m = STDiT.from_config(case.meta["config"])
    return load_state_dict_strict(m, _state(case), f"golden {case.stem}").eval()


def check_stdit_v1_strict_load(case):
    _model(case)


def check_stdit_v1_pos_embed_recomputable(case):
    "pos_embed / pos_embed_temporal equal the tables a fresh model computes from the config alone."
    fresh = STDiT.from_config(case.meta["config"])
    sd = _state(case)
    for k in ("pos_embed", "pos_embed_temporal"):
        want, got = sd[k], getattr(fresh, k)
        assert got.shape == want.shape, f"{case.stem} {k}: shape {tuple(got.shape)} != {tuple(want.shape)}"
        err = (got - want).abs().max().item()
        assert err <= TOL, f"{case.stem} {k}: recomputed table differs by {err:.3g}"


def check_stdit_v1_forward(case):
    t = case.t
    m = _model(case)
    with torch.no_grad():
        out = m(t["in.x"], t["in.timestep"], t["in.y"], mask=t.get("in.mask"))
    close(case, "out.plain", out, t["out.plain"], TOL, divergences=DIVERGENCES)


def check_stdit_v1_forward_without_tables(case):
    "Loading without the two tables (as the reference does for .pt checkpoints) gives the same output."
    t = case.t
    m = STDiT.from_config(case.meta["config"])
    sd = {k: v for k, v in _state(case).items() if k not in ("pos_embed", "pos_embed_temporal")}
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert set(missing) == {"pos_embed", "pos_embed_temporal"} and not unexpected, (missing, unexpected)
    with torch.no_grad():
        out = m.eval()(t["in.x"], t["in.timestep"], t["in.y"], mask=t.get("in.mask"))
    close(case, "out.plain (recomputed tables)", out, t["out.plain"], TOL, divergences=DIVERGENCES)
