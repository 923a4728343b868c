"""Peak memory of one generation with and without each low-memory option, side by side in one run.

Each variant runs in a fresh process (peak RSS = the child's ru_maxrss, so nothing is shared between variants) at a
mid-size config: STDiT3 depth 4 / width 384, the v1.2 VAE architecture (SDXL-type 2D VAE + full temporal VAE, random
weights), a random mid-size T5 (d_model 512, 6 layers) or its pre-computed states, 192x192 x 17 frames, 2 steps.
On this CPU the execution device is the CPU, so model offload has nothing to move: it is measured on a GPU by
benchmarks/gpu_check.py. Usage: python benchmarks/bench_memory.py [--out benchmarks/results/memory.json]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZE = (192, 192)
VARIANTS = {  # name: pipeline options
    "baseline (fp32)": {},
    "bf16 weights": dict(dtype="bf16"),
    "VAE micro-batch 1": dict(vae_micro_batch_size=1),
    "VAE tiling": dict(vae_tiling=True),
    "pre-computed text states": dict(text_states=True),
    "all of them": dict(dtype="bf16", vae_micro_batch_size=1, vae_tiling=True, text_states=True),
}


def child(options: dict, workdir: Path) -> dict:
    import torch
    torch.set_num_threads(1)
    from opensora_nb.inference import OpenSoraPipeline, PeakRSS
    from opensora_nb.rflow import RFlow
    from opensora_nb.stdit import STDiT3, STDiT3Config
    from opensora_nb.text import CachedTextEncoder, T5Encoder
    from opensora_nb.vae_hub import OpenSoraVAE_V1_2
    prompt = "a red circle moving left on a dark background"
    torch.manual_seed(0)
    if options.get("text_states"):
        te = CachedTextEncoder(workdir / "states.safetensors")
    else:
        te = T5Encoder.from_pretrained(workdir / "t5", model_max_length=64)
    net = STDiT3(STDiT3Config(depth=4, hidden_size=384, num_heads=6, caption_channels=te.output_dim, model_max_length=64))
    vae = OpenSoraVAE_V1_2(vae_2d="random")
    if options.get("vae_tiling"):  # tiles smaller than the clip (diffusers' default tile is the config's 1024), so tiling has work
        vae.spatial_vae.module.tile_sample_min_size, vae.spatial_vae.module.tile_latent_min_size = 96, 12
    pipe = OpenSoraPipeline(net, vae, te, RFlow(num_sampling_steps=2, cfg_scale=7.0), device="cpu", dtype=options.get("dtype"),
                            vae_micro_batch_size=options.get("vae_micro_batch_size"), vae_tiling=options.get("vae_tiling"))
    loaded = PeakRSS.rss() / 2**20
    t0 = time.perf_counter()
    with PeakRSS() as m:
        res = pipe([prompt], image_size=SIZE, num_frames=17, progress=False)
    secs = time.perf_counter() - t0
    return dict(loaded_rss_mb=round(loaded), generation_peak_mb=round(m.peak_mb),
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), seconds=round(secs, 2),
                frames=int(res["videos"][0].shape[0]))


def prepare(workdir: Path):
    "A random mid-size T5 folder and the pre-computed states of the prompt."
    import torch
    from opensora_nb.text import T5Encoder, build_tiny_t5, cache_text_features
    build_tiny_t5(workdir / "t5", d_model=512, num_layers=6, num_heads=8, d_ff=2048, model_max_length=64)
    cache_text_features(T5Encoder.from_pretrained(workdir / "t5", model_max_length=64),
                        ["a red circle moving left on a dark background"], workdir / "states.safetensors")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/memory.json")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        print(json.dumps(child(json.loads(a.child), Path(a.workdir)))); return
    with tempfile.TemporaryDirectory() as tmp:
        prepare(Path(tmp))
        rows = {}
        for name, opts in VARIANTS.items():
            r = subprocess.run([sys.executable, __file__, "--child", json.dumps(opts), "--workdir", tmp], capture_output=True,
                               text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
            if r.returncode: raise SystemExit(f"{name}: {r.stderr[-2000:]}")
            rows[name] = json.loads(r.stdout.strip().splitlines()[-1])
            r_ = rows[name]
            print(f"{name:28s} loaded {r_['loaded_rss_mb']:6d} MB  generation peak +{r_['generation_peak_mb']:6d} MB  "
                  f"process peak {r_['peak_rss_mb']:6d} MB  {r_['seconds']:6.1f} s", flush=True)
    base = rows["baseline (fp32)"]
    for r in rows.values():
        r["loaded_ratio"] = round(r["loaded_rss_mb"] / base["loaded_rss_mb"], 3)
        r["generation_ratio"] = round(r["generation_peak_mb"] / max(base["generation_peak_mb"], 1), 3)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(dict(config="STDiT3 depth 4 width 384; v1.2 VAE (SDXL-type 2D + full temporal, random); "
                                              "random T5 d_model 512 x 6 layers; 192x192 x 17 frames, 2 steps, one thread, CPU",
                                       variants=rows), indent=1))
    print("\n| option | loaded (MB) | ratio | generation peak (MB) | ratio | seconds |\n|---|---|---|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | {r['loaded_rss_mb']} | {r['loaded_ratio']:.2f} | +{r['generation_peak_mb']} | {r['generation_ratio']:.2f} | {r['seconds']} |")


if __name__ == "__main__":
    main()
