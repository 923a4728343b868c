"""Every exported plotting/reporting function runs outside a notebook (issue 14: `Counter`, `plt` were notebook-only names).

The list is discovered from the package (names such as plot_*, show_*, *_table, *_report), so a new reporting
function without an entry here fails `test_every_reporting_function_is_called`."""
import importlib
import json
import inspect
import re
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "opensora_nb"
PATTERN = re.compile(r"^(plot_|show_|draw_|format_|explain_|browse_)|(_table|_report|_sheet|_widget)$")
COVERED_ELSEWHERE = {  # tests/test_curation.py::test_plotting_and_reporting_functions_run_outside_notebooks
    "curation.filter_report", "curation.plot_cuts", "scores.plot_flow", "curation_pipeline.show_clip_row",
    "curation_pipeline.browse_clips"}


def discovered():
    out = []
    for p in sorted(PKG.glob("*.py")):
        if p.stem.startswith("_"): continue
        m = importlib.import_module(f"opensora_nb.{p.stem}")
        out += [f"{p.stem}.{n}" for n in getattr(m, "__all__", []) if inspect.isfunction(getattr(m, n)) and PATTERN.search(n)]
    return out


def _video(T=4, H=16, W=16):
    return (torch.rand(T, 3, H, W) * 255).to(torch.uint8)


def _bench_rows():
    return [dict(grid="2x4x4", tokens=32, stdit_s=0.01, full_s=0.012, speedup=1.2, pair_ratio=1.5),
            dict(grid="4x8x8", tokens=256, stdit_s=0.05, full_s=0.1, speedup=2.0, pair_ratio=4.0)]


def _report():
    q = dict(color_accuracy=1.0, direction_accuracy=0.5, single_object_rate=1.0, n=6)
    results = {f"{k}_{sz}": q for k in ("heldout_32x32", "heldout_32x48") for sz in ("small", "large")} | {"seen_32x32": q}
    results["heldout_32x32"] = dict(q, shape_accuracy=0.5, size_accuracy=1.0, all_correct_rate=0.25)  # the outline judge's line
    curation = dict(raw_videos=2, clips_after_scene_cuts=20, kept=18, dropped_per_rule={"fg": 2}, kept_by_truth={"shot": 18},
                    kept_spanning_two_shots=0)
    return dict(num_params=1.3e6, steps=20, seed=0, results=results, curation=curation,
                speed_control=dict(asked_scores=[5.0, 20.0], ratio=2.0), vae_reconstruction_psnr_heldout={"32x32": 32.0, "32x48": 32.0},
                i2v_first_frame_psnr=30.0, i2v_judged=dict(judged=("red", "up")), extension_judged=dict(judged=("red", "up")),
                loop_first_last_psnr=25.0, autoencoder="the VAE", captions="world", text_encoder="MiniLM")


def calls(tmp_path):
    from opensora_nb import buckets, demo, inference, io, masks, stdit, train
    meta = buckets.synthetic_meta(50)
    return {
        "buckets.opensora_table": lambda: buckets.opensora_table(256 * 256),
        "buckets.bucket_table": lambda: buckets.bucket_table(meta, buckets.BUCKET_PRESETS["v1_2_stage1"]),
        "buckets.explain_bucket": lambda: buckets.explain_bucket(51, 240, 426, buckets.BUCKET_PRESETS["v1_2_stage1"]),
        "demo.contact_sheet": lambda: demo.contact_sheet([_video(), _video()], ["a", "b"], tmp_path / "sheet.png"),
        "demo.readable_report": lambda: demo.readable_report(_report(), dict(total_seconds=60, train_seconds=40, steps_per_second=0.5)),
        "demo.animated_grid": lambda: demo.animated_grid([_video(), _video()], tmp_path / "grid.gif"),
        "demo.plot_scaling": lambda: demo.plot_scaling(json.loads((ROOT / "nbs/images/demo/scaling.json").read_text()),
                                                       tmp_path / "scaling.png"),
        "inference.latency_table": lambda: inference.latency_table([dict(frames=4, seconds=0.1)]),
        "io.show_frames": lambda: io.show_frames(_video(), n=2, title="t"),
        "io.show_video": lambda: io.show_video(_video()),
        "masks.draw_mask_strategy": lambda: masks.draw_mask_strategy("0", 5),
        "masks.mask_strategy_widget": lambda: masks.mask_strategy_widget(),
        "stdit.format_bench": lambda: stdit.format_bench(_bench_rows()),
        "stdit.plot_bench": lambda: stdit.plot_bench(_bench_rows()),
        "train.plot_stage_losses": lambda: train.plot_stage_losses([dict(stage=0, step=1, loss=1.0), dict(stage=1, step=2, loss=0.5)]),
    }


def test_every_reporting_function_is_called(tmp_path):
    missing = set(discovered()) - set(calls(tmp_path)) - COVERED_ELSEWHERE
    assert not missing, f"add these to tests/test_reporting.py: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(calls(Path("."))))
def test_reporting_function_runs(name, tmp_path):
    import matplotlib.pyplot as plt
    out = calls(tmp_path)[name]()
    assert out is not None
    plt.close("all")
