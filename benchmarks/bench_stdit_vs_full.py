"""Throughput of STDiT (spatial + temporal attention) vs full space-time attention as the token count grows.

Run: python benchmarks/bench_stdit_vs_full.py [--hidden 64] [--repeats 3] [--out benchmarks/results/stdit_vs_full.json]
     python benchmarks/bench_stdit_vs_full.py --quick      # seconds: 3 small grids, 1 repeat
Both models have the same width, depth and parameters (opensora_nb.stdit.STDiT3 and FullAttentionDiT); they are
timed side by side (alternating runs, median). Prints a table of ratios and writes it as JSON.
"""
import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from opensora_nb.fastpaths import enable_cpu_fast_paths
from opensora_nb.stdit import bench_stdit_vs_full, format_bench

SIZES = [(4, 16, 16), (8, 16, 16), (16, 16, 16), (8, 32, 32), (16, 32, 32), (32, 32, 32)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--depth", type=int, default=1)
    p.add_argument("--repeats", type=int, default=None, help="timed runs per size (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="seconds: 3 small grids, 1 repeat (the test suite runs it)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/stdit_vs_full.json; --quick: the temp folder)")
    a = p.parse_args(argv)
    sizes = [(2, 4, 4), (4, 8, 8), (4, 16, 16)] if a.quick else SIZES
    repeats = a.repeats or (1 if a.quick else 3)
    rows = bench_stdit_vs_full(sizes, hidden_size=a.hidden, depth=a.depth, num_heads=a.heads, repeats=repeats,
                               progress=not a.quick, prepare=enable_cpu_fast_paths)  # both models with the CPU kernels
    setup = (f"width {a.hidden}, {a.heads} heads, depth {a.depth} (spatial+temporal vs 2 full blocks), batch 1, "
             f"fp32, CPU time on 1 thread, torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(setup)
    print(format_bench(rows))
    out = Path(a.out or (Path(tempfile.gettempdir()) / "stdit_vs_full_quick.json" if a.quick else
                         Path(__file__).parent / "results" / "stdit_vs_full.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"setup": setup, "quick": a.quick, "rows": rows}, indent=1))
    print("wrote", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
