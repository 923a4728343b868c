"""Speed benchmarks, one function per part:

  gen    sampling: fewer steps, PAB attention reuse and step skipping (chapter 11c), in the trained tiny world
         (colour / direction accuracy, single-object rate, seconds, speed ratio against the default 30 steps without
         caching) and at a mid config (STDiT3 depth 4 / width 384, random weights, 16 frames of 16x16 latent tokens,
         guidance on: speed ratio and relative L2 of the latents against the uncached 30-step run)
  train  one STDiT3 training step (forward, backward, AdamW) at a mid config, the committed layers (git HEAD) against the
         working tree's, interleaved, with the profiles' top ops: benchmarks/bench_train_step.py's `run_train_bench`
         (its own command line records benchmarks/results/train_step.json against a chosen commit)

    python benchmarks/bench_speed.py --part gen                 # -> benchmarks/results/speed_gen.json (~25 min on 2 CPU cores)
    python benchmarks/bench_speed.py --part gen --quick --out /tmp/x.json   # the same code at toy sizes, seconds
    python benchmarks/bench_speed.py --part gen --world demo --pipeline outputs/demo/pipeline --skip-mid \
        --out benchmarks/results/speed_gen_demo.json     # today's demo model (held-out judges not saturated), ~10 min

The tiny world is the pipeline `opensora-nb demo` writes (default /tmp/demo_run/demo/pipeline): held-out prompts
(samples.HELDOUT x SHAPES, 18), prompt i with seed s + i, for several seed sets s, at the demo's settings (32px, 8
frames, 8 fps, guidance 4). Timing: every configuration runs once per round and rounds repeat; the times are this
process's CPU seconds on one thread (other jobs on a shared machine barely move them; wall seconds are kept too);
reported are the median seconds and the median of the per-round ratios to the default.
"""
import argparse, copy, json, os, platform, statistics, sys, tempfile, time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from opensora_nb.cache import ChangeRecorder, SamplingCache  # noqa: E402
from opensora_nb.fastpaths import enable_cpu_fast_paths  # noqa: E402
from opensora_nb.rflow import RFlow  # noqa: E402
from opensora_nb.samples import HELDOUT, SHAPES, judge_clip, shape_caption  # noqa: E402
from opensora_nb.stdit import STDiT3, STDiT3Config  # noqa: E402

DEMO_PIPELINE = "/tmp/demo_run/demo/pipeline"
#: The options compared at every step count: nothing, PAB (its default pyramid), step skipping (one threshold), both.
STEP_CACHE = 0.1
OPTIONS = {"none": {}, "pab": dict(attention_reuse=True), "step_cache": dict(step_cache=STEP_CACHE),
           "pab+step_cache": dict(attention_reuse=True, step_cache=STEP_CACHE)}
STEPS = (5, 8, 12, 20, 30)
DEFAULT = (30, "none")


# --- judging ---
from opensora_nb.samples import count_components as _components, single_object  # noqa: F401 (defined once, in chapter 02)


def judge(videos, combos) -> dict:
    "Colour and direction accuracy (judge_clip) and the single-object rate (specks ignored, and strict) of clips against their combos."
    j = [judge_clip(v) for v in videos]
    n = len(combos)
    return dict(color_accuracy=sum(a[0] == k[1] for a, k in zip(j, combos)) / n,
                direction_accuracy=sum(a[1] == k[2] for a, k in zip(j, combos)) / n,
                single_object_rate=sum(single_object(v)[0] for v in videos) / n,
                single_object_rate_strict=sum(single_object(v, min_fraction=0)[0] for v in videos) / n)


def rel_l2(a, b) -> float: return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))


# --- the tiny world ---
def world_prompts(world: str):
    """(combos, captions, generation settings) of a prompt set: 'classic' = samples.HELDOUT x SHAPES (18) with the first
    demo's captions and settings (8 frames, guidance 4); 'demo' = the current demo's 36 held-out prompts (both shape
    sizes, `world_caption`) at its settings (32x32, 9 frames, 8 fps, guidance 3)."""
    if world == "classic":
        combos = [(s, c, d) for (c, d) in HELDOUT for s in SHAPES]
        return combos, [shape_caption(*k) for k in combos], dict(resolution="32px", num_frames=8, fps=8, cfg_scale=4.0, progress=False)
    from opensora_nb.demo import eval_prompts
    from opensora_nb.samples import WORLD_FRAMES, world_caption
    combos = eval_prompts("heldout")
    return combos, [world_caption(*k) for k in combos], dict(image_size=(32, 32), num_frames=WORLD_FRAMES, fps=8, cfg_scale=3.0,
                                                                progress=False)


def tiny_world_table(pipe, steps=STEPS, options=OPTIONS, seed_sets=(0, 100, 200), gen=None, log=print, world="classic"):
    """Every (steps, option) on the held-out prompts of `world` (see `world_prompts`): one call of all prompts per seed set
    (prompt i: seed + i), the configurations interleaved per seed set (a round). Quality over all clips; time median over
    rounds; ratio = median over rounds of default seconds / seconds; relative L2 of the latents against the default of the
    same round."""
    combos, prompts, world_gen = world_prompts(world)
    gen = gen or world_gen
    configs = [(st, name) for st in steps for name in options]
    if DEFAULT not in configs: configs.append(DEFAULT)
    pipe(prompts[:2], num_sampling_steps=2, seed=0, **gen)  # warm-up
    out = {c: dict(videos=[], seconds=[], wall=[], rel_l2=[], stats=[]) for c in configs}
    for r, s in enumerate(seed_sets):
        base = None
        order = [DEFAULT] + [c for c in configs if c != DEFAULT]  # the default first: the others compare their latents to it
        for c in order:
            w0, t0 = time.perf_counter(), time.process_time()
            res = pipe(prompts, num_sampling_steps=c[0], seed=s, **gen, **options[c[1]])
            dt, wall = time.process_time() - t0, time.perf_counter() - w0
            base = res["latents"][0] if c == DEFAULT else base
            o = out[c]
            o["videos"] += res["videos"]; o["seconds"].append(dt); o["wall"].append(wall); o["rel_l2"].append(rel_l2(res["latents"][0], base))
            o["stats"].append(res["settings"].get("cache_stats"))
            log(f"  round {r + 1}/{len(seed_sets)} steps {c[0]:>2} {c[1]:<15} {dt:6.2f}s CPU {wall:6.2f}s wall")
    rows = []
    for c in configs:
        o, d = out[c], out[DEFAULT]
        q = judge(o["videos"], combos * len(seed_sets))
        stats = [x for x in o["stats"] if x]
        rows.append(dict(steps=c[0], option=c[1], **q, seconds_median=statistics.median(o["seconds"]), seconds=o["seconds"],
                         wall_seconds=o["wall"],
                         speed_ratio=statistics.median(b / x for b, x in zip(d["seconds"], o["seconds"])),
                         rel_l2_latents=statistics.mean(o["rel_l2"]),
                         model_steps_computed=sum(x["computed_steps"] for x in stats) / len(stats) if stats else c[0],
                         attention_reused=(sum(x["attention_reused"] / (x["attention_reused"] + x["attention_computed"])
                                               for x in stats) / len(stats) if stats else 0.0)))
    return rows, len(prompts) * len(seed_sets)


def attention_changes(pipe, steps=30, seed=0, gen=None, world="classic"):
    "The relative L1 change from step to step of each kind of attention output and of the step-skipping signals (30 steps)."
    _, prompts, world_gen = world_prompts(world)
    gen = gen or world_gen
    with ChangeRecorder().attach(pipe.model) as rec:
        pipe(prompts, num_sampling_steps=steps, seed=seed, **gen)
    sched = copy.copy(pipe.scheduler); sched.num_sampling_steps = steps
    levels = [float(t.reshape(-1)[0]) / sched.num_timesteps for t in sched.sampling_timesteps(1)]
    return dict(levels=levels, attention=rec.changes, signals=rec.signals)


def recommend(rows, tol=0.05):
    "The fastest configuration whose accuracies are within `tol` of the default's and whose single-object rate is not lower."
    d = next(r for r in rows if (r["steps"], r["option"]) == DEFAULT)
    ok = [r for r in rows if r["color_accuracy"] >= d["color_accuracy"] - tol and r["direction_accuracy"] >= d["direction_accuracy"] - tol
          and r["single_object_rate"] >= d["single_object_rate"]]
    return max(ok, key=lambda r: r["speed_ratio"])


# --- the mid config ---
def mid_model(depth=4, hidden_size=384, num_heads=6, seed=0):
    "STDiT3 of the mid config with random weights: Xavier everywhere (the reference zero-initialises the temporal blocks' outputs)."
    torch.manual_seed(seed)
    m = STDiT3(STDiT3Config(depth=depth, hidden_size=hidden_size, num_heads=num_heads, caption_channels=64, model_max_length=32))
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.Linear): torch.nn.init.xavier_uniform_(mod.weight)
    return enable_cpu_fast_paths(m.eval())  # the CPU kernels of chapter 06d


def mid_config(latent=(16, 32, 32), repeats=2, depth=4, hidden_size=384, steps=30, fewer=12, log=print):
    """Sampling at the mid config with guidance 7 (one prompt, random caption states): each option at `steps`, and the
    plain sampler at `fewer` steps. Ratio: median over rounds of uncached seconds / seconds; relative L2 of the final
    latents against the uncached `steps`-step run."""
    model = mid_model(depth, hidden_size, num_heads=max(1, hidden_size // 64))
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, *latent, generator=g)
    y = torch.randn(1, 1, 32, 64, generator=g)
    T, H, W = latent
    kw = dict(height=torch.tensor([H * 8.0]), width=torch.tensor([W * 8.0]), num_frames=torch.tensor([51.0]), fps=torch.tensor([24.0]))
    configs = [(steps, name) for name in OPTIONS] + [(fewer, "none")]
    times, outs = {c: [] for c in configs}, {}
    for r in range(repeats):
        for c in configs:
            rf = RFlow(num_sampling_steps=c[0], cfg_scale=7.0, use_timestep_transform=True)
            o = OPTIONS[c[1]]
            cache = SamplingCache(o.get("attention_reuse"), o.get("step_cache")) if o else None
            t0 = time.process_time()
            with torch.no_grad():
                outs[c] = rf.sample(model, z, y=y, y_null=torch.zeros_like(y), model_kwargs=kw, progress=False, cache=cache)
            times[c].append(time.process_time() - t0)
            outs[c, "stats"] = cache.stats if cache else None
            log(f"  mid round {r + 1}/{repeats} steps {c[0]:>2} {c[1]:<15} {times[c][-1]:6.1f}s CPU")
    base = (steps, "none")
    return [dict(steps=c[0], option=c[1], seconds_median=statistics.median(times[c]), seconds=times[c],
                 speed_ratio=statistics.median(b / x for b, x in zip(times[base], times[c])),
                 rel_l2_latents=rel_l2(outs[c], outs[base]), cache_stats=outs[c, "stats"]) for c in configs]


# --- parts ---
def format_rows(rows, mid=False) -> str:
    if mid:
        lines = [f"{'steps':>5} {'option':<15} {'CPU s':>8} {'ratio':>6} {'rel L2':>7}"]
        return "\n".join(lines + [f"{r['steps']:>5} {r['option']:<15} {r['seconds_median']:>8.1f} {r['speed_ratio']:>6.2f} "
                                  f"{r['rel_l2_latents']:>7.3f}" for r in rows])
    lines = [f"{'steps':>5} {'option':<15} {'colour':>6} {'dir':>5} {'single':>6} {'strict':>6} {'CPU s':>8} {'ratio':>6} {'rel L2':>7} {'model steps':>11}"]
    return "\n".join(lines + [f"{r['steps']:>5} {r['option']:<15} {r['color_accuracy']:>6.2f} {r['direction_accuracy']:>5.2f} "
                              f"{r['single_object_rate']:>6.2f} {r['single_object_rate_strict']:>6.2f} {r['seconds_median']:>8.2f} {r['speed_ratio']:>6.2f} "
                              f"{r['rel_l2_latents']:>7.3f} {r['model_steps_computed']:>11.1f}" for r in rows])


def bench_gen(args) -> dict:
    "The generation part: the tiny-world table and the mid config -> JSON."
    from opensora_nb.inference import OpenSoraPipeline
    torch.set_num_threads(args.threads)
    report = dict(part="gen", python=platform.python_version(), torch=torch.__version__, threads=args.threads,
                  host=platform.node(), quick=args.quick, step_cache_threshold=STEP_CACHE, options=OPTIONS)
    if args.quick:  # toy sizes through the same code: a tiny random pipeline, 2 step counts, 1 round
        pipe = _toy_pipeline()
        rows, n = tiny_world_table(pipe, steps=(3, 5), seed_sets=(0,), gen=dict(image_size=(32, 32), num_frames=8, fps=8,
                                                                                 cfg_scale=4.0, progress=False), log=lambda *a: None)
        report.update(tiny_world=dict(pipeline="toy (random weights)", clips=n, rows=rows))
        report["mid"] = dict(rows=mid_config(latent=(4, 8, 8), repeats=1, depth=1, hidden_size=64, steps=6, fewer=3, log=lambda *a: None))
    else:
        if not Path(args.pipeline, "model_index.json").exists():
            raise SystemExit(f"bench_speed: no pipeline at {args.pipeline}; run `opensora-nb demo --out /tmp/demo_run/demo` first")
        pipe = OpenSoraPipeline.from_pretrained(args.pipeline)
        print(f"tiny world: {args.pipeline}, steps {STEPS} x options {list(OPTIONS)}, seed sets {args.seed_sets}", flush=True)
        t0 = time.perf_counter()
        rows, n = tiny_world_table(pipe, seed_sets=tuple(args.seed_sets), world=args.world)
        best = recommend(rows)
        report.update(tiny_world=dict(pipeline=str(args.pipeline), world=args.world, clips=n, seed_sets=args.seed_sets, rows=rows,
                                      fastest_at_equal_judged_quality=dict(steps=best["steps"], option=best["option"],
                                                                           speed_ratio=best["speed_ratio"]),
                                      seconds=time.perf_counter() - t0),
                      attention_changes=attention_changes(pipe, world=args.world))
        print(format_rows(rows)); print("fastest at equal judged quality:", report["tiny_world"]["fastest_at_equal_judged_quality"], flush=True)
        if not args.skip_mid:
            print("mid config: STDiT3 depth 4, width 384, 16 x 16x16 latent tokens, guidance 7", flush=True)
            report["mid"] = dict(depth=4, hidden_size=384, latent=[4, 16, 32, 32], tokens=16 * 16 * 16, rows=mid_config(repeats=args.mid_repeats))
            print(format_rows(report["mid"]["rows"], mid=True))
    return report


def _toy_pipeline():
    "A tiny random pipeline (the inference chapter's) for --quick."
    from opensora_nb.builders import PatchPCAAutoencoder, X0Parameterized
    from opensora_nb.inference import OpenSoraPipeline
    from opensora_nb.text import TextEncoder

    class HashText(TextEncoder):
        def __init__(self, dim=16, L=8):
            self.output_dim, self.model_max_length, self.device, self.dtype, self.name, self.y_embedder = dim, L, torch.device("cpu"), torch.float32, "hash", None
        def encode(self, prompts):
            y = torch.zeros(len(prompts), 1, self.model_max_length, self.output_dim); m = torch.zeros(len(prompts), self.model_max_length, dtype=torch.long)
            for i, p in enumerate(prompts):
                for j, w in enumerate(p.split()[: self.model_max_length]):
                    y[i, 0, j] = torch.randn(self.output_dim, generator=torch.Generator().manual_seed(sum(map(ord, w)))); m[i, j] = 1
            return dict(y=y, mask=m)
    torch.manual_seed(0)
    net = STDiT3(hidden_size=32, depth=1, num_heads=2, patch_size=(1, 1, 1), in_channels=16, caption_channels=16, model_max_length=8,
                 pred_sigma=False, input_sq_size=32)
    ae = PatchPCAAutoencoder(8, 16).fit(torch.rand(4, 3, 2, 32, 32) * 2 - 1)
    return OpenSoraPipeline(X0Parameterized(net), ae, HashText(), RFlow(num_sampling_steps=30, cfg_scale=4.0, use_timestep_transform=False))


def bench_train(args) -> dict:
    "The training part: benchmarks/bench_train_step.py's `run_train_bench` (toy sizes with --quick)."
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_train_step import run_train_bench
    return dict(part="train", **run_train_bench(quick=args.quick, threads=args.threads))


PARTS = dict(gen=bench_gen, train=bench_train)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("gen", "train", "all"), default="all")
    p.add_argument("--pipeline", default=DEMO_PIPELINE, help="the tiny-world pipeline folder (opensora-nb demo writes it)")
    p.add_argument("--seed-sets", type=int, nargs="+", default=[0, 100, 200], help="seed sets (rounds) of the tiny-world table")
    p.add_argument("--world", choices=("classic", "demo"), default="classic",
                   help="held-out prompts: 'classic' (the first demo's 18, 8 frames) or 'demo' (today's demo: 36, 9 frames, guidance 3)")
    p.add_argument("--mid-repeats", type=int, default=2)
    p.add_argument("--skip-mid", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="toy sizes, seconds (the test suite runs this)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/speed_<part>.json; --quick: the temp folder)")
    a = p.parse_args(argv)
    parts = list(PARTS) if a.part == "all" else [a.part]
    reports = {}
    for part in parts:
        r = PARTS[part](a)
        results = Path(tempfile.gettempdir()) if a.quick else ROOT / "benchmarks" / "results"  # a quick run never overwrites a recorded one
        out = Path(a.out) if a.out and len(parts) == 1 else (Path(a.out).with_name(f"{Path(a.out).stem}_{part}.json") if a.out else
                                                             results / f"speed_{part}{'_quick' if a.quick else ''}.json")
        if not r.get("skipped"):
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(r, indent=1, default=str))
            print(f"wrote {out}")
        reports[part] = r
    return reports


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
