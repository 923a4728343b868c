"""Curation (chapters 10 to 10b_pipeline): kill-and-resume, bad files as error rows, tiny random CLIP and VLM, shards, CLI, Ray.

The tiny CLIP and LLaVA models here have random weights: their scores and captions are meaningless; the tests
only check that the real code paths run and produce well-formed columns. The real models are the defaults; without
them a run stops before any work with one error (checked here with the Hugging Face hub offline and an empty cache).
"""
import importlib.util
import inspect
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from opensora_nb import captions as Cap
from opensora_nb import curation as C
from opensora_nb import curation_pipeline as P
from opensora_nb import curation_run as R
from opensora_nb import scores as S
from opensora_nb.io import write_video
from opensora_nb.samples import samples_dir

ROOT = Path(__file__).resolve().parents[1]
CURATION_MODULES = ("curation", "scores", "captions", "curation_run", "curation_pipeline")   # chapter order


def _clips(folder, motions=("pan left", "zoom in", "static"), T=16):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, m in enumerate(motions):
        p = folder / f"clip{i}.mp4"
        write_video(p, C.synthetic_camera_clip(m, T, seed=i), fps=8)
        paths.append(str(p))
    return paths


def _bad_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "garbage.mp4").write_bytes(b"this is not a video at all" * 20)
    (folder / "empty.mp4").write_bytes(b"")
    return [str(folder / "garbage.mp4"), str(folder / "empty.mp4"), str(folder / "missing.mp4")]


# ---------------------------------------------------------------- resume

SLOW_STAGE = '''
import os, time
def slow(row):
    time.sleep(0.15)
    with open(os.environ["CALLS_FILE"], "a") as f: f.write(row["path"] + "\\n")
    return {"y": 2 * int(row["x"])}
'''

RUNNER = '''
import sys
sys.path.insert(0, sys.argv[1])
import pandas as pd
from opensora_nb.curation_run import run_stage
from slowstage import slow
if __name__ == "__main__":
    meta = pd.DataFrame({"path": [f"k{i:03d}" for i in range(40)], "x": range(40)})
    run_stage(meta, slow, sys.argv[2], num_workers=2)
'''


def test_kill_and_resume(tmp_path):
    (tmp_path / "slowstage.py").write_text(SLOW_STAGE)
    (tmp_path / "runner.py").write_text(RUNNER)
    out, log = tmp_path / "out.csv", tmp_path / "out.csv.progress.jsonl"
    env = {**os.environ, "CALLS_FILE": str(tmp_path / "calls1.txt")}
    proc = subprocess.Popen([sys.executable, str(tmp_path / "runner.py"), str(tmp_path), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and log.read_text().count("\n") >= 6: break
        time.sleep(0.1)
    assert proc.poll() is None, "runner finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)                      # the runner and its worker processes, mid-run
    proc.wait()
    assert not out.exists()
    with open(log, "a") as f: f.write('{"key": "k039", "rows": [{"pa')   # a half-written last record
    n_done = len(R.load_progress(log))
    assert 6 <= n_done < 40

    env["CALLS_FILE"] = str(tmp_path / "calls2.txt")
    subprocess.run([sys.executable, str(tmp_path / "runner.py"), str(tmp_path), str(out)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    df = pd.read_csv(out)
    assert list(df.path) == [f"k{i:03d}" for i in range(40)]          # nothing lost, nothing twice, input order
    assert list(df.y) == [2 * i for i in range(40)]
    assert not log.exists()
    second = (tmp_path / "calls2.txt").read_text().split()
    assert len(second) == 40 - n_done == len(set(second))           # only the unfinished rows were redone


def test_resume_truncates_partial_line(tmp_path):
    meta = pd.DataFrame({"path": list("abcde"), "x": range(5)})
    out = tmp_path / "o.csv"
    R.run_stage(meta, lambda r: {"y": r["x"] + 1}, out, max_rows=2)
    with open(str(out) + ".progress.jsonl", "a") as f: f.write('{"key": "c", "ro')
    df = R.run_stage(meta, lambda r: {"y": r["x"] + 1}, out)
    assert list(df.path) == list("abcde") and list(df.y) == [1, 2, 3, 4, 5]
    assert R.run_stage(meta, lambda r: 1 / 0, out).y.tolist() == [1, 2, 3, 4, 5]   # finished stage: not rerun


# ---------------------------------------------------------------- bad files

def test_bad_files_become_error_rows(tmp_path):
    good = _clips(tmp_path / "v", ("pan right",))
    meta = pd.DataFrame({"path": good + _bad_files(tmp_path / "bad")})
    info = R.run_stage(meta, R.InfoStage(), tmp_path / "info.csv")
    mot = R.run_stage(info, R.MotionStage(), tmp_path / "motion.csv")
    ocr = R.run_stage(mot, R.OCRStage(), tmp_path / "ocr.csv")
    assert len(ocr) == 4 and list(ocr.path) == list(meta.path)
    err = ocr.set_index(ocr.path.map(lambda p: Path(p).name)).error.fillna("")
    assert err["clip0.mp4"] == ""
    for name in ("garbage.mp4", "empty.mp4", "missing.mp4"):
        assert err[name].startswith("info: VideoReadError") and name in err[name]
    assert "empty (0 bytes)" in err["empty.mp4"] and "no such file" in err["missing.mp4"]
    assert ocr.cmotion.iloc[0] == "pan right" and ocr.flow.iloc[0] > 1
    assert len(C.filter_meta(ocr, {"flow": (0.0, None)})) == 1


def test_scene_split_on_bad_and_good(tmp_path):
    v, cuts = C.synthetic_multishot((12, 10, 14), seed=2)
    write_video(tmp_path / "multi.mp4", v, fps=8)
    meta = pd.DataFrame({"path": [str(tmp_path / "multi.mp4")] + _bad_files(tmp_path / "bad")[:1]})
    sc = R.run_stage(meta, R.SceneStage(min_scene_len=8), tmp_path / "scenes.csv")
    assert C.scene_cuts(json.loads(sc.scenes.iloc[0])) == cuts
    sp = R.run_stage(sc, R.SplitStage(tmp_path / "clips"), tmp_path / "split.csv")
    ok = sp[sp.error.fillna("") == ""]
    assert list(ok.num_frames) == [12, 10, 14] and len(sp) == 4
    assert sp.error.fillna("").iloc[-1].startswith("scenes: VideoReadError")


# ---------------------------------------------------------------- tiny random models

def test_tiny_clip_scores(tmp_path):
    """Random tiny CLIP: the numbers are meaningless, only their form is tested."""
    paths = _clips(tmp_path / "v", ("static", "pan left"))
    rows = [{"path": p, "text": "a red circle moves left"} for p in paths]
    aes = R.AestheticStage("tiny")(rows)
    match = R.MatchStage("tiny")(rows)
    assert all(math.isfinite(a["aes"]) for a in aes) and all(math.isfinite(m["match"]) for m in match)
    sc = S.tiny_clip_scorer()
    assert sc.image_embeds(S.sample_frames(paths[0], points=(0.1, 0.9))).shape == (2, 16)
    # the LAION head keeps the reference layout: a saved state dict loads strictly, from .pth and .safetensors
    from safetensors.torch import load_file, save_file
    mlp = S.AestheticMLP(768)
    torch.save(mlp.state_dict(), tmp_path / "aes.pth")
    save_file(mlp.state_dict(), str(tmp_path / "aes.safetensors"))
    S.AestheticMLP(768).load_state_dict(torch.load(tmp_path / "aes.pth", weights_only=True), strict=True)
    S.AestheticMLP(768).load_state_dict(load_file(str(tmp_path / "aes.safetensors")), strict=True)


@pytest.mark.parametrize("arch", ["llava_next", "llava"])
def test_tiny_vlm_captioning(tmp_path, arch):
    """Random tiny LLaVA-NeXT / LLaVA through transformers: captions are random words (or empty); the path is real."""
    model, proc = Cap.tiny_vlm(arch=arch)
    model.save_pretrained(tmp_path / "vlm"); proc.save_pretrained(tmp_path / "vlm")
    cap = Cap.Captioner.from_pretrained(str(tmp_path / "vlm"), max_new_tokens=6, batch_size=2)
    paths = _clips(tmp_path / "v", ("static", "pan left", "tilt up"))
    caps = cap(paths)
    assert len(caps) == 3 and all(isinstance(c, str) for c in caps)
    assert cap(paths[:1]) == caps[:1]                       # greedy: deterministic, batch-size independent
    rows = R.CaptionStage(str(tmp_path / "vlm"), max_new_tokens=6, keep_existing=True)(
        [{"path": paths[0], "text": "kept caption"}, {"path": paths[1], "text": ""}])
    assert rows[0] == {} and isinstance(rows[1]["text"], str)


# ---------------------------------------------------------------- shards

def test_shards_read_back_by_training_dataset(tmp_path):
    from opensora_nb.data import collate_skip_none
    paths = _clips(tmp_path / "v", ("static", "pan left", "zoom out"), T=12)
    meta = pd.DataFrame({"path": paths + [str(tmp_path / "gone.mp4")], "text": ["a", "b", "c", "d"],
                         "error": ["", "", "", "info: gone"]})
    info = pd.DataFrame([C.get_info(p) for p in paths] + [{}])
    idx = P.write_shards(pd.concat([meta, info], axis=1), tmp_path / "shards", shard_size=2)
    assert len(idx) == 3 and sorted(p.name for p in (tmp_path / "shards").glob("*.tar")) == ["shard-000000.tar", "shard-000001.tar"]
    samples = list(P.iter_shard(tmp_path / "shards/shard-000000.tar"))
    assert [s["txt"] for s in samples] == ["a", "b"] and samples[0]["mp4"] == Path(paths[0]).read_bytes()
    ds = P.ShardVideoTextDataset(tmp_path / "shards/shards.csv")
    batch = collate_skip_none([ds["0-8-32-32"], ds["2-8-32-32"]])
    assert batch["video"].shape == (2, 3, 8, 32, 32) and list(batch["text"]) == ["a", "c"]


# ---------------------------------------------------------------- measured quality

def test_scene_cuts_and_camera_on_samples():
    ms, cam = samples_dir("multishot"), samples_dir("camera")
    if ms is not None:
        res = C.evaluate_cuts(C.read_meta(ms / "meta.csv"))
    else:                                                  # samples not built: synthetic multi-shot clips
        tot = [C.match_cuts(C.scene_cuts(C.detect_scenes(v, min_scene_len=8)), c)
               for v, c in (C.synthetic_multishot((18, 22, 16), seed=s) for s in range(3))]
        res = dict(precision=np.mean([t["precision"] for t in tot]), recall=np.mean([t["recall"] for t in tot]))
    assert res["precision"] >= 0.95 and res["recall"] >= 0.95
    if cam is not None:
        meta = C.read_meta(cam / "meta.csv").groupby("camera_motion").head(2)
        acc, _ = S.evaluate_camera(meta)
    else:
        acc = np.mean([S.camera_motion(C.synthetic_camera_clip(m, 16, seed=3)) == m for m in C.CAMERA_MOTIONS])
    assert acc >= 0.9


# ---------------------------------------------------------------- CLI

def test_cli_curate(tmp_path):
    v, _ = C.synthetic_multishot((12, 12, 10), seed=4)
    (tmp_path / "raw").mkdir()
    write_video(tmp_path / "raw/multi.mp4", v, fps=8)
    _bad_files(tmp_path / "raw")
    r = subprocess.run([sys.executable, "-c", "import sys; from opensora_nb.cli import main; sys.exit(main(sys.argv[1:]))",
                        "curate", str(tmp_path / "raw"), "--output", str(tmp_path / "out"), "--min-scene-len", "8",
                        "--stages", "info,scenes,split,aes,motion,ocr,filter,caption,match,score2text,shards",
                        "--filter", "aes=:", "--filter", "match=:", "--max-new-tokens", "4", "--shard-size", "2",
                        "--tiny-random-models"],
                       capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    final = pd.read_csv(tmp_path / "out/meta_final.csv")
    assert len(final) == 3 and (tmp_path / "out" / final.path[0]).exists()          # 3 shots, broken files dropped
    assert {"aes", "flow", "cmotion", "ocr", "match", "text"} <= set(final.columns)
    assert len(list((tmp_path / "out/shards").glob("*.tar"))) == 2
    bad = pd.read_csv(tmp_path / "out/meta_00_info.csv", keep_default_na=False)
    assert (bad.error != "").sum() == 2                                              # garbage + empty file
    # the log names the file each stage wrote; the shards stage writes shards/shards.csv, not a meta_XX file
    assert re.search(r"\] shards +3 rows +-> shards/shards.csv\n", r.stdout) and "meta_10_shards" not in r.stdout
    assert not (tmp_path / "out/meta_10_shards.csv").exists() and (tmp_path / "out/shards/shards.csv").exists()
    # the random tiny models were asked for by name, and the summary says so (printed and in summary.json)
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["tiny_random_models"] and summary["models"]["clip"] == summary["models"]["vlm"] == "tiny"
    assert "meaningless" in summary["warning"] and "WARNING: random tiny models" in r.stdout
    assert summary["final_rows"] == 3 and len(summary["dropped"]) == 2


def test_cli_help_and_errors(capsys):
    with pytest.raises(SystemExit) as e: P.curate_cli(["--help"])
    assert e.value.code == 0 and "--stages" in capsys.readouterr().out
    with pytest.raises(SystemExit): P.curate_cli(["/no/such/folder", "--output", "/tmp/x"])
    with pytest.raises(SystemExit): P.curate_cli([".", "--output", "/tmp/x", "--stages", "info,nonsense"])


def test_cli_meta_tools(tmp_path):
    meta = pd.DataFrame({"path": [f"/x/{i}.mp4" for i in range(6)], "text": ["a cat"] * 6,
                         "aes": [3.0, 4.6, 5.1, 6.0, 4.4, 7.0], "flow": [1.0] * 6, "cmotion": ["pan left"] * 6,
                         "num_frames": [10] * 6})
    meta.to_csv(tmp_path / "m.csv", index=False)
    assert P.curate_cli(["filter", str(tmp_path / "m.csv"), "--preset", "v1_2_stage2", "--output", str(tmp_path / "f.csv")]) == 0
    assert list(pd.read_csv(tmp_path / "f.csv").aes) == [4.6, 5.1, 6.0, 7.0]
    assert P.curate_cli(["split", str(tmp_path / "m.csv"), "--parts", "4", "-o", str(tmp_path / "parts")]) == 0
    parts = sorted((tmp_path / "parts").glob("*.csv"))
    assert len(parts) == 4
    assert P.curate_cli(["merge", *map(str, parts), str(tmp_path / "m.csv"), "--output", str(tmp_path / "g.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "g.csv")) == 6                      # duplicates of a path merged
    assert P.curate_cli(["score2text", str(tmp_path / "m.csv"), "--drop-prob", "0", "-o", str(tmp_path / "t.csv")]) == 0
    assert pd.read_csv(tmp_path / "t.csv").text[0] == "a cat aesthetic score: 3.0. motion score: 1.0. camera motion: pan left."
    r = subprocess.run(["opensora-nb", "curate", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--stages" in r.stdout


# ---------------------------------------------------------------- issue 14: the modules outside the notebooks

def test_plotting_and_reporting_functions_run_outside_notebooks(tmp_path):
    """Every exported plotting / reporting function, called once from the plain modules (no notebook `plt`)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    v, cuts = C.synthetic_multishot((10, 12), seed=1)
    scenes = C.detect_scenes(v, min_scene_len=6)
    assert C.plot_cuts(v, scenes, cuts) is not None
    cam = C.synthetic_camera_clip("pan left", 8)
    assert S.plot_flow(cam[0], S.flow_pairs(cam, [(0, 4)], size=(64, 64))[0], title="pan left") is not None
    write_video(tmp_path / "multi.mp4", v, fps=8)
    write_video(tmp_path / "pan.mp4", cam, fps=8)
    res = C.evaluate_cuts(pd.DataFrame({"path": [str(tmp_path / "multi.mp4")], "cuts": [json.dumps(cuts)]}), min_scene_len=6)
    assert res["tp"] + res["fn"] == 1
    acc, pred = S.evaluate_camera(pd.DataFrame({"path": [str(tmp_path / "pan.mp4")], "camera_motion": ["pan left"]}))
    assert len(pred) == 1 and 0 <= acc <= 1
    assert C.filter_report(pd.DataFrame({"path": ["a"], "aes": [5.0]}), preset="v1_2_stage2") == {"rows": 1, "aes": 0}
    row = {"path": str(tmp_path / "pan.mp4"), "aes": 5.1, "flow": 2.0, "cmotion": "pan left", "text": "a pan"}
    assert P.show_clip_row(row) is not None
    pytest.importorskip("ipywidgets")
    assert P.browse_clips(pd.DataFrame([row])).max == 0
    plt.close("all")


def test_ruff_finds_no_undefined_or_unused_names():
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None: pytest.skip("ruff is not installed")
    r = subprocess.run([ruff, "check", "--select", "F", "--output-format", "concise",
                        *(str(ROOT / f"opensora_nb/{m}.py") for m in CURATION_MODULES)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_curation_does_not_import_the_runner():
    """Chapter 10 comes first: no exported function of curation reaches into the later curation chapters."""
    assert not hasattr(C, "curate_cli") and "curation_run" not in Path(C.__file__).read_text()
    later = [f"opensora_nb.{m}" for m in CURATION_MODULES[1:]]
    r = subprocess.run([sys.executable, "-c", f"import sys, opensora_nb.curation; print([m for m in {later!r} if m in sys.modules])"],
                       capture_output=True, text=True, timeout=300)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr[-2000:]


def test_one_source_of_truth(tmp_path):
    from opensora_nb import data, io, samples
    assert C.CAMERA_MOTIONS is samples.CAMERA_MOTIONS
    assert not any(hasattr(C, n) for n in ("VIDEO_EXTS", "IMAGE_EXTS", "TRAIN_COLUMNS"))
    assert P.IMG_FPS is io.IMG_FPS
    for name in ("a.m4v", "b.PNG", "c.txt"): (tmp_path / name).write_bytes(b"")
    assert [Path(p).name for p in C.scan_folder(tmp_path).path] == ["a.m4v", "b.PNG"]   # io's extension lists
    write_video(tmp_path / "v.mp4", C.synthetic_camera_clip("static", 4), fps=8)
    assert set(C.get_info(tmp_path / "v.mp4")) == set(io.META_COLUMNS) - {"path", "text"}
    # read_meta: chapter 09's path resolution, plus parquet, text kept as text, and resolve=False
    meta = pd.DataFrame({"path": ["v.mp4", "/abs/x.mp4"], "text": ["None", "a cat"]})
    meta.to_csv(tmp_path / "m.csv", index=False)
    got = C.read_meta(tmp_path / "m.csv")
    assert list(got.path) == list(data.read_meta(tmp_path / "m.csv").path) == [str(tmp_path / "v.mp4"), "/abs/x.mp4"]
    assert got.text[0] == "None"
    assert list(C.read_meta(tmp_path / "m.csv", resolve=False).path) == ["v.mp4", "/abs/x.mp4"]
    if importlib.util.find_spec("pyarrow") or importlib.util.find_spec("fastparquet"):     # parquet engines are optional
        meta.to_parquet(tmp_path / "m.parquet")
        assert list(C.read_meta(tmp_path / "m.parquet").path) == list(got.path)


def test_one_meta_reader_keeps_na_words_as_captions(tmp_path):
    """Issue 24 item 9: chapter 09's `read_meta` (fine-tuning's reader) used pandas' defaults and turned the captions
    "NA", "null", "None" into missing values (fine-tuning then dropped those rows as 'no caption'), while curation's
    reader kept them. Now there is one reader; both paths see the captions, and only an empty cell is missing."""
    from opensora_nb import data, finetune
    assert C.read_meta is data.read_meta
    for n in "abcd": (tmp_path / f"{n}.png").write_bytes(b"")
    (tmp_path / "m.csv").write_text("path,text,aes\na.png,NA,5.5\nb.png,null,nan\nc.png,None,NA\nd.png,,4\n")
    for df in (data.read_meta(tmp_path / "m.csv"), C.read_meta(tmp_path / "m.csv"), data.read_meta([tmp_path / "m.csv"])):
        assert list(df.text[:3]) == ["NA", "null", "None"] and pd.isna(df.text[3]), df.text.tolist()
        assert df.aes.dtype == float and df.aes.isna().tolist() == [False, True, True, False]   # numbers: NA words missing
    got = finetune._candidates(tmp_path / "m.csv")                                            # fine-tuning's reading
    assert [(p.name, t, why is None) for p, t, why in got[:3]] == [("a.png", "NA", True), ("b.png", "null", True),
                                                                   ("c.png", "None", True)]
    assert got[3][1] is None and "no caption" in got[3][2]
    with pytest.raises(ValueError, match="no 'path' column"):
        data.read_meta(pd.DataFrame({"text": ["x"]}))


@pytest.fixture
def offline_empty_hf_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    return tmp_path / "hf_cache"


def test_real_models_by_default_and_one_error_before_any_work(tmp_path, offline_empty_hf_cache, capsys):
    assert S.CLIP_MODEL == "openai/clip-vit-large-patch14" and Cap.VLM_MODEL == "llava-hf/llava-v1.6-mistral-7b-hf"
    defaults = {k: v.default for k, v in inspect.signature(P.curate).parameters.items()}
    assert defaults["clip"] == S.CLIP_MODEL and defaults["vlm"] == Cap.VLM_MODEL
    assert R.AestheticStage().clip == R.MatchStage().clip == S.CLIP_MODEL and R.CaptionStage().vlm == Cap.VLM_MODEL
    _clips(tmp_path / "raw", ("static",))
    out = tmp_path / "out"
    assert P.curate_cli([str(tmp_path / "raw"), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("models not available") == 1 and "nothing was run" in err
    for needed in (S.CLIP_MODEL, Cap.VLM_MODEL, "HF_HUB_OFFLINE", "--aesthetic", S.AESTHETIC_HEAD_URL, "--tiny-random-models"):
        assert needed in err, needed
    assert not out.exists() or not any(out.iterdir())                     # raised before any stage ran
    with pytest.raises(SystemExit): P.curate_cli([str(tmp_path / "raw"), "--output", str(out), "--clip", "tiny"])
    # a missing folder is named as such; a folder, or a hub id in the cache, passes
    with pytest.raises(R.ModelsNotAvailable, match="folder /no/such/clip does not exist"):
        R.check_models(["match"], clip="/no/such/clip")
    (tmp_path / "clip_folder").mkdir()
    R.check_models(["match"], clip=str(tmp_path / "clip_folder"))
    snap = offline_empty_hf_cache / "models--openai--clip-vit-large-patch14" / "snapshots" / "abc"
    snap.mkdir(parents=True); (snap / "config.json").write_text("{}")
    (snap.parents[1] / "refs").mkdir(); (snap.parents[1] / "refs/main").write_text("abc")
    R.check_models(["match"])
    R.check_models(["aes", "match", "caption"], clip="tiny", vlm="tiny")   # nothing to check for the random tiny models


def test_zero_rows_say_why_with_clean_reasons(tmp_path, capsys):
    raw = tmp_path / "raw"
    _bad_files(raw)
    audio = raw / "audio_only.mp4"                                       # a real file with no video stream
    subprocess.run([C.ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "sine=d=0.5", str(audio)],
                   check=True, timeout=120)
    df = P.curate(raw, tmp_path / "out", stages=("info", "filter"), preset="v1_2_walkthrough")
    assert len(df) == 0
    printed = capsys.readouterr().out
    assert "0 rows left; why each file was dropped:" in printed
    why = json.loads((tmp_path / "out/summary.json").read_text())["why_empty"]
    assert sorted(Path(p).name for p in why) == ["audio_only.mp4", "empty.mp4", "garbage.mp4"]
    for p, reason in why.items():
        assert f"  {p}: {reason}" in printed
        assert reason.startswith("info: VideoReadError: cannot read") and "\n" not in reason
        assert "Check failed" not in reason and ".cc:" not in reason            # no decoder log text
    assert "no video stream" in why[str(audio)]
    assert C.one_line_reason("decord: [16:50:42] /src/video/video_reader.cc:151: Check failed: st_nb >= 0 "
                             "(-1381258232 vs. 0) ERROR cannot find video stream with wanted index: -1\nStack trace: ...") \
        == "decord: cannot find video stream with wanted index: -1"
    (tmp_path / "no_media").mkdir()
    assert len(P.curate(tmp_path / "no_media", tmp_path / "out2", stages=("info", "filter"))) == 0
    assert "no video or image files found" in capsys.readouterr().out
