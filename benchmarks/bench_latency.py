"""Generation latency and peak memory of the tiny model vs frames and resolution, the linear model's fit, and the
talk's extrapolation to a minute of 1080p.

    python benchmarks/bench_latency.py [--pipeline outputs/demo/pipeline] [--json out.json]
    python benchmarks/bench_latency.py --quick       # the same code in seconds (a depth-1 model, 4 small sizes, 2 steps)

time ~ c * frames * pixels * params * steps: every sampling step runs the denoiser (twice, for guidance) over all
latent tokens, and a token costs ~2 x params FLOPs. The fit's R^2 says how well that holds here; the extrapolation
converts pixels to tokens (the tiny world: its VAE's 4x4 pixels x 2x2 patch x 4 frames; Open-Sora 1.2: 8x8 VAE x 2x2 patch x 4 frames).
"""
import argparse, json, sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from opensora_nb.inference import OpenSoraPipeline, extrapolate_latency, fit_linear_latency, measure_generation  # noqa: E402


def random_pipeline(depth=None, hidden_size=None):
    """The demo's model shape (chapter 10c's `tiny_world` preset: STDiT3 on the shipped world VAE's 4-channel latents) with
    random weights (latency does not depend on training) and zero caption states; `depth`/`hidden_size` shrink it."""
    from opensora_nb.rflow import RFlow
    from opensora_nb.builders import build_model, build_vae, get_config
    from opensora_nb.text import TextEncoder

    class ZeroText(TextEncoder):
        def __init__(self): self.output_dim, self.model_max_length, self.device, self.dtype, self.name, self.y_embedder = 384, 32, torch.device("cpu"), torch.float32, "zero", None
        def encode(self, prompts):
            return dict(y=torch.zeros(len(prompts), 1, 32, 384), mask=torch.ones(len(prompts), 32, dtype=torch.long))
    cfg = get_config("tiny_world", {k: v for k, v in (("model.depth", depth), ("model.hidden_size", hidden_size)) if v})
    return OpenSoraPipeline(build_model(cfg), build_vae(cfg), ZeroText(), RFlow(num_sampling_steps=10, cfg_scale=4.0, use_timestep_transform=False))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", default=None, help="a pipeline folder (default: random weights of the demo's shape)")
    p.add_argument("--quick", action="store_true", help="seconds: a depth-1 model, 4 small sizes, 2 steps")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write rows + fit here")
    p.add_argument("--params", type=float, default=1.1e9, help="model size for the extrapolation (STDiT3-XL/2: 1.1e9)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    pipe = OpenSoraPipeline.from_pretrained(a.pipeline) if a.pipeline else random_pipeline(depth=1 if a.quick else None)
    if a.quick: sizes, steps = [(5, 32, 32), (9, 32, 32), (5, 32, 64), (9, 64, 64)], 2
    else:  # 4k + 1 frames: what the world VAE's causal time axis takes whole
        sizes = [(T, H, W) for T in (5, 9, 17) for (H, W) in ((32, 32), (32, 48), (48, 48), (64, 64))]
        steps = a.steps
    rows = measure_generation(pipe, sizes, steps=steps)
    fit = fit_linear_latency(rows)
    print(f"{'frames':>6} {'H':>4} {'W':>4} {'seconds':>8} {'peak MB':>8}")
    for r in rows: print(f"{r['frames']:>6} {r['height']:>4} {r['width']:>4} {r['seconds']:>8.3f} {r['peak_mb']:>8.1f}")
    print(f"fit: seconds = {fit['c']:.3e} * frames*pixels*params*steps + {fit['b']:.3f};  R^2 = {fit['r2']:.3f} "
          f"(through the origin: c = {fit['c_origin']:.3e}, R^2 = {fit['r2_through_origin']:.3f})")
    ex = extrapolate_latency(rows, params=a.params)
    print(f"effective compute here: {ex['effective_flops_here'] / 1e9:.1f} GFLOP/s; tokens fit R^2 = {ex['r2']:.3f}")
    print(f"extrapolation (linear model, attention's quadratic term ignored): a {a.params / 1e9:.1f}B-parameter model, 60 s of "
          f"1080p at 24 fps = {ex['tokens'] / 1e6:.2f}M tokens, 30 steps with guidance ({ex['flops']:.2e} FLOPs) -> "
          f"{ex['seconds_here'] / 86400 / 365:.1f} years on this CPU, ~{ex['seconds_gpu'] / 3600:.1f} h on one H100 at 400 TFLOP/s")
    out = dict(rows=rows, fit=fit, extrapolation=ex)
    if a.json: Path(a.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
