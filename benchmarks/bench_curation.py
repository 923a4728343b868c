"""Curation quality and throughput on the sample sets: scene-cut precision/recall, camera-motion accuracy, clips/s per stage.

Quality: PySceneDetect (adaptive, v1.2's threshold 3.0) against the true cuts of `data_samples/multishot`, and the
camera-motion classifier against the labels of `data_samples/camera`. Throughput: each stage of
`opensora_nb.curation_run` timed on the camera clips (one process, `--workers` for the process pool). The CLIP and
VLM stages use the *tiny random* models (meaningless scores): their numbers time the plumbing, not a real model.

    python benchmarks/bench_curation.py [--samples data_samples] [--workers 0] [--out benchmarks/results/curation.json]
    python benchmarks/bench_curation.py --quick     # seconds: 2 multi-shot videos and 3 camera clips (the test suite runs it)
"""
import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from opensora_nb import curation as C
from opensora_nb import curation_pipeline as P
from opensora_nb import curation_run as R
from opensora_nb import scores as S
from opensora_nb.data import read_meta
from opensora_nb.samples import samples_dir


def timed(fn):
    t = time.perf_counter(); out = fn(); return out, time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", default=None, help="folder holding multishot/ and camera/ (default: data_samples)")
    p.add_argument("--workers", type=int, default=0, help="process-pool workers for row stages")
    p.add_argument("--out", default=None, help="also write the numbers as JSON here")
    p.add_argument("--quick", action="store_true", help="seconds: the first 2 multi-shot videos and 3 camera clips, same stages")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 by default: on a shared, loaded machine more threads spin and run slower)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    ms, cam = samples_dir("multishot", a.samples), samples_dir("camera", a.samples)
    if ms is None or cam is None:
        raise SystemExit("sample sets not found: build them with `opensora-nb samples --sets camera multishot`")
    res = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads", "workers": a.workers, "quick": a.quick}

    msm, cm = read_meta(ms / "meta.csv"), read_meta(cam / "meta.csv")
    if a.quick: msm, cm = msm.head(2).reset_index(drop=True), cm.head(3).reset_index(drop=True)
    cuts, dt = timed(lambda: C.evaluate_cuts(msm))
    res["scene_cuts"] = {**cuts, "videos": len(msm), "videos_per_s": len(msm) / dt}
    print(f"scene cuts on {len(msm)} multi-shot videos: precision {cuts['precision']:.3f} recall {cuts['recall']:.3f} "
          f"(tp {cuts['tp']}, fp {cuts['fp']}, fn {cuts['fn']})")
    (acc, pred), dt = timed(lambda: S.evaluate_camera(cm))
    wrong = [(t, q) for t, q in zip(cm.camera_motion, pred) if t != q]
    res["camera"] = {"accuracy": acc, "clips": len(cm), "wrong": wrong}
    print(f"camera motion on {len(cm)} clips: accuracy {acc:.3f}" + (f"  wrong: {wrong}" if wrong else ""))

    tmp = Path(tempfile.mkdtemp())
    stages = [("info", R.InfoStage(), {}), ("motion (flow + camera)", R.MotionStage(), {}), ("ocr", R.OCRStage(), {}),
              ("aes (tiny random CLIP)", R.AestheticStage("tiny"), {"batch_size": 8}),
              ("caption (tiny random LLaVA-NeXT, 16 tok)", R.CaptionStage("tiny", max_new_tokens=16), {"batch_size": 4}),
              ("match (tiny random CLIP)", R.MatchStage("tiny"), {"batch_size": 8})]
    R.AestheticStage("tiny")([{"path": cm.path[0]}])                   # load the tiny models outside the timings
    R.CaptionStage("tiny", max_new_tokens=16)([{"path": cm.path[0], "text": ""}])
    res["throughput_clips_per_s"] = {}
    df = cm[["path", "text"]]
    for i, (name, stage, kw) in enumerate(stages):
        kw = kw or {"num_workers": a.workers}          # model stages: batches in this process
        out, dt = timed(lambda: R.run_stage(df, stage, tmp / f"s{i}.csv", **kw))
        res["throughput_clips_per_s"][name] = len(df) / dt
        print(f"  {name:<40} {len(df) / dt:7.2f} clips/s  ({len(df)} clips, {dt:.1f} s, errors: {(out.error.fillna('') != '').sum()})")
    sc = msm[["path", "fps"]]
    scenes, dt = timed(lambda: R.run_stage(sc, R.SceneStage(), tmp / "scenes.csv", num_workers=a.workers))
    res["throughput_clips_per_s"]["scenes (videos)"] = len(sc) / dt
    print(f"  {'scenes (videos/s)':<40} {len(sc) / dt:7.2f} videos/s")
    clips, dt = timed(lambda: R.run_stage(scenes, R.SplitStage(tmp / "clips"), tmp / "split.csv", num_workers=a.workers))
    res["throughput_clips_per_s"]["split (ffmpeg re-encode, clips out)"] = len(clips) / dt
    print(f"  {'split (ffmpeg re-encode, clips out)':<40} {len(clips) / dt:7.2f} clips/s  ({len(clips)} clips)")
    _, dt = timed(lambda: P.write_shards(cm, tmp / "shards", shard_size=10))
    res["throughput_clips_per_s"]["shards (tar packing)"] = len(cm) / dt
    print(f"  {'shards (tar packing)':<40} {len(cm) / dt:7.2f} clips/s")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
