"""`benchmarks/gpu_check.py --tiny` runs the GPU check's code on the CPU at toy sizes, so the script cannot rot unnoticed."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("sdpa", "stdit", "pipeline", "vae", "train")


def test_gpu_check_tiny_runs_every_section(tmp_path):
    out = tmp_path / "x.json"
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1",
           "CUDA_VISIBLE_DEVICES": ""}  # --tiny is the CPU path even on a GPU machine
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["mode"] == "tiny" and r["device"] == "cpu" and r["total_seconds"] > 0 and "CPU" in r["ran_on"]
    assert set(SECTIONS) <= set(r["sections"]), sorted(r["sections"])
    for name in ("sdpa", "stdit", "pipeline", "vae"):
        assert "error" not in r["sections"][name], (name, r["sections"][name].get("traceback"))
    s = r["sections"]
    assert {"32x32", "48x64"} <= set(s["stdit"]["sizes"]) and all(d["seconds_median"] > 0 for d in s["stdit"]["sizes"].values())
    run = s["pipeline"]["runs"]["32x32_17f"]
    assert run["video_shape"] == [17, 3, 32, 32] and run["seconds"] > 0
    assert s["vae"]["output_shape"] == [1, 3, 17, 32, 32] and s["vae"]["latent"] == [5, 8, 8]
    assert s["sdpa"]["self_attention"]["backends"]["MATH"] == "ok"
    # the training step may fall back to plain AdamW on the CPU (ZeRO needs CUDA), but it says which path ran and why
    t = s["train"]
    assert "error" not in t, t.get("traceback")
    assert t["path"] in ("booster_zero2_bf16", "plain_adamw") and t["finite"]
    assert t["path"] == "booster_zero2_bf16" or t["fallback_reason"]
    assert r["published_h100"]["720p_4s"] == {"seconds": 130.0, "memory_gb": 39.0}
    assert "gpu_check (tiny)" in proc.stdout
