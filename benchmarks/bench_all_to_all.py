"""Sequence parallelism's all-to-alls: bytes and time per spatial block vs sequence length, 2 processes.

For each sequence length S (tokens of one frame, the spatial attention's sequence) every rank holds S/2 tokens at
width 1152 with 16 heads (STDiT3-XL/2). One spatial block's forward exchanges four tensors (13_parallel):
qkv [S/2, 3, 16, 72] -> [S, 3, 8, 72], the attention output back, the cross-attention queries and their output.
Timed with `opensora_nb.dist.all_to_all` (median of the repeats), next to the attention the exchange enables
(SDPA over S tokens with 8 heads). Run with torchrun; rank 0 writes the JSON:

    torchrun --standalone --nproc_per_node 2 benchmarks/bench_all_to_all.py [--out benchmarks/results/all_to_all.json]
    torchrun --standalone --nproc_per_node 2 benchmarks/bench_all_to_all.py --quick   # seconds: 2 short lengths, 2 repeats
"""
import argparse
import json
import tempfile
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from opensora_nb.dist import all_to_all, init_distributed


def timed(fn, repeats):
    ts = []
    for _ in range(repeats):
        dist.barrier()
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="seconds: 2 short lengths, 2 repeats (the test suite runs it)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/all_to_all.json; --quick: the temp folder)")
    args = p.parse_args(argv)
    env = init_distributed(sp_size=2)
    if env.world_size != 2: raise SystemExit("run with torchrun --nproc_per_node 2")
    torch.set_num_threads(1)
    D, heads, P = 1152, 16, env.world_size
    hd, g = D // heads, None  # None: the whole world (2 ranks) is the sp group
    lengths = [128, 512] if args.quick else [256, 1024, 4096, 16384]
    repeats = 2 if args.quick else 5
    out = Path(args.out or (Path(tempfile.gettempdir()) / "all_to_all_quick.json" if args.quick else
                            Path(__file__).parent / "results" / "all_to_all.json"))
    rows = []
    for S in lengths:
        n = S // P
        qkv, q = torch.randn(1, n, 3, heads, hd), torch.randn(1, n, heads, hd)
        back = torch.randn(1, S, heads // P, hd)
        def exchange():
            with torch.no_grad():
                all_to_all(qkv, g, 3, 1); all_to_all(back, g, 1, 2); all_to_all(q, g, 2, 1); all_to_all(back, g, 1, 2)
        qh = torch.randn(1, heads // P, S, hd)
        def attend():
            with torch.no_grad(): F.scaled_dot_product_attention(qh, qh, qh)
        exchange(); attend()
        t_x, t_a = timed(exchange, repeats), timed(attend, repeats)
        sent = sum(t.numel() * t.element_size() for t in (qkv, back, q, back)) * (P - 1) / P
        rows.append(dict(tokens=S, tokens_per_rank=n, sent_mb=sent / 1e6, all_to_all_ms=1e3 * t_x, attention_ms=1e3 * t_a,
                         gb_per_s=sent / t_x / 1e9))
        if env.is_main: print(rows[-1], flush=True)
    if env.is_main:
        setup = dict(processes=P, backend=env.backend, width=D, heads=heads, dtype="float32", threads_per_rank=1,
                     repeats=repeats, torch=torch.__version__, machine=platform.machine(), cpus=__import__("os").cpu_count(),
                     quick=args.quick)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(dict(setup=setup, rows=rows), indent=1))
        print("wrote", out)
    dist.barrier()


if __name__ == "__main__":
    main()
