"""Generation latency and peak memory of the tiny model vs frames and resolution, the linear model's fit, and the
talk's extrapolation to a minute of 1080p.

    python benchmarks/bench_latency.py [--pipeline outputs/demo/pipeline] [--quick] [--json out.json]

time ~ c * frames * pixels * params * steps: every sampling step runs the denoiser (twice, for guidance) over all
latent tokens, and a token costs ~2 x params FLOPs. The fit's R^2 says how well that holds here; the extrapolation
converts pixels to tokens (the tiny world: 8x8 pixels per token; Open-Sora 1.2: 8x8 VAE x 2x2 patch x 4 frames).
"""
import argparse, json, sys, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from opensora_nb.inference import OpenSoraPipeline, extrapolate_latency, fit_linear_latency, measure_generation  # noqa: E402


def random_pipeline():
    "The demo's model shape with random weights (latency does not depend on training)."
    from opensora_nb.rflow import RFlow
    from opensora_nb.builders import PatchPCAAutoencoder, build_model, get_config
    from opensora_nb.text import TextEncoder

    class ZeroText(TextEncoder):
        def __init__(self): self.output_dim, self.model_max_length, self.device, self.dtype, self.name, self.y_embedder = 384, 32, torch.device("cpu"), torch.float32, "zero", None
        def encode(self, prompts):
            return dict(y=torch.zeros(len(prompts), 1, 32, 384), mask=torch.ones(len(prompts), 32, dtype=torch.long))
    model = build_model(get_config("tiny_world"))
    ae = PatchPCAAutoencoder(8, 16).fit(torch.rand(8, 3, 1, 32, 32) * 2 - 1)
    return OpenSoraPipeline(model, ae, ZeroText(), RFlow(num_sampling_steps=10, cfg_scale=4.0, use_timestep_transform=False))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", default=None, help="a pipeline folder (default: random weights of the demo's shape)")
    p.add_argument("--quick", action="store_true", help="4 sizes, 2 steps")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write rows + fit here")
    p.add_argument("--params", type=float, default=1.1e9, help="model size for the extrapolation (STDiT3-XL/2: 1.1e9)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    pipe = OpenSoraPipeline.from_pretrained(a.pipeline) if a.pipeline else random_pipeline()
    if a.quick: sizes, steps = [(4, 32, 32), (8, 32, 32), (4, 32, 64), (8, 64, 64)], 2
    else:
        sizes = [(T, H, W) for T in (4, 8, 16) for (H, W) in ((32, 32), (32, 48), (48, 48), (64, 64))]
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
