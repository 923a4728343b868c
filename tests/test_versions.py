"""Open-Sora 1.0 and 1.1 as runnable pipelines (issue 29, item 4): `OpenSoraPipeline.from_version` and
`opensora-nb sample --official --version 1.0|1.1`, on tiny random parts written in the official layouts."""
from pathlib import Path

import pytest
import torch

from opensora_nb import inference, versions
from opensora_nb.inference import OpenSoraPipeline, sample_cli
from opensora_nb.stdit_v1 import STDiT
from opensora_nb.text import T5Encoder, build_tiny_t5
from opensora_nb.vae import TINY_VAE_2D_CONFIG, VideoAutoencoderKL
from opensora_nb.versions import IDDPMSampler, v1_0_parts

ROOT = Path(__file__).resolve().parents[1]
TINY_STDIT = dict(hidden_size=32, depth=1, num_heads=2)
L = 120  # caption tokens: v1.0 pads to 120 (the tiny T5 model is small, its states are not)
#: A preset of v1.0's kind at a size a test runs in seconds (the tiny 2D VAE is 4x in space: a 4x8x8 latent).
TINY_PRESET = dict(num_frames=4, image_size=(32, 32), fps=8, space_scale=0.5, time_scale=1.0, vae_micro_batch_size=None)


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    "A tiny T5 folder, a tiny 2D VAE folder (diffusers layout) and a v1.0 STDiT .pth (official key layout, no position tables)."
    d = tmp_path_factory.mktemp("v1_0")
    t5 = build_tiny_t5(d / "t5", d_model=32, num_layers=1, num_heads=2, d_ff=64, model_max_length=L)
    torch.manual_seed(0)
    VideoAutoencoderKL.from_config(TINY_VAE_2D_CONFIG).save_pretrained(d / "vae")
    model = STDiT(input_size=(4, 8, 8), caption_channels=32, model_max_length=L, space_scale=0.5, **TINY_STDIT)
    with torch.no_grad():
        for p in model.parameters(): p.normal_(0, 0.05)  # zero-initialised layers would hide a wrong load
    sd = {k: v for k, v in model.state_dict().items() if k not in ("pos_embed", "pos_embed_temporal")}
    torch.save({"ema": sd}, d / "OpenSora-v1-tiny.pth")
    return dict(t5=str(t5), vae=str(d / "vae"), transformer=str(d / "OpenSora-v1-tiny.pth"), model=model)


@pytest.fixture(autouse=True)
def tiny_preset(monkeypatch):
    "A 'tiny' preset beside v1.0's two (the tests' size; the real presets are checked in chapter 07c)."
    monkeypatch.setitem(versions.V1_0_PRESETS, "tiny", TINY_PRESET)


@pytest.fixture
def tiny_xl(monkeypatch):
    "STDiT-XL/2's sizes replaced by the tiny ones, so an official-layout tiny checkpoint loads through the real path."
    monkeypatch.setattr(versions, "STDIT_XL_2", dict(versions.STDIT_XL_2, **TINY_STDIT))


def test_v1_0_checkpoint_loads_strictly(tiny_folders, tiny_xl):
    parts = v1_0_parts(tiny_folders["transformer"], tiny_folders["vae"], T5Encoder.from_pretrained(tiny_folders["t5"], model_max_length=L),
                       preset="tiny")
    want = tiny_folders["model"].state_dict()
    got = parts["model"].state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert parts["model"].input_size == (4, 8, 8) and parts["model"].space_scale == 0.5


def test_v1_0_checkpoint_mismatch_is_one_error(tiny_folders, monkeypatch):
    "A model of other sizes than the file's: a ValueError naming the keys, not a traceback deep inside."
    monkeypatch.setattr(versions, "STDIT_XL_2", dict(versions.STDIT_XL_2, hidden_size=64, depth=1, num_heads=2))
    with pytest.raises(ValueError, match="does not match the model"):
        v1_0_parts(tiny_folders["transformer"], tiny_folders["vae"], T5Encoder.from_pretrained(tiny_folders["t5"], model_max_length=L),
                   preset="tiny")


def test_v1_0_pipeline_is_stdit_iddpm_vae(tiny_folders, tiny_xl):
    "The pipeline's video is v1.0's chain by hand: T5, noise from the prompt's seed, IDDPM over STDiT (guidance 7), VAE decode."
    pipe = OpenSoraPipeline.from_version("1.0", tiny_folders["transformer"], tiny_folders["vae"], tiny_folders["t5"],
                                         preset="tiny", device="cpu", dtype="fp32")
    assert isinstance(pipe.scheduler, IDDPMSampler) and pipe.scheduler.cfg_scale == 7.0 and pipe.scheduler.num_sampling_steps == 100
    res = pipe(["a red circle"], seed=3, num_sampling_steps=2, progress=False)
    assert res["settings"]["image_size"] == [32, 32] and res["settings"]["num_frames"] == 4 and res["settings"]["fps"] == 8
    assert res["videos"][0].shape == (4, 3, 32, 32)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        enc = pipe.text_encoder.encode(["a red circle"])
        z = torch.randn(1, 4, 4, 8, 8, generator=g)
        smp = IDDPMSampler(num_sampling_steps=2, cfg_scale=7.0)
        lat = smp.sample(pipe.model, z, y=enc["y"], y_null=pipe.text_encoder.null(1), model_kwargs=dict(mask=enc["mask"]),
                         generator=[g], progress=False)
    assert torch.equal(res["latents"][0], lat)


def test_v1_0_refuses_references(tiny_folders, tiny_xl):
    pipe = OpenSoraPipeline.from_version("1.0", tiny_folders["transformer"], tiny_folders["vae"], tiny_folders["t5"],
                                         preset="tiny", device="cpu", dtype="fp32")
    ref = torch.zeros(3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="1.0 cannot condition on reference frames"):
        pipe(["x"], reference=ref, mask_strategy="0", num_sampling_steps=1, progress=False)


def test_sample_cli_version_1_0(tiny_folders, tiny_xl, tmp_path, capsys):
    "`opensora-nb sample --official --version 1.0`: the size picks the preset; the video and its sidecar are written."
    out = tmp_path / "out"
    assert sample_cli(["--official", "--version", "1.0", "--transformer", tiny_folders["transformer"], "--vae", tiny_folders["vae"],
                       "--text-encoder", tiny_folders["t5"], "--image-size", "32x32", "--sampling-steps", "1", "--dtype", "fp32",
                       "--device", "cpu", "--prompt", "a cat", "--output", str(out), "--quiet", "--format", "gif"]) == 0
    assert (out / "sample_0000.gif").exists() and (out / "sample_0000.json").exists()


@pytest.mark.parametrize("argv, msg", [
    (["--version", "1.0", "x"], "--version 1.0 chooses official checkpoints: add --official"),
    (["--official", "--version", "1.0", "--image-size", "240x426"], "Open-Sora 1.0 generates 256x256 or 512x512"),
    (["--official", "--version", "1.0", "--image-size", "256x256"], "Open-Sora 1.0 transformer: none given"),
])
def test_sample_cli_version_errors(argv, msg, tmp_path, capsys):
    "Each mistake is one line and exit status 2 (the console script's `main`), before any checkpoint is read."
    from opensora_nb.cli import main
    try:
        rc = main(["sample", *argv, "--prompt", "p", "--output", str(tmp_path)])
    except SystemExit as e:  # argparse's p.error
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and "Traceback" not in err, err[-2000:]


def test_generation_memory_reads_a_v1_0_config():
    m = STDiT(input_size=(2, 8, 8), caption_channels=8, model_max_length=4, **TINY_STDIT)
    assert inference.generation_memory(m.config, 1, (2, 32, 32), (2, 8, 8)) > 0


# ---------------------------------------------------------------- Open-Sora 1.1: STDiT2 + IDDPM (frame mask) + SD VAE + T5

@pytest.fixture(scope="module")
def tiny_v1_1(tiny_folders, tmp_path_factory):
    "A tiny STDiT2 in the official folder layout (config.json with transformers' keys + model.safetensors)."
    from opensora_nb.stdit_v1_1 import STDiT2, STDiT2Config
    d = tmp_path_factory.mktemp("v1_1")
    torch.manual_seed(1)
    m = STDiT2(STDiT2Config(hidden_size=48, depth=1, num_heads=2, caption_channels=32, model_max_length=L, input_sq_size=64,
                            qk_norm=True))
    with torch.no_grad():
        for p in m.parameters(): p.normal_(0, 0.02)
        m.rope.freqs.copy_(1.0 / (10000 ** (torch.arange(0, 24, 2).float() / 24)))
    m.save_pretrained(d / "stdit2")
    return dict(tiny_folders, transformer=str(d / "stdit2"), model=m)


def test_v1_1_pipeline_is_stdit2_iddpm_vae(tiny_v1_1):
    "Text to video and image to video (mask strategy '0'): the pipeline's latents are v1.1's chain by hand."
    from opensora_nb.stdit_v1_1 import STDiT2
    pipe = OpenSoraPipeline.from_version("1.1", tiny_v1_1["transformer"], tiny_v1_1["vae"], tiny_v1_1["t5"], device="cpu", dtype="fp32")
    assert isinstance(pipe.model, STDiT2) and pipe.scheduler.frame_conditioning and pipe.scheduler.float32_schedule
    assert pipe.text_encoder.model_max_length == L
    assert pipe.config["defaults"] == dict(image_size=[240, 426], num_frames=16, fps=24)
    res = pipe(["a red circle"], image_size=(32, 48), num_frames=3, seed=5, num_sampling_steps=2, progress=False)
    assert res["videos"][0].shape == (3, 3, 32, 48)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        enc = pipe.text_encoder.encode(["a red circle"])
        z = torch.randn(1, 4, 3, 8, 12, generator=g)
        info = dict(mask=enc["mask"], height=torch.tensor([32.0]), width=torch.tensor([48.0]), num_frames=torch.tensor([3.0]),
                    ar=torch.tensor([32 / 48]), fps=torch.tensor([24.0]))
        lat = IDDPMSampler(2, 7.0, float32_schedule=True).sample(pipe.model, z, y=enc["y"], y_null=pipe.text_encoder.null(1), model_kwargs=info,
                                          generator=[g], progress=False)
    assert torch.allclose(res["latents"][0], lat, atol=1e-5)
    # image to video: frame 0 from the reference image stays (close to) the reference's latent
    img = torch.randint(0, 255, (3, 32, 48), dtype=torch.uint8)
    res2 = pipe(["a red circle"], image_size=(32, 48), num_frames=3, reference=img, mask_strategy="0", seed=5,
                num_sampling_steps=2, progress=False)
    assert res2["videos"][0].shape == (3, 3, 32, 48) and torch.isfinite(res2["latents"][0]).all()


def test_sample_cli_version_1_1(tiny_v1_1, tmp_path):
    out = tmp_path / "out"
    assert sample_cli(["--official", "--version", "1.1", "--transformer", tiny_v1_1["transformer"], "--vae", tiny_v1_1["vae"],
                       "--text-encoder", tiny_v1_1["t5"], "--image-size", "32x48", "--num-frames", "3", "--sampling-steps", "1",
                       "--dtype", "fp32", "--device", "cpu", "--prompt", "a cat", "--output", str(out), "--quiet", "--format", "gif"]) == 0
    assert (out / "sample_0000.gif").exists()


def test_v1_1_official_folder_loads_strictly(tiny_v1_1):
    from opensora_nb.versions import v1_1_parts
    parts = v1_1_parts(tiny_v1_1["transformer"], tiny_v1_1["vae"], tiny_v1_1["t5"])
    want, got = tiny_v1_1["model"].state_dict(), parts["model"].state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    with pytest.raises(ValueError, match="only Open-Sora 1.0 has presets"):
        versions.version_parts("1.1", transformer=tiny_v1_1["transformer"], preset="16x256x256")


def test_from_version_1_2_is_from_official(monkeypatch):
    "Version 1.2 is the official STDiT3 + rectified-flow pipeline: from_version hands over to from_official; no presets."
    seen = {}
    monkeypatch.setattr(OpenSoraPipeline, "from_official", classmethod(lambda cls, **kw: seen.update(kw) or "pipe"))
    assert OpenSoraPipeline.from_version("1.2", transformer="T", device="cpu") == "pipe"
    assert seen == dict(transformer="T", device="cpu", dtype="bf16")
    with pytest.raises(ValueError, match="1.2 has no presets"):
        OpenSoraPipeline.from_version("1.2", preset="16x512x512")


def test_loops_refused_for_v1_0_and_v1_1():
    """Looping re-encodes frames with 1.2's video VAE; 1.0 and 1.1 have a 2D VAE: one line before any checkpoint is read."""
    import pytest
    from opensora_nb.inference import sample_args, sample_parser
    for v in ("1.0", "1.1"):
        with pytest.raises(ValueError, match="--loops 2: looping needs Open-Sora 1.2"):
            sample_args(sample_parser(), ["--prompt", "x", "--official", "--version", v, "--loops", "2"])
