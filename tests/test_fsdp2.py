"""`FSDP2Plugin` (chapter 13a): PyTorch's FSDP2 behind ColossalAI's Booster, proven on this CPU in one `torchrun` launch of
2 gloo processes (issue 25, items 1, 3 and 6): K boosted steps equal K single-process AdamW steps at the same global
batch; the clipped global gradient norm equals one process's; each rank holds about 1/2 of the bytes of parameters +
gradients + optimizer states that a `TorchDDPPlugin` rank holds (measured in the same launch); a sharded save then a load
into a fresh model and optimizer gives the identical next step; bf16 mixed precision keeps fp32 shards; `no_sync`
accumulates.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5

WORKER = textwrap.dedent(r'''
import json, sys, time
from pathlib import Path
import torch, torch.distributed as dist
from opensora_nb.engine import FSDP2Plugin, launch_colossalai, make_booster, state_bytes
from opensora_nb.stdit import STDiT3, STDiT3Config
from opensora_nb.rflow import RFlow
launch_colossalai()
from colossalai.booster import Booster
torch.set_num_threads(1)
out = Path(sys.argv[1]); rank, W = dist.get_rank(), dist.get_world_size()

def tiny():
    torch.manual_seed(0)
    m = STDiT3(STDiT3Config(hidden_size=32, depth=2, num_heads=4, caption_channels=16, model_max_length=6,
                            in_channels=4, class_dropout_prob=0.0, input_sq_size=64))
    with torch.no_grad():  # off the zero/identity init, so every parameter carries gradient
        for p in m.parameters(): p.add_(0.05 * torch.randn_like(p))
    return m.train()

# AdamW with eps 1e-6: a key bias has a gradient of exactly zero in exact arithmetic (softmax ignores a constant),
# ~1e-10 of rounding in practice, which the default 1e-8 would turn into a full, random-signed step
OPT = lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3, eps=1e-6)
B, K, CLIP = 4, 3, 1.0
g = torch.Generator().manual_seed(1)
batches = [dict(x=torch.randn(B, 4, 3, 8, 8, generator=g), noise=torch.randn(B, 4, 3, 8, 8, generator=g),
                t=torch.rand(B, generator=g) * 1000, y=torch.randn(B, 1, 6, 16, generator=g)) for _ in range(K + 1)]
rf = RFlow()

def loss_of(model, b, rows):
    n = len(range(*rows.indices(B)))
    kw = dict(y=b["y"][rows], mask=torch.ones(n, 6, dtype=torch.long), fps=24, height=64, width=64)
    return rf.training_losses(model, b["x"][rows], model_kwargs=kw, noise=b["noise"][rows], t=b["t"][rows])["loss"].mean()

def full(m):
    m = m.unwrap() if hasattr(m, "unwrap") else m
    return {n: (p.full_tensor() if hasattr(p, "full_tensor") else p).detach().clone() for n, p in m.named_parameters()}

maxdiff = lambda a, b: max(float((a[n] - b[n]).abs().max()) for n in b)
res = dict(world=W)
ref = tiny(); ropt = OPT(ref)  # one process, the whole batch
res["ref_norms"] = []
for b in batches[:K]:
    loss_of(ref, b, slice(0, B)).backward()
    res["ref_norms"].append(float(torch.nn.utils.clip_grad_norm_(ref.parameters(), CLIP))); ropt.step(); ropt.zero_grad()
ref_w, res["nparams"] = full(ref), sum(p.numel() for p in ref.parameters())
res["moved"] = maxdiff(ref_w, full(tiny()))
mine = slice(rank * B // W, (rank + 1) * B // W)

t0 = time.time()
for name in ("fsdp2", "ddp"):
    m, opt = tiny(), None
    opt = OPT(m)
    booster = Booster(plugin=FSDP2Plugin(max_norm=CLIP)) if name == "fsdp2" else make_booster("ddp")
    m, opt, *_ = booster.boost(m, opt)
    norms = []
    for i, b in enumerate(batches[:K]):
        booster.backward(loss_of(m, b, mine), opt)
        if name == "ddp": opt.clip_grad_by_norm(CLIP)
        opt.step()
        norms.append(opt.get_grad_norm() if name == "fsdp2" else None)
        if i < K - 1: opt.zero_grad()
    r = res[name] = dict(bytes=state_bytes(m, opt), weight_diff=maxdiff(full(m), ref_w), norms=norms, cls=type(m).__name__)
    if name == "fsdp2":
        r["sharded"] = all(type(p).__name__ == "DTensor" for p in m.unwrap().parameters())
        opt.zero_grad()
        ck, saved = out / "ck", full(m)
        booster.save_model(m, ck / "model", shard=True); booster.save_optimizer(opt, ck / "optim", shard=True)
        booster.save_model(m, ck / "model.safetensors", use_safetensors=True)  # the gathered single file
        booster.backward(loss_of(m, batches[K], mine), opt); opt.step(); after = full(m)
        m2 = tiny(); o2 = OPT(m2); b2 = Booster(plugin=FSDP2Plugin(max_norm=CLIP))
        m2, o2, *_ = b2.boost(m2, o2)
        b2.load_model(m2, ck / "model"); b2.load_optimizer(o2, ck / "optim")
        b2.backward(loss_of(m2, batches[K], mine), o2); o2.step()
        r["resume_diff"], r["resume_moved"] = maxdiff(full(m2), after), maxdiff(after, ref_w)
        r["files"] = sorted(p.name for p in (ck / "model").iterdir())
        from safetensors.torch import load_file  # the single file loads strictly into a plain STDiT3
        plain = tiny(); plain.load_state_dict(load_file(str(ck / "model.safetensors")))
        r["full_file_diff"] = maxdiff(full(plain), saved)
# bf16 mixed precision: compute in bf16, shards (master weights) and gradients stay fp32
m = tiny(); opt = OPT(m); bb = Booster(plugin=FSDP2Plugin(precision="bf16"))
m, opt, *_ = bb.boost(m, opt)
loss = loss_of(m, batches[0], mine); bb.backward(loss, opt); opt.step()
res["bf16"] = dict(loss=float(loss.detach()), param_dtypes=sorted({str(p.dtype) for p in m.unwrap().parameters()}),
                   grad_dtypes=sorted({str(p.grad.dtype) for p in m.unwrap().parameters() if p.grad is not None}))
# no_sync: two micro-batches of one row each, reduced once; on average over ranks: twice the whole batch's mean gradient
ref = tiny(); loss_of(ref, batches[0], slice(0, B)).backward()
m = tiny(); opt = OPT(m); bb = Booster(plugin=FSDP2Plugin())
m, opt, *_ = bb.boost(m, opt)
with bb.no_sync(m, opt): bb.backward(loss_of(m, batches[0], slice(2 * rank, 2 * rank + 1)), opt)
bb.backward(loss_of(m, batches[0], slice(2 * rank + 1, 2 * rank + 2)), opt)
rg = {n: p.grad for n, p in ref.named_parameters() if p.grad is not None}
res["no_sync_grad_diff"] = max(float((p.grad.full_tensor() - 2 * rg[n]).abs().max()) for n, p in m.unwrap().named_parameters() if n in rg)
res["seconds_after_launch"] = time.time() - t0
Path(out, f"rank{rank}.json").write_text(json.dumps(res))
''')


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    pytest.importorskip("colossalai")
    out = tmp_path_factory.mktemp("fsdp2")
    (out / "worker.py").write_text(WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(out / "worker.py"), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=out)
    assert p.returncode == 0, f"torchrun failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_fsdp2_steps_equal_single_process(results):
    "K boosted steps, each rank half the batch, equal K AdamW steps of one process on the whole batch."
    for r in results:
        f = r["fsdp2"]
        assert f["cls"] == "FSDP2Model" and f["sharded"], f
        assert r["moved"] > 1e-3  # the runs trained
        assert f["weight_diff"] < TOL, f"fsdp2 differs from one process by {f['weight_diff']}"
        assert r["ddp"]["weight_diff"] < TOL, f"ddp differs from one process by {r['ddp']['weight_diff']}"


def test_fsdp2_clips_the_global_norm(results):
    "The plugin's max_norm clips by the norm over all shards: the single process's norm, on every rank."
    for r in results:
        assert all(n > 1.0 for n in r["ref_norms"])  # clipping was active
        for a, b in zip(r["fsdp2"]["norms"], r["ref_norms"]): assert abs(a - b) < 1e-4 * b, (a, b)


def test_fsdp2_rank_holds_half_of_ddp(results):
    "Per-rank bytes of parameters + gradients + optimizer states: fsdp2 about 1/world of a TorchDDPPlugin rank's."
    for r in results:
        n, d, f = r["nparams"], r["ddp"]["bytes"], r["fsdp2"]["bytes"]
        assert d["params"] == 4 * n and abs(d["grads"] / n - 4) < 0.01 and abs(d["optimizer"] / n - 8) < 0.05  # 16 B/param
        ratio = sum(f.values()) / sum(d.values())
        assert abs(ratio - 1 / r["world"]) < 0.02, (ratio, f, d)
        for k in ("params", "grads", "optimizer"): assert abs(f[k] / d[k] - 0.5) < 0.02, (k, f, d)
    # the two shards cover the model: together they hold the ddp rank's parameter bytes (up to padding rows)
    assert 0 <= sum(r["fsdp2"]["bytes"]["params"] for r in results) - results[0]["ddp"]["bytes"]["params"] < 0.01 * 4 * results[0]["nparams"]


def test_fsdp2_sharded_checkpoint_round_trip(results):
    "Sharded save (each rank its file) then load into a fresh model and optimizer: the next step is identical."
    for r in results:
        f = r["fsdp2"]
        assert f["files"] == [".metadata", "__0_0.distcp", "__1_0.distcp"], f["files"]
        assert f["resume_moved"] > 1e-4 and f["resume_diff"] == 0.0, f
        assert f["full_file_diff"] == 0.0  # the gathered file loads strictly into a plain STDiT3


def test_fsdp2_bf16_keeps_fp32_shards(results):
    for r in results:
        b = r["bf16"]
        assert b["param_dtypes"] == ["torch.float32"] and b["grad_dtypes"] == ["torch.float32"], b
        assert b["loss"] == b["loss"] and b["loss"] > 0  # finite


def test_fsdp2_no_sync_accumulates(results):
    "Gradients accumulated under `booster.no_sync` and reduced by the next backward equal one process's."
    for r in results: assert r["no_sync_grad_diff"] < TOL, r["no_sync_grad_diff"]


def test_plugin_memory_model_matches_the_measurement(results):
    "Chapter 13's per-plugin model (fp32, world 2) predicts the measured bytes a parameter of both plugins."
    from opensora_nb.engine import plugin_memory_per_param
    r = results[0]
    for name in ("ddp", "fsdp2"):
        measured = sum(r[name]["bytes"].values()) / r["nparams"]
        assert abs(measured - plugin_memory_per_param(name, 2, "fp32")["total"]) < 0.1, (name, measured)
