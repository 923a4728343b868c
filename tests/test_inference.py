"""Inference: the `opensora-nb sample` CLI on a tiny random pipeline folder, every mode, sidecars, bad inputs."""
import json

import pytest
import torch

from opensora_nb.inference import OpenSoraPipeline, resolve_num_frames, resolve_size, sample_cli
from opensora_nb.rflow import RFlow
from opensora_nb.stdit import STDiT3
from opensora_nb.builders import PatchPCAAutoencoder, X0Parameterized
from toy_text import HashText


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("pipe")
    net = STDiT3(hidden_size=32, depth=1, num_heads=2, patch_size=(1, 1, 1), in_channels=16, caption_channels=16, model_max_length=8,
                 pred_sigma=False, input_sq_size=32)
    ae = PatchPCAAutoencoder(8, 16).fit(torch.rand(4, 3, 2, 32, 32) * 2 - 1)
    pipe = OpenSoraPipeline(X0Parameterized(net), ae, HashText(), RFlow(num_sampling_steps=2, cfg_scale=4.0, use_timestep_transform=False))
    pipe.save_pretrained(d)
    return d


@pytest.fixture(autouse=True)
def hash_text(monkeypatch):
    import opensora_nb.inference as T
    orig = T.build_text_encoder
    monkeypatch.setattr(T, "build_text_encoder", lambda cfg: HashText() if cfg["text_encoder"]["type"] == "minilm" else orig(cfg))


def test_cli_t2v_with_sidecar(pipe_dir, tmp_path):
    pf = tmp_path / "prompts.txt"; pf.write_text("a red circle moving left\n\na blue square standing still\n")
    assert sample_cli([str(pipe_dir), "--prompt-file", str(pf), "--resolution", "32px", "--aspect-ratio", "2:3",
                       "--num-frames", "8", "--sampling-steps", "2", "--aes", "6.5", "--format", "gif", "-o", str(tmp_path / "o"), "--quiet"]) == 0
    files = sorted((tmp_path / "o").iterdir())
    assert [f.suffix for f in files] == [".gif", ".json", ".gif", ".json"]
    side = json.loads(files[1].read_text())
    assert side["prompts"] == "a red circle moving left" and side["image_size"] == [32, 48]
    assert side["full_prompts"].endswith("aesthetic score: 6.5.") and side["num_sampling_steps"] == 2


def test_cli_image_i2v_loop(pipe_dir, tmp_path):
    from opensora_nb.io import write_video
    ref = tmp_path / "ref.png"; write_video(ref, torch.full((1, 3, 32, 32), 180, dtype=torch.uint8))
    assert sample_cli([str(pipe_dir), "--prompt", "x", "--image-size", "32x32", "--num-frames", "1", "-o", str(tmp_path / "img"), "--quiet"]) == 0
    assert (tmp_path / "img" / "sample_0000.png").exists()
    assert sample_cli([str(pipe_dir), "--prompt", "x", "--image-size", "32x32", "--seconds", "1", "--fps", "8", "--reference", str(ref),
                       "--mask-strategy", "0", "--loops", "2", "--condition-frame-length", "2", "-o", str(tmp_path / "i2v"), "--quiet"]) == 0
    side = json.loads((tmp_path / "i2v" / "sample_0000.json").read_text())
    assert side["num_frames"] == 8 and side["loops"] == 2 and side["reference"] == str(ref)


def test_errors(pipe_dir, tmp_path):
    with pytest.raises(SystemExit): sample_cli([str(tmp_path / "nowhere"), "--prompt", "x"])
    with pytest.raises(SystemExit): sample_cli([str(pipe_dir)])
    with pytest.raises(KeyError): resolve_size("999p", "1:1")
    with pytest.raises(ValueError): resolve_num_frames(None)
    pipe = OpenSoraPipeline.from_pretrained(pipe_dir)
    with pytest.raises(ValueError, match="needs a reference"): pipe("x", image_size=(32, 32), num_frames=8, mask_strategy="0", progress=False)


# --- issue 14: a call leaves the pipeline as it was, each prompt has its own seed, long videos join without repeats ---

def _tiny_pipe():
    torch.manual_seed(0)
    net = STDiT3(hidden_size=32, depth=1, num_heads=2, patch_size=(1, 1, 1), in_channels=16, caption_channels=16, model_max_length=8,
                 pred_sigma=False, input_sq_size=32)
    ae = PatchPCAAutoencoder(8, 16).fit(torch.rand(4, 3, 2, 32, 32) * 2 - 1)
    return OpenSoraPipeline(X0Parameterized(net), ae, HashText(), RFlow(num_sampling_steps=2, cfg_scale=4.0, use_timestep_transform=False))


def test_call_leaves_the_pipeline_as_it_was():
    pipe = _tiny_pipe()
    before = dict(vars(pipe.scheduler))
    pipe(["x"], image_size=(32, 32), num_frames=2, num_sampling_steps=3, cfg_scale=1.5, progress=False)
    assert dict(vars(pipe.scheduler)) == before


def test_each_prompt_has_its_own_seed():
    pipe, kw = _tiny_pipe(), dict(image_size=(32, 32), num_frames=4, num_sampling_steps=2, progress=False)
    batch = pipe(["a red circle", "a blue square", "a green star"], seed=5, **kw)
    alone = pipe(["a green star"], seed=7, **kw)
    chunked = pipe(["a red circle", "a blue square", "a green star"], seed=5, batch_size=2, **kw)
    listed = pipe(["a green star", "a red circle"], seed=[7, 5], **kw)
    assert batch["settings"]["seed"] == [5, 6, 7]
    torch.testing.assert_close(batch["latents"][0][2], alone["latents"][0][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batch["latents"][0], chunked["latents"][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(listed["latents"][0][1], batch["latents"][0][0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="2 seeds for 3 prompts"): pipe(["a", "b", "c"], seed=[1, 2], **kw)


def test_cli_sidecar_names_each_seed(pipe_dir, tmp_path):
    assert sample_cli([str(pipe_dir), "--prompt", "a", "--prompt", "b", "--image-size", "32x32", "--num-frames", "2", "--seed", "10",
                       "-o", str(tmp_path), "--quiet"]) == 0
    seeds = [json.loads((tmp_path / f"sample_000{i}.json").read_text())["seed"] for i in range(2)]
    assert seeds == [10, 11]


def test_long_video_with_the_v1_2_vae_drops_the_repeated_chunk():
    "Loop 2 starts from loop 1's last 5 latent frames (kept clean): their 17 decoded frames are dropped at the join, no more."
    from opensora_nb.vae import tiny_vae_v1_2
    torch.manual_seed(0)
    vae = tiny_vae_v1_2().eval()
    net = STDiT3(hidden_size=32, depth=1, num_heads=2, patch_size=(1, 2, 2), in_channels=vae.out_channels, caption_channels=16,
                 model_max_length=8, pred_sigma=False, input_sq_size=32)
    vae.sample_posterior = vae.spatial_vae.sample_posterior = False  # encoding gives the means: the check below is exact
    pipe = OpenSoraPipeline(net, vae, HashText(), RFlow(num_sampling_steps=2, cfg_scale=1.0, use_timestep_transform=False))
    T = 34  # two 17-frame chunks -> 10 latent frames
    res = pipe(["a red circle"], image_size=(32, 32), num_frames=T, loops=2, progress=False)
    s, v = res["settings"], res["videos"][0]
    assert (s["condition_frame_length"], s["dropped_frames_per_join"]) == (5, 17)  # the reference's default, dframe_to_frame(5)
    assert v.shape[0] == 2 * T - 17
    l1, l2 = res["latents"]
    with torch.no_grad():
        d1 = vae.decode(l1, num_frames=T)
        again = vae.encode(d1)  # issue 29: loop 2 starts from loop 1's video encoded again (the reference's append_generated)
        d2 = vae.decode(l2, num_frames=T)
    assert torch.equal(l2[:, :, :5], again[:, :, -5:]) and not torch.equal(l2[:, :, :5], l1[:, :, -5:])
    from opensora_nb.io import denormalize
    assert torch.equal(v[:T], denormalize(d1[0]))       # loop 1 whole, then loop 2 without its first 17 frames
    assert torch.equal(v[T:], denormalize(d2[0, :, 17:]))
    with pytest.raises(ValueError, match="not whole chunks"):  # checked before any work
        pipe(["x"], image_size=(32, 32), num_frames=T, loops=2, condition_frame_length=3, progress=False)


def test_cli_answers_input_errors_in_one_line(pipe_dir, tmp_path, capsys):
    from opensora_nb.cli import main
    empty = tmp_path / "empty.txt"; empty.write_text("\n")
    cases = [(["sample", str(pipe_dir), "--prompt-file", str(empty)], "has no prompts"),
             (["sample", str(pipe_dir), "--prompt", "x", "--image-size", "32x32", "--num-frames", "8", "--reference",
               str(tmp_path / "missing.mp4"), "--mask-strategy", "0", "--quiet"], "missing.mp4"),
             (["sample", str(pipe_dir), "--prompt", "x", "--image-size", "32x32", "--num-frames", "1000000", "--quiet"], "GiB")]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("opensora-nb sample: error: ") and expected in err and "Traceback" not in err, err
        assert len(err.splitlines()) == 1, err
    with pytest.raises(ValueError): main(["--debug"] + cases[0][0])  # --debug keeps the traceback
    with pytest.raises(SystemExit) as e: main(["train", "tiny_world", "--max_step", "100"])
    assert e.value.code == 2 and "did you mean --max_steps" in capsys.readouterr().err


# --- issue 24: bad input on the command line is one line and exit status 2, never a KeyError's traceback ---

def _drop_key(weights, key_part):
    from safetensors.torch import load_file, save_file
    sd = load_file(str(weights))
    save_file({k: v for k, v in sd.items() if key_part not in k}, str(weights))


@pytest.fixture(scope="module")
def tiny_vae_pipe_dir(tmp_path_factory):
    "A pipeline folder whose VAE (chapter 03's tiny v1.2 VAE) travels inside it, as the demo's does."
    from opensora_nb.vae import tiny_vae_v1_2
    torch.manual_seed(0)
    vae = tiny_vae_v1_2().eval()
    net = STDiT3(hidden_size=32, depth=1, num_heads=2, patch_size=(1, 2, 2), in_channels=vae.out_channels, caption_channels=16,
                 model_max_length=8, pred_sigma=False, input_sq_size=32)
    return OpenSoraPipeline(net, vae, HashText(), config=dict(vae=dict(type="tiny_v1_2"))).save_pretrained(tmp_path_factory.mktemp("vp") / "p")


def test_cli_bad_input_is_one_line(pipe_dir, tiny_vae_pipe_dir, tmp_path, capsys):
    import shutil
    from opensora_nb.cli import main
    from opensora_nb.text import cache_text_features
    states = cache_text_features(HashText(), ["a red circle"], tmp_path / "states.safetensors")
    bad_net = shutil.copytree(pipe_dir, tmp_path / "bad_net")
    _drop_key(bad_net / "transformer" / "model.safetensors", "t_block")
    bad_index = shutil.copytree(pipe_dir, tmp_path / "bad_index")
    index = json.loads((bad_index / "model_index.json").read_text()); del index["scheduler"]
    (bad_index / "model_index.json").write_text(json.dumps(index))
    bad_vae = shutil.copytree(tiny_vae_pipe_dir, tmp_path / "bad_vae")
    _drop_key(bad_vae / "vae" / "model.safetensors", "temporal_vae.encoder.conv_in")
    run = ["--prompt", "a red circle", "-o", str(tmp_path / "o"), "--quiet"]
    cases = [([str(pipe_dir), "--resolution", "999p"], "unknown resolution '999p'; known: 144p, 256, 240p"),
             ([str(pipe_dir), "--resolution", "240p", "--aspect-ratio", "7:3"], "aspect ratio '7:3' is not in the 240p table; use a name (3:8"),
             ([str(pipe_dir), "--resolution", "32px", "--aspect-ratio", "wide"], "aspect ratio 'wide': expected H:W such as 9:16"),
             ([str(pipe_dir), "--image-size", "32x32", "--num-frames", "four"], "num_frames 'four': expected a number of frames or a name"),
             ([str(pipe_dir), "--image-size", "32x32", "--vae-tile-size", "100"], "vae_tiling: PatchPCAAutoencoder has no 2D VAE to tile"),
             ([str(tiny_vae_pipe_dir), "--image-size", "32x32", "--vae-tile-size", "100"], "VAE tile size 100: expected a multiple of 16"),
             ([str(pipe_dir), "--image-size", "32x32", "--text-states", str(states), "--prompt", "a blue square"],
              "1 prompt(s) not in the text feature cache"),
             ([str(bad_net), "--image-size", "32x32"], "does not match the model; missing keys: t_block"),
             ([str(bad_vae), "--image-size", "32x32"], "model.safetensors does not fit the pipeline built from"),
             ([str(bad_index), "--image-size", "32x32"], "model_index.json has no scheduler entry")]
    for args, says in cases:
        argv = ["sample", *args, *run]
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("opensora-nb sample: error: ") and says in err and "Traceback" not in err, err
        assert len(err.splitlines()) == 1, err


# --- issue 24: `sample` uses what the saved pipeline stores; one meaning per flag ---

@pytest.fixture(scope="module")
def demo_like_dir(tmp_path_factory):
    "A folder with the demo's kind of stored defaults: an explicit image_size (no resolution name), its frames, steps and guidance."
    torch.manual_seed(0)
    net = STDiT3(hidden_size=32, depth=1, num_heads=2, patch_size=(1, 1, 1), in_channels=16, caption_channels=16, model_max_length=8,
                 pred_sigma=False, input_sq_size=32)
    ae = PatchPCAAutoencoder(8, 16).fit(torch.rand(4, 3, 2, 32, 32) * 2 - 1)
    pipe = OpenSoraPipeline(net, ae, HashText(), RFlow(num_sampling_steps=3, cfg_scale=4.0, use_timestep_transform=False),
                            config=dict(defaults=dict(image_size=[32, 48], num_frames=5, num_sampling_steps=3, cfg_scale=4.0)))
    return pipe.save_pretrained(tmp_path_factory.mktemp("demo_like") / "pipeline")


def _sidecar(folder):
    return json.loads((folder / "sample_0000.json").read_text())


def test_sample_uses_the_pipeline_defaults(demo_like_dir, tmp_path, capsys):
    from opensora_nb.cli import main
    assert main(["sample", str(demo_like_dir), "--prompt", "a red circle", "--sampling-steps", "2", "-o", str(tmp_path / "a"), "--quiet"]) == 0
    s = _sidecar(tmp_path / "a")
    assert (s["image_size"], s["num_frames"], s["fps"], s["num_sampling_steps"], s["cfg_scale"]) == ([32, 48], 5, 8, 2, 4.0)
    assert main(["sample", str(demo_like_dir), "--prompt", "a red circle", "-o", str(tmp_path / "b"), "--quiet"]) == 0
    assert _sidecar(tmp_path / "b")["num_sampling_steps"] == 3  # the stored steps
    # a flag overrides its default only
    assert main(["sample", str(demo_like_dir), "--prompt", "x", "--image-size", "32x32", "--num-frames", "2", "--cfg", "1.5",
                 "--sampling-steps", "1", "-o", str(tmp_path / "c"), "--quiet"]) == 0
    s = _sidecar(tmp_path / "c")
    assert (s["image_size"], s["num_frames"], s["cfg_scale"], s["num_sampling_steps"]) == ([32, 32], 2, 1.5, 1)
    # an aspect ratio alone cannot apply to an explicit default size: one line, not a silent ignore
    capsys.readouterr()
    assert main(["sample", str(demo_like_dir), "--prompt", "x", "--aspect-ratio", "9:16", "-o", str(tmp_path / "d"), "--quiet"]) == 2
    assert "needs a resolution name" in capsys.readouterr().err


def test_sample_with_lora_as_the_readme_writes_it(demo_like_dir, tmp_path):
    "`opensora-nb sample PIPELINE --lora ADAPTER --prompt ...`, nothing else."
    from opensora_nb.cli import main
    from opensora_nb.lora import add_lora, save_lora
    pipe = OpenSoraPipeline.from_pretrained(demo_like_dir)
    add_lora(pipe, rank=2, alpha=2)
    adapter = save_lora(pipe, tmp_path / "adapter")
    assert main(["sample", str(demo_like_dir), "--lora", str(adapter), "--prompt", "a red circle", "-o", str(tmp_path / "o")]) == 0
    s = _sidecar(tmp_path / "o")
    assert s["lora"] == str(adapter) and s["image_size"] == [32, 48] and s["num_frames"] == 5


def test_sample_flags_one_meaning(demo_like_dir, tmp_path, capsys):
    "--sampling-steps; --steps stays as a hidden alias that says once it is deprecated; --dtype is the compute precision."
    from opensora_nb.cli import main
    capsys.readouterr()
    assert main(["sample", str(demo_like_dir), "--prompt", "x", "--steps", "1", "-o", str(tmp_path / "o"), "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--steps is deprecated" in err[0] and "--sampling-steps" in err[0]
    assert _sidecar(tmp_path / "o")["num_sampling_steps"] == 1
    with pytest.raises(SystemExit): sample_cli(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--sampling-steps" in out and "--steps " not in out and "--vae-tile-size PIXELS" in out
    assert ("compute precision: fp32, bf16 or fp16 (sampling casts the weights; default: bf16 with --official, else fp32)" in out)


def test_vae_tile_size_reaches_the_decoder(tmp_path, monkeypatch):
    "`OpenSoraPipeline(..., vae_tile_size=)` and `--vae-tile-size` tile the decode of a small frame (the tiny VAE: 4x)."
    from opensora_nb.vae import tiny_vae_v1_2
    torch.manual_seed(0)
    vae = tiny_vae_v1_2().eval()
    net = STDiT3(hidden_size=32, depth=1, num_heads=2, patch_size=(1, 2, 2), in_channels=vae.out_channels, caption_channels=16,
                 model_max_length=8, pred_sigma=False, input_sq_size=32)
    pipe = OpenSoraPipeline(net, vae, HashText(), RFlow(num_sampling_steps=1, use_timestep_transform=False),
                            config=dict(vae=dict(type="tiny_v1_2")), vae_tile_size=32)
    seen = []
    vae.spatial_vae.module.decoder.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    pipe(["a red circle"], image_size=(48, 64), num_frames=1, progress=False)
    assert vae.spatial_vae.tile_size == 32 and len(seen) == 6 and all(h <= 8 and w <= 8 for h, w in seen)  # 2 x 3 tiles
    assert pipe.set_memory(vae_tiling=False).vae.spatial_vae.tile_size is None
    folder = pipe.save_pretrained(tmp_path / "p")
    p2 = OpenSoraPipeline.from_pretrained(folder, text_encoder=HashText(), vae_tile_size=64)
    assert p2.vae.spatial_vae.tile_size == 64 and p2.vae.spatial_vae.module.use_tiling
    from opensora_nb.cli import main
    from opensora_nb.vae import VideoAutoencoderKL
    calls, orig = [], VideoAutoencoderKL.set_tiling
    monkeypatch.setattr(VideoAutoencoderKL, "set_tiling", lambda self, *a: calls.append(a) or orig(self, *a))
    args = ["sample", str(folder), "--prompt", "x", "--image-size", "48x64", "--num-frames", "1", "-o", str(tmp_path / "o"), "--quiet"]
    assert main(args + ["--vae-tile-size", "32"]) == 0 and calls == [(True, 32)]  # a tile size alone turns tiling on
    calls.clear()
    assert main(args + ["--vae-tiling"]) == 0 and calls == [(True, 192)]
