"""Golden check: the resolution- and length-aware timestep transform of rectified flow (every row within 1e-6)."""
import torch

from opensora_nb.rflow import timestep_transform


def check_rows(case):
    rows = case.meta["rows"]
    assert rows, f"{case.stem}: no rows"
    n = case.meta.get("num_timesteps", 1000)
    bad = []
    for r in rows:
        got = timestep_transform(torch.tensor([float(r["t"])]), torch.tensor([float(r["height"])]),
                                 torch.tensor([float(r["width"])]), torch.tensor([float(r["num_frames"])]),
                                 num_timesteps=n).item()
        if abs(got - r["transformed_t"]) > 1e-6:
            bad.append((r, got))
    assert not bad, f"{case.stem}: {len(bad)}/{len(rows)} rows off by more than 1e-6, e.g. {bad[:3]}"
