"""Official checkpoint layouts (issue 15, "official weights"): tiny folders in the published layouts load strictly
through the project's loaders, config.json files are checked key by key, the 2D VAE comes from the folder the VAE
config names, and seeded encoding draws the posterior noise chunk by chunk as the reference does."""
import json
import os
import shutil
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
from safetensors.torch import load_file

from conftest import golden_dir
from official_layout import MODEL_MAX_LENGTH, PUBLISHED_STDIT3, PUBLISHED_VAE, TINY_SDXL_VAE, write_official_tiny

from opensora_nb import stdit as stdit_lib
from opensora_nb.stdit import STDIT3_XL_2, STDiT3, STDiT3Config
from opensora_nb.text import T5Encoder
from opensora_nb.vae import VideoAutoencoderPipeline, tiny_vae_v1_2
from opensora_nb.vae_hub import OpenSoraVAE_V1_2, load_pipeline, pipeline_from_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    return write_official_tiny(tmp_path_factory.mktemp("official"))


@pytest.fixture
def fresh(tmp_path):
    "A private copy, for tests that edit the files."
    return write_official_tiny(tmp_path)


def _edit(path, **changes):
    cfg = json.loads(path.read_text())
    for k, v in changes.items():
        cfg[k] = v
    path.write_text(json.dumps(cfg))


# --- the layouts ---

def test_layouts_have_the_published_keys(official):
    stdit_cfg = json.loads((official["stdit"] / "config.json").read_text())
    vae_cfg = json.loads((official["vae"] / "config.json").read_text())
    assert set(stdit_cfg) == set(PUBLISHED_STDIT3)
    assert set(vae_cfg) == set(PUBLISHED_VAE) and set(vae_cfg["vae_2d"]) == set(PUBLISHED_VAE["vae_2d"])
    assert vae_cfg["vae_2d"]["subfolder"] == "vae" and (official["vae_2d"] / "vae" / "config.json").is_file()
    assert not list(official["vae_2d"].rglob("*.safetensors"))  # the 2D folder's weights are never needed
    sd = load_file(str(official["vae"] / "model.safetensors"))
    prefixes = {k.split(".")[0] if k.startswith("temporal_vae.") else ".".join(k.split(".")[:2]) for k in sd}
    assert prefixes == {"spatial_vae.module", "temporal_vae", "scale", "shift"}
    assert not any(k.startswith(("module.", "model.")) for k in load_file(str(official["stdit"] / "model.safetensors")))


def test_layouts_match_the_published_files(pytestconfig):
    "The templates in official_layout.py are the published config.json files (when the golden folder is here)."
    d = golden_dir(pytestconfig) / "official"
    if not d.is_dir():
        pytest.skip(f"no {d}")
    assert json.loads((d / "OpenSora-STDiT-v3.config.json").read_text()) == PUBLISHED_STDIT3
    assert json.loads((d / "OpenSora-VAE-v1.2.config.json").read_text()) == PUBLISHED_VAE


def test_write_is_deterministic_and_fast(official, tmp_path):
    t0 = time.perf_counter()
    again = write_official_tiny(tmp_path)
    assert time.perf_counter() - t0 < 5.0
    for name in ("stdit", "vae", "t5"):
        for f in sorted(official[name].glob("*.safetensors")):
            assert f.read_bytes() == (again[name] / f.name).read_bytes(), f
    assert (official["stdit"] / "config.json").read_text() == (again["stdit"] / "config.json").read_text()
    state = torch.get_rng_state()
    write_official_tiny(tmp_path)
    assert torch.equal(state, torch.get_rng_state())  # the caller's RNG is untouched


def test_every_folder_loads_strictly(official):
    net = STDiT3.from_pretrained(official["stdit"])
    want = load_file(str(official["stdit"] / "model.safetensors"))
    assert set(net.state_dict()) == set(want)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in want.items())
    assert net.config.freeze_y_embedder and net.config.hidden_size == 32

    vae = OpenSoraVAE_V1_2(from_pretrained=official["vae"]).eval()
    want = load_file(str(official["vae"] / "model.safetensors"))
    assert set(vae.state_dict()) == set(want)
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in want.items())
    assert list(vae.spatial_vae.module.config.block_out_channels) == TINY_SDXL_VAE["block_out_channels"]
    assert vae.spatial_vae.patch_size == (1, 8, 8) and vae.micro_frame_size == 17
    assert vae.spatial_vae.micro_batch_size == 4 and vae.spatial_vae.scaling_factor == 0.18215

    t5 = T5Encoder.from_pretrained(official["t5"], model_max_length=MODEL_MAX_LENGTH)
    out = t5.encode(["a red circle moving left", "a blue square"])
    assert out["y"].shape == (2, 1, MODEL_MAX_LENGTH, net.config.caption_channels)

    # the three fit together: a text-conditioned denoiser call on the VAE's latent of a 17-frame clip
    with torch.no_grad():
        z = vae.encode(torch.rand(1, 3, 17, 32, 32) * 2 - 1)
        assert z.shape == (1, 4, 5, 4, 4)
        v = net(z, torch.tensor([500.0]), out["y"][:1], mask=out["mask"][:1])
        assert v.shape == (1, 8, 5, 4, 4) and torch.isfinite(v).all()
        assert vae.decode(z, num_frames=17).shape == (1, 3, 17, 32, 32)


def test_vae_loads_from_the_hub_style_id_too(official):
    "`VideoAutoencoderPipeline.from_pretrained` and `load_pipeline` are the same loader."
    a = VideoAutoencoderPipeline.from_pretrained(official["vae"])
    b = load_pipeline(str(official["vae"]), micro_batch_size=2)
    assert a.spatial_vae.micro_batch_size == 4 and b.spatial_vae.micro_batch_size == 2


# --- misspelt keys ---

def test_misspelt_stdit_key_is_named(fresh):
    _edit(fresh["stdit"] / "config.json", hiden_size=32)
    with pytest.raises(ValueError, match="hiden_size"):
        STDiT3.from_pretrained(fresh["stdit"])
    with pytest.raises(ValueError, match="config.json"):
        STDiT3Config.from_pretrained(fresh["stdit"])


def test_misspelt_vae_keys_are_named(fresh):
    cfg_path = fresh["vae"] / "config.json"
    good = json.loads(cfg_path.read_text())
    _edit(cfg_path, micro_frame_sise=17)
    with pytest.raises(ValueError, match="micro_frame_sise"):
        OpenSoraVAE_V1_2(from_pretrained=fresh["vae"])
    _edit(cfg_path, micro_frame_sise=None)
    cfg_path.write_text(json.dumps({**good, "vae_2d": {**good["vae_2d"], "subfoler": "vae"}}))
    with pytest.raises(ValueError, match=r"vae_2d\.subfoler"):
        load_pipeline(fresh["vae"])
    cfg_path.write_text(json.dumps({**good, "vae_temporal": {**good["vae_temporal"], "filter": 8}}))
    with pytest.raises(ValueError, match=r"vae_temporal\.filter"):
        load_pipeline(fresh["vae"])


def test_transformers_metadata_is_accepted(fresh):
    _edit(fresh["stdit"] / "config.json", _name_or_path="x", _commit_hash="y")
    _edit(fresh["vae"] / "config.json", _name_or_path="x")
    STDiT3.from_pretrained(fresh["stdit"])
    load_pipeline(fresh["vae"])


def test_unknown_override_is_named(official):
    with pytest.raises(TypeError, match="hidden_sise"):
        STDiT3.from_pretrained(official["stdit"], hidden_sise=64)
    with pytest.raises(TypeError, match="num_head"):
        STDiT3(STDiT3Config(hidden_size=32, num_heads=2), num_head=2)
    with pytest.raises(TypeError, match="dpeth"):
        STDiT3Config.from_pretrained(official["stdit"], dpeth=2)
    assert STDiT3Config.from_pretrained(official["stdit"] / "config.json", depth=2).depth == 2


# --- the 2D VAE the config names ---

def test_missing_2d_folder_is_one_clear_error(fresh):
    shutil.rmtree(fresh["vae_2d"])
    with pytest.raises(FileNotFoundError, match="tiny-sdxl-vae") as e:
        OpenSoraVAE_V1_2(from_pretrained=fresh["vae"])
    assert "config_2d" in str(e.value)


def test_missing_2d_hub_id_offline_says_how_to_get_it(fresh):
    cfg_path = fresh["vae"] / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["vae_2d"].update(from_pretrained="opensora-nb-tests/no-such-vae", local_files_only=True)
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(FileNotFoundError, match="huggingface-cli download opensora-nb-tests/no-such-vae vae/config.json"):
        load_pipeline(fresh["vae"])
    # a local copy of the named folder, passed instead
    pipe = load_pipeline(fresh["vae"], config_2d=fresh["vae_2d"])
    assert pipe.spatial_vae.patch_size == (1, 8, 8)
    pipe = load_pipeline(fresh["vae"], config_2d=fresh["vae_2d"] / "vae")   # or the subfolder itself
    assert pipe.spatial_vae.patch_size == (1, 8, 8)


def test_another_2d_vae_than_sdxl_loads(tmp_path, fresh):
    "The old loader always built the SDXL-sized 2D VAE: a checkpoint with another 2D VAE now loads strictly."
    cfg = json.loads((fresh["vae"] / "config.json").read_text())
    assert json.loads((fresh["vae_2d"] / "vae" / "config.json").read_text())["block_out_channels"] != [128, 256, 512, 512]
    pipe = load_pipeline(fresh["vae"])
    assert sum(p.numel() for p in pipe.spatial_vae.parameters()) < 1e6
    # a config that names the folder by a path relative to the working directory
    cwd = os.getcwd()
    try:
        os.chdir(fresh["root"])
        cfg["vae_2d"]["from_pretrained"] = "tiny-sdxl-vae"
        (fresh["vae"] / "config.json").write_text(json.dumps(cfg))
        assert load_pipeline(fresh["vae"]).spatial_vae.patch_size == (1, 8, 8)
    finally:
        os.chdir(cwd)
    # or relative to the VAE folder itself (a folder that travels with its 2D config)
    cfg["vae_2d"]["from_pretrained"] = "../tiny-sdxl-vae"
    (fresh["vae"] / "config.json").write_text(json.dumps(cfg))
    assert load_pipeline(fresh["vae"]).spatial_vae.patch_size == (1, 8, 8)


def test_weights_that_do_not_fit_name_the_files(fresh):
    cfg_path = fresh["vae"] / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["vae_temporal"]["filters"] = 32
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(RuntimeError, match="model.safetensors does not fit the pipeline built from"):
        load_pipeline(fresh["vae"])


# --- the published configs ---

def test_published_configs_load(pytestconfig):
    d = golden_dir(pytestconfig) / "official"
    if not d.is_dir():
        pytest.skip(f"no {d}")
    c = STDiT3Config.from_pretrained(d / "OpenSora-STDiT-v3.config.json")
    assert c == STDiT3Config(**{**STDIT3_XL_2.__dict__, "freeze_y_embedder": True})
    vcfg = json.loads((d / "OpenSora-VAE-v1.2.config.json").read_text())
    with torch.device("meta"):
        pipe = pipeline_from_config(vcfg)  # the official 2D VAE is known: no download
    assert pipe.micro_frame_size == 17 and pipe.spatial_vae.patch_size == (1, 8, 8)
    assert pipe.spatial_vae.module.config.block_out_channels in ([128, 256, 512, 512], (128, 256, 512, 512))


def test_earlier_published_stdit_config_with_kernels(tmp_path):
    "The earlier upload had enable_flash_attn and enable_layernorm_kernel true: accepted, with one warning each on CPU."
    cfg = {**PUBLISHED_STDIT3, "enable_flash_attn": True, "enable_layernorm_kernel": True, "freeze_y_embedder": False,
           "hidden_size": 32, "depth": 1, "num_heads": 2, "caption_channels": 16, "model_max_length": 4}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    c = STDiT3Config.from_pretrained(tmp_path)
    assert c.enable_flash_attn and c.enable_layernorm_kernel
    stdit_lib._WARNED.clear()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        torch.manual_seed(0)
        m = STDiT3(c).eval()
        args = (torch.randn(1, 4, 2, 4, 4), torch.tensor([10.0]), torch.randn(1, 1, 4, 16))
        with torch.no_grad():
            for _ in range(3):
                out = m(*args)
        STDiT3(c)
    msgs = [str(x.message) for x in w]
    assert sum("enable_flash_attn" in s for s in msgs) == 1, msgs
    assert sum("enable_layernorm_kernel" in s for s in msgs) == 1, msgs
    plain = STDiT3(STDiT3Config(**{**c.__dict__, "enable_flash_attn": False, "enable_layernorm_kernel": False})).eval()
    plain.load_state_dict(m.state_dict())
    with torch.no_grad():
        assert torch.equal(plain(*args), out)  # the switches change no numbers here


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_flash_attn_selects_the_flash_backend_on_cuda():
    "Self-attentions run with only the flash SDPA backend enabled; cross-attention (masked) keeps the defaults."
    c = STDiT3Config(hidden_size=64, depth=1, num_heads=2, caption_channels=16, model_max_length=4, enable_flash_attn=True)
    m = STDiT3(c).cuda().to(torch.bfloat16).eval()
    seen, orig = [], torch.nn.functional.scaled_dot_product_attention

    def spy(*a, **k):
        seen.append((torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled(),
                     torch.backends.cuda.math_sdp_enabled()))
        return orig(*a, **k)
    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("error")  # no "ignored" warning on CUDA in bf16
            m(torch.randn(1, 4, 2, 4, 4, device="cuda"), torch.tensor([10.0], device="cuda"),
              torch.randn(1, 1, 4, 16, device="cuda"), mask=torch.tensor([[1, 1, 0, 0]], device="cuda"))
    finally:
        torch.nn.functional.scaled_dot_product_attention = orig
    assert seen.count((True, False, False)) == 2, seen  # the spatial and the temporal self-attention


# --- seeded encoding draws per chunk ---

def test_seeded_encode_draws_per_chunk_in_order():
    "Under one seed, a 34-frame clip's latent = 2D draws, then chunk 1's temporal posterior sampled, then chunk 2's."
    torch.manual_seed(0)
    pipe = tiny_vae_v1_2(logvar_init=None).eval()  # wide posteriors: the noise is visible
    x = torch.rand(1, 3, 34, 8, 8) * 2 - 1
    with torch.no_grad():
        torch.manual_seed(3)
        z = pipe.encode(x)
        torch.manual_seed(3)
        x_z = pipe.spatial_vae.encode(x)
        first = pipe.temporal_vae.encode(x_z[:, :, :17])
        z1 = first.sample()
        second = pipe.temporal_vae.encode(x_z[:, :, 17:])
        z2 = second.sample()
        torch.testing.assert_close(z, (torch.cat([z1, z2], 2) - pipe.shift) / pipe.scale, rtol=0, atol=1e-6)
        # drawing once over the joined posterior (the old order) gives other numbers
        torch.manual_seed(3)
        joined = pipe.encode_posterior(pipe.spatial_vae.encode(x)).sample()
        assert not torch.allclose(z, (joined - pipe.shift) / pipe.scale, atol=1e-2)
        # cal_loss returns the un-normalised sample and the posterior of all chunks
        pipe.cal_loss = True
        torch.manual_seed(3)
        z_raw, post, _ = pipe.encode(x)
        torch.testing.assert_close(z_raw, torch.cat([z1, z2], 2), rtol=0, atol=1e-6)
        torch.testing.assert_close(post.mean, torch.cat([first.mean, second.mean], 2))


def test_posterior_noise_is_float32_cpu_noise():
    "As the reference: eps = torch.randn(shape) (float32, CPU generator), then moved to the posterior's dtype."
    from opensora_nb.vae import DiagonalGaussianDistribution
    params = torch.zeros(1, 4, 3, 2, 2, dtype=torch.bfloat16)
    torch.manual_seed(5)
    s = DiagonalGaussianDistribution(params).sample()
    torch.manual_seed(5)
    assert s.dtype == torch.bfloat16 and torch.equal(s, torch.randn(1, 2, 3, 2, 2).to(torch.bfloat16))


# --- the one-call constructor and `opensora-nb sample --official` on the official layouts ---

def test_pipeline_from_official_folders_generates(official):
    from opensora_nb.inference import OpenSoraPipeline, V1_2_DEFAULTS
    pipe = OpenSoraPipeline.from_official(official["stdit"], official["vae"], official["t5"], device="cpu", dtype="fp32")
    assert pipe.config["defaults"] == V1_2_DEFAULTS and pipe.scheduler.num_sampling_steps == 30 and pipe.scheduler.cfg_scale == 7.0
    assert V1_2_DEFAULTS["condition_frame_length"] == pipe.vae.condition_frames == 5
    res = pipe(["a red circle"], image_size=(32, 32), num_frames=17, num_sampling_steps=2, aes=V1_2_DEFAULTS["aes"], progress=False)
    assert tuple(res["videos"][0].shape) == (17, 3, 32, 32) and res["settings"]["full_prompts"][0].endswith("aesthetic score: 6.5.")
    bf16 = OpenSoraPipeline.from_official(official["stdit"], official["vae"], official["t5"], device="cpu")  # the default: bf16
    assert bf16.dtype == torch.bfloat16 and next(bf16.vae.parameters()).dtype == torch.bfloat16


def test_pipeline_from_official_missing_part_is_one_error(official, tmp_path):
    from opensora_nb.inference import OpenSoraPipeline
    with pytest.raises(FileNotFoundError, match=r"official Open-Sora 1.2 vae.*huggingface-cli download hpcai-tech/OpenSora-VAE-v1.2"):
        OpenSoraPipeline.from_official(official["stdit"], tmp_path / "no-vae", official["t5"], device="cpu")


def test_cli_sample_official(official, tmp_path, capsys):
    from opensora_nb.cli import main
    args = ["sample", "--official", "--transformer", str(official["stdit"]), "--vae", str(official["vae"]), "--text-encoder",
            str(official["t5"]), "--prompt", "a red circle", "--image-size", "32x32", "--num-frames", "17", "--sampling-steps", "2",
            "--dtype", "fp32", "--device", "cpu", "--vae-micro-batch", "2", "-o", str(tmp_path / "o"), "--quiet"]
    assert main(args) == 0
    side = json.loads((tmp_path / "o" / "sample_0000.json").read_text())
    assert side["fps"] == 24 and side["aspect_ratio"] == "9:16" and side["full_prompts"].endswith("aesthetic score: 6.5.")
    bad = args[:]; bad[bad.index("--vae") + 1] = str(tmp_path / "missing-vae")
    with pytest.raises(SystemExit) as e: main(bad)
    assert e.value.code == 2 and "missing-vae" in capsys.readouterr().err
