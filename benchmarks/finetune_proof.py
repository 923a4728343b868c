"""The fine-tuning chapter's proof in the tiny world: teach the demo's trained model something it never saw.

The concept is a new motion (`up-right`, the default: diagonal tracks) or a new colour (`cyan`, `orange`). Renders a
handful of clips of it in the demo's world (`samples.world_clip`: 9 frames of 32x32, the demo's sizes and speeds) as mp4
files with captions (`world_caption`), fine-tunes the demo's pipeline on them with LoRA and with full fine-tuning, and
judges (colour and direction, `samples.judge_clip` with the palette and motions extended by the new ones) the new prompts
and the demo's held-out prompts (`demo.eval_prompts`) before and after, on the same seeds, at the demo's sampling settings.
Also checks that the adapter loaded into a fresh pipeline reproduces the fine-tuned samples exactly.

    python benchmarks/finetune_proof.py BASE_PIPELINE_DIR [--max-steps 300] [--out benchmarks/results/finetune_proof.json]
    python benchmarks/finetune_proof.py --quick     # the same code in seconds: a random base of the demo's shape, 2 steps

(BASE_PIPELINE_DIR: `opensora-nb demo -o OUT` writes OUT/pipeline.)
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from opensora_nb.demo import eval_prompts  # noqa: E402
from opensora_nb.finetune import finetune  # noqa: E402
from opensora_nb.inference import OpenSoraPipeline  # noqa: E402
from opensora_nb.io import write_video  # noqa: E402
from opensora_nb.lora import load_lora  # noqa: E402
from opensora_nb.samples import (COLORS, HELDOUT, MOTION, NEW_COLORS, NEW_MOTIONS, SHAPES, WORLD_FRAMES, WORLD_SIZES,  # noqa: E402
                                 judge_clip, render_shape_clip, world_caption, world_clip)
from opensora_nb.train import DeprecatedAlias  # noqa: E402

NEW = "up-right"
MOTIONS = ("left", "right", "up", "down")
PALETTE = COLORS | NEW_COLORS
SIZES = list(WORLD_SIZES)
#: the demo's sampling settings (chapter 12b): 32x32, 9 frames at 8 fps, guidance 3, 30 steps
GEN = dict(image_size=(32, 32), num_frames=WORLD_FRAMES, fps=8, num_sampling_steps=30, cfg_scale=3.0, progress=False)


def concept_combos(new=None):
    "(shape, colour, direction, size) of the new concept: every shape x colour for a motion, every shape x motion for a colour."
    new = new or NEW
    combos = [(s, c, new) for s in SHAPES for c in COLORS] if new in NEW_MOTIONS else [(s, new, d) for s in SHAPES for d in MOTIONS]
    return [(*k, SIZES[i % 2]) for i, k in enumerate(combos)]  # the two sizes in turn


def replay_combos(per_motion: int):
    "A few clips of what the model already knows (prior preservation): every shape x known motion, colours in turn, no held-out pair."
    colors = list(COLORS)
    out, i = [], 0
    for s in SHAPES:
        for d in MOTIONS + ("static",):
            for _ in range(per_motion):
                c = colors[i % len(colors)]; i += 1
                while (c, d) in HELDOUT: c = colors[i % len(colors)]; i += 1
                out.append((s, c, d, SIZES[i % 2]))
    return out


def concept_clip(shape, color, direction, size="small", speed=1.4, seed=0):
    """A clip of the demo's world (uint8 [9, 3, 32, 32]): `world_clip` for its own motions; a diagonal of `NEW_MOTIONS`
    (which `world_clip` does not take) with the same shape size and the same speed along each axis, its track inside the frame."""
    if direction in MOTION: return world_clip(shape, color, direction, speed, size, WORLD_FRAMES, seed=seed)
    r = WORLD_SIZES[size] * 32 / 2
    travel = speed * (WORLD_FRAMES - 1) / (32 - 2 * r - 2)  # world_clip's travel, per axis
    return render_shape_clip(shape, color, direction, WORLD_FRAMES, 32, 32, size=WORLD_SIZES[size], travel=travel, seed=seed)


def write_dataset(root: Path, per_combo: int, replay: int = 0, seed: int = 0, limit=None) -> Path:
    "Clips of the new concept in the demo's world, plus `replay` known clips per motion, in a meta CSV (`limit`: the first clips only)."
    rows = ["path,text"]
    combos = ([c for c in concept_combos() for _ in range(per_combo)] + replay_combos(replay))[:limit]
    for k, (shape, color, d, size) in enumerate(combos):
        p = root / f"clip_{k:03d}.mp4"
        write_video(p, concept_clip(shape, color, d, size, seed=seed + k), fps=8)
        rows.append(f"{p.name},{world_caption(shape, color, d, size)}")
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    return root / "meta.csv"


def judge(pipe, combos, seed=1000, **gen):
    "Colour and direction accuracy of one sample per (shape, colour, direction, size), prompt i on seed + i."
    res = pipe([world_caption(*c) for c in combos], seed=seed, **(GEN | gen))
    verdicts = [judge_clip(v, palette=PALETTE, motions=NEW_MOTIONS) for v in res["videos"]]
    n = len(combos)
    return dict(color=sum(v[0] == c[1] for v, c in zip(verdicts, combos)) / n,
                direction=sum(v[1] == c[2] for v, c in zip(verdicts, combos)) / n, n=n), res


def random_base(path: Path) -> Path:
    "A base pipeline folder of the demo's shape with random weights (the `tiny_world` preset at depth 1, the shipped world VAE, MiniLM)."
    from opensora_nb.builders import build_model, build_scheduler, build_text_encoder, build_vae, get_config
    torch.manual_seed(0)
    cfg = get_config("tiny_world", {"model.depth": 1, "model.hidden_size": 32, "model.num_heads": 2})
    pipe = OpenSoraPipeline(build_model(cfg), build_vae(cfg), build_text_encoder(cfg), build_scheduler(cfg),
                            config=dict(text_encoder=dict(cfg["text_encoder"]), vae=dict(type="tiny_v1_2"),
                                        defaults=dict(image_size=[32, 32], num_frames=WORLD_FRAMES, fps=8)))
    return pipe.save_pretrained(path)


def main(argv=None):
    global NEW
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", nargs="?", help="the base pipeline folder (`opensora-nb demo` writes OUT/pipeline); --quick: none")
    ap.add_argument("--max-steps", type=int, default=300, help="fine-tuning steps of each method")
    ap.add_argument("--steps", dest="max_steps", type=int, action=DeprecatedAlias, new="--max-steps")
    ap.add_argument("--per-combo", type=int, default=2)
    ap.add_argument("--replay", type=int, default=2, help="known clips per (shape, motion) mixed in (prior preservation); 0: none")
    ap.add_argument("--lora-lr", type=float, default=1e-3); ap.add_argument("--full-lr", type=float, default=2e-4)
    ap.add_argument("--concept", default=NEW, choices=sorted(NEW_MOTIONS) + sorted(NEW_COLORS), help="what to teach")
    ap.add_argument("--quick", action="store_true", help="seconds: a random base of the demo's shape, 4 clips, 2 steps, 2 sampling steps, "
                    "2 judged prompts of each kind")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/finetune_proof.json; --quick: the temp folder)")
    a = ap.parse_args(argv)
    if not a.base and not a.quick: ap.error("give the base pipeline folder (or --quick)")
    NEW = a.concept
    torch.set_num_threads(1)
    out_path = Path(a.out or (Path(tempfile.gettempdir()) / "finetune_proof_quick.json" if a.quick else "benchmarks/results/finetune_proof.json"))
    new, held = concept_combos(), eval_prompts("heldout")
    gen, limit, steps = {}, None, a.max_steps
    if a.quick: new, held, gen, limit, steps = new[:2], held[:2], dict(num_sampling_steps=2), 4, 2
    table = {}
    with tempfile.TemporaryDirectory() as tmp:
        base_dir = a.base or random_base(Path(tmp) / "base")
        base = OpenSoraPipeline.from_pretrained(base_dir)
        table["base"] = dict(new=judge(base, new, **gen)[0], heldout=judge(base, held, **gen)[0])
        print("base", table["base"], flush=True)
        (Path(tmp) / "data").mkdir()
        meta = write_dataset(Path(tmp) / "data", a.per_combo, a.replay, limit=limit)
        for method, lr in (("lora", a.lora_lr), ("full", a.full_lr)):
            out = Path(tmp) / method
            t0 = time.perf_counter()
            pipe, rep = finetune(meta, base_dir, method=method, out=out, steps=steps, lr=lr, seed=0, progress=False, verbose=False)
            secs = time.perf_counter() - t0
            new_acc, new_res = judge(pipe, new, **gen)
            row = dict(new=new_acc, heldout=judge(pipe, held, **gen)[0], seconds=round(secs, 1),
                       trainable=rep.get("trainable_params", rep.get("trainable")), peak_rss_mb=rep.get("peak_rss_mb"),
                       output_bytes=rep.get("adapter_bytes") or rep.get("pipeline_bytes"), lr=lr, steps=steps)
            if method == "lora":  # the adapter alone, in a fresh pipeline, gives the same samples
                fresh = load_lora(OpenSoraPipeline.from_pretrained(base_dir), out)
                again = fresh([world_caption(*c) for c in new], seed=1000, **(GEN | gen))
                row["adapter_reproduces_samples"] = all(torch.equal(x, y) for x, y in zip(again["videos"], new_res["videos"]))
            table[method] = row
            print(method, row, flush=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    n_clips = limit or len(concept_combos()) * a.per_combo + len(replay_combos(a.replay))
    out_path.write_text(json.dumps(dict(new_concept=NEW, new_clips=len(concept_combos()) * a.per_combo, replay_clips=len(replay_combos(a.replay)),
                                        clips=n_clips, quick=a.quick, base=str(a.base) if a.base else "random (--quick)",
                                        sampling=GEN | gen, table=table), indent=1))
    print(f"\n| model | {NEW} colour | {NEW} direction | held-out colour | held-out direction | trainable | output | time |")
    print("|---|---|---|---|---|---|---|---|")
    for k, r in table.items():
        print(f"| {k} | {r['new']['color']:.2f} | {r['new']['direction']:.2f} | {r['heldout']['color']:.2f} | {r['heldout']['direction']:.2f} "
              f"| {r.get('trainable', '-')} | {r.get('output_bytes', '-')} | {r.get('seconds', '-')} |")
    print(f"wrote {out_path}")
    return table


if __name__ == "__main__":
    main()
