"""Golden checks: the v1.0 IDDPM scheduler (schedules, hybrid loss, one reverse step, guided sampling).

Tolerances from the golden README: float64 `sched.*` relative 1e-6, `sched.respaced_timesteps` exact, tensors 1e-4
absolute, `step.pred_xstart` 1e-4 x max(1, |value|)."""
import torch
from golden_compare import close

from opensora_nb.iddpm import IDDPM

ARRAYS = ["betas", "alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
          "posterior_mean_coef1", "posterior_mean_coef2"]


def _close(case, name, got, want, atol=1e-4, rel=False):
    "Float64 comparison; a non-finite golden value passes only where the project reproduces it (no divergence applies)."
    close(case, name, got, want, atol, rel=rel, double=True)


def _sched(case, respacing):
    cfg = case.meta["config"]
    return IDDPM(timestep_respacing=respacing, diffusion_steps=cfg.get("diffusion_steps", 1000),
                 learn_sigma=cfg.get("learn_sigma", True), sigma_small=cfg.get("sigma_small", False))


def _check_config(case):
    cfg = case.meta["config"]
    assert cfg.get("noise_schedule", "linear") == "linear", f"{case.stem}: only the linear schedule is implemented"
    assert cfg.get("model_mean_type", "EPSILON") == "EPSILON" and not cfg.get("predict_xstart", False)
    assert cfg.get("loss_type", "MSE") == "MSE" and not cfg.get("use_kl") and not cfg.get("rescale_learned_sigmas")


def check_schedules(case):
    _check_config(case)
    t = case.t
    for prefix, respacing in [("sched.base.", case.meta["config"].get("base_timestep_respacing", "")),
                              ("sched.respaced.", case.meta["config"]["sched_timestep_respacing"])]:
        d = _sched(case, respacing)
        for k in ARRAYS:
            want = t[prefix + k]
            got = getattr(d, k)
            assert got.shape == want.shape, f"{prefix}{k}: shape {tuple(got.shape)} != {tuple(want.shape)}"
            rel = ((got - want).abs() / want.abs().clamp(min=1e-300)).max().item()
            assert rel <= 1e-6, f"{prefix}{k}: max relative error {rel:.3g} > 1e-6"
        if prefix == "sched.respaced.":
            assert torch.equal(d.timestep_map, t["sched.respaced_timesteps"].long()), "sched.respaced_timesteps differ"


def check_training_loss(case):
    _check_config(case)
    t = case.t
    d = _sched(case, case.meta["config"].get("base_timestep_respacing", ""))
    seen = {}

    def fake(x_t, ts, **kw):
        seen["x_t"] = x_t
        return t["loss.model_out"]

    out = d.training_losses(fake, t["loss.x0"], noise=t["loss.noise"], t=t["loss.t"].long())
    _close(case, "loss.x_t", seen["x_t"], t["loss.x_t"])
    for k in ["mse", "vb"]:
        _close(case, f"loss.{k}", out[k], t[f"loss.{k}"])
    _close(case, "loss.total", out["loss"], t["loss.total"])


def check_reverse_step(case):
    _check_config(case)
    t = case.t
    d = IDDPM(num_sampling_steps=case.meta["config"]["num_sampling_steps"],
              learn_sigma=case.meta["config"].get("learn_sigma", True))
    o = d.p_mean_variance(t["step.model_out"], t["step.x_t"], t["step.t"].long(),
                          clip_denoised=case.meta["config"].get("clip_denoised", False))
    for k in ["mean", "variance", "log_variance"]:
        _close(case, f"step.{k}", o[k], t[f"step.{k}"])
    _close(case, "step.pred_xstart", o["pred_xstart"], t["step.pred_xstart"], rel=True)


def check_guided_sampling(case):
    _check_config(case)
    t, cfg = case.t, case.meta["config"]
    w, p, s = t["sample.w"], t["sample.p"], t["sample.s"]

    def linear_model(x, timestep, y, mask=None, **kw):  # json["sample"]["model"]
        m = mask.repeat(y.shape[0] // mask.shape[0], 1).to(y.dtype)
        ybar = (y[:, 0] * m[..., None]).sum(1) / m.sum(1, keepdim=True)
        out = torch.einsum("oc,bcthw->bothw", w, x) + (ybar @ p)[:, :, None, None, None]
        return out + (timestep.float() / 1000)[:, None, None, None, None] * s[None, :, None, None, None]

    z, y = t["sample.z"], t["sample.y"]
    n = z.shape[0]
    y_null = t["sample.y_null"]
    if y_null.ndim == 2: y_null = y_null[None, None].repeat(n, 1, 1, 1)
    steps = cfg["num_sampling_steps"]
    noises = [t[f"sample.noise_{k}"] for k in range(steps)]
    d = IDDPM(num_sampling_steps=steps, learn_sigma=cfg.get("learn_sigma", True), cfg_scale=cfg["cfg_scale"])
    seen = []
    out = d.sample(linear_model, z, y=y, y_null=y_null, model_kwargs={"mask": t["sample.mask"]}, noises=noises,
                   progress=False, callback=lambda i, ts, x: seen.append(int(ts[0])))
    if "model_timesteps_seen" in case.meta.get("sample", {}):
        assert seen == case.meta["sample"]["model_timesteps_seen"], f"model saw timesteps {seen}"
    _close(case, "sample.out", out, t["sample.out"])
