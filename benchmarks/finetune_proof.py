"""The fine-tuning chapter's proof in the tiny world: teach the demo's trained model something it never saw.

The concept is a new motion (`up-right`, the default: diagonal tracks) or a new colour (`cyan`, `orange`). Renders a
handful of clips of it as mp4 files with captions, fine-tunes the demo's pipeline on them with LoRA and with full
fine-tuning, and judges (colour and direction, `samples.judge_clip` with the palette and motions extended by the new
ones) the new prompts and the demo's held-out prompts before and after, on the same seeds.
Also checks that the adapter loaded into a fresh pipeline reproduces the fine-tuned samples exactly.
Usage: python benchmarks/finetune_proof.py BASE_PIPELINE_DIR [--steps 300] [--out benchmarks/results/finetune_proof.json]
(BASE_PIPELINE_DIR: `opensora-nb demo -o OUT` writes OUT/pipeline).
"""
import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from opensora_nb.builders import TINY_WORLD, tiny_clip
from opensora_nb.finetune import finetune
from opensora_nb.inference import OpenSoraPipeline
from opensora_nb.io import write_video
from opensora_nb.lora import load_lora
from opensora_nb.samples import COLORS, HELDOUT, NEW_COLORS, NEW_MOTIONS, SHAPES, judge_clip, shape_caption

NEW = "up-right"
MOTIONS = ("left", "right", "up", "down")
PALETTE = COLORS | NEW_COLORS


def concept_combos(new=None):
    "(shape, colour, direction) of the new concept: every shape x colour for a motion, every shape x motion for a colour."
    new = new or NEW
    if new in NEW_MOTIONS: return [(s, c, new) for s in SHAPES for c in COLORS]
    return [(s, new, d) for s in SHAPES for d in MOTIONS]
GEN = dict(resolution="32px", num_frames=8, fps=8, num_sampling_steps=30, cfg_scale=4.0, progress=False)


def replay_combos(per_motion: int):
    "A few clips of what the model already knows (prior preservation): every shape x known motion, colours in turn, no held-out pair."
    colors = list(COLORS)
    out, i = [], 0
    for s in SHAPES:
        for d in MOTIONS + ("static",):
            for _ in range(per_motion):
                c = colors[i % len(colors)]; i += 1
                while (c, d) in HELDOUT: c = colors[i % len(colors)]; i += 1
                out.append((s, c, d))
    return out


def write_dataset(root: Path, per_combo: int, replay: int = 0, seed: int = 0) -> Path:
    "Clips of the new concept in the tiny world (the demo's tracks), plus `replay` known clips per motion, in a meta CSV."
    rows, k = ["path,text"], 0
    for shape, color, d in [c for c in concept_combos() for _ in range(per_combo)] + replay_combos(replay):
        size = 0.3 + 0.04 * ((k * 7919) % 100) / 100
        clip = tiny_clip(shape, color, d, num_frames=8, size=size, seed=seed + k, world=TINY_WORLD)
        p = root / f"clip_{k:03d}.mp4"; write_video(p, clip, fps=8)
        rows.append(f"{p.name},{shape_caption(shape, color, d)}"); k += 1
    (root / "meta.csv").write_text("\n".join(rows) + "\n")
    return root / "meta.csv"


def judge(pipe, combos, seed=1000):
    "Colour and direction accuracy of one sample per (shape, colour, direction), prompt i on seed + i."
    res = pipe([shape_caption(*c) for c in combos], seed=seed, **GEN)
    verdicts = [judge_clip(v, palette=PALETTE, motions=NEW_MOTIONS) for v in res["videos"]]
    n = len(combos)
    return dict(color=sum(v[0] == c[1] for v, c in zip(verdicts, combos)) / n,
                direction=sum(v[1] == c[2] for v, c in zip(verdicts, combos)) / n, n=n), res


def main():
    global NEW
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base"); ap.add_argument("--steps", type=int, default=300); ap.add_argument("--per-combo", type=int, default=2)
    ap.add_argument("--replay", type=int, default=2, help="known clips per (shape, motion) mixed in (prior preservation); 0: none")
    ap.add_argument("--lora-lr", type=float, default=1e-3); ap.add_argument("--full-lr", type=float, default=2e-4)
    ap.add_argument("--concept", default=NEW, choices=sorted(NEW_MOTIONS) + sorted(NEW_COLORS), help="what to teach")
    ap.add_argument("--out", default="benchmarks/results/finetune_proof.json")
    a = ap.parse_args()
    NEW = a.concept
    torch.set_num_threads(1)
    new = concept_combos()
    held = [(s, c, d) for (c, d) in HELDOUT for s in SHAPES]
    table = {}
    base = OpenSoraPipeline.from_pretrained(a.base)
    table["base"] = dict(new=judge(base, new)[0], heldout=judge(base, held)[0])
    print("base", table["base"], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "data").mkdir()
        meta = write_dataset(Path(tmp) / "data", a.per_combo, a.replay)
        for method, lr in (("lora", a.lora_lr), ("full", a.full_lr)):
            out = Path(tmp) / method
            t0 = time.perf_counter()
            pipe, rep = finetune(meta, a.base, method=method, out=out, steps=a.steps, lr=lr, seed=0, progress=False, verbose=False)
            secs = time.perf_counter() - t0
            new_acc, new_res = judge(pipe, new)
            row = dict(new=new_acc, heldout=judge(pipe, held)[0], seconds=round(secs, 1),
                       trainable=rep.get("trainable_params", rep.get("trainable")), peak_rss_mb=rep.get("peak_rss_mb"),
                       output_bytes=rep.get("adapter_bytes") or rep.get("pipeline_bytes"), lr=lr, steps=a.steps)
            if method == "lora":  # the adapter alone, in a fresh pipeline, gives the same samples
                fresh = load_lora(OpenSoraPipeline.from_pretrained(a.base), out)
                again = fresh([shape_caption(*c) for c in new], seed=1000, **GEN)
                row["adapter_reproduces_samples"] = all(torch.equal(x, y) for x, y in zip(again["videos"], new_res["videos"]))
            table[method] = row
            print(method, row, flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(dict(new_concept=NEW, new_clips=len(new) * a.per_combo, replay_clips=len(replay_combos(a.replay)),
                                           base=a.base, table=table), indent=1))
    print(f"\n| model | {NEW} colour | {NEW} direction | held-out colour | held-out direction | trainable | output | time |")
    print("|---|---|---|---|---|---|---|---|")
    for k, r in table.items():
        print(f"| {k} | {r['new']['color']:.2f} | {r['new']['direction']:.2f} | {r['heldout']['color']:.2f} | {r['heldout']['direction']:.2f} "
              f"| {r.get('trainable', '-')} | {r.get('output_bytes', '-')} | {r.get('seconds', '-')} |")


if __name__ == "__main__":
    main()
