"""Every benchmark script's `--quick` form, run as a user runs it (a subprocess, one torch thread, the CPU), so that none can
go stale unseen (issue 24 item 11): it must finish, and its JSON must hold numbers the run computed, consistent with each
other. (benchmarks/bench_memory.py has its own test.) The scripts start together, `OPENSORA_BENCH_JOBS` at a time
(default: the machine's CPU count), and each test waits for its own; most of a quick run's time is importing the package.
"""
import json
import math
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
B = "benchmarks/"
TORCHRUN = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
#: name -> the command after the interpreter (each gets `--out FILE`, bench_latency `--json FILE`)
QUICK = {  # the longest first: they start first when the runs share the machine
    "all_to_all": TORCHRUN + [B + "bench_all_to_all.py", "--quick"],
    "gpu_check": [B + "gpu_check.py", "--quick"],
    "finetune_proof": [B + "finetune_proof.py", "--quick"],
    "speed": [B + "bench_speed.py", "--part", "gen", "--quick"],
    "latency": [B + "bench_latency.py", "--quick"],
    "curation": [B + "bench_curation.py", "--quick"],
    "train_step": [B + "bench_train_step.py", "--quick"],
    "decode": [B + "bench_decode.py", "--quick"],
    "stdit_vs_full": [B + "bench_stdit_vs_full.py", "--quick"],
    "demo_cores": [B + "bench_demo_cores.py", "--quick"],
    "demo_scaling": [B + "demo_scaling.py", "--quick"],
}


def test_every_script_has_a_quick_run():
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py")} - {"bench_memory.py"}
    assert scripts == {next(a for a in cmd if a.startswith(B))[len(B):] for cmd in QUICK.values()}
    for name in scripts: assert "--quick" in (ROOT / "benchmarks" / name).read_text(), name


def _run(name, out):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "MPLBACKEND": "Agg", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, *QUICK[name], "--json" if name == "latency" else "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return proc, (json.loads(out.read_text()) if proc.returncode == 0 and out.exists() else None)


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    "{name: future of (process, report)} for the quick runs the session selected, started together."
    picked = {item.callspec.params["name"] for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec") and "name" in item.callspec.params}
    wanted = [n for n in QUICK if n in picked]
    d = tmp_path_factory.mktemp("bench")
    pool = ThreadPoolExecutor(max_workers=max(1, int(os.environ.get("OPENSORA_BENCH_JOBS", os.cpu_count() or 1))))
    futures = {n: pool.submit(_run, n, d / f"{n}.json") for n in wanted}
    yield futures
    pool.shutdown(wait=True)


def near(a, b, rel=1e-6): return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def check_all_to_all(r):
    assert r["setup"]["processes"] == 2 and r["setup"]["quick"] and [x["tokens"] for x in r["rows"]] == [128, 512]
    for x in r["rows"]:
        assert x["tokens_per_rank"] * 2 == x["tokens"] and x["all_to_all_ms"] > 0 and x["attention_ms"] > 0
        assert near(x["gb_per_s"], x["sent_mb"] * 1e6 / (x["all_to_all_ms"] / 1e3) / 1e9)


def check_demo_cores(r):
    assert r["quick"] and r["steps"] == 2 and set(r["buckets"]) == {"t9_32x32", "img_32x32"}
    assert r["machine"]["matmul_gflops_1thread"] > 0 and r["machine"]["cores"] >= 1
    for x in r["buckets"].values():
        assert x["threads_1_s"] > 0 and x["threads_2_s"] > 0 and x["processes_2_s"] > 0
        assert near(x["speedup_threads_2"], x["threads_1_s"] / x["threads_2_s"])
        assert near(x["speedup_processes_2"], x["threads_1_s"] / x["processes_2_s"])


def check_demo_scaling(r):
    assert r["quick"] and [x["steps"] for x in r["rows"]] == [10, 20] and r["machine"]["matmul_gflops_1thread"] > 0
    for x in r["rows"]:
        assert x["processes"] == 1 and x["train_seconds"] > 0
        for g in ("heldout_32x32", "heldout_32x48", "seen_32x32"):
            assert 0 <= x[g]["shape_accuracy"] <= 1 and 0 <= x[g]["all_correct_rate"] <= x[g]["color_accuracy"]


def check_curation(r):
    s, c = r["scene_cuts"], r["camera"]
    assert r["quick"] and s["videos"] == 2 and c["clips"] == 3 and 0 <= s["precision"] <= 1 and 0 <= s["recall"] <= 1
    assert near(s["precision"], s["tp"] / max(s["tp"] + s["fp"], 1)) and near(s["recall"], s["tp"] / max(s["tp"] + s["fn"], 1))
    assert near(c["accuracy"], 1 - len(c["wrong"]) / c["clips"])
    assert len(r["throughput_clips_per_s"]) == 9 and all(v > 0 for v in r["throughput_clips_per_s"].values())


def check_decode(r):
    assert r["quick"] and [x["shape"] for x in r["rows"]] == [[20, 3, 64, 96], [16, 3, 64, 96]]
    for x in r["rows"]: assert x["decord_s"] > 0 and near(x["ratio"], x["av_s"] / x["decord_s"])


def check_latency(r):
    rows = r["rows"]
    assert [(x["frames"], x["height"], x["width"]) for x in rows] == [(5, 32, 32), (9, 32, 32), (5, 32, 64), (9, 64, 64)]
    assert all(x["seconds"] > 0 and x["steps"] == 2 and x["params"] == rows[0]["params"] for x in rows)
    assert r["fit"]["r2"] <= 1 and r["extrapolation"]["tokens"] > 0 and r["extrapolation"]["seconds_here"] > 0


def check_speed(r):
    rows = r["tiny_world"]["rows"]
    assert {(x["steps"], x["option"]) for x in rows} >= {(3, "none"), (5, "pab+step_cache"), (30, "none")}
    assert all(0 <= x["color_accuracy"] <= 1 and x["seconds_median"] > 0 and x["speed_ratio"] > 0 for x in rows)
    assert next(x for x in rows if (x["steps"], x["option"]) == (30, "none"))["rel_l2_latents"] == 0
    assert {x["option"] for x in r["mid"]["rows"]} == {"none", "pab", "step_cache", "pab+step_cache"}
    for x in rows: assert near(x["seconds_median"], statistics.median(x["seconds"]))


def check_stdit_vs_full(r):
    assert r["quick"] and [x["grid"] for x in r["rows"]] == ["2x4x4", "4x8x8", "4x16x16"]
    for x in r["rows"]:
        T, H, W = map(int, x["grid"].split("x"))
        assert x["tokens"] == T * H * W and near(x["speedup"], x["full_s"] / x["stdit_s"])


def check_train_step(r):
    assert r["quick"] and r["steps_per_variant"] == 2 and r["tokens_per_sample"] == 4 * 4 * 4
    t = r["times"]["working tree"]
    assert len(t["cpu"]) == 2 and near(t["cpu_median"], statistics.median(t["cpu"])) and r["profile"]["working tree"]
    if "equality" in r:  # the committed layers (git HEAD) against the working tree's: the same outputs and gradients
        e = r["equality"]
        assert e["same_grad_keys"] and e["output_max_abs_diff"] < 1e-4 and e["grad_max_rel_diff"] < 1e-4 and r["ratio"] > 0
    else: assert r["baseline_unavailable"]


def check_finetune_proof(r):
    t = r["table"]
    assert r["quick"] and r["clips"] == 4 and r["new_concept"] == "up-right" and set(t) == {"base", "lora", "full"}
    assert all(t[k]["new"]["n"] == 2 and t[k]["heldout"]["n"] == 2 for k in t)
    assert t["lora"]["adapter_reproduces_samples"] is True and t["lora"]["steps"] == t["full"]["steps"] == 2
    assert 0 < t["lora"]["trainable"] < t["full"]["trainable"] and t["lora"]["output_bytes"] < t["full"]["output_bytes"]


def check_gpu_check(r):
    "The CPU path of the GPU check (issue 24: the figures it computes, not the published ones it quotes)."
    assert r["mode"] == "tiny" and r["device"] == "cpu" and r["total_seconds"] > 0 and "CPU" in r["ran_on"]
    s = r["sections"]
    assert set(s) == {"sdpa", "stdit", "pipeline", "vae", "train", "plugins"}
    for name, sec in s.items(): assert "error" not in sec, (name, sec.get("traceback"))
    assert s["sdpa"]["self_attention"]["backends"]["MATH"] == "ok"
    for d in s["stdit"]["sizes"].values():  # latent = v1.2's 4x time, 8x space; tokens after 2x2 patches
        T, H, W = d["pixels"]
        assert d["latent"] == [(T - 1) // 4 + 1, H // 8, W // 8] and d["tokens_per_sample"] == d["latent"][0] * (H // 16) * (W // 16)
        assert near(d["seconds_median"], statistics.median(d["seconds"]))
    p = s["pipeline"]
    base = p["runs"]["32x32_17f"]
    assert base["video_shape"] == [17, 3, 32, 32] and base["latent"] == [5, 8, 8] and base["seconds"] > 0
    for name, o in p["options"].items():  # each option's ratio is the default's time over its own; rel L2 against the default
        assert near(o["ratio"], base["seconds"] / o["seconds"]) and 0 <= o["rel_l2_latents"] < 1, name
        st = o["cache_stats"]
        if st is not None and st["skipped_steps"] == 0 and st["attention_reused"] == 0: assert o["rel_l2_latents"] == 0, name
    assert p["options"]["pab"]["cache_stats"]["attention_reused"] > 0 and p["options"]["fewer_steps"]["steps"] == 2
    assert s["vae"]["output_shape"] == [1, 3, 17, 32, 32] and s["vae"]["latent"] == [5, 8, 8]
    t = s["train"]  # the CPU has no ZeRO: plain AdamW, and it says why
    assert t["path"] in ("booster_zero2_bf16", "plain_adamw") and (t["path"] == "booster_zero2_bf16" or t["fallback_reason"])
    assert t["finite"] == all(math.isfinite(x) for x in t["losses"]) and t["finite"] and len(t["losses"]) == len(t["step_seconds"])
    assert near(t["step_seconds_median"], statistics.median(t["step_seconds"]))
    pl = s["plugins"]  # issue 25: ddp and fsdp2 in 2 gloo ranks; fsdp2's per-rank model states are half of ddp's
    assert pl["world_size"] == 2 and pl["backend"] == "gloo" and set(pl["plugins"]) == {"ddp", "fsdp2"}
    for name, d in pl["plugins"].items():
        assert len(d["per_rank"]) == 2 and all(r["finite"] for r in d["per_rank"]), (name, d)
        assert all(near(b, r["state_bytes_total"] / pl["params"]) for b, r in zip(d["state_bytes_per_param"], d["per_rank"]))
    assert abs(max(pl["plugins"]["ddp"]["state_bytes_per_param"]) - 16) < 0.1
    assert near(pl["fsdp2_over_ddp_state_bytes"], max(pl["plugins"]["fsdp2"]["state_bytes_per_param"]) / max(pl["plugins"]["ddp"]["state_bytes_per_param"]))
    assert abs(pl["fsdp2_over_ddp_state_bytes"] - 0.5) < 0.02


@pytest.mark.parametrize("name", list(QUICK))
def test_quick_run(name, runs):
    proc, report = runs[name].result()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report is not None, f"{name}: no JSON written\n{proc.stdout[-2000:]}"
    globals()[f"check_{name}"](report)
    if name == "gpu_check": assert "gpu_check (tiny)" in proc.stdout
    if name == "demo_scaling": assert (Path(proc.args[-1]).with_name("scaling.png")).stat().st_size > 1000


# --- the speed benchmark's judge (imported from the script, as its table uses it) ---
def _bench_speed():
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_speed", ROOT / "benchmarks" / "bench_speed.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("scipy", [True, False])
def test_single_object_judge(scipy, monkeypatch):
    b = _bench_speed()
    if not scipy: monkeypatch.setitem(sys.modules, "scipy.ndimage", None)  # the flood fill instead
    v = torch.zeros(8, 3, 32, 32, dtype=torch.uint8)
    v[:, 0, 10:16, 10:16] = 230
    assert b.single_object(v) == (True, 1.0)
    two = v.clone(); two[:5, 1, 24:28, 24:28] = 200  # a second object (16 pixels) in 5 of 8 frames
    assert b.single_object(two) == (False, 3 / 8)
    specks = v.clone(); specks[:, 2, 0, 0] = 250; specks[:, 2, 30:32, 30] = 250  # 1- and 2-pixel specks: not objects
    assert b.single_object(specks) == (True, 1.0) and b.single_object(specks, min_fraction=0) == (False, 0.0)
    assert b._components(two[0, 1].numpy() > 0) == 1 and b._components(specks[0, 2].numpy() > 0) == 2
