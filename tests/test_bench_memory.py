"""benchmarks/bench_memory.py --quick: the memory benchmark runs in the suite, so it cannot go stale (issue 24 items 5, 11)."""
import importlib.util
from pathlib import Path

import torch

BENCH = Path(__file__).parents[1] / "benchmarks" / "bench_memory.py"


def test_bench_memory_quick_runs_every_option_and_tiling_really_tiles(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("bench_memory", BENCH)
    bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
    monkeypatch.chdir(tmp_path)  # --quick writes no file: nothing may appear here
    threads = torch.get_num_threads()
    try: rows = bench.main(["--quick"])
    finally: torch.set_num_threads(threads)
    assert set(rows) == set(bench.VARIANTS) and not list(tmp_path.iterdir())
    assert all(r["frames"] == bench.QUICK["frames"] for r in rows.values())
    base, micro, tiled, every = (rows[k] for k in ("baseline (fp32)", "VAE micro-batch 1", "VAE tiling", "all of them"))
    assert base["decoder_calls"] == 1 and base["tile_size"] is None
    assert micro["decoder_calls"] == bench.QUICK["frames"]  # one frame at a time
    assert tiled["tile_size"] == bench.QUICK["tile"] and tiled["decoder_calls"] == 9  # 32x32 in 16-pixel tiles: 3 x 3
    assert every["decoder_calls"] == 9 * bench.QUICK["frames"]
    # the full run asks the pipeline for its tiles (the option a user has), not for a hand-shrunk diffusers attribute
    assert bench.VARIANTS["VAE tiling"] == {"vae_tile_size": 96} and "tile_sample_min_size" not in BENCH.read_text()
    assert "| VAE tiling |" in capsys.readouterr().out
