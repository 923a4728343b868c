"""Fine-tuning (issue 18): bad inputs skipped with reasons, LoRA adapters (chapter 11b) saved/loaded/merged exactly, full and
temporal-only fine-tuning, resume, `opensora-nb finetune` and `opensora-nb sample --lora` end to end, all on a tiny random base
pipeline folder."""
import json
import re
import shutil

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from opensora_nb import finetune as F
from opensora_nb import lora as L
from opensora_nb.builders import PatchPCAAutoencoder, X0Parameterized, build_text_encoder, unwrap
from opensora_nb.inference import OpenSoraPipeline
from opensora_nb.io import write_video
from opensora_nb.rflow import RFlow
from opensora_nb.samples import render_shape_clip, shape_caption
from opensora_nb.stdit import STDiT3
from opensora_nb.text import build_tiny_t5
from toy_text import MetaText

KW = dict(image_size=(32, 32), num_frames=8, num_sampling_steps=2, seed=3, progress=False)
PROMPT = "a purple triangle moving left on a dark background"


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ft")
    te = dict(type="t5", from_pretrained=str(build_tiny_t5(d / "t5", d_model=32, num_layers=1, num_heads=2, d_ff=64)), model_max_length=16)
    torch.manual_seed(0)
    net = STDiT3(hidden_size=32, depth=1, num_heads=2, patch_size=(1, 1, 1), in_channels=16, caption_channels=32, model_max_length=16,
                 pred_sigma=False, input_sq_size=32)
    ae = PatchPCAAutoencoder(8, 16).fit(torch.rand(4, 3, 2, 32, 32) * 2 - 1)
    pipe = OpenSoraPipeline(X0Parameterized(net), ae, build_text_encoder(dict(text_encoder=te)),
                            RFlow(num_sampling_steps=2, cfg_scale=4.0, use_timestep_transform=False),
                            config=dict(text_encoder=te, defaults=dict(resolution="32px", aspect_ratio="1:1", num_frames=8, fps=8)))
    return pipe.save_pretrained(d / "base")


def _clip(path, n=12, direction="left", caption=True):
    write_video(path, render_shape_clip("triangle", "purple", direction, num_frames=n, height=48, width=64, seed=n), fps=8)
    if caption: path.with_suffix(".txt").write_text(shape_caption("triangle", "purple", direction))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    for i, direction in enumerate(["left", "right", "up", "down"]): _clip(d / f"clip{i}.mp4", direction=direction)
    write_video(d / "still.png", render_shape_clip("triangle", "purple", "static", num_frames=1, height=40, width=40))
    (d / "still.txt").write_text(shape_caption("triangle", "purple", None))
    return d


def _bad_folder(d):
    d.mkdir()
    (d / "broken.mp4").write_bytes(b"\x00\x01 not a video"); (d / "broken.txt").write_text("a broken clip")
    _clip(d / "nocaption.mp4", caption=False)
    _clip(d / "blank.mp4"); (d / "blank.txt").write_text(" \n ")
    _clip(d / "short.mp4", n=5)
    return d


def test_bad_inputs_are_skipped_with_reasons(clips, tmp_path):
    d = _bad_folder(tmp_path / "mixed")
    for f in ("clip0.mp4", "clip0.txt"): shutil.copy(clips / f, d / f)
    rows, skipped = F.collect_clips(d, num_frames=8, fps=8, verbose=False)
    assert [r["path"] for r in rows] == [str(d / "clip0.mp4")]
    reasons = {s["path"].rsplit("/", 1)[1]: s["reason"] for s in skipped}
    assert reasons["broken.mp4"].startswith("unreadable: not a video or corrupt")
    assert reasons["nocaption.mp4"] == "no caption: nocaption.txt is missing"
    assert reasons["blank.mp4"] == "no caption: blank.txt is empty"
    assert reasons["short.mp4"] == "too short: 5 frames, 8 needed (8 frames)"
    # a 24 fps clip for an 8 fps model: every 3rd frame, so 12 frames are too few for 8
    write_video(d / "fast.mp4", render_shape_clip("circle", "red", "up", num_frames=12, height=32, width=32), fps=24)
    (d / "fast.txt").write_text("a red circle")
    _, skipped = F.collect_clips(d, num_frames=8, fps=8, verbose=False)
    assert {s["path"].rsplit("/", 1)[1]: s["reason"] for s in skipped}["fast.mp4"] == "too short: 12 frames, 22 needed (8 frames, 1 in 3 of a 24 fps clip)"


def test_meta_csv_and_curate_folder(clips, tmp_path):
    pd.DataFrame(dict(path=["clip0.mp4", "clip1.mp4", "missing.mp4"], text=["a", None, "c"])).to_csv(clips / "meta.csv", index=False)
    try:
        rows, skipped = F.collect_clips(clips / "meta.csv", num_frames=8, fps=8, verbose=False)
    finally: (clips / "meta.csv").unlink()
    assert len(rows) == 1 and [s["reason"] for s in skipped] == ["no caption: empty 'text' on line 3 of meta.csv", "unreadable: no such file"]
    cur = tmp_path / "curated"; cur.mkdir()
    pd.DataFrame(dict(path=[str(clips / "clip0.mp4"), str(clips / "clip1.mp4")], text=["a. aesthetic score: 6.5."] * 2,
                      error=[None, "decode failed"])).to_csv(cur / "meta_final.csv", index=False)
    rows, skipped = F.collect_clips(cur, num_frames=8, fps=8, verbose=False)
    assert rows[0]["text"] == "a. aesthetic score: 6.5." and skipped[0]["reason"] == "curation error: decode failed"
    pd.DataFrame(dict(path=["clip0.mp4"])).to_csv(tmp_path / "nocap.csv", index=False)
    with pytest.raises(ValueError, match="has no 'text' column"): F.collect_clips(tmp_path / "nocap.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"): F.collect_clips(tmp_path / "nowhere")


def test_nothing_usable_is_one_error_before_any_model_loads(tmp_path):
    d = _bad_folder(tmp_path / "bad")
    fake = tmp_path / "fake_base"; fake.mkdir()  # a pipeline folder with no models in it: loading it would fail differently
    (fake / "model_index.json").write_text(json.dumps(dict(defaults=dict(resolution="32px", num_frames=8, fps=8))))
    with pytest.raises(ValueError) as e: F.finetune(d, fake, out=tmp_path / "out", run_dir=tmp_path / "run", progress=False)
    msg = str(e.value)
    assert msg.startswith(f"no usable clip in {d} (4 file(s))")
    for name in ("broken.mp4: unreadable", "nocaption.mp4: no caption", "blank.mp4: no caption", "short.mp4: too short"): assert name in msg
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="is the base pipeline folder"): F.finetune(d, fake, "full", out=fake)


def test_unknown_lora_target_lists_valid_names(base_dir, clips, tmp_path):
    pipe = OpenSoraPipeline.from_pretrained(base_dir)
    with pytest.raises(ValueError) as e: L.add_lora(pipe, targets=["attn.qkv", "attn.to_q"])
    msg = str(e.value)
    assert "['attn.to_q']" in msg and "cross_attn.kv_linear" in msg and "mlp.fc2" in msg and "final_layer.linear" in msg
    assert "spatial_blocks.0" not in msg and msg.count("attn.qkv") == 1  # deduplicated by the name after the block index
    assert L.lora_layers(pipe) == {}  # nothing was injected
    with pytest.raises(ValueError, match="in its temporal blocks"): L.add_lora(pipe, targets=["final_layer.linear"], only_temporal=True)
    with pytest.raises(ValueError, match="attn.to_q"):
        F.finetune_cli([str(clips), "--base", str(base_dir), "--targets", "attn.to_q", "-o", str(tmp_path / "o"), "--quiet"])
    assert not (tmp_path / "o").exists()


def test_lora_save_load_merge_round_trip(base_dir, clips, tmp_path):
    ft, rep = F.finetune(clips, base_dir, "lora", out=tmp_path / "lora", steps=3, lr=1e-2, progress=False, verbose=False)
    assert rep["steps"] == 3 and rep["clips"] == 4 and rep["images"] == 1 and 0 < rep["trainable_params"] < rep["total_params"] / 5
    assert rep["seconds_train"] > 0 and rep["peak_rss_mb"] >= 0
    w = load_file(str(tmp_path / "lora" / L.ADAPTER_WEIGHTS))
    assert all(".lora_A.weight" in k or ".lora_B.weight" in k for k in w) and sum(v.numel() for v in w.values()) == rep["trainable_params"]
    assert (tmp_path / "lora" / L.ADAPTER_WEIGHTS).stat().st_size == rep["adapter_bytes"] < 512 * 1024
    cfg = json.loads((tmp_path / "lora" / L.ADAPTER_CONFIG).read_text())
    assert (cfg["r"], cfg["lora_alpha"], cfg["steps"], cfg["base"], cfg["targets"]) == (8, 8, 3, str(base_dir.resolve()), list(L.LORA_TARGETS))
    ref = ft(PROMPT, **KW)["latents"][0]
    base = OpenSoraPipeline.from_pretrained(base_dir)
    assert not torch.allclose(ref, base(PROMPT, **KW)["latents"][0], atol=1e-4)  # the adapter changed something
    fresh = L.load_lora(OpenSoraPipeline.from_pretrained(base_dir), tmp_path / "lora")
    assert torch.equal(fresh(PROMPT, **KW)["latents"][0], ref)  # exactly the in-memory fine-tuned pipeline
    base_w = load_file(str(base_dir / "transformer" / "model.safetensors"))
    L.merge_lora(fresh)
    torch.testing.assert_close(fresh(PROMPT, **KW)["latents"][0], ref, atol=1e-4, rtol=0)
    L.unmerge_lora(fresh)
    for k, v in unwrap(fresh.model).state_dict().items():
        if ".base_layer." in k: torch.testing.assert_close(v, base_w[k.replace(".base_layer", "")], atol=1e-6, rtol=0)
    merged = L.load_lora(OpenSoraPipeline.from_pretrained(base_dir), tmp_path / "lora", merge=True)
    torch.testing.assert_close(merged(PROMPT, **KW)["latents"][0], ref, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="already has a LoRA adapter"): L.load_lora(merged, tmp_path / "lora")
    with pytest.raises(FileNotFoundError, match="not a LoRA adapter folder"): L.load_lora(base, tmp_path)


def test_adapter_for_another_base_is_refused(base_dir, clips, tmp_path):
    F.finetune(clips, base_dir, "lora", out=tmp_path / "lora", steps=1, progress=False, verbose=False)
    cfg = json.loads((tmp_path / "lora" / L.ADAPTER_CONFIG).read_text())
    cfg["target_modules"].append("spatial_blocks.7.attn.qkv")
    (tmp_path / "lora" / L.ADAPTER_CONFIG).write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not fit this pipeline"): L.load_lora(OpenSoraPipeline.from_pretrained(base_dir), tmp_path / "lora")


def test_ema_shares_the_frozen_weights(base_dir):
    pipe = OpenSoraPipeline.from_pretrained(base_dir); L.add_lora(pipe, rank=2)
    ema = F._shared_ema(pipe.model)
    for (n, p), (_, q) in zip(pipe.model.named_parameters(), ema.named_parameters()):
        assert (p is q) == (not p.requires_grad), n
    assert not any(q.requires_grad for q in ema.parameters())


def test_full_only_temporal_changes_only_temporal_blocks(base_dir, clips, tmp_path):
    _, rep = F.finetune(clips, base_dir, "full", out=tmp_path / "full", steps=2, lr=1e-3, only_temporal=True, progress=False, verbose=False)
    a, b = load_file(str(base_dir / "transformer" / "model.safetensors")), load_file(str(tmp_path / "full" / "transformer" / "model.safetensors"))
    assert a.keys() == b.keys()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and all(k.startswith("temporal_blocks.") for k in changed)
    assert rep["trainable_params"] == sum(v.numel() for k, v in a.items() if k.startswith("temporal_blocks."))
    OpenSoraPipeline.from_pretrained(tmp_path / "full")(PROMPT, **KW)  # a pipeline folder that samples


def test_resume_from_run_dir_continues(base_dir, clips, tmp_path):
    kw = dict(lr=1e-3, progress=False, verbose=False)
    _, r2 = F.finetune(clips, base_dir, "lora", run_dir=tmp_path / "run", steps=2, **kw)
    p4, r4 = F.finetune(clips, base_dir, "lora", run_dir=tmp_path / "run", steps=4, **kw)
    straight, _ = F.finetune(clips, base_dir, "lora", steps=4, **kw)
    assert (r2["resumed_from"], r4["resumed_from"], r4["steps"]) == (None, 2, 4)
    a, b = L.lora_state_dict(p4), L.lora_state_dict(straight)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="does not fit this fine-tuning"):
        F.finetune(clips, base_dir, "lora", run_dir=tmp_path / "run", steps=5, rank=4, **kw)


def test_cli_end_to_end(base_dir, clips, tmp_path, capsys):
    from opensora_nb.cli import SUBCOMMANDS, main
    from opensora_nb.inference import sample_cli
    assert SUBCOMMANDS["finetune"][:2] == ("opensora_nb.finetune", "finetune_cli")
    out, merged = tmp_path / "adapter", tmp_path / "merged"
    assert main(["finetune", str(clips), "--base", str(base_dir), "--max-steps", "2", "--rank", "4", "--alpha", "4", "--only-temporal",
                 "--targets", "attn.qkv,mlp.fc1", "--mask-ratios", '{"image_head": 0.5}', "-o", str(out),
                 "--save-merged", str(merged), "--quiet"]) == 0
    assert "finetune (lora): 2 steps" in capsys.readouterr().out
    cfg = json.loads((out / L.ADAPTER_CONFIG).read_text())
    assert cfg["r"] == 4 and all(m.startswith("temporal_blocks.") for m in cfg["target_modules"]) and len(cfg["target_modules"]) == 2
    assert (tmp_path / "adapter_run" / "last").exists()  # the run folder beside the output: the same command resumes
    report = json.loads((out / "finetune.json").read_text())
    assert report["steps"] == 2 and report["only_temporal"] is True
    assert sample_cli([str(merged), "--prompt", PROMPT, "--num-frames", "8", "--sampling-steps", "2", "-o", str(tmp_path / "s"), "--quiet"]) == 0
    assert (tmp_path / "s" / "sample_0000.mp4").exists()
    assert main(["finetune", str(tmp_path / "nowhere"), "--base", str(base_dir), "-o", str(tmp_path / "o2")]) == 2
    assert "opensora-nb finetune: error: fine-tuning data" in capsys.readouterr().err


def test_sample_cli_with_lora_draws_the_fine_tuned_model(base_dir, clips, tmp_path, monkeypatch, capsys):
    "`opensora-nb sample BASE --lora ADAPTER` samples what the fine-tuned pipeline in memory samples (merged: up to float rounding)."
    from opensora_nb import inference
    from opensora_nb.cli import main
    ft, _ = F.finetune(clips, base_dir, "lora", out=tmp_path / "lora", steps=3, lr=1e-2, progress=False, verbose=False)
    seen, save = [], inference.save_outputs
    monkeypatch.setattr(inference, "save_outputs", lambda res, *a, **k: seen.append(res) or save(res, *a, **k))
    args = ["--prompt", PROMPT, "--num-frames", "8", "--sampling-steps", "2", "--seed", "5", "--quiet"]
    assert main(["sample", str(base_dir), "--lora", str(tmp_path / "lora"), "-o", str(tmp_path / "s"), *args]) == 0
    assert main(["sample", str(base_dir), "-o", str(tmp_path / "plain"), *args]) == 0
    (got, plain) = seen
    want = ft(PROMPT, resolution="32px", aspect_ratio="1:1", num_frames=8, fps=8, seed=5, num_sampling_steps=2, progress=False)
    # the same call (the command adds what it wrote with: the adapter and the saved fps)
    assert {k: v for k, v in got["settings"].items() if k not in ("lora", "save_fps")} == want["settings"]
    torch.testing.assert_close(got["latents"][0], want["latents"][0], atol=1e-4, rtol=0)
    assert not torch.allclose(plain["latents"][0], want["latents"][0], atol=1e-3)  # without --lora: the base model
    fresh = L.load_lora(OpenSoraPipeline.from_pretrained(base_dir), tmp_path / "lora", merge=True)
    same = fresh(PROMPT, resolution="32px", aspect_ratio="1:1", num_frames=8, fps=8, seed=5, num_sampling_steps=2, progress=False)
    assert torch.equal(got["latents"][0], same["latents"][0]) and all(torch.equal(a, b) for a, b in zip(got["videos"], same["videos"]))
    side = json.loads((tmp_path / "s" / "sample_0000.json").read_text())
    assert side["lora"] == str(tmp_path / "lora") and "lora" not in json.loads((tmp_path / "plain" / "sample_0000.json").read_text())
    capsys.readouterr()
    with pytest.raises(SystemExit): main(["sample", str(base_dir), "--lora", str(tmp_path), "-o", str(tmp_path / "x"), *args])
    assert "not a LoRA adapter folder" in capsys.readouterr().err


def test_lora_training_step_on_meta():
    "Placement: peft's LoRA layers are made where the model is, and a fine-tuning step runs there (a CPU tensor would fail)."
    from opensora_nb.builders import FeatureBatches
    from opensora_nb.train import Trainer
    net = STDiT3(hidden_size=32, depth=1, num_heads=2, patch_size=(1, 1, 1), in_channels=16, caption_channels=32, model_max_length=16,
                 pred_sigma=False, input_sq_size=32)
    pipe = OpenSoraPipeline(X0Parameterized(net), PatchPCAAutoencoder(8, 16), MetaText(32, 16), RFlow(use_timestep_transform=False)).to("meta")
    L.add_lora(pipe)
    assert {p.device.type for p in pipe.model.parameters()} == {"meta"}
    tr = Trainer(F.finetune_config(pipe, steps=1, device="meta"), model=pipe.model)
    tr.ema = F._shared_ema(tr.model)
    fb = FeatureBatches({"t4": dict(z=torch.randn(2, 16, 4, 4, 4), text_idx=torch.arange(2), fps=8, height=32, width=32, num_frames=4)},
                        torch.randn(2, 16, 32), torch.ones(2, 16, dtype=torch.long), {"t4": 2})
    assert tr.step(fb.next_batch()).device.type == "meta"


# --- issue 24: the training scheduler, the EMA made once, T5 and the VAE off the accelerator, clips checked before loading ---

def test_training_scheduler_is_v1_2s_logit_normal_on_the_pipelines_schedule(base_dir):
    "The base's sampling scheduler draws uniformly (RFlow's default); fine-tuning draws as v1.2 trains: logit-normal."
    from opensora_nb.builders import get_config
    from opensora_nb.train import Trainer
    pipe = OpenSoraPipeline.from_pretrained(base_dir)
    pipe.scheduler = RFlow(num_sampling_steps=2, use_timestep_transform=False, shift=3.0)
    assert pipe.scheduler.sample_method == "uniform"
    cfg = F.finetune_config(pipe, steps=1)
    recipe = get_config("v1_2_stage3")["scheduler"]
    assert recipe["sample_method"] == "logit-normal"
    assert {k: cfg["scheduler"][k] for k in ("type", "sample_method")} == {k: recipe[k] for k in ("type", "sample_method")}
    assert (cfg["scheduler"]["use_timestep_transform"], cfg["scheduler"]["shift"]) == (False, 3.0)  # the base's noise schedule
    t = Trainer(cfg, model=pipe.model).scheduler.sample_t(20000, generator=torch.Generator().manual_seed(0)) / 1000
    middle = float(((t > 0.25) & (t < 0.75)).float().mean())
    assert middle > 0.68, middle  # logit-normal(0, 1): 0.73 of the draws in the middle half (uniform: 0.50)


class _StubVAE:
    "A VAE of shapes only, on any device: the features are made by a stand-in (the data stage) in these tests."
    out_channels = 16
    def __init__(self): self.device = torch.device("cpu")
    def eval(self): return self
    def to(self, device=None, dtype=None):
        if device is not None: self.device = torch.device(device)
        return self
    def get_latent_size(self, size): return [size[0], size[1] // 8, size[2] // 8]


def test_finetune_on_meta_ema_once_and_encoders_parked(clips, monkeypatch):
    """A fine-tuning run with meta standing in for CUDA: LoRA injected, the EMA made once of the final model (one model copy,
    sharing the frozen weights), T5 and the VAE on the CPU while the model trains, back on the device after, the training steps
    on meta. The features come from a stand-in for `clip_features` (the data stage: host-side tensors, as the real one returns)."""
    import copy
    from opensora_nb.builders import FeatureBatches
    from opensora_nb.train import Trainer
    net = STDiT3(hidden_size=32, depth=1, num_heads=2, patch_size=(1, 1, 1), in_channels=16, caption_channels=32, model_max_length=16,
                 pred_sigma=False, input_sq_size=32)
    pipe = OpenSoraPipeline(X0Parameterized(net), _StubVAE(), MetaText(32, 16), RFlow(use_timestep_transform=False),
                            config=dict(defaults=dict(image_size=[32, 32], num_frames=4, fps=8)))
    seen = {}
    def encode(p, rows, T, size, fps, batch_size, seed, progress):
        seen["encoding"] = (p.text_encoder.device.type, p.vae.device.type)
        n = len(rows)
        return FeatureBatches({"t4": dict(z=torch.randn(n, 16, T, 4, 4), text_idx=torch.zeros(n, dtype=torch.long), fps=fps, height=32,
                                          width=32, num_frames=T)}, torch.randn(1, 16, 32), torch.ones(1, 16, dtype=torch.long), {"t4": 2})
    monkeypatch.setattr(F, "clip_features", encode)
    fit = Trainer.fit
    def spy_fit(self, *a, **k):
        seen["training"] = (pipe.text_encoder.device.type, pipe.vae.device.type)
        seen["trainer"] = self
        return fit(self, *a, **k)
    monkeypatch.setattr(Trainer, "fit", spy_fit)
    copies, depth, deepcopy = [], [0], copy.deepcopy
    def counting(x, memo=None, _nil=[]):
        if depth[0] == 0 and isinstance(x, torch.nn.Module): copies.append(type(x).__name__)
        depth[0] += 1
        try: return deepcopy(x, memo)
        finally: depth[0] -= 1
    monkeypatch.setattr(copy, "deepcopy", counting)
    _, rep = F.finetune(clips, pipe, "lora", steps=2, device="meta", progress=False, verbose=False)
    assert rep["steps"] == 2 and rep["device"] == "meta"
    assert seen["encoding"] == ("meta", "meta") and seen["training"] == ("cpu", "cpu")  # parked once the features exist
    assert (pipe.text_encoder.device.type, pipe.vae.device.type) == ("meta", "meta")      # and back when training is done
    assert copies == ["X0Parameterized"], copies  # one copy of the model: the EMA, made after LoRA went in
    tr = seen["trainer"]
    assert {p.device.type for p in tr.model.parameters()} == {"meta"}
    for (n, p), (_, q) in zip(tr.model.named_parameters(), tr.ema.named_parameters()):
        assert (p is q) == (not p.requires_grad), n  # the frozen base weights are shared, only A and B are averaged


def test_official_base_loads_only_after_the_clips_are_checked(clips, tmp_path, monkeypatch, capsys):
    "`--base official`: a folder without a usable clip is one line, exit 2, with no checkpoint loaded; usable clips: then it loads."
    from opensora_nb.cli import main
    def loading(*a, **k): raise AssertionError("the official checkpoints were loaded")
    monkeypatch.setattr(OpenSoraPipeline, "from_official", classmethod(loading))
    d = _bad_folder(tmp_path / "bad")
    assert main(["finetune", str(d), "--base", "official", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"opensora-nb finetune: error: no usable clip in {d}") and not (tmp_path / "out").exists()
    with pytest.raises(AssertionError, match="were loaded"):  # 51 frames at 24 fps (v1.2's defaults): give 8 to use these clips
        F.finetune(clips, "official", num_frames=8, progress=False, verbose=False)


@pytest.mark.parametrize("flag", ["--max-steps", "--steps"])
def test_max_steps_and_its_old_spelling(flag, base_dir, clips, tmp_path, capsys):
    out = tmp_path / "adapter"
    assert F.finetune_cli([str(clips), "--base", str(base_dir), flag, "2", "-o", str(out), "--quiet"]) == 0
    assert json.loads((out / "finetune.json").read_text())["steps"] == 2
    err = capsys.readouterr().err
    assert [l for l in err.splitlines() if "deprecated" in l] == (["opensora-nb finetune: --steps is deprecated, use --max-steps"]
                                                                  if flag == "--steps" else []), err
    with pytest.raises(SystemExit): F.finetune_cli(["--help"])
    h = " ".join(capsys.readouterr().out.split())
    assert "--max-steps" in h and not re.search(r"(?<![\w-])--steps", h)  # the old spelling is hidden
    assert "compute precision: fp32, bf16 or fp16 (training: autocast over float32 weights)" in h
