"""Make the `iddpm_v1_1_*` golden cases by running Open-Sora 1.1's own IDDPM sampler (hpcaitech/Open-Sora, tag v1.1.0)
with a frame mask: the sampling that conditions on reference frames.

    python tests/golden/make_iddpm_v1_1_golden.py GITDIR [OUT_DIR]

GITDIR is a git directory of hpcaitech/Open-Sora holding tag v1.1.0. The script reads `opensora/schedulers/iddpm/*.py`
at that tag with `git show` and imports them unchanged (the keyword default `device="cuda"` of `GaussianDiffusion` set
to "cpu"), with stubs only for `opensora.registry.SCHEDULERS` (a no-op
decorator) and `colossalai.utils.get_current_device` (the CPU). It runs `IDDPM(num_sampling_steps, cfg_scale,
cfg_channel).sample(model, text_encoder, z, prompts, device, additional_args, mask)` on the CPU in float32 with:

- a fixed linear model (json["model"]): eps = a x + b mean(caption tokens with mask != 0) + c timestep / 1000
  + d x_mask (per frame), v = tanh(x) / 2 (so the learned variance shows), [eps, v] on 2C channels;
- a text encoder stub whose `encode` returns the stored `sample.y` / `sample.mask` and `null` the stored `sample.y_null`;
- `torch.randn_like` recorded: each step draws twice, the re-noising noise (`sample.noise_k_0`) and the step's noise
  (`sample.noise_k_1`), each over the doubled batch [2n, C, T, H, W] (k = 0 is the noisiest step).
"""
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

TAG = "v1.1.0"
DIR = "opensora/schedulers/iddpm"
FILES = [f"{DIR}/{f}.py" for f in ("__init__", "gaussian_diffusion", "respace", "diffusion_utils", "speed", "timestep_sampler")]


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def load_reference(gitdir):
    commit = subprocess.run(["git", "-C", str(gitdir), "rev-parse", f"{TAG}^{{commit}}"], capture_output=True, text=True,
                            check=True).stdout.strip()
    root = Path(tempfile.mkdtemp(prefix="opensora_v1_1_iddpm_"))
    for f in FILES:
        src = subprocess.run(["git", "-C", str(gitdir), "show", f"{TAG}:{f}"], capture_output=True, text=True, check=True).stdout
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text(src)

    class _Registry:
        def register_module(self, name=None, *a, **k):
            return (lambda f: f) if name is None or isinstance(name, str) else name

    _module("opensora").__path__ = [str(root / "opensora")]
    _module("opensora.schedulers").__path__ = [str(root / "opensora/schedulers")]
    _module("opensora.registry", SCHEDULERS=_Registry(), MODELS=_Registry())
    _module("colossalai"); _module("colossalai.utils", get_current_device=lambda: torch.device("cpu"))
    import importlib
    mod = importlib.import_module("opensora.schedulers.iddpm")
    # its schedules are torch tensors placed on device="cuda" by default (a keyword-only default): the CPU instead
    mod.gd.GaussianDiffusion.__init__.__kwdefaults__["device"] = "cpu"
    return mod, commit


CASES = {
    # 2 prompts, 3 latent frames: sample 0 keeps frame 0 (mask 0), sample 1 keeps frames 0 and 2; 6 respaced steps
    "iddpm_v1_1_masked": dict(steps=6, cfg_scale=4.5, cfg_channel=3, shape=(2, 4, 3, 2, 3), L=5, Cc=6, lens=(3, 5),
                              mask=[[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]], model=dict(a=0.3, b=0.5, c=0.2, d=0.7), seed=0),
}


class LinearModel:
    def __init__(self, a, b, c, d):
        self.a, self.b, self.c, self.d = a, b, c, d

    def __call__(self, x, timestep, y, mask=None, x_mask=None, **kw):
        B = x.shape[0]
        m = mask if mask.shape[0] == B else mask.repeat(B // mask.shape[0], 1)
        w = (m != 0).float()[:, None, :, None]  # [B, 1, L, 1]
        ymean = (y * w).sum((1, 2, 3)) / (w.sum((1, 2, 3)) * y.shape[-1])
        eps = self.a * x + self.b * ymean[:, None, None, None, None] + self.c * timestep.float()[:, None, None, None, None] / 1000
        if x_mask is not None:
            eps = eps + self.d * x_mask.float()[:, None, :, None, None]
        return torch.cat([eps, torch.tanh(x) / 2], 1)

    forward = __call__


def make_case(ref, commit, name, spec, out: Path):
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(spec["seed"])
    n, C, T, H, W = spec["shape"]
    z = torch.randn(n, C, T, H, W, generator=g)
    y = torch.randn(n, 1, spec["L"], spec["Cc"], generator=g)
    y_null = torch.randn(spec["L"], spec["Cc"], generator=g)
    cmask = torch.zeros(n, spec["L"], dtype=torch.long)
    for b, k in enumerate(spec["lens"]): cmask[b, :k] = 1
    mask = torch.tensor(spec["mask"])

    class TextEncoder:
        def encode(self, prompts):
            return dict(y=y.clone(), mask=cmask.clone())

        def null(self, k):
            return y_null[None, None].repeat(k, 1, 1, 1)

    drawn = []
    real = torch.randn_like

    def randn_like(t, *a, **k):
        r = torch.randn(t.shape, generator=g, dtype=t.dtype)
        drawn.append(r.clone())
        return r

    sched = ref.IDDPM(num_sampling_steps=spec["steps"], cfg_scale=spec["cfg_scale"], cfg_channel=spec["cfg_channel"])
    torch.randn_like = randn_like
    try:
        with torch.no_grad():
            outz = sched.sample(LinearModel(**spec["model"]), TextEncoder(), z=z.clone(), prompts=["a"] * n, device="cpu",
                                mask=mask.clone())
    finally:
        torch.randn_like = real
    assert len(drawn) == 2 * spec["steps"], len(drawn)
    tensors = {"sample.z": z, "sample.y": y, "sample.y_null": y_null, "sample.mask": cmask, "sample.frame_mask": mask,
               "sample.out": outz, "sample.timestep_map": torch.as_tensor(sched.timestep_map, dtype=torch.long)}
    for k in range(spec["steps"]):
        tensors[f"sample.noise_{k}_0"], tensors[f"sample.noise_{k}_1"] = drawn[2 * k], drawn[2 * k + 1]
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / f"{name}.safetensors"))
    meta = dict(sample={k: spec[k] for k in ("steps", "cfg_scale", "cfg_channel")}, model=spec["model"],
                reference=dict(repo="hpcaitech/Open-Sora", tag=TAG, commit=commit, files=FILES),
                made_by="tests/golden/make_iddpm_v1_1_golden.py", device="cpu", dtype="float32")
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return outz


if __name__ == "__main__":
    gitdir = sys.argv[1]
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent
    out.mkdir(parents=True, exist_ok=True)
    ref, commit = load_reference(gitdir)
    for name, spec in CASES.items():
        o = make_case(ref, commit, name, spec, out)
        print(name, tuple(o.shape), float(o.abs().mean()))
