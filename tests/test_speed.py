"""Faster sampling (issue 19): PAB attention reuse and step skipping are off by default and change nothing then, stay
within a stated bound when on, reach the pipeline and the CLI (the speed benchmark: tests/test_benchmarks.py)."""
import json
from pathlib import Path

import pytest
import torch

from opensora_nb.builders import PatchPCAAutoencoder, X0Parameterized
from opensora_nb.cache import ChangeRecorder, SamplingCache
from opensora_nb.inference import OpenSoraPipeline, sample_cli
from opensora_nb.rflow import RFlow
from opensora_nb.stdit import STDiT3
from toy_text import HashText

ROOT = Path(__file__).resolve().parents[1]
#: With PAB's defaults and/or step skipping (threshold 0.3 here: this random model's inputs change by 0.15-0.5 a step,
#: the trained tiny world's by 0.03-0.1, where 0.1 is the setting), the latents of 30 guided steps stay within this
#: relative L2 of the uncached run (measured here: 0.01-0.03; the trained tiny world: benchmarks/results/speed_gen.json).
BOUND = 0.15


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = STDiT3(hidden_size=32, depth=2, num_heads=2, patch_size=(1, 1, 1), in_channels=16, caption_channels=16, model_max_length=8,
                 pred_sigma=False, input_sq_size=32, temporal_pos_embed=True)
    with torch.no_grad():  # random but "trained-like": no block left at its identity initialisation
        for p in net.parameters(): p.add_(torch.randn_like(p) * 0.05)
    ae = PatchPCAAutoencoder(8, 16).fit(torch.rand(4, 3, 2, 32, 32) * 2 - 1)
    return OpenSoraPipeline(X0Parameterized(net), ae, HashText(),
                            RFlow(num_sampling_steps=30, cfg_scale=4.0, use_timestep_transform=False, shift=3.0))


PROMPTS = ["a red circle moving left", "a blue square moving up"]
GEN = dict(image_size=(32, 32), num_frames=8, seed=3, progress=False)


def rel(a, b): return float((a - b).norm() / b.norm())


def test_options_off_are_bit_identical(pipe):
    base = pipe(PROMPTS, **GEN)
    off = pipe(PROMPTS, **GEN, attention_reuse=None, step_cache=None)
    assert torch.equal(off["latents"][0], base["latents"][0])
    assert all(torch.equal(a, b) for a, b in zip(off["videos"], base["videos"]))
    assert "cache_stats" not in off["settings"]
    # a cache attached with nothing switched on, and the recorder, compute exactly the same
    scheduler, z = RFlow(num_sampling_steps=6, cfg_scale=4.0, use_timestep_transform=False), torch.randn(2, 16, 8, 4, 4)
    y = HashText().encode(PROMPTS)["y"]
    run = lambda cache=None: scheduler.sample(pipe.model, z, y=y, y_null=torch.zeros_like(y), progress=False, cache=cache)
    with torch.no_grad():
        plain = run()
        assert torch.equal(run(SamplingCache()), plain)
        with ChangeRecorder().attach(pipe.model) as rec:
            assert torch.equal(run(), plain)
    assert set(rec.changes) == {"spatial", "temporal", "cross"} and len(rec.changes["cross"]) == 5


def test_one_step_signal(pipe, monkeypatch):
    """Issue 24: the step-skipping signal is computed in one place, `cache.step_signal`, by the cache (each signal)
    and by the recorder, and what the recorder logs is what the cache compares."""
    from opensora_nb import cache as K
    calls, orig = [], K.step_signal
    def spy(net, x, args, signal="modulated_input"):
        out = orig(net, x, args, signal); calls.append((signal, out[0])); return out
    monkeypatch.setattr(K, "step_signal", spy)
    scheduler, z = RFlow(num_sampling_steps=4, cfg_scale=4.0, use_timestep_transform=False), torch.randn(2, 16, 8, 4, 4)
    y = HashText().encode(PROMPTS)["y"]
    run = lambda cache=None: scheduler.sample(pipe.model, z, y=y, y_null=torch.zeros_like(y), progress=False, cache=cache)
    with torch.no_grad():
        for sig in K.STEP_SIGNALS:
            calls.clear(); run(SamplingCache(step_cache=dict(threshold=10.0, signal=sig)))
            assert [c[0] for c in calls] == [sig] * 4, calls        # one signal a model call (guidance: one call a step)
        calls.clear()
        with ChangeRecorder().attach(pipe.model) as rec: run()
    assert [c[0] for c in calls] == ["modulated_input", "first_block"] * 4
    for i, sig in enumerate(("modulated_input", "first_block")):
        seen = [c[1] for c in calls[i::2]]
        assert rec.signals[sig] == [K.relative_l1(b, a) for a, b in zip(seen, seen[1:])]


def test_options_on_stay_within_the_bound(pipe):
    base = pipe(PROMPTS, **GEN)["latents"][0]
    for opts in (dict(attention_reuse=True), dict(step_cache=0.3), dict(attention_reuse=True, step_cache=0.3),
                 dict(attention_reuse=dict(spatial=2, temporal=3, cross=4, start=0.9, end=0.05), step_cache=dict(threshold=0.4, signal="first_block"))):
        r = pipe(PROMPTS, **GEN, **opts)
        s = r["settings"]["cache_stats"]
        d = rel(r["latents"][0], base)
        assert 0 < d < BOUND, (opts, d)
        assert s["steps"] == 30 and (s["attention_reused"] > 0 or s["skipped_steps"] > 0), (opts, s)
        if "step_cache" in opts: assert s["skipped_steps"] > 0 and s["computed_steps"] + s["skipped_steps"] == 30
    # the cache leaves nothing behind on the model
    net = pipe.model.model
    assert "run_blocks" not in vars(net) and not any({"attend", "cache"} & set(vars(b)) for b in net.blocks())
    assert not any("forward" in vars(b.cross_attn) for b in net.blocks())


def test_reuse_follows_the_pyramid(pipe):
    "Inside the range an output of kind k is reused until it is k steps old; outside it, always recomputed."
    k = dict(spatial=2, temporal=3, cross=4)
    cache = SamplingCache(attention_reuse=dict(**k, start=0.8, end=0.1))
    seen, orig = [], cache.attention
    def spy(block, kind, compute):
        before = cache.stats["attention_reused"]
        out = orig(block, kind, compute)
        seen.append((cache.step, cache.level, cache.index[block], kind, cache.stats["attention_reused"] > before))
        return out
    cache.attention = spy
    scheduler, z = RFlow(num_sampling_steps=12, cfg_scale=4.0, use_timestep_transform=False, shift=3.0), torch.randn(1, 16, 8, 4, 4)
    y = HashText().encode(PROMPTS[:1])["y"]
    with torch.no_grad():
        scheduler.sample(pipe.model, z, y=y, y_null=torch.zeros_like(y), progress=False, cache=cache)
    last = {}
    for step, level, block, kind, reused in seen:
        expect = 0.1 <= level <= 0.8 and step - last[block, kind] < k[kind]
        assert reused == expect, (step, level, kind, reused)
        if not reused: last[block, kind] = step
    assert sum(r for *_, r in seen) > 0


def test_settings_are_checked_before_any_work(pipe):
    with pytest.raises(ValueError, match="spacial"):
        pipe(PROMPTS, **GEN, attention_reuse=dict(spacial=2))
    with pytest.raises(ValueError, match="> 0"):
        pipe(PROMPTS, **GEN, step_cache=0)
    with pytest.raises(ValueError, match="end <= start"):
        pipe(PROMPTS, **GEN, attention_reuse=dict(start=0.1, end=0.5))


def test_long_video_and_conditioning_with_caches(pipe):
    "Loops (each a fresh cache) and a frame mask (image-to-video) work with both options on."
    first = torch.full((1, 3, 32, 32), 200, dtype=torch.uint8)
    r = pipe(["x"], image_size=(32, 32), num_frames=8, reference=[first], mask_strategy="0", loops=2, condition_frame_length=2,
             progress=False, attention_reuse=True, step_cache=0.3)
    assert r["videos"][0].shape[0] == 8 + (8 - 2) and r["settings"]["cache_stats"]["steps"] == 2 * 30


def test_cli_flags_reach_the_pipeline(pipe, tmp_path, monkeypatch):
    pipe.save_pretrained(tmp_path / "pipe")
    out = tmp_path / "out"
    orig = OpenSoraPipeline.from_pretrained.__func__  # the saved folder names MiniLM: load it with the toy encoder instead
    monkeypatch.setattr(OpenSoraPipeline, "from_pretrained",
                        classmethod(lambda cls, path, text_encoder=None, **kw: orig(cls, path, text_encoder=HashText(), **kw)))
    assert sample_cli([str(tmp_path / "pipe"), "--prompt", "a red circle", "--image-size", "32x32", "--num-frames", "8", "--sampling-steps", "12",
                       "--pab-k", "2,3,6", "--pab-range", "0.9,0.05", "--teacache", "0.2", "-o", str(out), "--quiet"]) == 0
    side = json.loads(next(out.glob("*.json")).read_text())
    assert side["attention_reuse"] == dict(spatial=2, temporal=3, cross=6, start=0.9, end=0.05)
    assert side["step_cache"] == dict(threshold=0.2, signal="modulated_input") and side["cache_stats"]["steps"] == 12
    with pytest.raises(SystemExit):
        sample_cli([str(tmp_path / "pipe"), "--prompt", "x", "--pab-k", "2,3"])

# (the speed benchmark's quick run and its judge: tests/test_benchmarks.py)
