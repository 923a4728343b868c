"""What more compute buys in the tiny world: `opensora-nb demo --max-steps N` for several N (0.25x to 4x the default
2400 steps), each run's held-out and seen accuracies gathered into one JSON, and the scaling
figure chapter 12b shows (`opensora_nb.demo.plot_scaling`). By default 0.25x, 0.5x, 1x, 2x and 4x the default 2400
steps, the committed figure's points. Each run goes to its own folder and is skipped when its report is already there,
so an interrupted sweep continues where it stopped.

    python benchmarks/demo_scaling.py                     # ~1.5 h on a 2-core CPU (the 1x run is the default demo)
    python benchmarks/demo_scaling.py --steps 600 1200    # some points only
    python benchmarks/demo_scaling.py --quick --out /tmp/s.json   # two tiny runs (the test suite runs it)
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GROUPS = ("heldout_32x32", "heldout_32x48", "seen_32x32")


def run(steps, folder, extra):
    if (folder / "report.json").exists():
        print(f"{folder}: done before, kept")
        return
    cmd = [sys.executable, "-c", "import sys; from opensora_nb.cli import main; sys.exit(main())", "demo", "--max-steps", str(steps), "-o", str(folder), "--quiet", *extra]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def summary(folders: dict) -> dict:
    rows = []
    for steps, folder in sorted(folders.items()):
        r = json.loads((folder / "report.json").read_text())
        t = json.loads((folder / "timing.json").read_text())
        rows.append(dict(steps=steps, processes=r.get("processes", 1), train_seconds=t["train_seconds"],
                         total_seconds=t["total_seconds"], speed_ratio=r["speed_control"]["ratio"],
                         **{g: r["results"][g] for g in GROUPS}))
    return dict(rows=rows, machine=t.get("machine"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, nargs="+", default=[600, 1200, 2400, 4800, 9600])
    p.add_argument("--runs", default="outputs/scaling", help="one folder per run: RUNS/steps_N")
    p.add_argument("--out", default="nbs/images/demo/scaling.json")
    p.add_argument("--figure", default=None, help="the figure (default: next to --out, scaling.png)")
    p.add_argument("--quick", action="store_true", help="two tiny runs (3 videos, a 1-block model, 10 and 20 steps)")
    a = p.parse_args(argv)
    extra = []
    if a.quick:
        a.steps = [10, 20]
        extra = ["--videos", "3", "--depth", "1", "--hidden-size", "32", "--sampling-steps", "3", "--eval-every", "6",
                 "--processes", "1"]
        if a.runs == "outputs/scaling":
            a.runs = str(Path(a.out).with_suffix("")) + "_runs"
    folders = {s: Path(a.runs) / f"steps_{s}" for s in a.steps}
    for s, f in folders.items():
        run(s, f, extra)
    res = dict(summary(folders), quick=a.quick)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1))
    from opensora_nb.demo import plot_scaling

    fig = Path(a.figure) if a.figure else Path(a.out).with_name("scaling.png")
    plot_scaling(res, fig)
    for r in res["rows"]:
        print(r["steps"], {g: (r[g]["color_accuracy"], r[g]["shape_accuracy"], r[g]["all_correct_rate"]) for g in GROUPS})
    print(f"-> {a.out}, {fig}")


if __name__ == "__main__":
    main()
