"""decord vs PyAV decode speed, measured side by side in one run.

Writes a test clip (a slow pan over scikit-image's astronaut photograph, H.264 yuv420p) into a temporary folder,
then times `opensora_nb.io.read_video` with each backend on it. The repeats are interleaved (decord, PyAV, PyAV,
decord, ...) so that load from other processes on a shared machine slows both alike; the ratio of the medians is
printed. Two workloads: decoding every frame, and Open-Sora's training read (16 frames, frame_interval 3, random start).

    python benchmarks/bench_decode.py [--frames 96] [--height 240] [--width 426] [--repeats 7] [--out results.json]
    python benchmarks/bench_decode.py --quick      # seconds: 20 frames of 64x96, 1 repeat (the test suite runs it)

Measured on the 2-core CPU machine this was written on, shared with other jobs (load average ~8), decord 0.6.0,
PyAV 18.1 (thread_type AUTO):
    96 frames 240x426, all frames:     decord 0.060 s   PyAV 0.097 s   PyAV/decord = 1.62x
    96 frames 240x426, 16 x interval 3: decord 0.028 s   PyAV 0.028 s   PyAV/decord = 1.00x
    48 frames 144x256, all frames:     decord 0.012 s   PyAV 0.035 s   PyAV/decord = 2.84x
    48 frames 144x256, 16 x interval 3: decord 0.010 s   PyAV 0.013 s   PyAV/decord = 1.25x
A sampled read gains little from decord's seeking on short clips: with one keyframe per clip (x264's default
GOP is 250 frames) every seek decodes from frame 0 anyway.
"""
import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def make_clip(frames, height, width):
    "A pan across a real photograph: texture that H.264 has to work for (a flat synthetic clip would flatter both)."
    import skimage.data
    img = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float()[None]
    out = []
    for t in range(frames):
        shift = -0.3 + 0.6 * t / max(frames - 1, 1)
        theta = torch.tensor([[0.6, 0, shift], [0, 0.6 * height / width, 0]], dtype=torch.float32)[None]
        grid = F.affine_grid(theta, (1, 3, height, width), align_corners=False)
        out.append(F.grid_sample(img, grid, align_corners=False)[0])
    return torch.stack(out).round().clamp(0, 255).to(torch.uint8)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=None, help="default 96 (--quick: 20)")
    p.add_argument("--height", type=int, default=None, help="default 240 (--quick: 64)")
    p.add_argument("--width", type=int, default=None, help="default 426 (--quick: 96)")
    p.add_argument("--repeats", type=int, default=None, help="default 7 (--quick: 1)")
    p.add_argument("--quick", action="store_true", help="seconds: 20 frames of 64x96, 1 repeat")
    p.add_argument("--out", default=None, help="also write the medians as JSON here")
    a = p.parse_args(argv)
    for k, full, quick in (("frames", 96, 20), ("height", 240, 64), ("width", 426, 96), ("repeats", 7, 1)):
        if getattr(a, k) is None: setattr(a, k, quick if a.quick else full)

    from opensora_nb.io import BACKENDS, read_video, write_video
    if not {"decord", "av"} <= set(BACKENDS):
        raise SystemExit(f"need both decord and PyAV installed, found {BACKENDS}")
    with tempfile.TemporaryDirectory() as d:
        path = write_video(Path(d) / "bench.mp4", make_clip(a.frames, a.height, a.width), fps=24)
        print(f"clip: {a.frames} frames {a.height}x{a.width} H.264, {path.stat().st_size / 1e3:.0f} kB; "
              f"{a.repeats} interleaved repeats, median seconds")
        workloads = {
            "all frames": dict(),
            f"{min(16, a.frames)} frames, interval {max(1, min(3, a.frames // 16))}":
                dict(num_frames=min(16, a.frames), frame_interval=max(1, min(3, a.frames // 16))),
        }
        rows = []
        for name, kw in workloads.items():
            times = {"decord": [], "av": []}
            for r in range(a.repeats + 1):
                order = ("decord", "av") if r % 2 == 0 else ("av", "decord")
                for b in order:
                    t0 = time.perf_counter()
                    v = read_video(path, backend=b, rng=r, **kw)
                    dt = time.perf_counter() - t0
                    if r > 0: times[b].append(dt)  # repeat 0 warms caches and imports
            md, ma = statistics.median(times["decord"]), statistics.median(times["av"])
            print(f"{name:>22}: decord {md:.4f} s   PyAV {ma:.4f} s   PyAV/decord = {ma / md:.2f}x   ({tuple(v.shape)})")
            rows.append(dict(workload=name, decord_s=md, av_s=ma, ratio=ma / md, shape=list(v.shape)))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(dict(frames=a.frames, height=a.height, width=a.width, repeats=a.repeats, quick=a.quick,
                                               rows=rows), indent=1))
    return rows


if __name__ == "__main__":
    main()
