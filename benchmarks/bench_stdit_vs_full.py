"""Throughput of STDiT (spatial + temporal attention) vs full space-time attention as the token count grows.

Run: python benchmarks/bench_stdit_vs_full.py [--hidden 64] [--repeats 3] [--out benchmarks/results/stdit_vs_full.json]
Both models have the same width, depth and parameters (opensora_nb.stdit.STDiT3 and FullAttentionDiT); they are
timed side by side (alternating runs, median). Prints a table of ratios and writes it as JSON.
"""
import argparse
import json
import platform
from pathlib import Path

import torch

from opensora_nb.stdit import bench_stdit_vs_full, format_bench

SIZES = [(4, 16, 16), (8, 16, 16), (16, 16, 16), (8, 32, 32), (16, 32, 32), (32, 32, 32)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="small grids only (seconds)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "stdit_vs_full.json"))
    a = p.parse_args(argv)
    sizes = [(2, 4, 4), (4, 8, 8), (8, 8, 8), (4, 16, 16), (8, 16, 16)] if a.quick else SIZES
    rows = bench_stdit_vs_full(sizes, hidden_size=a.hidden, depth=a.depth, num_heads=a.heads, repeats=a.repeats,
                               progress=True)
    setup = (f"width {a.hidden}, {a.heads} heads, depth {a.depth} (spatial+temporal vs 2 full blocks), batch 1, "
             f"fp32, CPU time on 1 thread, torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(setup)
    print(format_bench(rows))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"setup": setup, "rows": rows}, indent=1))
    print("wrote", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
