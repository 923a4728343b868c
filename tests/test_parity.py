"""Same inputs, same outputs as Open-Sora v1.2.0 (issue 29): golden cases made by the reference's own code, in tests/golden/.

- prompt_cleaning.json (tools/golden_prompt_cleaning.py): raw prompts and the reference's `text_preprocessing` of them,
  and the text its scripts/inference.py hands the encoder (per-loop split, score suffixes, cleaning, merge).
- loops_tiny.{json,safetensors} (tools/golden_loops.py): a 2-loop generation of a tiny random pipeline, 3 prompts in
  batches of 2, run by the reference's loop code (decode, re-encode the condition frames, `align`, one seeded stream).
"""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from opensora_nb.inference import OpenSoraPipeline, _append_latent, prepare_prompts, sample_args, sample_parser, sample_run
from opensora_nb.io import denormalize
from opensora_nb.rflow import RFlow
from opensora_nb.stdit import STDiT3
from opensora_nb.text import clean_caption, text_preprocessing
from toy_text import HashText

GOLDEN = Path(__file__).parent / "golden"


def _meta(name):
    return json.loads((GOLDEN / name).read_text())


def test_golden_files_name_the_reference_and_their_script():
    root = Path(__file__).resolve().parents[1]
    for name in ("prompt_cleaning.json", "loops_tiny.json"):
        m = _meta(name)
        assert m["reference"]["tag"] == "v1.2.0" and len(m["reference"]["commit"]) == 40
        assert (root / m["script"]).exists(), m["script"]


# --- item 1: the reference's prompt cleaning ---

def test_prompt_cleaning_equals_the_reference_on_every_golden_prompt():
    cases = _meta("prompt_cleaning.json")["cases"]
    assert len(cases) >= 60
    for c in cases:
        assert text_preprocessing(c["raw"]) == c["cleaned"], c["raw"]
        assert clean_caption(c["raw"]) == c["one_pass"], c["raw"]


def test_prompts_reach_the_encoder_as_the_reference_sends_them():
    for c in _meta("prompt_cleaning.json")["pipeline"]:
        assert prepare_prompts([c["raw"]], **c["scores"]) == [c["full_prompt"]], c


def _pipe(text=None):
    torch.manual_seed(0)
    from opensora_nb.builders import PatchPCAAutoencoder, X0Parameterized
    net = STDiT3(hidden_size=32, depth=1, num_heads=2, patch_size=(1, 1, 1), in_channels=16, caption_channels=16, model_max_length=8,
                 pred_sigma=False, input_sq_size=32)
    ae = PatchPCAAutoencoder(8, 16).fit(torch.rand(4, 3, 2, 32, 32) * 2 - 1)
    return OpenSoraPipeline(X0Parameterized(net), ae, text or HashText(), RFlow(num_sampling_steps=2, cfg_scale=4.0, use_timestep_transform=False))


class _Recorder(HashText):
    "HashText that remembers what it was asked to encode."
    def encode(self, prompts):
        self.seen = list(prompts)
        return super().encode(prompts)


def test_pipeline_cleans_prompts_unless_told_not_to(tmp_path):
    te = _Recorder(); pipe = _pipe(te)
    kw = dict(image_size=(32, 32), num_frames=2, progress=False, aes=6.5)
    r = pipe(["A Red Circle (slowly) @bob"], **kw)
    assert te.seen == ["a red circle slowly aesthetic score: 6.5."] == r["settings"]["full_prompts"]
    assert r["settings"]["clean_prompt"] is True
    pipe(["A Red Circle (slowly) @bob"], clean_prompt=False, **kw)
    assert te.seen == ["A Red Circle (slowly) @bob aesthetic score: 6.5."]
    # the command line: cleaned by default, --no-clean-prompt sends the text as typed
    base = ["(pipe)", "--prompt", "A Red Circle", "--image-size", "32x32", "--num-frames", "2", "--quiet", "-o", str(tmp_path)]
    a = sample_args(sample_parser(), base)
    assert a.clean_prompt is True
    sample_run(a, pipe, write=False); assert te.seen == ["a red circle"]
    a = sample_args(sample_parser(), base + ["--no-clean-prompt"])
    sample_run(a, pipe, write=False); assert te.seen == ["A Red Circle"]


# --- item 2: loops as the reference, align passed through ---

def _golden_loop_pipe():
    from opensora_nb.vae import tiny_vae_v1_2
    m, t = _meta("loops_tiny.json"), load_file(str(GOLDEN / "loops_tiny.safetensors"))
    vae = tiny_vae_v1_2(config_2d=m["vae"]["config_2d"], config_temporal=m["vae"]["config_temporal"]).eval()
    vae.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("vae.")}, strict=True)
    net = STDiT3(in_channels=vae.out_channels, **m["model"]).eval()
    net.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")}, strict=True)
    c = m["case"]
    te = HashText(dim=m["model"]["caption_channels"], L=m["model"]["model_max_length"])
    sch = RFlow(num_sampling_steps=c["num_sampling_steps"], cfg_scale=c["cfg_scale"], use_timestep_transform=c["use_timestep_transform"])
    return OpenSoraPipeline(net, vae, te, sch), m, t


def test_two_loops_equal_the_reference():
    "Final latents of each loop, the re-encoded condition frames and every joined video equal the reference's loop code."
    pipe, m, t = _golden_loop_pipe()
    c = m["case"]
    res = pipe(c["prompts"], image_size=tuple(c["image_size"]), num_frames=c["num_frames"], fps=c["fps"], seed=c["seed"],
               seed_mode="reference", batch_size=c["batch_size"], loops=c["loops"], condition_frame_length=c["condition_frame_length"],
               condition_frame_edit=c["condition_frame_edit"], align=c["align"], aes=c["aes"], progress=False)
    assert res["settings"]["full_prompts"] == m["full_prompts"]
    nb = len(m["mask_strategies"])
    for k in range(c["loops"]):
        want = torch.cat([t[f"out.batch{b}.loop{k}.latents"] for b in range(nb)])
        torch.testing.assert_close(res["latents"][k], want, atol=1e-5, rtol=0)
    cfl = c["condition_frame_length"]
    cond = torch.cat([t[f"out.batch{b}.loop1.cond"] for b in range(nb)])
    torch.testing.assert_close(res["latents"][1][:, :, :cfl], cond[:, :, -cfl:], atol=1e-5, rtol=0)  # the decoded video, encoded again
    assert not torch.allclose(res["latents"][1][:, :, :cfl], res["latents"][0][:, :, -cfl:], atol=1e-3)  # not the latents reused
    for j, v in enumerate(res["videos"]):
        want = denormalize(t[f"out.video{j}"])
        assert v.shape == want.shape
        assert (v.int() - want.int()).abs().max() <= 1 and (v != want).float().mean() < 1e-3, j


def test_loop_mask_strategies_are_the_references():
    "The deterministic part: the mask strategy each loop adds, as the reference's append_generated writes it."
    m = _meta("loops_tiny.json"); cfl, edit = m["case"]["condition_frame_length"], m["case"]["condition_frame_edit"]
    for batch in m["mask_strategies"]:
        refs, strategies = [[] for _ in batch[0]], list(batch[0])
        for k in range(1, len(batch)):
            refs, strategies = _append_latent(refs, strategies, torch.zeros(len(refs), 1), k, cfl, edit)
            assert strategies == batch[k]


def test_align_reaches_the_mask_strategy():
    "A start at latent frame 3 goes to frame 5 with align=5 (the reference's find_nearest_point); align=0 turns it off."
    pipe = _pipe()
    ref = torch.full((1, 3, 32, 32), 200, dtype=torch.uint8)
    kw = dict(image_size=(32, 32), num_frames=16, reference=[ref], mask_strategy="0,0,0,3,1", progress=False)
    z_ref = pipe.vae.encode(torch.full((1, 3, 1, 32, 32), 200 / 127.5 - 1))[:, :, 0]
    off = pipe(["x"], **kw)["latents"][0]
    on = pipe(["x"], align=5, **kw)
    assert on["settings"]["align"] == 5 and off[0].shape[1] == 16
    torch.testing.assert_close(off[:, :, 3], z_ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(on["latents"][0][:, :, 5], z_ref, atol=1e-4, rtol=0)
    assert not torch.allclose(on["latents"][0][:, :, 3], z_ref, atol=1e-2)
    pipe.config["defaults"] = dict(align=5)  # a pipeline's stored align is the default; 0 turns it off
    torch.testing.assert_close(pipe(["x"], **kw)["latents"][0], on["latents"][0])
    torch.testing.assert_close(pipe(["x"], align=0, **kw)["latents"][0], off)
    assert sample_args(sample_parser(), ["(pipe)", "--prompt", "x", "--align", "5"]).align == 5


# --- item 3: the reference's seed order ---

class _NoiseRecorder(RFlow):
    "RFlow that remembers the noise each sampling call starts from."
    def sample(self, model, z, *a, **k):
        self.calls = getattr(self, "calls", []); self.calls.append(z.clone())
        return super().sample(model, z, *a, **k)


def _seed_pipe():
    pipe = _pipe()
    pipe.scheduler = _NoiseRecorder(num_sampling_steps=2, cfg_scale=4.0, use_timestep_transform=False)
    return pipe


def _calls(pipe, prompts, **kw):
    "The noise each sampling call (batch x loop) started from; the scheduler is copied per call, so record on the class."
    calls = []
    orig = _NoiseRecorder.sample
    def rec(self, model, z, *a, **k):
        calls.append(z.clone()); return orig(self, model, z, *a, **k)
    _NoiseRecorder.sample = rec
    try: res = pipe(prompts, **kw)
    finally: _NoiseRecorder.sample = orig
    return res, calls


def test_reference_seed_order_is_one_stream_drawn_in_order():
    """seed_mode='reference': one generator seeded once; batch after batch and loop after loop it gives the initial noise,
    then one draw per sampling step (the reference's sampler draws fresh noise each step for its frame mask)."""
    pipe, steps, loops = _seed_pipe(), 2, 2
    kw = dict(image_size=(32, 32), num_frames=4, num_sampling_steps=steps, loops=loops, condition_frame_length=1, progress=False)
    before = torch.get_rng_state()
    res, calls = _calls(pipe, ["a", "b", "c"], seed=3, seed_mode="reference", batch_size=2, **kw)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's global stream is left as it was
    lat = tuple(res["latents"][0].shape[1:])
    g, want = torch.Generator().manual_seed(3), []  # one stream, drawn by hand in the reference's order
    for batch in ([0, 1], [2]):
        for loop in range(loops):
            want.append(torch.randn(len(batch), *lat, generator=g))
            for _ in range(steps): torch.randn(len(batch), *lat, generator=g)  # the sampler's per-step noise
    assert len(calls) == len(want) == 4
    for k, (z, w) in enumerate(zip(calls, want)):
        if k % loops == 0: assert torch.equal(z, w), k  # loop 0: all noise
        else: assert torch.equal(z[:, :, 1:], w[:, :, 1:]), k  # later loops: the condition frame written over frame 0
    assert res["settings"]["seed"] == 3 and res["settings"]["seed_mode"] == "reference"
    # the default: prompt i draws from its own generator seeded seed + i, whatever the batch
    _, calls = _calls(pipe, ["a", "b", "c"], seed=3, batch_size=2, **{**kw, "loops": 1})
    for i, z in enumerate(torch.cat(calls)):
        assert torch.equal(z, torch.randn(1, *lat, generator=torch.Generator().manual_seed(3 + i))[0]), i
    with pytest.raises(ValueError, match="give one seed"): pipe(["a", "b"], seed=[1, 2], seed_mode="reference", **kw)
    with pytest.raises(ValueError, match="seed_mode 'other'"): pipe(["a"], seed_mode="other", **kw)


def test_cli_seed_mode_reference(tmp_path):
    pipe = _seed_pipe()
    base = ["(pipe)", "--prompt", "a", "--prompt", "b", "--prompt", "c", "--image-size", "32x32", "--num-frames", "2", "--quiet",
            "--batch-size", "2", "--seed", "3", "-o", str(tmp_path)]
    assert sample_args(sample_parser(), base).seed_mode == "per-prompt"
    a = sample_args(sample_parser(), base + ["--seed-mode", "reference"])
    paths = sample_run(a, pipe)
    assert [p.name for p in paths] == ["sample_0000.mp4", "sample_0001.mp4", "sample_0002.mp4"]
    side = json.loads(paths[2].with_suffix(".json").read_text())
    assert side["seed_mode"] == "reference" and side["seed"] == 3 and side["batch_size"] == 2
    one = pipe(["a", "b", "c"], image_size=(32, 32), num_frames=2, seed=3, seed_mode="reference", batch_size=2, progress=False)
    assert side["full_prompts"] == one["settings"]["full_prompts"][2]
    with pytest.raises(ValueError, match="one process"): sample_run(a, pipe, batches=[[2]])  # a share of the batches
    with pytest.raises(SystemExit): sample_args(sample_parser(), base + ["--seed-mode", "other"])


def test_per_prompt_seed_covers_the_vae_posterior_samples():
    "Default mode: a VAE that samples its posterior encodes prompt i's reference on a stream of prompt i's own: same latents alone."
    pipe, m, _ = _golden_loop_pipe()
    img = torch.full((1, 3, 16, 16), 180, dtype=torch.uint8)
    kw = dict(image_size=(16, 16), num_frames=17, num_sampling_steps=1, mask_strategy="0", progress=False)
    torch.manual_seed(1); both = pipe(["a", "b"], reference=[img, img], seed=5, **kw)["latents"][0]
    torch.manual_seed(2); alone = pipe(["b"], reference=[img], seed=6, **kw)["latents"][0]
    torch.testing.assert_close(alone[0], both[1], atol=1e-6, rtol=0)
    assert pipe.vae.sample_posterior and not torch.allclose(both[0, :, 0], both[1, :, 0], atol=1e-4)  # each its own draw


def test_per_prompt_reference_encoding_leaves_the_prompt_noise_alone():
    "The references' side stream is hashed from the seed, not drawn from the prompt's generator: its noise is as without one."
    from opensora_nb.inference import side_seed
    pipe, img = _seed_pipe(), torch.full((1, 3, 32, 32), 200, dtype=torch.uint8)
    res, calls = _calls(pipe, ["a"], seed=4, reference=[img], mask_strategy="0", image_size=(32, 32), num_frames=4, progress=False)
    lat = tuple(res["latents"][0].shape[1:])
    assert torch.equal(calls[0][:, :, 1:], torch.randn(1, *lat, generator=torch.Generator().manual_seed(4))[:, :, 1:])
    assert len({side_seed(4, 0), side_seed(4, 1), side_seed(5, 0)}) == 3
