"""Both cores for the demo: one training step of the demo's STDiT3 (chapter 12b: the `tiny_world` preset, 1.3M
parameters) on one thread, on two threads, and as two data-parallel processes of one thread each (half the batch each,
gradients all-reduced over gloo by torch's DistributedDataParallel, as the training engine's `ddp` plugin does),
side by side in one run. Prints steps per second and the ratios against one thread, for a video bucket (9 frames of
32x32: latents 4x3x8x8, batch 32) and an image bucket (1 frame, batch 64), with the CPU, its vector extensions and a
single-thread float32 matrix-product rate, so a reader can place their own machine.

    python benchmarks/bench_demo_cores.py               # -> benchmarks/results/demo_cores.json (~1 min)
    python benchmarks/bench_demo_cores.py --steps 5     # quicker
    python benchmarks/bench_demo_cores.py --quick --out /tmp/c.json   # 2 steps (the test suite runs it)
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BUCKETS = {"t9_32x32": (32, 3), "img_32x32": (64, 1)}  # name -> (batch, latent frames)


def build(seed=0):
    from opensora_nb.builders import build_model, get_config
    torch.manual_seed(seed)
    cfg = get_config("tiny_world", {})
    return build_model(cfg).train()


def batch(B, T, seed=1):
    g = torch.Generator().manual_seed(seed)
    return dict(x=torch.randn(B, 4, T, 8, 8, generator=g), t=torch.rand(B, generator=g) * 1000,
                y=torch.randn(B, 1, 32, 384, generator=g), mask=torch.ones(B, 32, dtype=torch.long),
                target=torch.randn(B, 4, T, 8, 8, generator=g))


def step(model, opt, b):
    out = model(b["x"], b["t"], y=b["y"], mask=b["mask"], fps=8, height=32, width=32)
    loss = (out[:, :4] - b["target"]).pow(2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def time_steps(model, b, steps):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    step(model, opt, b)  # warm-up
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter(); step(model, opt, b); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _ddp_worker(rank, world, init, B, T, steps, q):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    from torch.nn.parallel import DistributedDataParallel as DDP
    model = DDP(build())
    b = batch(B // world, T, seed=1 + rank)
    dist.barrier()
    t = time_steps(model, b, steps)
    if rank == 0: q.put(t)
    dist.destroy_process_group()


def ddp_step_seconds(B, T, steps, world=2):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    with tempfile.TemporaryDirectory() as d:
        procs = [ctx.Process(target=_ddp_worker, args=(r, world, f"file://{d}/init", B, T, steps, q)) for r in range(world)]
        for p in procs: p.start()
        t = q.get(timeout=600)
        for p in procs: p.join()
    return t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="2 steps a setting: checks the script runs (the numbers mean little)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/demo_cores.json"))
    a = ap.parse_args(argv)
    if a.quick: a.steps = 2
    from opensora_nb.demo import machine_info
    res = dict(machine=machine_info(), load_average_before=os.getloadavg(), steps=a.steps, quick=a.quick, buckets={})
    for name, (B, T) in BUCKETS.items():
        r = {}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            r[f"threads_{threads}_s"] = time_steps(build(), batch(B, T), a.steps)
        torch.set_num_threads(1)
        r["processes_2_s"] = ddp_step_seconds(B, T, a.steps)
        r["speedup_threads_2"] = r["threads_1_s"] / r["threads_2_s"]
        r["speedup_processes_2"] = r["threads_1_s"] / r["processes_2_s"]
        res["buckets"][name] = r
        print(name, {k: round(v, 4) for k, v in r.items()}, flush=True)
    res["load_average_after"] = os.getloadavg()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res["machine"]))


if __name__ == "__main__":
    main()
