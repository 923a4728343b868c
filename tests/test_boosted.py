"""The training loop on ColossalAI's Booster (opensora_nb.engine.BoostedTrainer, `python -m opensora_nb.launch train`),
launched for real: `torchrun --nproc_per_node 2` over gloo on the CPU, `TorchDDPPlugin`.

- one launch runs the in-process checks: K boosted `ddp` steps equal K single-process steps at the same global batch;
  sp = 2 through the engine equals one process; the sharded checkpoint's layout and an in-process resume;
- `launch train` itself: an uninterrupted run, the same command killed with SIGKILL after a checkpoint and rerun
  (its final weights equal the uninterrupted run's), and a resume with another number of processes refused in one
  line before any step. Each test's measured figures are printed (`pytest -s` shows them).
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("colossalai")

from opensora_nb.builders import FeatureBatches, get_config
from opensora_nb.train import last_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5
TINY = {"model.depth": 1, "model.hidden_size": 32, "model.num_heads": 2, "model.class_dropout_prob": 0.0,
        "log_every": 1, "warmup_steps": 1, "ckpt_every": 0, "max_seconds": None, "stages": None,
        "adam_eps": 1e-6}  # the preset's 1e-15 turns 1e-10 rounding noise in a gradient into a full Adam step


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


WORKER = textwrap.dedent(r'''
import json, sys, time
from pathlib import Path
import torch, torch.distributed as dist
t0 = time.time()
from opensora_nb.dist import init_distributed, LaunchError, DistEnv, destroy_distributed
from opensora_nb.engine import launch_colossalai, BoostedTrainer, ShardedBatches, check_resume, make_booster
from opensora_nb.builders import get_config, FeatureBatches
from opensora_nb.train import Trainer, last_checkpoint

out = Path(sys.argv[1]); TINY = json.loads(sys.argv[2])
env = init_distributed(sp_size=1)
launch_colossalai()
torch.set_num_threads(1)
res = dict(import_s=time.time() - t0)
maxdiff = lambda a, b: float((a.detach() - b.detach()).abs().max())
def params_diff(a, b):
    pb = dict(b.named_parameters())
    return max(maxdiff(p, pb[n]) for n, p in a.named_parameters())
def moved(a, b):
    pb = dict(b.named_parameters())
    return max(maxdiff(p, pb[n]) for n, p in a.named_parameters())

cfg = get_config("tiny_world", {**TINY, "model.in_channels": 4, "model.caption_channels": 16, "model.model_max_length": 6})

class Fixed:
    "Global batches that bring their own draws (frame masks, timesteps, noise), so that 1 and N processes see the same."
    def __init__(self, n=3, B=4, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.batches = [dict(z=torch.randn(B, 4, 2, 4, 4, generator=g), y=torch.randn(B, 1, 6, 16, generator=g),
                             mask=torch.ones(B, 6, dtype=torch.long), fps=torch.full((B,), 8.0),
                             height=torch.full((B,), 32), width=torch.full((B,), 32), num_frames=torch.full((B,), 2),
                             x_mask=torch.rand(B, 2, generator=g) > 0.3, t=torch.rand(B, generator=g) * 1000,
                             noise=torch.randn(B, 4, 2, 4, 4, generator=g)) for _ in range(n)]
        self.i = 0
    def next_batch(self):
        b = self.batches[self.i % len(self.batches)]; self.i += 1
        return dict(b)
    def __len__(self): return len(self.batches)
    def state_dict(self): return dict(index=self.i)
    def load_state_dict(self, s): self.i = s["index"]

# --- (a) K boosted ddp steps (2 ranks x 2 rows) == K single-process steps on the 4-row global batch ---
K = 3
t = time.time()
plain = Trainer(cfg); init = {n: p.detach().clone() for n, p in plain.model.named_parameters()}
plain.fit(Fixed(), max_steps=K, progress=False)
plain_ddp_ref = plain
run = out / "run"
tr = BoostedTrainer(cfg, run_dir=run, env=env, plugin="ddp")
tr.fit(ShardedBatches(Fixed(), env), max_steps=K, progress=False)
flat = torch.cat([p.detach().flatten() for p in tr.model.parameters()])
both = [torch.empty_like(flat) for _ in range(2)]; dist.all_gather(both, flat)
res["ddp"] = dict(param=params_diff(tr.model, plain.model), ema=params_diff(tr.ema, plain.ema),
                  moved=max(maxdiff(p, init[n]) for n, p in plain.model.named_parameters()),
                  rank_diff=maxdiff(both[0], both[1]), grad_norm=float(tr.grad_norm), ref_grad_norm=float(plain.grad_norm),
                  loss=[h["loss"] for h in tr.history], ref_loss=[h["loss"] for h in plain.history],
                  engine=type(tr.engine_model).__name__, opt=type(tr.opt).__name__, seconds=time.time() - t)

# --- the sharded checkpoint, and an in-process resume from it ---
last = last_checkpoint(run)
res["ckpt"] = dict(files=sorted(str(p.relative_to(last)) for p in last.rglob("*") if p.is_file()),
                   world=json.loads((last / "state.json").read_text())["world"])
tr2 = BoostedTrainer(cfg, run_dir=run, env=env, plugin="ddp")
b2 = ShardedBatches(Fixed(), env)
ok = tr2.resume(b2)
sa, sb = tr.opt.state_dict()["state"], tr2.opt.state_dict()["state"]
res["resume"] = dict(ok=ok, step=tr2.step_count, param=params_diff(tr2.model, tr.model), ema=params_diff(tr2.ema, tr.ema),
                     adam=max(maxdiff(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa), data=b2.state_dict())
try: check_resume(run, DistEnv(rank=0, world_size=1)); res["resume"]["refused"] = None
except LaunchError as e: res["resume"]["refused"] = str(e)
try: make_booster("zero2"); res["zero2_refused"] = None
except LaunchError as e: res["zero2_refused"] = str(e)

# --- (e) the same K steps through FSDP2Plugin (weights, gradients and AdamW states sharded): the same loop ---
t = time.time()
fs = BoostedTrainer(cfg, run_dir=out / "run_fsdp2", env=env, plugin="fsdp2")
fs.fit(ShardedBatches(Fixed(), env), max_steps=K, progress=False)
pf = dict(plain_ddp_ref.model.named_parameters())
full = lambda p: p.full_tensor() if hasattr(p, "full_tensor") else p
res["fsdp2"] = dict(param=max(maxdiff(full(p), pf[n]) for n, p in fs.model.named_parameters()),
                    ema=params_diff(fs.ema, plain_ddp_ref.ema), sharded=type(next(fs.model.parameters())).__name__,
                    grad_norm=float(fs.grad_norm), ref_grad_norm=float(plain_ddp_ref.grad_norm),
                    files=sorted(str(p.relative_to(last_checkpoint(out / "run_fsdp2"))) for p in last_checkpoint(out / "run_fsdp2").rglob("*") if p.is_file()),
                    seconds=time.time() - t)
fs2 = BoostedTrainer(cfg, run_dir=out / "run_fsdp2", env=env, plugin="fsdp2")
res["fsdp2"]["resumed"] = fs2.resume(ShardedBatches(Fixed(), env))
res["fsdp2"]["resume_param"] = max(maxdiff(full(p), full(q)) for p, q in zip(fs2.model.parameters(), fs.model.parameters()))

# --- (b) sp = 2 through the engine (dp 1 x sp 2) == the single-process Trainer, with the trainer's own draws ---
t = time.time()
g = torch.Generator().manual_seed(0)
fb = lambda: FeatureBatches({"b": dict(z=torch.randn(8, 4, 2, 4, 4, generator=torch.Generator().manual_seed(0)),
                                       text_idx=torch.arange(8) % 3, fps=8, height=32, width=32, num_frames=2)},
                            torch.randn(3, 6, 16, generator=torch.Generator().manual_seed(1)), torch.ones(3, 6, dtype=torch.long),
                            {"b": 4}, seed=0)
plain = Trainer(cfg); plain.fit(fb(), max_steps=K, progress=False)
env = init_distributed(sp_size=2)
sp = BoostedTrainer(cfg, env=env, plugin="ddp")
sp.fit(ShardedBatches(fb(), env), max_steps=K, progress=False)
res["sp"] = dict(param=params_diff(sp.model, plain.model), cls=type(sp.model.model).__name__,
                 loss=[h["loss"] for h in sp.history], ref_loss=[h["loss"] for h in plain.history], seconds=time.time() - t)
# --- the uninterrupted `launch train` run the kill -9 test compares with: the CLI's own function, in this launch ---
from opensora_nb.launch import dist_train_cli
t = time.time()
res["cli_rc"] = dist_train_cli([str(out / "cfg.json"), "--output", str(out / "straight"), "--plugin", "ddp", "--no-pipeline"])
res["cli_seconds"] = time.time() - t
(out / f"rank{env.rank}.json").write_text(json.dumps(res))  # dist_train_cli ended the process group
''')


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("boosted")
    (out / "worker.py").write_text(WORKER)
    _cli_config(out)
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(out / "worker.py"), str(out), json.dumps(TINY)], capture_output=True, text=True, timeout=300,
                       env=_env(), cwd=out)
    assert p.returncode == 0, f"torchrun failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    rs = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    print(f"\nboosted worker: {time.time() - t0:.1f}s (imports {rs[0]['import_s']:.1f}s; launch train, {STEPS} steps: "
          f"{rs[0]['cli_seconds']:.1f}s)")
    assert all(r["cli_rc"] == 0 for r in rs)
    return dict(ranks=rs, out=out)


def test_ddp_booster_equals_single_process(results):
    "K = 3 boosted `ddp` steps, 2 ranks x 2 rows, equal 3 single-process steps on the 4-row global batch."
    results = results["ranks"]
    for r in results:
        d = r["ddp"]
        print(f"ddp vs one process: max weight diff {d['param']:.2e}, EMA {d['ema']:.2e}, weights moved {d['moved']:.2e}, "
              f"grad norm {d['grad_norm']:.6f} vs {d['ref_grad_norm']:.6f}, {d['seconds']:.1f}s")
        assert d["engine"] == "TorchDDPModel" and d["opt"] == "OptimizerWrapper"
        assert d["moved"] > 1e-3 and d["rank_diff"] == 0.0
        assert d["param"] < TOL and d["ema"] < TOL, d
        assert abs(d["grad_norm"] - d["ref_grad_norm"]) < 1e-5 * max(1.0, d["ref_grad_norm"])
    # each rank logs the loss of its own rows: their mean is the global batch's loss
    mean = [(a + b) / 2 for a, b in zip(results[0]["ddp"]["loss"], results[1]["ddp"]["loss"])]
    assert max(abs(a - b) for a, b in zip(mean, results[0]["ddp"]["ref_loss"])) < 1e-5


def test_fsdp2_through_the_same_loop_equals_single_process(results):
    "The same K = 3 steps with `plugin='fsdp2'` (FSDP2Plugin: sharded weights, gradients, AdamW states; DCP checkpoint)."
    for r in results["ranks"]:
        f = r["fsdp2"]
        print(f"fsdp2 vs one process: max weight diff {f['param']:.2e}, EMA {f['ema']:.2e}, grad norm {f['grad_norm']:.6f} vs "
              f"{f['ref_grad_norm']:.6f}, {f['seconds']:.1f}s")
        assert f["sharded"] == "DTensor"
        assert f["param"] < TOL and f["ema"] < TOL, f
        assert abs(f["grad_norm"] - f["ref_grad_norm"]) < 1e-5 * max(1.0, f["ref_grad_norm"])
        assert any(n.startswith("model/") and n.endswith(".metadata") for n in f["files"]), f["files"]  # DCP, sharded
        assert f["resumed"] and f["resume_param"] == 0.0


def test_sequence_parallel_through_the_engine_equals_single_process(results):
    for r in results["ranks"]:
        s = r["sp"]
        print(f"sp=2 through the engine vs one process: max weight diff {s['param']:.2e}, {s['seconds']:.1f}s")
        assert s["cls"].startswith("SeqParallel")
        assert s["param"] < TOL, s
        assert max(abs(a - b) for a, b in zip(s["loss"], s["ref_loss"])) < 1e-4


def test_sharded_checkpoint_and_in_process_resume(results):
    results = results["ranks"]
    r0 = results[0]
    files = r0["ckpt"]["files"]
    assert any(f.startswith("model/") and f.endswith(".index.json") for f in files), files      # booster.save_model(shard=True)
    assert any(f.startswith("optimizer/") and f.endswith(".index.json") for f in files), files  # booster.save_optimizer(shard=True)
    assert {"ema.safetensors", "state.json", "rng_rank0.pt", "rng_rank1.pt"} <= set(files), files
    assert r0["ckpt"]["world"] == dict(world_size=2, dp=2, sp=1)
    for r in results:
        rs = r["resume"]
        assert rs["ok"] and rs["step"] == 3 and rs["data"] == dict(index=3)
        assert rs["param"] == 0.0 and rs["ema"] == 0.0 and rs["adam"] == 0.0, rs
        assert "written by 2 processes" in rs["refused"] and "\n" not in rs["refused"]
        assert ("needs CUDA" in r["zero2_refused"]) == (not torch.cuda.is_available())


# --- `python -m opensora_nb.launch train`: kill -9, rerun, compare; another number of processes ---

STEPS = 40


def _features(tmp_path):
    g = torch.Generator().manual_seed(0)
    buckets = {"t9": dict(z=torch.randn(12, 4, 3, 8, 8, generator=g), text_idx=torch.arange(12) % 3, fps=8, height=32, width=32, num_frames=9),
               "img": dict(z=torch.randn(8, 4, 1, 8, 12, generator=g), text_idx=torch.arange(8) % 3, fps=120, height=32, width=48, num_frames=1)}
    fb = FeatureBatches(buckets, torch.randn(3, 32, 384, generator=g), torch.ones(3, 32, dtype=torch.long), {"t9": 4, "img": 4})
    return fb.save(tmp_path / "feat.safetensors")


def _cli_config(tmp_path, **kw):
    "The tiny world's real draws: frame masks, caption dropout, the timestep transform; a checkpoint every 2 steps."
    cfg = get_config("tiny_world", dict(TINY, ckpt_every=2, max_steps=STEPS, **{"model.class_dropout_prob": 0.1}, **kw))
    cfg["data"] = dict(type="features", features=str(_features(tmp_path)))
    # two stages, as the presets have them (images first, then every bucket): a resumed run must cross the boundary
    cfg["stages"] = [dict(name="images", fraction=0.25, buckets=["img"], lr=1e-3), dict(name="all", fraction=0.75, lr=5e-4)]
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    return tmp_path / "cfg.json"


def _train_cmd(cfg, run, nproc=2, plugin="ddp"):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
            "opensora_nb.launch", "train", str(cfg), "--output", str(run), "--plugin", plugin, "--no-pipeline"]


def _weights(ckpt):
    from safetensors.torch import load_file
    out = {}
    for f in sorted((ckpt / "model").glob("*.safetensors")): out.update(load_file(str(f)))
    return out, load_file(str(ckpt / "ema.safetensors"))


def _kill_run(proc):
    "SIGKILL torchrun and its ranks (torchrun starts each rank in a session of its own)."
    import psutil
    procs = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
    for p in procs:
        try: p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess: pass
    proc.wait()
    psutil.wait_procs(procs, timeout=30)


def test_kill9_then_rerun_equals_uninterrupted(results):
    "`launch train` killed with SIGKILL after a checkpoint, then the same command: the uninterrupted run's weights."
    out, times = results["out"], {}
    cfg_path, run, t = out / "cfg.json", out / "run_killed", time.time()
    proc = subprocess.Popen(_train_cmd(cfg_path, run), env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while time.time() - t < 180:
            ck = last_checkpoint(run) if run.exists() else None
            if ck is not None and int(ck.name.split("_")[1]) >= 4: break
            if proc.poll() is not None: pytest.fail("training ended before it could be killed")
            time.sleep(0.01)
        else:
            pytest.fail("no checkpoint after 180 s")
    finally:
        _kill_run(proc)
    killed_at = int(last_checkpoint(run).name.split("_")[1])
    times["killed run"] = time.time() - t
    assert killed_at < STEPS
    t = time.time()
    again = subprocess.run(_train_cmd(cfg_path, run), capture_output=True, text=True, timeout=240, env=_env(), cwd=ROOT)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    times["rerun"] = time.time() - t
    assert f"resumed at step {killed_at}" in again.stdout, again.stdout[-2000:]
    final, straight = last_checkpoint(run), last_checkpoint(out / "straight")
    assert final.name == straight.name == f"step_{STEPS:07d}"
    assert json.loads((final / "state.json").read_text())["stage"] == 1  # the preset's stages ran (launch train took them)
    (wa, ea), (wb, eb) = _weights(final), _weights(straight)
    assert wa.keys() == wb.keys() and len(wa) > 10
    diff = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    ema_diff = max(float((ea[k] - eb[k]).abs().max()) for k in ea)
    print(f"\nkill -9 after the step-{killed_at} checkpoint, same command again: resumed, {STEPS} steps; max weight diff vs "
          f"uninterrupted {diff:.2e}, EMA {ema_diff:.2e}; " + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
    assert diff == 0.0 and ema_diff == 0.0


def test_resume_with_another_number_of_processes_is_refused(results):
    "A 2-process run folder resumed by 1 process: refused in one line, before any step and before colossalai's import."
    run, t = results["out"] / "straight", time.time()
    before = sorted(p.name for p in run.iterdir())
    one = subprocess.run(_train_cmd(results["out"] / "cfg.json", run, nproc=1), capture_output=True, text=True, timeout=120,
                         env=_env(), cwd=ROOT)
    msg = [l for l in one.stderr.splitlines() if "error:" in l]
    print(f"\n1 process on the 2-process run: exit {one.returncode} in {time.time() - t:.1f}s: {msg}")
    assert one.returncode != 0 and len(msg) == 1, one.stdout[-1000:] + one.stderr[-2000:]
    assert "written by 2 processes (dp 2 x sp 1); this run has 1 (dp 1 x sp 1)" in msg[0]
    assert "resumed" not in one.stdout and '"step"' not in one.stdout
    assert "[rank0]: Traceback" not in one.stderr  # the rank said one line (torchrun then reports the exit status)
    assert "colossalai" not in one.stderr  # refused before colossalai was imported (its warnings name it)
    assert sorted(p.name for p in run.iterdir()) == before


def test_cuda_only_plugin_refused_on_cpu(tmp_path):
    "On a machine without CUDA, `--plugin zero2` is refused in one line naming it and what runs here, before any step."
    if torch.cuda.is_available(): pytest.skip("this machine has CUDA")
    p = subprocess.run(_train_cmd(_cli_config(tmp_path), tmp_path / "run", nproc=1, plugin="zero2"), capture_output=True,
                       text=True, timeout=120, env=_env(), cwd=ROOT)
    msg = [l for l in p.stderr.splitlines() if "error:" in l]
    assert p.returncode != 0 and len(msg) == 1 and "[rank0]: Traceback" not in p.stderr, p.stderr[-2000:]
    assert "plugin 'zero2' needs CUDA" in msg[0] and "here: --plugin ddp" in msg[0]
    assert last_checkpoint(tmp_path / "run") is None


def test_load_another_runs_checkpoint(results):
    "`launch train --load CKPT` into a new folder continues that checkpoint exactly (weights, EMA, data order, RNG)."
    straight, run, t = results["out"] / "straight", results["out"] / "loaded", time.time()
    start = straight / f"step_{STEPS - 2:07d}"
    assert start.exists(), sorted(p.name for p in straight.iterdir())
    p = subprocess.run(_train_cmd(results["out"] / "cfg.json", run) + ["--load", str(start)], capture_output=True, text=True,
                       timeout=240, env=_env(), cwd=ROOT)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert f"resumed at step {STEPS - 2}" in p.stdout, p.stdout[-2000:]
    (wa, ea), (wb, eb) = _weights(last_checkpoint(run)), _weights(last_checkpoint(straight))
    assert last_checkpoint(run).name == f"step_{STEPS:07d}"
    diff = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    print(f"\n--load {start.name} into a new folder, to step {STEPS}: max weight diff vs the run it came from {diff:.2e}, "
          f"{time.time() - t:.1f}s")
    assert diff == 0.0 and all(torch.equal(ea[k], eb[k]) for k in ea)
