"""Peak memory of one generation with and without each low-memory option, side by side in one run.

Each variant runs in a fresh process (peak RSS = the child's ru_maxrss, so nothing is shared between variants) at a
mid-size config: STDiT3 depth 4 / width 384, the v1.2 VAE architecture (SDXL-type 2D VAE + full temporal VAE, random
weights), a random mid-size T5 (d_model 512, 6 layers) or its pre-computed states, 192x192 x 17 frames, 2 steps.
On this CPU the execution device is the CPU, so model offload has nothing to move: it is measured on a GPU by
benchmarks/gpu_check.py. Tiling is the pipeline's own option (`vae_tile_size`, `--vae-tile-size` of `opensora-nb sample`):
96-pixel tiles here, the 192x192 frame cut as a 240p-480p frame is cut by the default 192-pixel tile; each row says how
many times the 2D decoder ran (`decoder_calls`), so a tiling figure without tiles cannot pass unseen.
Usage: python benchmarks/bench_memory.py [--out benchmarks/results/memory.json]
       python benchmarks/bench_memory.py --quick   (seconds: a tiny pipeline, every variant in this process, no file written)
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
    "VAE tiling": dict(vae_tile_size=96),
    "pre-computed text states": dict(text_states=True),
    "all of them": dict(dtype="bf16", vae_micro_batch_size=1, vae_tile_size=96, text_states=True),
}
QUICK = dict(size=(32, 32), frames=2, tile=16)  # the tiny VAE compresses 4x: 16-pixel tiles cut a 32x32 frame in 3 x 3


def child(options: dict, workdir: Path, quick: bool = False) -> dict:
    import torch
    torch.set_num_threads(1)
    from opensora_nb.inference import OpenSoraPipeline, PeakRSS
    from opensora_nb.rflow import RFlow
    from opensora_nb.stdit import STDiT3, STDiT3Config
    from opensora_nb.text import CachedTextEncoder, T5Encoder
    from opensora_nb.vae import tiny_vae_v1_2
    from opensora_nb.vae_hub import OpenSoraVAE_V1_2
    prompt = "a red circle moving left on a dark background"
    torch.manual_seed(0)
    if options.get("text_states"):
        te = CachedTextEncoder(workdir / "states.safetensors")
    else:
        te = T5Encoder.from_pretrained(workdir / "t5", model_max_length=64)
    if quick:
        net = STDiT3(STDiT3Config(depth=1, hidden_size=32, num_heads=2, caption_channels=te.output_dim, model_max_length=64))
        vae, size, frames = tiny_vae_v1_2(), QUICK["size"], QUICK["frames"]
        options = {**options, "vae_tile_size": QUICK["tile"] if options.get("vae_tile_size") else None}
    else:
        net = STDiT3(STDiT3Config(depth=4, hidden_size=384, num_heads=6, caption_channels=te.output_dim, model_max_length=64))
        vae, size, frames = OpenSoraVAE_V1_2(vae_2d="random"), SIZE, 17
    pipe = OpenSoraPipeline(net, vae, te, RFlow(num_sampling_steps=1 if quick else 2, cfg_scale=7.0), device="cpu", dtype=options.get("dtype"),
                            vae_micro_batch_size=options.get("vae_micro_batch_size"), vae_tile_size=options.get("vae_tile_size"))
    calls = []  # one per tile (per micro-batch): the proof that an option did what its name says
    hook = vae.spatial_vae.module.decoder.register_forward_hook(lambda m, i, o: calls.append(1))
    loaded = PeakRSS.rss() / 2**20
    t0 = time.perf_counter()
    with PeakRSS() as m:
        res = pipe([prompt], image_size=size, num_frames=frames, progress=False)
    secs = time.perf_counter() - t0
    hook.remove()
    return dict(loaded_rss_mb=round(loaded), generation_peak_mb=round(m.peak_mb),
                peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), seconds=round(secs, 2),
                frames=int(res["videos"][0].shape[0]), decoder_calls=len(calls), tile_size=vae.spatial_vae.tile_size)


def prepare(workdir: Path, quick: bool = False):
    "A random T5 folder (mid-size; tiny with `quick`) and the pre-computed states of the prompt."
    from opensora_nb.text import T5Encoder, build_tiny_t5, cache_text_features
    size = dict(d_model=32, num_layers=1, num_heads=2, d_ff=64) if quick else dict(d_model=512, num_layers=6, num_heads=8, d_ff=2048)
    build_tiny_t5(workdir / "t5", model_max_length=64, **size)
    cache_text_features(T5Encoder.from_pretrained(workdir / "t5", model_max_length=64),
                        ["a red circle moving left on a dark background"], workdir / "states.safetensors")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="JSON of the rows (default: benchmarks/results/memory.json; none with --quick)")
    ap.add_argument("--quick", action="store_true", help="a tiny pipeline, every variant in this process: seconds, for the test suite")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child is not None:
        print(json.dumps(child(json.loads(a.child), Path(a.workdir)))); return
    out = a.out if a.out or a.quick else "benchmarks/results/memory.json"
    with tempfile.TemporaryDirectory() as tmp:
        prepare(Path(tmp), a.quick)
        rows = {}
        for name, opts in VARIANTS.items():
            if a.quick:  # one process: the memory figures overlap, the code paths are the point
                rows[name] = child(opts, Path(tmp), quick=True)
            else:
                r = subprocess.run([sys.executable, __file__, "--child", json.dumps(opts), "--workdir", tmp], capture_output=True,
                                   text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
                if r.returncode: raise SystemExit(f"{name}: {r.stderr[-2000:]}")
                rows[name] = json.loads(r.stdout.strip().splitlines()[-1])
            r_ = rows[name]
            print(f"{name:28s} loaded {r_['loaded_rss_mb']:6d} MB  generation peak +{r_['generation_peak_mb']:6d} MB  "
                  f"process peak {r_['peak_rss_mb']:6d} MB  {r_['seconds']:6.1f} s  2D decoder calls {r_['decoder_calls']}", flush=True)
    base = rows["baseline (fp32)"]
    for r in rows.values():
        r["loaded_ratio"] = round(r["loaded_rss_mb"] / base["loaded_rss_mb"], 3)
        r["generation_ratio"] = round(r["generation_peak_mb"] / max(base["generation_peak_mb"], 1), 3)
    config = ("quick: STDiT3 depth 1 width 32; tiny v1.2 VAE (random); tiny T5; 32x32 x 2 frames, 1 step, 16-pixel tiles; "
              "one process (memory figures overlap)" if a.quick else
              "STDiT3 depth 4 width 384; v1.2 VAE (SDXL-type 2D + full temporal, random); random T5 d_model 512 x 6 layers; "
              "192x192 x 17 frames, 2 steps, 96-pixel VAE tiles (vae_tile_size), one thread, CPU")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(dict(config=config, variants=rows), indent=1))
    print("\n| option | loaded (MB) | ratio | generation peak (MB) | ratio | seconds | 2D decoder calls |\n|---|---|---|---|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | {r['loaded_rss_mb']} | {r['loaded_ratio']:.2f} | +{r['generation_peak_mb']} | {r['generation_ratio']:.2f} | "
              f"{r['seconds']} | {r['decoder_calls']} |")
    return rows


if __name__ == "__main__":
    main()
