"""One STDiT3 training step on the CPU, today's code (a git ref, default HEAD) against the working tree's, side by side.

The mid config: STDiT3 depth 4, width 384 (6 heads), patch (1, 2, 2), 4 latent channels, latent 16 frames of 32x32
(16x16 tokens per frame after patching, 4096 tokens per sample), batch 2, 120 caption tokens of 4096 channels (T5-XXL
width) of which 23 and 57 are real (mask), fp32. A step is forward + velocity MSE on the first 4 output channels +
backward + AdamW. The baseline is the package `opensora_nb` of the ref (`git archive`), imported under another name
into this process; both models get the same weights and batch (their outputs and gradients are compared first), then
steps alternate between them (median of `--steps` each, this process's CPU seconds on one thread; wall seconds kept).
torch.profiler's top ops by self CPU time are printed for one step of each. `--compile` also times `torch.compile` of
the working tree's model (compile seconds, steady-state step ratio against eager).

    python benchmarks/bench_train_step.py                 # -> benchmarks/results/train_step.json (~6 min on 1 thread)
    python benchmarks/bench_train_step.py --baseline 3308648 --compile --steps 9   # the recorded results: against the
                                                          # commit before the leaner layers of chapter 05 (issue 19)
    python benchmarks/bench_train_step.py --compile       # + torch.compile, cold (~4 min more)
    python benchmarks/bench_train_step.py --quick         # seconds: toy sizes, 2 steps (the test suite runs it)
    python benchmarks/bench_train_step.py --quick --out /tmp/t.json   # toy sizes, seconds
"""
import argparse
import atexit
import importlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MID = dict(model=dict(depth=4, hidden_size=384, num_heads=6, patch_size=(1, 2, 2), in_channels=4, caption_channels=4096,
                      model_max_length=120), batch=2, latent=(16, 32, 32), caption_lengths=(23, 57))
QUICK = dict(model=dict(depth=1, hidden_size=64, num_heads=2, patch_size=(1, 2, 2), in_channels=4, caption_channels=32,
                        model_max_length=12), batch=2, latent=(4, 8, 8), caption_lengths=(3, 9))


def baseline_package(ref: str = "HEAD"):
    """The `opensora_nb` package of git `ref`, extracted to a temp folder and imported as `_opensora_nb_baseline`
    (its modules import each other relatively, so they resolve inside it); None when git or the ref is unavailable."""
    try:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "opensora_nb"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    d = Path(tempfile.mkdtemp(prefix="bench_train_step_"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    with tarfile.open(fileobj=BytesIO(tar)) as t:
        t.extractall(d, filter="data") if sys.version_info >= (3, 12) else t.extractall(d)
    (d / "opensora_nb").rename(d / "_opensora_nb_baseline")
    sys.path.insert(0, str(d))
    try:
        return importlib.import_module("_opensora_nb_baseline.stdit")
    finally:
        sys.path.remove(str(d))


def make_batch(cfg: dict, seed: int = 1) -> dict:
    "Latent, timesteps, captions `[B, 1, L, C_txt]` with `caption_lengths` real tokens, velocity target."
    g = torch.Generator().manual_seed(seed)
    m, B, (T, H, W) = cfg["model"], cfg["batch"], cfg["latent"]
    L, C = m["model_max_length"], m["in_channels"]
    mask = torch.zeros(B, L, dtype=torch.long)
    for b, n in enumerate(cfg["caption_lengths"][:B]):
        mask[b, :n] = 1
    return dict(x=torch.randn(B, C, T, H, W, generator=g), t=torch.rand(B, generator=g) * 1000,
                y=torch.randn(B, 1, L, m["caption_channels"], generator=g), mask=mask,
                target=torch.randn(B, C, T, H, W, generator=g))


def build(stdit_module, cfg: dict, state_dict=None):
    torch.manual_seed(0)
    model = stdit_module.STDiT3(stdit_module.STDiT3Config(**cfg["model"])).train()
    try:  # the CPU kernels, swapped in as the trainer does (packages from before chapter 06d have them built in)
        importlib.import_module(stdit_module.__package__ + ".fastpaths").enable_cpu_fast_paths(model)
    except ModuleNotFoundError:
        pass
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model


def loss_of(model, batch):
    out = model(batch["x"], batch["t"], batch["y"], mask=batch["mask"], fps=24, height=256, width=256)
    return (out[:, : batch["x"].shape[1]] - batch["target"]).pow(2).mean()


def train_step(model, opt, batch):
    "Forward, velocity MSE, backward, AdamW."
    loss = loss_of(model, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def compare(a, b, batch) -> dict:
    "Max abs difference of the outputs and max relative difference of the gradients of models `a` and `b` (no step)."
    res = []
    for m in (a, b):
        m.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same caption-dropout draws
        out = m(batch["x"], batch["t"], batch["y"], mask=batch["mask"], fps=24, height=256, width=256)
        (out[:, : batch["x"].shape[1]] - batch["target"]).pow(2).mean().backward()
        res.append((out.detach(), {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}))
        m.zero_grad(set_to_none=True)
    (oa, ga), (ob, gb) = res
    rel = max(((ga[k] - gb[k]).abs().max() / ga[k].abs().max().clamp_min(1e-12)).item() for k in ga)
    return dict(output_max_abs_diff=(oa - ob).abs().max().item(), output_max_abs=oa.abs().max().item(),
                grad_max_rel_diff=rel, same_grad_keys=sorted(ga) == sorted(gb))


def top_ops(model, opt, batch, n: int = 15) -> list:
    "torch.profiler over one training step: the `n` ops with the most self CPU time."
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(model, opt, batch)
    ev = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ev)
    return [dict(op=e.key, self_cpu_ms=round(e.self_cpu_time_total / 1e3, 1),
                 share=round(e.self_cpu_time_total / total, 3), calls=e.count) for e in ev[:n]]


def format_ops(ops) -> str:
    return "\n".join(f"  {o['op'][:58]:<58} {o['self_cpu_ms']:>9.1f} ms {100 * o['share']:5.1f}% {o['calls']:>5}" for o in ops)


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def interleaved(variants: dict, steps: int, log=print) -> dict:
    "Each round runs one step of every variant (name: callable); CPU and wall seconds per step."
    times = {k: dict(cpu=[], wall=[]) for k in variants}
    for r in range(steps):
        for k, fn in variants.items():
            c, w = timed(fn)
            times[k]["cpu"].append(c)
            times[k]["wall"].append(w)
        log(f"  round {r + 1}/{steps}: " + ", ".join(f"{k} {times[k]['cpu'][-1]:.2f}s" for k in variants))
    return times


def run_train_bench(steps: int = 7, baseline: str = "HEAD", compile: bool = False, quick: bool = False,
                    threads: int = 1, top: int = 15, log=print) -> dict:
    """The benchmark (the `train` part of benchmarks/bench_speed.py calls it): a dict with the config, the equality
    of outputs and gradients, the step times of the baseline ref and the working tree, their ratio (median baseline
    CPU seconds / median working-tree CPU seconds), the profiles' top ops and, with `compile`, torch.compile's numbers."""
    from opensora_nb import stdit as new_stdit
    torch.set_num_threads(threads)
    cfg = QUICK if quick else MID
    steps = 2 if quick else steps
    batch = make_batch(cfg)
    new = build(new_stdit, cfg)
    report = dict(config=cfg, tokens_per_sample=cfg["latent"][0] * (cfg["latent"][1] // 2) * (cfg["latent"][2] // 2),
                  step="forward + velocity MSE + backward + AdamW, fp32", steps_per_variant=steps, threads=threads,
                  torch=torch.__version__, python=platform.python_version(),
                  cpu_capability=torch.backends.cpu.get_cpu_capability(), baseline_ref=baseline, quick=quick)
    models = {"working tree": new}
    old_stdit = baseline_package(baseline) if baseline else None
    if old_stdit is not None:
        models = {f"baseline ({baseline})": build(old_stdit, cfg, new.state_dict()), **models}
        report["equality"] = compare(*models.values(), batch)
        log(f"outputs/gradients against {baseline}: {report['equality']}")
    else:
        report["baseline_unavailable"] = f"no git ref {baseline!r} here" if baseline else "no baseline asked for"
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    variants = {k: (lambda m=m, o=opts[k]: train_step(m, o, batch)) for k, m in models.items()}
    for fn in variants.values():  # warm-up
        fn()
    times = interleaved(variants, steps, log)
    med = {k: statistics.median(v["cpu"]) for k, v in times.items()}
    report["times"] = {k: dict(cpu_median=med[k], wall_median=statistics.median(v["wall"]), **v) for k, v in times.items()}
    if len(models) == 2:
        base, cur = list(models)
        report["ratio"] = med[base] / med[cur]
        report["ratio_wall"] = report["times"][base]["wall_median"] / report["times"][cur]["wall_median"]
        log(f"step: {base} {med[base]:.2f}s, working tree {med[cur]:.2f}s CPU (median of {steps}): "
            f"ratio {report['ratio']:.3f} (wall {report['ratio_wall']:.3f})")
    report["profile"] = {}
    for k, m in models.items():
        report["profile"][k] = top_ops(m, opts[k], batch, top)
        log(f"top ops by self CPU time, {k}:\n{format_ops(report['profile'][k])}")
    if compile:
        report["compile"] = compile_numbers(new, opts["working tree"], batch, steps, log)
    return report


def compile_numbers(model, opt, batch, steps: int, log=print) -> dict:
    """torch.compile(model): seconds of the first (compiling) step, steady-state steps against eager, interleaved.
    Inductor's on-disk caches go to a fresh folder: a cold compile, as a training run's first one is (a second run
    of the same model reuses the cache and compiles in a fraction of the time)."""
    cache = os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_train_step_inductor_")
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    torch._dynamo.reset()
    compiled = torch.compile(model)
    try:
        c, w = timed(lambda: train_step(compiled, opt, batch))
    except Exception as e:  # no compiler, an unsupported op: the measurement is that it fails
        log(f"torch.compile failed: {type(e).__name__}: {str(e)[:300]}")
        return dict(failed=f"{type(e).__name__}: {str(e)[:300]}")
    times = interleaved({"eager": lambda: train_step(model, opt, batch), "compiled": lambda: train_step(compiled, opt, batch)},
                        steps, log)
    eager, comp = (statistics.median(times[k]["cpu"]) for k in ("eager", "compiled"))
    res = dict(inductor_cache_dir=cache, first_step_cpu_s=c, first_step_wall_s=w, compile_wall_s_estimate=w - statistics.median(times["compiled"]["wall"]),
               eager_cpu_median=eager, compiled_cpu_median=comp, ratio=eager / comp,
               break_even_steps=(w - statistics.median(times["compiled"]["wall"])) / max(eager - comp, 1e-9) if eager > comp else None,
               times=times)
    log(f"torch.compile: first step {w:.0f}s wall; steady state eager {eager:.2f}s, compiled {comp:.2f}s: ratio {eager / comp:.3f}")
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=7, help="timed steps per variant (median)")
    p.add_argument("--baseline", default="HEAD", help="git ref of today's code ('' for none)")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile of the working tree's model")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--quick", action="store_true", help="toy sizes, seconds (the test suite runs it)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/train_step.json; --quick: the temp folder)")
    a = p.parse_args(argv)
    report = run_train_bench(a.steps, a.baseline, a.compile, a.quick, a.threads, a.top)
    out = Path(a.out or (Path(tempfile.gettempdir()) / "train_step_quick.json" if a.quick else ROOT / "benchmarks" / "results" / "train_step.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
