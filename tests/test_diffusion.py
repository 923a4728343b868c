"""Rectified flow and IDDPM: closed forms, diffusers cross-checks, bad inputs, sampling known distributions."""
import math

import numpy as np
import pytest
import torch

from opensora_nb.iddpm import IDDPM, linear_betas, space_timesteps
from opensora_nb.rflow import RFlow, mean_flat, timestep_transform

torch.set_num_threads(1)


# ---------------------------------------------------------------- IDDPM closed forms
def test_linear_schedule_matches_ddpm_paper():
    b = linear_betas(1000)
    assert b.dtype == np.float64 and b[0] == 1e-4 and abs(b[-1] - 0.02) < 1e-15
    d = IDDPM()
    abar = np.cumprod(1 - b)
    assert np.allclose(d.alphas_cumprod.numpy(), abar, rtol=1e-12, atol=0)
    ab, abp = d.alphas_cumprod.numpy(), d.alphas_cumprod_prev.numpy()
    assert np.allclose(d.posterior_variance.numpy(), b * (1 - abp) / (1 - ab), rtol=1e-10)
    assert np.allclose(d.posterior_mean_coef1.numpy(), b * np.sqrt(abp) / (1 - ab), rtol=1e-10)
    assert np.allclose(d.posterior_mean_coef2.numpy(), (1 - abp) * np.sqrt(1 - b) / (1 - ab), rtol=1e-10)


def test_against_diffusers_ddpm_scheduler():
    "An independent implementation: q_sample = add_noise, and one learned-range reverse step = step() (t > 0)."
    from diffusers import DDPMScheduler
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", variance_type="learned_range",
                        clip_sample=False, prediction_type="epsilon")
    d = IDDPM()
    assert torch.allclose(d.alphas_cumprod.float(), ref.alphas_cumprod, rtol=1e-5)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 2, 4, 4, generator=g), torch.randn(3, 4, 2, 4, 4, generator=g)
    t = torch.tensor([1, 400, 999])
    assert torch.allclose(d.q_sample(x0, t, eps), ref.add_noise(x0, eps, t), atol=1e-5)
    x_t = d.q_sample(x0, t, eps)
    out = torch.cat([torch.randn(3, 4, 2, 4, 4, generator=g), torch.rand(3, 4, 2, 4, 4, generator=g) * 2 - 1], 1)
    for b in range(3):
        ti = int(t[b])
        got = ref.step(out[b:b + 1], ti, x_t[b:b + 1], generator=torch.Generator().manual_seed(b)).prev_sample
        o = d.p_mean_variance(out[b:b + 1], x_t[b:b + 1], t[b:b + 1])
        xi = torch.randn(x_t[b:b + 1].shape, generator=torch.Generator().manual_seed(b))
        mine = o["mean"] + torch.exp(0.5 * o["log_variance"]) * xi
        assert torch.allclose(mine, got, atol=1e-3), (ti, (mine - got).abs().max())  # diffusers: float32 betas


def test_q_sample_statistics():
    d = IDDPM()
    n = 200_000
    for t in [0, 250, 999]:
        x = d.q_sample(torch.full((n, 1), -0.4), torch.full((n,), t))
        ab = d.alphas_cumprod[t].item()
        assert abs(x.mean().item() + 0.4 * math.sqrt(ab)) < 0.01
        assert abs(x.var().item() - (1 - ab)) < 0.01


def test_posterior_is_the_bayes_posterior():
    "q(x_{t-1}|x_t,x0) from the tables equals the Gaussian conditioning of the joint (x_{t-1}, x_t) given x0."
    d = IDDPM()
    for t in [1, 10, 500, 999]:
        ab_prev, ab, beta = d.alphas_cumprod[t - 1].item(), d.alphas_cumprod[t].item(), d.betas[t].item()
        x0, xt = torch.tensor([[0.3]]), torch.tensor([[-1.1]])
        # x_{t-1} ~ N(sqrt(ab_prev) x0, 1-ab_prev); x_t | x_{t-1} ~ N(sqrt(1-beta) x_{t-1}, beta)
        prior_var, prior_mean = 1 - ab_prev, math.sqrt(ab_prev) * 0.3
        post_var = 1 / (1 / prior_var + (1 - beta) / beta)
        post_mean = post_var * (prior_mean / prior_var + math.sqrt(1 - beta) * -1.1 / beta)
        mean, var, _ = d.q_posterior_mean_variance(x0, xt, torch.tensor([t]))
        assert abs(mean.item() - post_mean) < 1e-5 and abs(var.item() - post_var) / post_var < 1e-5


def test_respacing_half_to_even_and_errors():
    assert space_timesteps(1000, "100")[5:7] == [50, 61]
    assert space_timesteps(100, "25,25") == sorted(set(space_timesteps(100, "25,25")))
    with pytest.raises(ValueError, match="section"):
        space_timesteps(10, "11")
    with pytest.raises(ValueError, match="not both"):
        IDDPM(num_sampling_steps=10, timestep_respacing="10")
    d = IDDPM(num_sampling_steps=10)
    with pytest.raises(ValueError, match="channels"):
        d.p_mean_variance(torch.zeros(1, 4, 1, 2, 2), torch.zeros(1, 4, 1, 2, 2), torch.tensor([3]))


def _gauss_eps(mu, sd, abar):
    def f(x, ts, **k):
        ab = abar[ts.long()].float()[:, None]
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / (ab * sd ** 2 + 1 - ab)
    return f


def _iddpm_gauss(steps, sigma_small, mu=-0.7, sd=0.4):
    d = IDDPM(num_sampling_steps=steps, learn_sigma=False, sigma_small=sigma_small)
    return d.sample(_gauss_eps(mu, sd, IDDPM().alphas_cumprod), torch.randn(5000, 1, generator=torch.Generator().manual_seed(0)),
                    generator=torch.Generator().manual_seed(1), progress=False)


@pytest.mark.parametrize("sigma_small", [True, False])
def test_iddpm_samples_a_gaussian(sigma_small):
    "The full 1000-step chain with the exact noise predictor recovers N(mu, sd^2) with either fixed variance."
    x = _iddpm_gauss(1000, sigma_small)
    assert abs(x.mean().item() + 0.7) < 0.03 and abs(x.std().item() - 0.4) < 0.03


def test_few_steps_bracket_the_variance():
    "With 50 respaced steps the two fixed variances err on either side (why IDDPM learns the interpolation)."
    small, large = _iddpm_gauss(50, True), _iddpm_gauss(50, False)
    assert abs(small.mean().item() + 0.7) < 0.03 and abs(large.mean().item() + 0.7) < 0.03
    assert small.std().item() < 0.4 - 0.02 and large.std().item() > 0.4 + 0.005


def test_iddpm_guidance_only_on_first_three_channels():
    "The reference's hard-coded 3: guided eps on channels 0-2, the conditional half as is for the rest."
    d = IDDPM(num_sampling_steps=2, cfg_scale=3.0)
    seen = []

    def model(x, ts, y, **k):
        seen.append(ts.tolist())
        eps = y[:, :1, :1, :1, None].expand(x.shape[0], 5, *x.shape[2:]).clone()  # 1 for cond rows, 0 for uncond
        return torch.cat([eps, torch.zeros_like(eps)], 1)

    outs = []
    d.sample(model, torch.zeros(1, 5, 1, 2, 2), y=torch.ones(1, 1, 3, 4), y_null=torch.zeros(1, 1, 3, 4),
             noises=[torch.zeros(2, 5, 1, 2, 2)] * 2, progress=False, callback=lambda i, t, x: outs.append(x))
    assert seen[0] == [999.0, 999.0] and seen[1] == [0.0, 0.0]  # original timesteps, doubled batch
    o = d.p_mean_variance(torch.cat([torch.tensor([3.0, 3, 3, 1, 1])[None, :, None, None, None].expand(1, 5, 1, 2, 2),
                                     torch.zeros(1, 5, 1, 2, 2)], 1), torch.zeros(1, 5, 1, 2, 2), torch.tensor([1]))
    assert torch.allclose(outs[0], o["mean"])


def test_iddpm_masked_loss_ignores_clean_frames():
    d = IDDPM()
    x0, eps = torch.rand(2, 4, 3, 2, 2) * 2 - 1, torch.randn(2, 4, 3, 2, 2)
    mask = torch.tensor([[False, True, True], [True, True, True]])

    def model(x, ts, **k):
        e = torch.where(mask[:, None, :, None, None], eps, eps + 3)
        return torch.cat([e, torch.zeros_like(e)], 1)

    out = d.training_losses(model, x0, noise=eps, mask=mask, t=torch.tensor([10, 20]))
    assert torch.allclose(out["mse"], torch.zeros(2), atol=1e-6)


# ---------------------------------------------------------------- rectified flow
def test_timestep_transform_fixed_points_and_monotone():
    t = torch.linspace(0, 1000, 101)
    for h, w, f in [(256, 256, 1), (720, 1280, 51), (144, 256, 1)]:
        tt = timestep_transform(t, h, w, f)
        assert abs(tt[0].item()) < 1e-6 and abs(tt[-1].item() - 1000) < 1e-3
        assert (tt[1:] > tt[:-1]).all()
    assert (timestep_transform(t[1:-1], 720, 1280, 51) > t[1:-1]).all()   # big video: more noise
    assert (timestep_transform(t[1:-1], 144, 256, 1) < t[1:-1]).all()     # small image: less
    assert torch.allclose(timestep_transform(t, 512, 512, 1), t)
    with pytest.raises(ValueError, match="height"):
        timestep_transform(torch.ones(3), torch.ones(2), 1, 1)


def _gauss_velocity(mu, sd):
    "E[x0 - noise | x_t] for x0 ~ N(mu, sd^2), x_t = (1-s) x0 + s noise, s = t / 1000."
    def f(x, t, **k):
        s = (t.float() / 1000)[:, None]
        var = (1 - s) ** 2 * sd ** 2 + s ** 2
        return mu + ((1 - s) * sd ** 2 - s) / var * (x - (1 - s) * mu)
    return f


@pytest.mark.parametrize("transform", [False, True])
def test_rflow_samples_a_gaussian(transform):
    mu, sd, n = 0.8, 0.5, 5000
    kw = dict(height=torch.full((n,), 512.), width=torch.full((n,), 512.), num_frames=torch.full((n,), 17.))
    rf = RFlow(num_sampling_steps=100, use_timestep_transform=transform)
    x = rf.sample(_gauss_velocity(mu, sd), torch.randn(n, 1, generator=torch.Generator().manual_seed(0)),
                  model_kwargs=kw, progress=False)
    assert abs(x.mean().item() - mu) < 0.03 and abs(x.std().item() - sd) < 0.03


def test_rflow_text_encoder_path_and_guidance():
    class Enc:  # the text-encoder contract: encode(prompts) -> dict(y, mask), null(n)
        def encode(self, prompts):
            return dict(y=torch.ones(len(prompts), 1, 3, 4), mask=torch.ones(len(prompts), 3, dtype=torch.long))

        def null(self, n):
            return torch.zeros(n, 1, 3, 4)

    def model(x, t, y, mask=None, **k):
        assert mask.shape[0] == x.shape[0] == y.shape[0] == 4
        return torch.cat([y[:, :1, :1, :1, None].expand_as(x), torch.zeros_like(x)], 1)

    z = torch.zeros(2, 3, 2, 2, 2)
    out = RFlow(num_sampling_steps=3, cfg_scale=2.5, use_timestep_transform=False).sample(
        model, z, prompts=["a", "b"], text_encoder=Enc(), progress=False)
    assert torch.allclose(out, torch.full_like(z, 2.5))
    with pytest.raises(ValueError, match="y_null"):
        RFlow().sample(model, z, y=torch.ones(2, 1, 3, 4), progress=False)
    with pytest.raises(ValueError, match="num_frames"):
        RFlow().sample(model, z, y=torch.ones(2, 1, 3, 4), y_null=torch.ones(2, 1, 3, 4), progress=False)


def test_rflow_partial_mask_renoises_once():
    "A frame with mask 0.5 stays clean until t <= 500, is then re-noised to level t once and denoised."
    rf = RFlow(num_sampling_steps=4, use_timestep_transform=False)
    z = torch.randn(1, 2, 3, 2, 2)
    calls = []

    def model(x, t, x_mask=None, **k):
        calls.append((t.item(), x_mask.clone(), x.clone()))
        return torch.zeros_like(x)

    out = rf.sample(model, z, mask=torch.tensor([[0.0, 0.5, 1.0]]), progress=False,
                    generator=torch.Generator().manual_seed(0))
    masks = [c[1][0].tolist() for c in calls]
    assert masks == [[False, False, True], [False, False, True], [False, True, True], [False, True, True]]
    assert torch.equal(calls[1][2][0, :, 1], z[0, :, 1])          # still clean at t = 750
    assert not torch.equal(calls[2][2][0, :, 1], z[0, :, 1])      # re-noised at t = 500
    assert torch.equal(calls[3][2][0, :, 1], calls[2][2][0, :, 1])  # only once (zero velocity keeps it)
    assert torch.equal(out[0, :, 0], z[0, :, 0])


def test_mean_flat_mask():
    x = torch.arange(24.).reshape(1, 2, 3, 2, 2)
    assert torch.allclose(mean_flat(x, torch.tensor([[True, False, False]])), x[:, :, 0].mean().reshape(1))
    assert torch.allclose(mean_flat(x, torch.tensor([[False, False, False]])), torch.zeros(1))
    with pytest.raises(ValueError, match="mask"):
        mean_flat(x, torch.ones(1, 2, dtype=torch.bool))


def test_rflow_loss_logit_normal_and_discrete():
    x0 = torch.randn(64, 2)
    for rf in [RFlow(sample_method="logit-normal", use_timestep_transform=False),
               RFlow(use_discrete_timesteps=True, use_timestep_transform=False)]:
        out = rf.training_losses(lambda x, t: torch.zeros_like(x), x0, generator=torch.Generator().manual_seed(0))
        assert out["loss"].shape == (64,) and ((out["t"] >= 0) & (out["t"] < 1000)).all()
    with pytest.raises(ValueError, match="sample_method"):
        RFlow(sample_method="beta")


def test_rflow_shift_training_and_sampling():
    "shift=1 is the reference; shift s maps u -> s u / (1 + (s-1) u) for training draws and sampling steps alike."
    with pytest.raises(ValueError, match="shift"):
        RFlow(shift=0)
    plain, shifted = RFlow(use_timestep_transform=False), RFlow(use_timestep_transform=False, shift=3.0)
    ts_plain = torch.stack(plain.sampling_timesteps(1))[:, 0] / 1000
    ts_shift = torch.stack(shifted.sampling_timesteps(1))[:, 0] / 1000
    assert torch.allclose(ts_shift, 3 * ts_plain / (1 + 2 * ts_plain))
    x0 = torch.zeros(512, 1, 1, 1, 1)
    zero = lambda x, t, **kw: torch.zeros_like(x)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    t1 = plain.training_losses(zero, x0, {}, generator=g1)["t"] / 1000
    t2 = shifted.training_losses(zero, x0, {}, generator=g2)["t"] / 1000
    assert torch.allclose(t2, 3 * t1 / (1 + 2 * t1), atol=1e-5)
