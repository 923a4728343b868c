"""One-command GPU check of Open-Sora 1.2 at the official sizes, with random weights (no downloads):

  1. stdit     STDiT3-XL/2 forward latency + peak memory at 240p/360p/720p x 51 frames (batch 2 = cond + uncond)
  2. pipeline  OpenSoraPipeline (XL/2 + v1.2 VAE + random text states): 360p 2 s and 720p 4 s, 30 steps, cfg 7,
               beside the published Open-Sora 1.2 H100 figures; then at 360p the faster-sampling options (PAB attention
               reuse, step skipping, both, and 12 steps): seconds, ratio to the default, relative L2 of the latents
  3. vae       v1.2 VAE encode + decode at 720p x 51 frames
  4. train     one XL/2 training step at 240p x 51 frames through ColossalAI's Booster (LowLevelZero, ZeRO-2, bf16)
  5. sdpa      which scaled_dot_product_attention backends run here, and which one PyTorch picks
  6. plugins   one XL/2 step at 240p x 51 frames per Booster plugin (ddp, zero2, gemini, fsdp2), with the peak memory and
               the per-rank bytes of model states; --tiny: ddp and fsdp2 (FSDP2Plugin, chapter 13a) on the CPU in 2 gloo
               processes started with torchrun, the per-rank bytes of parameters + gradients + optimizer states compared

    python benchmarks/gpu_check.py                 # one H100/H200, bf16, <= 8 minutes -> benchmarks/results/gpu_check.json
    python benchmarks/gpu_check.py --tiny          # (or --quick) the same code on the CPU at toy sizes, seconds -> the temp folder
    python benchmarks/gpu_check.py --sections stdit,sdpa --out /tmp/x.json
    torchrun --nproc_per_node 8 benchmarks/gpu_check.py --plugins-worker OUT.json   # the plugins section on 8 GPUs

Each section runs in its own try/except: a failure is recorded as {"error": ...} and the other sections still run.
Peak memory is torch.cuda.max_memory_allocated (GiB, reset before each measurement) on CUDA, the peak resident-memory
growth (MiB, sampled from /proc/self/statm) on the CPU.
"""
import argparse, gc, json, math, os, platform, socket, statistics, sys, tempfile, time, traceback
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from opensora_nb.inference import OpenSoraPipeline, PeakRSS  # noqa: E402
from opensora_nb.fastpaths import enable_cpu_fast_paths  # noqa: E402
from opensora_nb.rflow import RFlow  # noqa: E402
from opensora_nb.stdit import STDIT3_XL_2, STDiT3, STDiT3Config  # noqa: E402
from opensora_nb.text import TextEncoder  # noqa: E402
from opensora_nb.vae import tiny_vae_v1_2, v1_2_latent_frames  # noqa: E402
from opensora_nb.vae_hub import OpenSoraVAE_V1_2  # noqa: E402

SECTIONS = ("sdpa", "stdit", "pipeline", "vae", "train", "plugins")
#: Open-Sora 1.2's README, one H100, 30 steps, batch 1 with guidance (its memory includes the 4.7B T5-XXL in bf16).
PUBLISHED_H100 = {"360p_2s": dict(seconds=18.0, memory_gb=27.0), "720p_4s": dict(seconds=130.0, memory_gb=39.0)}
TINY_CONFIG = STDiT3Config(hidden_size=64, depth=2, num_heads=4, caption_channels=32, model_max_length=16)
# (pixel H, W, frames) per name; full: the published sizes, tiny: toy sizes through the same code
SIZES = dict(full=dict(stdit={"240p": (240, 426, 51), "360p": (360, 640, 51), "720p": (720, 1280, 51)},
                       pipeline={"360p_2s": (360, 640, 51), "720p_4s": (720, 1280, 102)},
                       vae=(720, 1280, 51), train=(240, 426, 51), steps=30, fewer_steps=12, repeats=3, train_batch=2),
             tiny=dict(stdit={"32x32": (32, 32, 5), "48x64": (48, 64, 5)}, pipeline={"32x32_17f": (32, 32, 17)},
                       vae=(32, 32, 17), train=(32, 32, 17), steps=4, fewer_steps=2, repeats=3, train_batch=2))
#: The faster-sampling options (chapter 11c) run beside the default at the first pipeline size: name -> pipeline arguments.
FAST_OPTIONS = {"pab": dict(attention_reuse=True), "step_cache_0.1": dict(step_cache=0.1),
                "pab+step_cache_0.1": dict(attention_reuse=True, step_cache=0.1), "fewer_steps": {}}


# --- measuring ---
class Meter:
    "Wall time (CUDA synchronised) and peak memory of the block: `.seconds`, `.peak` (GiB on CUDA, MiB of RSS growth on CPU)."
    def __init__(self, device): self.cuda = device.type == "cuda"
    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
        else:
            self._rss = PeakRSS().__enter__()
        self.t0 = time.perf_counter(); return self
    def __exit__(self, *exc):
        if self.cuda: torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.t0
        if self.cuda: self.peak = torch.cuda.max_memory_allocated() / 2**30
        else: self._rss.__exit__(*exc); self.peak = self._rss.peak_mb


def peak_key(device): return "peak_gib" if device.type == "cuda" else "peak_rss_delta_mib"


def free_memory():
    gc.collect()
    if torch.cuda.is_available(): torch.cuda.empty_cache()


def latent_size(H, W, T):
    "The v1.2 VAE's latent (T', H', W') of a pixel video: 17-frame chunks -> 5 frames, 8x in space (rounded up)."
    return v1_2_latent_frames(T), math.ceil(H / 8), math.ceil(W / 8)


def build_model(config, device, dtype):
    torch.manual_seed(0)
    with torch.device(device): model = STDiT3(config)  # initialised where it runs: no 4 GB CPU copy to move
    return enable_cpu_fast_paths(model.to(dtype))  # as the trainer and the pipeline have it


class RandomText(TextEncoder):
    "The text-encoder interface with seeded random token states of T5's shape, so no 19 GB T5 is needed."
    def __init__(self, output_dim, model_max_length, device="cpu", dtype=torch.float32):
        self.output_dim, self.model_max_length, self.name, self.y_embedder, self.model = output_dim, model_max_length, "random", None, None
        self.device, self.dtype = torch.device(device), dtype

    def encode(self, prompts):
        g = torch.Generator().manual_seed(sum(map(ord, "".join(prompts))))
        y = torch.randn(len(prompts), 1, self.model_max_length, self.output_dim, generator=g)
        mask = torch.ones(len(prompts), self.model_max_length, dtype=torch.long)  # a full caption: the costliest case
        return dict(y=y.to(self.device, self.dtype), mask=mask.to(self.device))


# Used only while OpenSoraPipeline has no `.to`: its sampler draws the noise on the CPU, so the model and the VAE take
# their inputs to their own device (and dtype, for the VAE) here.
class _ModelOnDevice(torch.nn.Module):
    def __init__(self, model): super().__init__(); self.model, self.config = model, model.config
    @property
    def y_embedder(self): return self.model.y_embedder
    def forward(self, x, timestep, **kw):
        dev = next(self.model.parameters()).device
        mv = lambda v: v.to(dev) if torch.is_tensor(v) else v
        return self.model(mv(x), mv(timestep), **{k: mv(v) for k, v in kw.items()}).to(x.device)


class _VAEOnDevice:
    def __init__(self, vae): self.vae = vae
    def __getattr__(self, name): return getattr(self.vae, name)
    def eval(self): self.vae.eval(); return self
    def decode(self, z, **kw):
        p = next(self.vae.parameters())
        return self.vae.decode(z.to(p.device, p.dtype), **kw)


# --- sections ---
def check_sdpa(device, dtype, mode, cfg):
    "Which SDPA backends run a self-attention (no mask) and a cross-attention (boolean key mask) like STDiT3's; and the default's pick."
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F
    B, heads, N, L, hd = (2, 16, 1024, 300, 72) if mode == "full" else (2, 4, 16, 16, 16)
    q, k, v = (torch.randn(B, heads, n, hd, device=device, dtype=dtype) for n in (N, L, L))
    mask = torch.ones(B, 1, 1, L, dtype=torch.bool, device=device); mask[..., L // 2:] = False
    cases = dict(self_attention=lambda: F.scaled_dot_product_attention(q, q, q),
                 masked_cross_attention=lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    out = {}
    for case, fn in cases.items():
        ok = {}
        for be in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
            try:
                with sdpa_kernel(be): fn()
                ok[be.name] = "ok"
            except RuntimeError as e:
                ok[be.name] = f"unavailable: {str(e).splitlines()[0][:160]}"
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof: fn()
        ops = sorted({e.key for e in prof.key_averages() if "scaled_dot_product" in e.key} - {"aten::scaled_dot_product_attention"})
        out[case] = dict(backends=ok, default_picks=ops or ["math (no fused op)"])
    out["shape_q"] = [B, heads, N, hd]
    return out


def check_stdit(device, dtype, mode, cfg):
    "Forward latency (median after a warm-up) and peak memory at each size, batch 2 (cond + uncond) with a full caption."
    config = STDIT3_XL_2 if mode == "full" else TINY_CONFIG
    model = build_model(config, device, dtype).eval()
    res = dict(params_m=sum(p.numel() for p in model.parameters()) / 1e6, batch=2, caption_len=config.model_max_length,
               weights_gib=torch.cuda.memory_allocated() / 2**30 if device.type == "cuda" else None, sizes={})
    for name, (H, W, T) in cfg["stdit"].items():
        lat = latent_size(H, W, T)
        x = torch.randn(2, config.in_channels, *lat, device=device, dtype=dtype)
        y = torch.randn(2, 1, config.model_max_length, config.caption_channels, device=device, dtype=dtype)
        mask = torch.ones(2, config.model_max_length, dtype=torch.long, device=device)
        t = torch.tensor([500.0, 500.0], device=device)
        run = lambda: model(x, t, y, mask, x_mask=None, fps=24, height=H, width=W)
        with torch.no_grad():
            run()  # warm-up: kernel selection and allocator growth
            times = []
            for _ in range(cfg["repeats"]):
                with Meter(device) as m: run()
                times.append(m.seconds)
        tokens = lat[0] * math.ceil(lat[1] / 2) * math.ceil(lat[2] / 2)
        res["sizes"][name] = dict(pixels=[T, H, W], latent=list(lat), tokens_per_sample=tokens,
                                  seconds_median=statistics.median(times), seconds=times, **{peak_key(device): m.peak})
    return res


def check_pipeline(device, dtype, mode, cfg):
    "Text-to-video through OpenSoraPipeline at each size: seconds and peak memory, beside the published H100 figures."
    config = STDIT3_XL_2 if mode == "full" else TINY_CONFIG
    model = build_model(config, device, dtype)
    with torch.device(device):
        vae = OpenSoraVAE_V1_2(vae_2d="random") if mode == "full" else tiny_vae_v1_2()
    vae = vae.to(dtype)
    text = RandomText(config.caption_channels, config.model_max_length, device=device)
    scheduler = RFlow(num_sampling_steps=cfg["steps"], cfg_scale=7.0, use_timestep_transform=True)
    device_api = hasattr(OpenSoraPipeline, "to")
    if device_api:
        pipe = OpenSoraPipeline(model, vae, text, scheduler)
        pipe.to(device, dtype)
    else:
        pipe = OpenSoraPipeline(_ModelOnDevice(model), _VAEOnDevice(vae), text, scheduler)
    prompt = "a red panda eating bamboo in a misty forest, aesthetic score: 6.5."
    call = lambda H, W, T, steps, **opts: pipe([prompt], image_size=(H, W), num_frames=T, fps=24, num_sampling_steps=steps,
                                               cfg_scale=7.0, progress=False, **opts)
    H0, W0, T0 = next(iter(cfg["pipeline"].values()))
    call(H0, W0, T0, 1)  # warm-up: one step and a decode
    res = dict(device_api="pipe.to" if device_api else "adapters (OpenSoraPipeline has no .to yet)",
               steps=cfg["steps"], cfg_scale=7.0, text_encoder="random states (no T5: its ~9.5 GB bf16 weights are not counted)",
               runs={})
    for name, (H, W, T) in cfg["pipeline"].items():
        with Meter(device) as m: out = call(H, W, T, cfg["steps"])
        v = out["videos"][0]
        row = dict(pixels=[T, H, W], video_shape=list(v.shape), latent=out["settings"]["latent_size"], seconds=m.seconds,
                   **{peak_key(device): m.peak})
        ref = PUBLISHED_H100.get(name)
        if ref and mode == "full":
            row.update(published_h100=ref, seconds_ratio=m.seconds / ref["seconds"], memory_ratio=m.peak * 2**30 / 1e9 / ref["memory_gb"])
        res["runs"][name] = row
        if name == next(iter(cfg["pipeline"])): base = out["latents"][0].float()
        del out; free_memory()
    # the faster-sampling options at the first size, beside its default run
    name, (H, W, T) = next(iter(cfg["pipeline"].items()))
    res["options"] = {}
    for opt, kw in FAST_OPTIONS.items():
        steps = cfg["fewer_steps"] if opt == "fewer_steps" else cfg["steps"]
        try:
            with Meter(device) as m: out = call(H, W, T, steps, **kw)
            lat = out["latents"][0].float()
            res["options"][opt] = dict(size=name, steps=steps, seconds=m.seconds, ratio=res["runs"][name]["seconds"] / m.seconds,
                                       rel_l2_latents=float((lat - base).norm() / base.norm()), cache_stats=out["settings"].get("cache_stats"),
                                       **{peak_key(device): m.peak})
            del out
        except Exception as e:  # e.g. out of memory with the stored attention outputs: recorded, the others still run
            res["options"][opt] = dict(error=f"{type(e).__name__}: {e}"[:500])
        free_memory()
    return res


def check_vae(device, dtype, mode, cfg):
    "v1.2 VAE encode then decode of one random video (warm-up on one 17-frame chunk first)."
    with torch.device(device):
        vae = OpenSoraVAE_V1_2(vae_2d="random") if mode == "full" else tiny_vae_v1_2()
    vae = vae.to(dtype).eval()
    H, W, T = cfg["vae"]
    x = torch.rand(1, 3, T, H, W, device=device, dtype=dtype) * 2 - 1
    res = dict(pixels=[T, H, W], micro_frame_size=vae.micro_frame_size,
               micro_batch_size=vae.spatial_vae.micro_batch_size)
    with torch.no_grad():
        vae.decode(vae.encode(x[:, :, :vae.micro_frame_size]), num_frames=vae.micro_frame_size)
        with Meter(device) as m_all:
            with Meter(device) as m_enc: z = vae.encode(x)
            t_dec = time.perf_counter()
            rec = vae.decode(z, num_frames=T)
            if device.type == "cuda": torch.cuda.synchronize()
    res.update(latent=list(z.shape[2:]), output_shape=list(rec.shape), encode_seconds=m_enc.seconds,
               decode_seconds=time.perf_counter() - t_dec, total_seconds=m_all.seconds, **{peak_key(device): m_all.peak})
    return res


def _init_dist(device):
    "torch.distributed with world size 1 (nccl on CUDA, gloo on CPU), unless already up; True if started here."
    import torch.distributed as dist
    if dist.is_initialized(): return False
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    for k, v in dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1").items():
        os.environ.setdefault(k, v)
    if device.type == "cuda": torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    return True


def check_train(device, dtype, mode, cfg):
    """Training steps (warm-up + 2 timed) through Booster(LowLevelZeroPlugin(stage=2, bf16)) with gradient checkpointing,
    as Open-Sora 1.2 trains; if the booster cannot run here, a plain AdamW step with the same loss, and why."""
    import torch.distributed as dist
    from opensora_nb.engine import colossalai_available, make_booster
    config = STDIT3_XL_2 if mode == "full" else TINY_CONFIG
    new = lambda: build_model(config, device, torch.float32).train().set_grad_checkpointing(True)  # fp32 master weights
    adamw = lambda m: torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.0)
    model, started, booster, why = new(), False, None, None
    opt = adamw(model)
    try:
        try:
            if not colossalai_available(): raise ModuleNotFoundError("colossalai is not installed")
            started = _init_dist(device)
            booster = make_booster("zero2", precision="bf16")
            model, opt, *_ = booster.boost(model, opt)
        except Exception as e:  # a fresh model: a failed boost may have left the first one half-converted
            why, booster = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}", None
            model = opt = None; free_memory()
            model = new(); opt = adamw(model)
        path = "plain_adamw" if booster is None else "booster_zero2_bf16"
        H, W, T = cfg["train"]
        B, lat = cfg["train_batch"], latent_size(H, W, T)
        x0 = torch.randn(B, config.in_channels, *lat, device=device)
        full = lambda v: torch.full((B,), float(v), device=device)
        kwargs = dict(y=torch.randn(B, 1, config.model_max_length, config.caption_channels, device=device),
                      mask=torch.ones(B, config.model_max_length, dtype=torch.long, device=device),
                      fps=full(24), height=full(H), width=full(W), num_frames=full(T))
        rflow, gen = RFlow(), torch.Generator().manual_seed(0)
        amp = device.type == "cuda" and booster is None  # the plain path on a GPU: bf16 autocast over fp32 weights

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = rflow.training_losses(model, x0, model_kwargs=kwargs, generator=gen)["loss"].mean()
            booster.backward(loss, opt) if booster is not None else loss.backward()
            opt.step(); opt.zero_grad()
            return loss.item()

        with Meter(device) as first: step()
        times, losses = [], []
        with Meter(device) as m:
            for _ in range(2):
                t0 = time.perf_counter(); losses.append(step())
                if device.type == "cuda": torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
        res = dict(path=path, fallback_reason=why, batch=B, pixels=[T, H, W], latent=list(lat), grad_checkpointing=True,
                   first_step_seconds=first.seconds, step_seconds=times, step_seconds_median=statistics.median(times),
                   losses=losses, finite=all(math.isfinite(l) for l in losses), **{peak_key(device): max(first.peak, m.peak)})
        return res
    finally:
        if started: dist.destroy_process_group()


PLUGINS = dict(full=("ddp", "zero2", "gemini", "fsdp2"), tiny=("ddp", "fsdp2"))


def _plugin_step(name, device, mode, cfg):
    """Two training steps (the first allocates the optimizer states) of STDiT3 through Booster(plugin `name`) on this
    rank: seconds, loss, peak memory, and for ddp/fsdp2 the bytes of parameters + gradients + optimizer states held."""
    from colossalai.booster import Booster
    from opensora_nb.engine import FSDP2Plugin, make_booster, state_bytes
    config = STDIT3_XL_2 if mode == "full" else TINY_CONFIG
    model = build_model(config, device, torch.float32).train().set_grad_checkpointing(True)  # fp32 master weights
    if name == "gemini":  # Gemini accepts only ColossalAI's own Adam (CPU + CUDA kernels)
        from colossalai.nn.optimizer import HybridAdam
        opt = HybridAdam(model.parameters(), lr=1e-4, weight_decay=0.0)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    cuda = device.type == "cuda"
    booster = (Booster(plugin=FSDP2Plugin(precision="bf16" if cuda else "fp32")) if name == "fsdp2" else
               make_booster(name, precision="bf16"))  # zero2 / gemini: bf16 and clipping at 1.0 inside their step
    model, opt, *_ = booster.boost(model, opt)
    H, W, T = cfg["train"]
    B, lat, rank = cfg["train_batch"], latent_size(H, W, T), dist.get_rank()
    gen = torch.Generator().manual_seed(rank)  # every rank its own samples
    x0 = torch.randn(B, config.in_channels, *lat, generator=gen).to(device)
    full = lambda v: torch.full((B,), float(v), device=device)
    kwargs = dict(y=torch.randn(B, 1, config.model_max_length, config.caption_channels, generator=gen).to(device),
                  mask=torch.ones(B, config.model_max_length, dtype=torch.long, device=device),
                  fps=full(24), height=full(H), width=full(W), num_frames=full(T))
    rflow, amp = RFlow(), cuda and name == "ddp"  # ddp keeps fp32 weights: bf16 autocast, as the plain loop on a GPU
    times, losses, held = [], [], None
    with Meter(device) as m:
        for _ in range(2):
            t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = rflow.training_losses(model, x0, model_kwargs=kwargs, generator=gen)["loss"].mean()
            booster.backward(loss, opt)
            if name in ("ddp", "fsdp2"): opt.clip_grad_by_norm(1.0)
            opt.step()
            if name in ("ddp", "fsdp2"): held = state_bytes(model, opt)
            opt.zero_grad()
            if cuda: torch.cuda.synchronize()
            times.append(time.perf_counter() - t0); losses.append(loss.item())
    row = dict(losses=losses, step_seconds=times, finite=all(math.isfinite(l) for l in losses), **{peak_key(device): m.peak})
    if held is not None: row.update(state_bytes=held, state_bytes_total=sum(held.values()))
    if cuda: row["allocated_after_gib"] = torch.cuda.memory_allocated() / 2**30
    del model, opt, booster; free_memory()
    return row


def run_plugins(mode, cfg, plugins=None):
    "`_plugin_step` for each plugin on every rank of the started process group; every rank returns the same gathered report."
    device = torch.device("cuda", torch.cuda.current_device()) if mode == "full" else torch.device("cpu")
    rows = {}
    for name in plugins or PLUGINS[mode]:
        try:
            rows[name] = _plugin_step(name, device, mode, cfg)
        except Exception as e:  # e.g. gemini's Adam kernels cannot be built: recorded, the others still run
            rows[name] = dict(error=f"{type(e).__name__}: {e}"[:1000], traceback=traceback.format_exc()[-3000:])
            free_memory()
    ranks = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, rows)
    config = STDIT3_XL_2 if mode == "full" else TINY_CONFIG
    with torch.device("meta"): n = sum(p.numel() for p in STDiT3(config).parameters())
    H, W, T = cfg["train"]
    res = dict(world_size=dist.get_world_size(), backend=dist.get_backend(), params=n, batch_per_rank=cfg["train_batch"],
               pixels=[T, H, W], latent=list(latent_size(H, W, T)), plugins={})
    for name in rows:
        per_rank = [r[name] for r in ranks]
        res["plugins"][name] = dict(per_rank=per_rank, **({"error": per_rank[0]["error"]} if "error" in per_rank[0] else {}))
        if "state_bytes_total" in per_rank[0]:
            res["plugins"][name]["state_bytes_per_param"] = [r["state_bytes_total"] / n for r in per_rank]
    ok = lambda k: k in res["plugins"] and "state_bytes_per_param" in res["plugins"][k]
    if ok("ddp") and ok("fsdp2"):
        res["fsdp2_over_ddp_state_bytes"] = (max(res["plugins"]["fsdp2"]["state_bytes_per_param"]) /
                                             max(res["plugins"]["ddp"]["state_bytes_per_param"]))
    return res


def plugins_worker(out, tiny):
    "The body of `--plugins-worker OUT` (one process per rank under torchrun): ColossalAI started, every plugin stepped."
    from opensora_nb.engine import launch_colossalai
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    launch_colossalai()
    mode = "tiny" if tiny else "full"
    res = run_plugins(mode, SIZES[mode])
    if dist.get_rank() == 0: Path(out).write_text(json.dumps(res, indent=1, default=str))
    dist.barrier(); dist.destroy_process_group()


def check_plugins(device, dtype, mode, cfg):
    """One step per Booster plugin: on CUDA in this process (ddp, zero2, gemini, fsdp2); --tiny: ddp and fsdp2 in two
    gloo processes on the CPU, started with torchrun, so that the per-rank bytes show the sharding."""
    if mode == "full":
        started = _init_dist(device)
        try: return run_plugins(mode, cfg)
        finally:
            if started: dist.destroy_process_group()
    from opensora_nb.launch import launch, torchrun_command
    out = Path(tempfile.mkdtemp(prefix="gpu_check_plugins_")) / "plugins.json"
    cmd = torchrun_command([sys.executable, str(Path(__file__).resolve()), "--plugins-worker", str(out), "--tiny"],
                           nproc=2, module=None)
    root = str(Path(__file__).resolve().parents[1])
    launch(cmd, echo=lambda line: None, env=dict(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
                                                  PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])))
    return json.loads(out.read_text())


CHECKS = dict(sdpa=check_sdpa, stdit=check_stdit, pipeline=check_pipeline, vae=check_vae, train=check_train, plugins=check_plugins)


def summary_lines(report):
    lines = [f"gpu_check ({report['mode']}) on {report['gpu_name'] or report['device']}: torch {report['torch']}, "
             f"cuda {report['cuda']}, {report['total_seconds']:.1f} s"]
    for name in SECTIONS:
        r = report["sections"].get(name)
        if r is None: continue
        if "error" in r: lines.append(f"  {name:9s} ERROR {r['error']}"); continue
        if name == "sdpa":
            lines.append(f"  {name:9s} " + "; ".join(f"{c}: {','.join(k for k, v in d['backends'].items() if v == 'ok')} "
                                                   f"(default {d['default_picks'][0]})"
                                                   for c, d in r.items() if isinstance(d, dict)))
        elif name == "stdit":
            for s, d in r["sizes"].items():
                lines.append(f"  {name:9s} {s:10s} {d['seconds_median'] * 1e3:9.1f} ms/forward  peak {_peak(d)}")
        elif name == "pipeline":
            for s, d in r["runs"].items():
                ratio = (f"  ({d['seconds_ratio']:.2f}x time, {d['memory_ratio']:.2f}x memory of the published H100)"
                         if "seconds_ratio" in d else "")
                lines.append(f"  {name:9s} {s:10s} {d['seconds']:9.2f} s  peak {_peak(d)}{ratio}")
            for o, d in r.get("options", {}).items():
                lines.append(f"  {name:9s} {o:18s} ERROR {d['error']}" if "error" in d else
                             f"  {name:9s} {o:18s} {d['steps']:>2} steps {d['seconds']:8.2f} s  {d['ratio']:.2f}x faster  "
                             f"rel L2 {d['rel_l2_latents']:.3f}  peak {_peak(d)}")
        elif name == "vae":
            lines.append(f"  {name:9s} encode {r['encode_seconds']:.2f} s + decode {r['decode_seconds']:.2f} s  peak {_peak(r)}")
        elif name == "train":
            lines.append(f"  {name:9s} {r['path']}: {r['step_seconds_median']:.2f} s/step (first {r['first_step_seconds']:.2f} s) "
                         f"peak {_peak(r)} loss {r['losses'][-1]:.3f}" + (f"  [fallback: {r['fallback_reason']}]" if r["fallback_reason"] else ""))
        elif name == "plugins":
            for p, d in r["plugins"].items():
                if "error" in d: lines.append(f"  {name:9s} {p:6s} ERROR {d['error'][:200]}"); continue
                r0 = d["per_rank"][0]
                held = f"  {max(d['state_bytes_per_param']):.2f} B/param of states per rank" if "state_bytes_per_param" in d else ""
                lines.append(f"  {name:9s} {p:6s} x{r['world_size']} {statistics.median(r0['step_seconds']):.2f} s/step  "
                             f"peak {_peak(r0)}{held}  loss {r0['losses'][-1]:.3f}")
            if "fsdp2_over_ddp_state_bytes" in r:
                lines.append(f"  {name:9s} fsdp2 / ddp state bytes per rank: {r['fsdp2_over_ddp_state_bytes']:.3f} (1/world = {1 / r['world_size']:.3f})")
    return lines


def _peak(d):
    return f"{d['peak_gib']:.2f} GiB" if d.get("peak_gib") is not None else f"+{d.get('peak_rss_delta_mib', 0):.0f} MiB RSS"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", "--quick", dest="tiny", action="store_true",
                   help="toy sizes on the CPU in float32 (exercises the same code in seconds; the test suite runs it)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/gpu_check.json; --tiny: the temp folder)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--plugins-worker", metavar="OUT", default=None,
                   help="internal: run the plugins section on this rank (under torchrun) and write its JSON to OUT")
    a = p.parse_args(argv)
    if a.plugins_worker:
        if not a.tiny and not torch.cuda.is_available(): p.error("no CUDA device: --plugins-worker without --tiny needs GPUs")
        return plugins_worker(a.plugins_worker, a.tiny)
    names = [s.strip() for s in a.sections.split(",") if s.strip()]
    bad = sorted(set(names) - set(SECTIONS))
    if bad: p.error(f"unknown section(s) {bad}; choose from {list(SECTIONS)}")
    mode = "tiny" if a.tiny else "full"
    if mode == "full" and not torch.cuda.is_available():
        p.error("no CUDA device: the full check needs one H100/H200-class GPU (use --tiny for the CPU)")
    device = torch.device("cpu") if a.tiny else torch.device("cuda", 0)
    dtype = torch.float32 if a.tiny else torch.bfloat16
    cfg = SIZES[mode]
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    report = dict(device=str(device), torch=torch.__version__, cuda=torch.version.cuda, gpu_name=gpu, mode=mode,
                  dtype=str(dtype).replace("torch.", ""), python=platform.python_version(), host=platform.node(),
                  published_h100=PUBLISHED_H100, sections={})
    t0 = time.perf_counter()
    for name in names:
        ts = time.perf_counter()
        try:
            report["sections"][name] = CHECKS[name](device, dtype, mode, cfg)
        except Exception as e:
            report["sections"][name] = dict(error=f"{type(e).__name__}: {e}"[:2000], traceback=traceback.format_exc()[-4000:])
        free_memory()  # the section's models are unreachable now
        report["sections"][name]["section_seconds"] = time.perf_counter() - ts
        print(f"[gpu_check] {name}: {'error' if 'error' in report['sections'][name] else 'ok'} "
              f"({report['sections'][name]['section_seconds']:.1f} s)", flush=True)
    report["total_seconds"] = time.perf_counter() - t0
    report["ran_on"] = (f"{gpu} ({device}), {report['dtype']}, official sizes with random weights" if mode == "full" else
                        "CPU, float32, toy sizes: checks that the code runs; the numbers are not comparable to the GPU's")
    out = Path(a.out) if a.out else (Path(tempfile.gettempdir()) / "gpu_check_tiny.json" if a.tiny else
                                     Path(__file__).resolve().parent / "results" / "gpu_check.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print("\n".join(summary_lines(report)))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
