"""Sample worlds: the judge, the ground truth of every set, the committed data_samples/, determinism and the CLI."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from opensora_nb.io import read_video, video_info
from opensora_nb.io import META_COLUMNS
from opensora_nb.samples import (CAMERA_MOTIONS, COLORS, DIRECTIONS, HELDOUT, SETS, SHAPES, build_samples,
                                 judge_clip, render_camera_clip, render_shape_clip, sample_shape_batch, samples_cli,
                                 shape_caption, shape_combinations, tree_digest)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data_samples"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------- moving shapes and the judge
def test_heldout_split():
    assert len(HELDOUT) == 6 and {c for c, _ in HELDOUT} == set(COLORS) and {d for _, d in HELDOUT} == set(DIRECTIONS)
    assert len(shape_combinations("train")) == 72 and len(shape_combinations("heldout")) == 18
    assert shape_caption("circle", "red", "left") == "a red circle moving left on a dark background"


@pytest.mark.parametrize("h,w,t", [(32, 32, 8), (64, 64, 16), (32, 64, 8), (64, 32, 12), (72, 128, 16)])
def test_judge_is_right_on_every_clean_render(h, w, t):
    wrong = [(s, c, d, seed) for s, c, d in shape_combinations() for seed in (0, 7)
             if judge_clip(render_shape_clip(s, c, d, t, h, w, seed=seed)) != (c, d)]
    assert not wrong, wrong[:5]


def test_objects_move_clearly_and_stay_inside():
    for d in DIRECTIONS:
        v = render_shape_clip("square", "white", d, 8, 32, 32, seed=3)
        mask = (v.float().sum(1) > 300)  # white pixels
        assert mask.any((1, 2)).all(), "object visible in every frame"
        ys, xs = [], []
        for m in mask:
            yy, xx = m.nonzero(as_tuple=True)
            ys.append(yy.float().mean()); xs.append(xx.float().mean())
        step = max(abs(xs[-1] - xs[0]), abs(ys[-1] - ys[0])) / 7
        assert (step > 1.5) if d != "static" else (step < 0.01), (d, step)
        edge = torch.cat([mask[:, 0], mask[:, -1], mask[:, :, 0], mask[:, :, -1]])
        assert not edge.any(), "the whole object stays inside the frame"


def test_render_is_deterministic_and_cheap():
    import time
    a = render_shape_clip("triangle", "purple", "down", 16, 64, 64, seed=5)
    assert a.shape == (16, 3, 64, 64) and a.dtype == torch.uint8
    assert torch.equal(a, render_shape_clip("triangle", "purple", "down", 16, 64, 64, seed=5))
    t0 = time.perf_counter()
    for _ in range(50): render_shape_clip("circle", "red", "left", 8, 32, 32)
    assert (time.perf_counter() - t0) / 50 < 0.05  # generous: shared CPU


def test_sample_shape_batch():
    x, caps, labels = sample_shape_batch(32, 8, 32, 32, split="heldout", seed=1)
    assert x.shape == (32, 8, 3, 32, 32) and len(caps) == 32
    assert all((c, d) in HELDOUT for _, c, d in labels)
    assert [judge_clip(v) for v in x] == [(c, d) for _, c, d in labels]


def test_judge_rejects_model_outputs_and_blank():
    with pytest.raises(TypeError, match="denormalize"):
        judge_clip(torch.zeros(3, 4, 8, 8))
    assert judge_clip(torch.full((4, 3, 16, 16), 30, dtype=torch.uint8)) == (None, None)


# ---------------------------------------------------------------- camera ground truth
def shift(a, b):
    ga, gb = a.float().mean(0), b.float().mean(0)
    r = torch.fft.fft2(gb) * torch.fft.fft2(ga).conj()
    r = torch.fft.ifft2(r / (r.abs() + 1e-9)).real
    dy, dx = np.unravel_index(int(r.argmax()), r.shape)
    h, w = r.shape
    return (dx if dx <= w // 2 else dx - w), (dy if dy <= h // 2 else dy - h)


@pytest.mark.parametrize("motion,sign", [("pan left", (1, 0)), ("pan right", (-1, 0)), ("tilt up", (0, 1)),
                                         ("tilt down", (0, -1)), ("static", (0, 0))])
def test_camera_label_convention(motion, sign):
    "Open-Sora's convention: the label names the camera's move, the content moves the other way."
    v = render_camera_clip("coffee", motion, 8, 96, 128)
    dx, dy = shift(v[0], v[-1])
    assert (int(np.sign(dx)), int(np.sign(dy))) == sign


def test_zoom_grows_or_shrinks_content():
    for motion, grows in [("zoom in", True), ("zoom out", False)]:
        v = render_camera_clip("chelsea", motion, 8, 96, 96).float()
        # zooming in magnifies: the last frame's centre crop upscaled ~ matches the first frame less than itself;
        # simpler: high-frequency energy falls when magnifying (the source is upsampled)
        def detail(f): return (f[:, 1:, :] - f[:, :-1, :]).abs().mean()
        assert (detail(v[-1]) < detail(v[0])) == grows, motion


# ---------------------------------------------------------------- the committed data_samples/
def test_samples_dir_is_the_committed_folder(tmp_path, monkeypatch):
    "One finder of the sample sets (issue 24): chapter 02's `samples_dir`, which curation uses (no copy of its own)."
    from opensora_nb import curation, samples
    from opensora_nb.samples import samples_dir
    monkeypatch.chdir(tmp_path)  # wherever the code runs from
    assert samples_dir() == DATA and samples_dir("shapes") == DATA / "shapes" and samples_dir("nope") is None
    (tmp_path / "mine" / "shapes").mkdir(parents=True); (tmp_path / "mine" / "shapes" / "meta.csv").write_text("path\n")
    assert samples_dir("shapes", root=tmp_path / "mine") == tmp_path / "mine" / "shapes"
    assert not hasattr(curation, "samples_dir") and not hasattr(samples, "samples_root")  # one finder, in chapter 02


def test_committed_size_under_10mb():
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file())
    assert 0 < total < 10 * 2**20, total


@pytest.mark.parametrize("name", SETS)
def test_meta_csv_matches_files(name):
    m = pd.read_csv(DATA / name / "meta.csv")
    assert list(m.columns[:8]) == META_COLUMNS and len(m) > 0
    for r in m.itertuples():
        info = video_info(DATA / name / r.path)  # path relative to the CSV's folder
        assert (info.num_frames, info.height, info.width) == (r.num_frames, r.height, r.width), r.path
        assert r.aspect_ratio == pytest.approx(r.height / r.width) and r.resolution == r.height * r.width
        if r.num_frames > 1: assert info.fps == pytest.approx(r.fps)


def test_sets_cover_what_bucketing_needs():
    sh = pd.read_csv(DATA / "shapes" / "meta.csv")
    ar = sh.aspect_ratio
    assert (ar < 1).any() and (ar > 1).any() and (ar == 1).any()
    assert sh.num_frames.nunique() >= 4 and sh.num_frames.max() > 102
    assert set(sh.direction) == set(DIRECTIONS) and set(sh["shape"]) == set(SHAPES) and set(sh.color) == set(COLORS)
    assert (sh.split == "heldout").sum() == 18
    assert set(pd.read_csv(DATA / "camera" / "meta.csv").camera_motion) == set(CAMERA_MOTIONS)


def test_committed_shapes_judge():
    sh = pd.read_csv(DATA / "shapes" / "meta.csv")
    for r in sh.iloc[::9].itertuples():  # 10 clips, through the codec
        assert judge_clip(read_video(DATA / "shapes" / r.path)) == (r.color, r.direction), r.path


def test_multishot_cuts_are_where_the_frames_jump():
    m = pd.read_csv(DATA / "multishot" / "meta.csv")
    for r in m.itertuples():
        v = read_video(DATA / "multishot" / r.path).float()
        cuts = json.loads(r.cuts)
        assert len(cuts) == r.num_shots - 1 and all(c >= 16 for c in np.diff([0, *cuts, r.num_frames]))
        diff = (v[1:] - v[:-1]).abs().mean((1, 2, 3))
        assert sorted((diff.topk(len(cuts)).indices + 1).tolist()) == cuts, r.path


# ---------------------------------------------------------------- determinism and the CLI
def assert_same_build(new_root, sets):
    "CSVs byte-identical; videos byte-identical, or (another FFmpeg/x264) decoding to nearly the same frames."
    new, old = tree_digest(new_root), tree_digest(DATA)
    for k in new:
        assert k in old, f"{k} is built but not committed"
        if new[k] == old[k]: continue
        assert k.endswith(".mp4"), f"{k} differs from the committed file"
        a, b = read_video(Path(new_root) / k).float(), read_video(DATA / k).float()
        assert a.shape == b.shape and (a - b).abs().mean() < 1.0, k
    assert {k for k in old if k.split("/")[0] in sets} == set(new) - {"README.md"}


def test_build_is_deterministic(tmp_path):
    "A build in this process equals the committed one, made by another process (camera + shape shots, mp4 + png)."
    sets = ("shape_images", "multishot")
    build_samples(tmp_path, sets, progress=False)
    assert_same_build(tmp_path, sets)


@pytest.mark.skipif(not os.environ.get("OPENSORA_SLOW"), reason="full rebuild (~1-3 min); set OPENSORA_SLOW=1")
def test_full_build_matches_committed(tmp_path):
    build_samples(tmp_path, progress=False)
    assert_same_build(tmp_path, SETS)


def test_cli_samples(tmp_path, capsys):
    from opensora_nb.cli import main
    out = tmp_path / "tmp"
    assert main(["samples", "--output", str(out), "--sets", "shape_images", "--quiet"]) == 0
    assert len(pd.read_csv(out / "shape_images" / "meta.csv")) == 18
    assert samples_cli(["-o", str(out), "--sets", "shape_images", "--check", "--quiet"]) == 0
    (out / "shape_images" / "meta.csv").write_text("tampered\n")
    assert samples_cli(["--output", str(out), "--sets", "shape_images", "--check", "--quiet"]) == 1
    with pytest.raises(SystemExit) as e:
        samples_cli(["--help"])
    assert e.value.code == 0 and "--output DIR, -o DIR" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("opensora-nb") is None, reason="console script not installed")
def test_console_script(tmp_path):
    r = subprocess.run(["opensora-nb", "samples", "-o", str(tmp_path / "s"), "--sets", "shape_images", "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s" / "shape_images" / "meta.csv").exists()


def test_judge_shape_reads_every_ground_truth_clip():
    """The outline judge (issue 26's first step) names shape and size right on every clean clip of the demo's world:
    every shape, colour, direction, speed and size, at both frame sizes (1080 clips)."""
    import itertools
    from opensora_nb.samples import WORLD_SIZES, WORLD_SPEEDS, judge_shape, world_clip
    wrong = []
    for k, ((H, W), s, c, d, sp, sz) in enumerate(itertools.product(((32, 32), (32, 48)), SHAPES, COLORS, DIRECTIONS,
                                                                      WORLD_SPEEDS, WORLD_SIZES)):
        got = judge_shape(world_clip(s, c, d, sp, sz, 9, H, W, seed=k))
        if got != (s, sz): wrong.append((H, W, s, c, d, sp, sz, got))
    assert not wrong, wrong[:5]
