"""Golden checks for `stdit_v1_*` cases: Open-Sora 1.0's STDiT (strict load, forward, recomputable position tables)."""
import torch

from opensora_nb.stdit import STDiT, load_state_dict_strict

TOL = 1e-4


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
    want = t["out.plain"]
    assert out.shape == want.shape, f"{case.stem}: shape {tuple(out.shape)} != {tuple(want.shape)}"
    err = (out - want).abs().max().item()
    assert err <= TOL, f"{case.stem} out.plain: max abs diff {err:.3g} > {TOL}"


def check_stdit_v1_forward_without_tables(case):
    "Loading without the two tables (as the reference does for .pt checkpoints) gives the same output."
    t = case.t
    m = STDiT.from_config(case.meta["config"])
    sd = {k: v for k, v in _state(case).items() if k not in ("pos_embed", "pos_embed_temporal")}
    missing, unexpected = m.load_state_dict(sd, strict=False)
    assert set(missing) == {"pos_embed", "pos_embed_temporal"} and not unexpected, (missing, unexpected)
    with torch.no_grad():
        out = m.eval()(t["in.x"], t["in.timestep"], t["in.y"], mask=t.get("in.mask"))
    err = (out - t["out.plain"]).abs().max().item()
    assert err <= TOL, f"{case.stem} out.plain with recomputed tables: max abs diff {err:.3g}"
