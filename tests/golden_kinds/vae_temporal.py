"""Golden check for `vae_temporal_*` files: the v1.2 temporal VAE of `opensora_nb.vae`.

For every case listed in the json: strict load of `model.*`, then encode(x) -> posterior mean and logvar, and
decode(mean, num_frames=T), each within 1e-4 (max absolute difference) of the reference outputs. The config,
sizes and number of cases are read from the file, never assumed.
"""
import torch
from golden_compare import close

from opensora_nb.vae import load_golden_vae_temporal

TOL = 1e-4


def check_encode_decode(case):
    model = load_golden_vae_temporal(case.meta, case.t)  # strict=True inside
    assert case.meta.get("cases"), f"{case.stem}: no cases in json"
    for i, c in enumerate(case.meta["cases"]):
        x = case.t[c["x"]]
        with torch.no_grad():
            post = model.encode(x)
            dec = model.decode(post.mean, num_frames=x.shape[2])
        for name, ours, key in [("mean", post.mean, c["encode_mean"]), ("logvar", post.logvar, c["encode_logvar"]),
                                ("decoded", dec, c["decode(mean, num_frames=T)"])]:
            close(case, f"case {i} ({key}): {name}", ours, case.t[key], TOL, double=True)
