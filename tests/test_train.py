"""Training: config overrides, exact resume (N straight == N/2 + resume + N/2, bit for bit), kill -9 mid-run then resume."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

from opensora_nb.builders import ConfigError
import torch

from opensora_nb.train import (FeatureBatches, Trainer, get_config, last_checkpoint, load_checkpoint, parse_overrides,
                               run_stages, save_checkpoint, train_cli)

ROOT = Path(__file__).resolve().parents[1]
TINY = {"model.depth": 1, "model.hidden_size": 32, "model.num_heads": 2, "log_every": 1, "warmup_steps": 2,
        "ckpt_every": 0, "max_seconds": None, "stages": None}


def toy_features(seed=0):
    g = torch.Generator().manual_seed(seed)
    buckets = {"t9": dict(z=torch.randn(12, 4, 3, 8, 8, generator=g), text_idx=torch.arange(12) % 3, fps=8, height=32, width=32, num_frames=9),
               "img": dict(z=torch.randn(8, 4, 1, 8, 12, generator=g), text_idx=torch.arange(8) % 3, fps=120, height=32, width=48, num_frames=1)}
    return FeatureBatches(buckets, torch.randn(3, 32, 384, generator=g), torch.ones(3, 32, dtype=torch.long), {"t9": 4, "img": 4})


def weights(model): return {k: v.clone() for k, v in model.state_dict().items()}


def test_overrides_and_presets():
    cfg = get_config("v1_2_stage2", parse_overrides(["--lr", "2e-5", "--model.depth=3"]))
    assert cfg["lr"] == 2e-5 and cfg["model"]["depth"] == 3 and cfg["adam_eps"] == 1e-15 and cfg["grad_checkpoint"]
    with pytest.raises(ConfigError, match="unknown config key --nope.x"): get_config("tiny_world", {"nope.x": 1})
    with pytest.raises(ConfigError, match="did you mean --max_steps"): get_config("tiny_world", {"max_step": 100})
    # the CLI: a typo is refused before any work, exit status 2, the nearest valid key named
    with pytest.raises(SystemExit) as e: train_cli(["tiny_world", "--max_step", "100", "--print-config"])
    assert e.value.code == 2
    with pytest.raises(ValueError): parse_overrides(["lr", "1"])


@pytest.mark.parametrize("n", [6])
def test_resume_is_bit_exact(tmp_path, n):
    cfg = get_config("tiny_world", TINY)
    straight = Trainer(cfg); straight.fit(toy_features(), max_steps=n, progress=False)
    a = Trainer(cfg, run_dir=tmp_path); a.fit(toy_features(), max_steps=n // 2, progress=False)
    torch.manual_seed(999)  # a different global RNG: resume must restore it
    b = Trainer(cfg, run_dir=tmp_path); fb = toy_features()
    assert b.resume(fb) and b.step_count == n // 2
    b.fit(fb, max_steps=n, progress=False)
    for (k, x), (_, y) in zip(straight.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(x, y), f"weights differ at {k}"
    for (k, x), (_, y) in zip(straight.ema.state_dict().items(), b.ema.state_dict().items()):
        assert torch.equal(x, y), f"EMA differs at {k}"
    sa, sb = straight.opt.state_dict()["state"], b.opt.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)


def test_checkpoint_is_atomic_and_pruned(tmp_path):
    cfg = get_config("tiny_world", TINY)
    t = Trainer(cfg, run_dir=tmp_path); fb = toy_features()
    for s in range(3):
        t.fit(fb, max_steps=s + 1, progress=False)
    dirs = sorted(p.name for p in tmp_path.glob("step_*"))
    assert dirs == ["step_0000002", "step_0000003"], dirs  # keep_checkpoints = 2
    assert last_checkpoint(tmp_path).name == "step_0000003"
    assert not list(tmp_path.glob(".tmp*"))
    state, rng = load_checkpoint(last_checkpoint(tmp_path), t.model)
    assert state["step"] == 3 and "gen" in rng and state["data"]["index"] >= 1


def _cli_config(tmp_path, features):
    cfg = get_config("tiny_world", dict(TINY, ckpt_every=2, max_steps=400, log_every=1))
    cfg["data"] = dict(type="features", features=str(features))
    p = tmp_path / "cfg.json"; p.write_text(json.dumps(cfg))
    return p


def test_kill9_then_resume(tmp_path):
    features = toy_features().save(tmp_path / "feat.safetensors")
    cfg = _cli_config(tmp_path, features)
    run = tmp_path / "run"
    cmd = [sys.executable, "-c", "import sys; from opensora_nb.train import train_cli; sys.exit(train_cli(sys.argv[1:]))",
           str(cfg), "--output", str(run)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd + ["--max_steps", "400"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while time.time() - t0 < 120:
            ck = last_checkpoint(run)
            if ck is not None and int(ck.name.split("_")[1]) >= 6: break
            if proc.poll() is not None: pytest.fail("training ended before it could be killed")
            time.sleep(0.05)
        else:
            pytest.fail("no checkpoint after 120 s")
    finally:
        proc.send_signal(signal.SIGKILL); proc.wait()
    killed_at = int(last_checkpoint(run).name.split("_")[1])
    assert killed_at < 400
    # the last checkpoint is complete and loads; resume and finish 4 more steps than it had
    target = killed_at + 4
    out = subprocess.run(cmd + ["--max_steps", str(target)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    final = last_checkpoint(run)
    assert final.name == f"step_{target:07d}"
    # identical to an uninterrupted in-process run of `target` steps
    c = get_config(str(cfg), {"max_steps": target})
    threads = torch.get_num_threads(); torch.set_num_threads(1)  # same reduction order as the 1-thread subprocesses
    try:
        straight = Trainer(c); straight.fit(FeatureBatches.load(features, seed=c["seed"]), max_steps=target, progress=False)
    finally:
        torch.set_num_threads(threads)
    from safetensors.torch import load_file
    resumed = load_file(str(final / "model.safetensors"))
    from opensora_nb.builders import unwrap
    for k, v in unwrap(straight.model).state_dict().items():
        assert torch.equal(v, resumed[k]), k


def test_bad_rows_are_skipped_and_counted(tmp_path):
    "VideoBatches over a meta CSV with broken files: the batches come, the bad rows are counted."
    from opensora_nb.data import make_toy_dataset
    from opensora_nb.builders import VideoBatches, PatchPCAAutoencoder
    from opensora_nb.buckets import extend_aspect_ratios
    meta = make_toy_dataset(tmp_path / "toy", n_videos=4, n_images=0, bad=True, size=(32, 32))

    class Txt:
        def encode(self, prompts):
            return dict(y=torch.zeros(len(prompts), 1, 32, 384), mask=torch.ones(len(prompts), 32, dtype=torch.long))

    ae = PatchPCAAutoencoder(8, 16)
    vb = VideoBatches(meta, {"32px_test": {4: (1.0, 2)}}, ae, Txt(), aspect_ratios=extend_aspect_ratios({"32px_test": 1024}))
    seen = 0
    for _ in range(6):
        b = vb.next_batch(); seen += b["z"].shape[0]
    assert vb.skipped >= 1 and seen > 0


# --- fp16 (issue 24): autocast fp16 with a gradient scaler; its loss scale is saved and resumed ---

def test_fp16_trains_with_a_gradient_scaler(tmp_path):
    cfg = get_config("tiny_world", {**TINY, "device": "cpu", "dtype": "fp16"})
    tr = Trainer(cfg)
    assert tr.scaler.is_enabled() and not Trainer(get_config("tiny_world", {**TINY, "device": "cpu"})).scaler.is_enabled()
    # a scale so large that the fp16 gradients overflow: the step is skipped (weights unchanged) and the scale halved
    tr.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)
    fb, before = toy_features(), weights(tr.model)
    loss = tr.step(fb.next_batch())
    assert torch.isfinite(loss) and tr.scaler.get_scale() == 2.0 ** 39
    assert all(torch.equal(v, tr.model.state_dict()[k]) for k, v in before.items())
    # at a workable scale the steps train, and resume brings the scale back with everything else
    tr = Trainer(cfg, run_dir=tmp_path)
    tr.fit(toy_features(), max_steps=3, progress=False)
    assert (last_checkpoint(tmp_path) / "scaler.pt").exists() and all(h["loss"] == h["loss"] for h in tr.history)
    again = Trainer(cfg, run_dir=tmp_path)
    assert again.scaler.state_dict() != tr.scaler.state_dict()  # a fresh scaler (scale 65536, no growth yet) ...
    assert again.resume(toy_features()) and again.scaler.state_dict() == tr.scaler.state_dict()  # ... resumed to the saved one


def test_fp32_and_bf16_pass_through_the_scaler(tmp_path):
    "Without fp16 the scaler is off: no scaler.pt, and the step is the plain one (exact resume is tested above in fp32)."
    tr = Trainer(get_config("tiny_world", {**TINY, "device": "cpu", "dtype": "bf16"}), run_dir=tmp_path)
    tr.fit(toy_features(), max_steps=2, progress=False)
    assert not tr.scaler.is_enabled() and not (last_checkpoint(tmp_path) / "scaler.pt").exists()


def test_train_cli_help_names_the_precision_flags(capsys):
    with pytest.raises(SystemExit): train_cli(["--help"])
    h = " ".join(capsys.readouterr().out.split())
    assert "compute precision: fp32, bf16 or fp16 (training: autocast over float32 weights" in h and "--max-steps" in h
