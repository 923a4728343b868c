"""Golden checks for `iddpm_v1_1_*` cases: Open-Sora 1.1's IDDPM sampling with a frame mask (reference frames kept),
made by tests/golden/make_iddpm_v1_1_golden.py from the reference at tag v1.1.0; the project's side is
`opensora_nb.versions.IDDPMSampler(frame_conditioning=True)`. Tolerance 1e-4 x max(1, |value|) (values reach ~100
after few respaced steps, as the 1.0 golden's pred_xstart)."""
import torch
from golden_compare import close

from opensora_nb.versions import IDDPMSampler


class LinearModel:
    "The reference script's fixed model: eps = a x + b mean(caption) + c t/1000 + d x_mask, v = tanh(x)/2."
    def __init__(self, a, b, c, d):
        self.a, self.b, self.c, self.d = a, b, c, d

    def __call__(self, x, timestep, y, mask=None, x_mask=None, **kw):
        w = (mask != 0).float()[:, None, :, None]
        ymean = (y * w).sum((1, 2, 3)) / (w.sum((1, 2, 3)) * y.shape[-1])
        eps = self.a * x + self.b * ymean[:, None, None, None, None] + self.c * timestep.float()[:, None, None, None, None] / 1000
        if x_mask is not None:
            eps = eps + self.d * x_mask.float()[:, None, :, None, None]
        return torch.cat([eps, torch.tanh(x) / 2], 1)


def _sampler(case):
    s = case.meta["sample"]
    return IDDPMSampler(s["steps"], s["cfg_scale"], s["cfg_channel"], frame_conditioning=True, float32_schedule=True)


def check_iddpm_v1_1_timesteps(case):
    z = case.t["sample.z"]
    assert torch.equal(_sampler(case).schedule(z.shape[1]).timestep_map, case.t["sample.timestep_map"])


def check_iddpm_v1_1_masked_sample(case):
    t, s = case.t, case.meta["sample"]
    n = t["sample.z"].shape[0]
    noises = [(t[f"sample.noise_{k}_0"], t[f"sample.noise_{k}_1"]) for k in range(s["steps"])]
    y_null = t["sample.y_null"][None, None].expand(n, 1, *t["sample.y_null"].shape)
    with torch.no_grad():
        out = _sampler(case).sample(LinearModel(**case.meta["model"]), t["sample.z"].clone(), y=t["sample.y"], y_null=y_null,
                                    model_kwargs=dict(mask=t["sample.mask"]), mask=t["sample.frame_mask"], noises=noises,
                                    progress=False)
    close(case, "sample.out", out, t["sample.out"], 1e-4, rel=True)
