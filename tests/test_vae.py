"""opensora_nb.vae / vae_hub / vae_train: what the notebooks cannot hold (bad inputs, save/load round trips, resume)."""
import json

import pytest
import torch
from diffusers.models import AutoencoderKL

from opensora_nb.vae import (TINY_VAE_2D_CONFIG, VAE_Temporal, VideoAutoencoderKL, VideoAutoencoderPipeline,
                             tiny_vae_v1_2)
from opensora_nb.vae_hub import OpenSoraVAE_V1_2  # also gives VideoAutoencoderPipeline from_/save_pretrained
from opensora_nb.vae_train import (VAEStage, calibrate_scaling_factor, load_checkpoint, train_stage, tiny_vae_stages,
                                   train_tiny_vae)

torch.set_num_threads(1)


def _det(pipe):
    pipe.eval()
    pipe.sample_posterior = False
    pipe.spatial_vae.sample_posterior = False
    return pipe


def test_tiny_autoencoderkl_save_and_from_pretrained(tmp_path):
    torch.manual_seed(0)
    vae = VideoAutoencoderKL.from_config(TINY_VAE_2D_CONFIG, sample_posterior=False).eval()
    vae.save_pretrained(tmp_path / "vae")
    assert (tmp_path / "vae" / "config.json").exists()
    back = VideoAutoencoderKL.from_pretrained(str(tmp_path / "vae"), sample_posterior=False, micro_batch_size=2).eval()
    x = torch.rand(1, 3, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(back.encode(x), vae.encode(x))
        torch.testing.assert_close(back.decode(vae.encode(x)), vae.decode(vae.encode(x)))
    assert back.scaling_factor == 0.18215 and back.patch_size == (1, 4, 4)


def test_subfolder_like_pixart(tmp_path):
    AutoencoderKL(**TINY_VAE_2D_CONFIG).save_pretrained(tmp_path / "repo" / "vae")
    vae = VideoAutoencoderKL.from_pretrained(str(tmp_path / "repo"), subfolder="vae")
    assert vae.out_channels == 4


def test_bad_inputs():
    pipe = tiny_vae_v1_2()
    with pytest.raises(ValueError, match=r"\[B, C, T, H, W\]"):
        pipe.encode(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="expected"):
        VideoAutoencoderKL.from_config(TINY_VAE_2D_CONFIG).encode(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="activation_fn"):
        VAE_Temporal(filters=8, num_groups=4, activation_fn="gelu")
    with pytest.raises(ValueError, match="vae_2d"):
        OpenSoraVAE_V1_2(vae_2d="nope")
    with pytest.raises(FileNotFoundError, match="config.json"):
        VideoAutoencoderPipeline.from_pretrained(".")  # a folder without the files


@pytest.mark.parametrize("T", [1, 2, 5, 16, 17])
def test_chunking_is_exact_up_to_one_chunk(T):
    torch.manual_seed(0)
    pipe = _det(tiny_vae_v1_2())
    x = torch.rand(1, 3, T, 8, 8) * 2 - 1
    with torch.no_grad():
        z = pipe.encode(x)
        pipe.micro_frame_size = None
        torch.testing.assert_close(pipe.encode(x), z)
        out_whole = pipe.decode(z, num_frames=T)
        pipe.micro_frame_size = 17
        torch.testing.assert_close(pipe.decode(z, num_frames=T), out_whole)


def test_chunking_is_per_chunk_for_long_clips():
    torch.manual_seed(0)
    pipe = _det(tiny_vae_v1_2())
    x = torch.rand(1, 3, 40, 8, 8) * 2 - 1
    with torch.no_grad():
        z = pipe.encode(x)
        parts = [pipe.encode(x[:, :, a:b]) for a, b in ((0, 17), (17, 34), (34, 40))]
        torch.testing.assert_close(z, torch.cat(parts, 2))
        dec = pipe.decode(z, num_frames=40)
        assert dec.shape[2] == 40
        torch.testing.assert_close(dec[:, :, 34:], pipe.decode(parts[2], num_frames=6))


@pytest.mark.parametrize("T,expected", [(1, 1), (4, 1), (5, 2), (16, 4), (17, 5), (18, 6), (20, 6), (34, 10),
                                        (51, 15), (102, 30), (408, 120)])
def test_latent_sizes(T, expected):
    pipe = tiny_vae_v1_2()
    assert pipe.get_latent_size((T, 32, 48)) == [expected, 8, 12]
    with torch.device("meta"):
        full = OpenSoraVAE_V1_2(vae_2d="random")
    assert full.get_latent_size((T, 720, 1280)) == [expected, 90, 160]
    assert full.get_latent_size((None, 256, 256)) == [None, 32, 32]


def test_latent_size_matches_encode():
    pipe = _det(tiny_vae_v1_2())
    for T in (1, 3, 17, 18, 21):
        with torch.no_grad():
            z = pipe.encode(torch.zeros(1, 3, T, 8, 12))
        assert list(z.shape[2:]) == pipe.get_latent_size((T, 8, 12)), T
        assert pipe.decode(z, num_frames=T).shape[2] == T


def test_pipeline_official_layout_roundtrip(tmp_path):
    torch.manual_seed(0)
    pipe = _det(tiny_vae_v1_2(shift=[0.1, 0.2, 0.3, 0.4], scale=[1.0, 2.0, 3.0, 4.0]))
    pipe.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "VideoAutoencoderPipeline" and cfg["micro_frame_size"] == 17
    from safetensors.torch import load_file
    keys = set(load_file(str(tmp_path / "model.safetensors")))
    assert {"scale", "shift", "spatial_vae.module.decoder.conv_out.weight",
            "temporal_vae.decoder.conv_out.conv.weight"} <= keys
    back = _det(VideoAutoencoderPipeline.from_pretrained(str(tmp_path)))
    x = torch.rand(1, 3, 5, 8, 8) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(back.encode(x), pipe.encode(x))
    torch.testing.assert_close(back.shift.flatten(), torch.tensor([0.1, 0.2, 0.3, 0.4]))


def _clips(n=6, T=12):
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, T, 16, 16, generator=g) * 2 - 1 for _ in range(n)]


def test_resume_equals_uninterrupted(tmp_path):
    clips = _clips()
    stages = [replace_steps(s) for s in tiny_vae_stages(scale=0.01)]
    torch.manual_seed(0)
    a = tiny_vae_v1_2()
    b = tiny_vae_v1_2(); b.load_state_dict(a.state_dict())
    train_tiny_vae(clips, stages=stages, pipe=a, progress=False)
    # b: stop in the middle of stage 1, then run everything again from the checkpoints
    train_stage(b, clips, stages[0], stage_idx=0, ckpt=tmp_path / "stage0.pt", progress=False)
    calibrate_scaling_factor(b, clips)  # as train_tiny_vae does after a 2D stage
    train_stage(b, clips, stages[1], stage_idx=1, ckpt=tmp_path / "stage1.pt", stop_after=1, progress=False)
    assert load_checkpoint(tmp_path / "stage1.pt")["step"] == 1
    assert not list(tmp_path.glob("*.tmp"))
    train_tiny_vae(clips, stages=stages, pipe=b, out_dir=tmp_path, progress=False)
    for (k, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), k
    assert (tmp_path / "final" / "model.safetensors").exists()


def replace_steps(stage, steps=2):
    from dataclasses import replace
    return replace(stage, steps=steps, batch_size=min(stage.batch_size, 2), num_frames=min(stage.num_frames, 5))


def test_discriminator_and_perceptual_step():
    from opensora_nb.vae_losses import RandomFeaturePerceptual
    pipe = tiny_vae_v1_2()
    stage = VAEStage("gan", steps=1, use_real_rec_loss=True, use_z_rec_loss=False, num_frames=5, batch_size=1,
                     lr=1e-4, mixed_strategy="mixed_video_random", discriminator=True)
    hist = train_stage(pipe, _clips(2), stage, perceptual=RandomFeaturePerceptual(), progress=False)
    assert {"gan", "disc", "nll", "kl"} <= set(hist[0])


def test_decode_num_frames_checked():
    pipe = _det(tiny_vae_v1_2())
    z = torch.zeros(1, 4, 6, 2, 2)  # 17 + up to 4 frames
    assert pipe.max_frames(6) == 21
    with pytest.raises(ValueError, match="num_frames=22"):
        pipe.decode(z, num_frames=22)
    with pytest.raises(ValueError, match="too few"):
        pipe.decode(z, num_frames=17)
    assert pipe.decode(z, num_frames=18).shape[2] == 18


def test_stage0_mixes_photo_crops():
    from opensora_nb.vae_train import photo_crop_bank
    photos = photo_crop_bank(6, size=(16, 16))
    assert photos.shape == (6, 3, 16, 16) and photos.min() >= -1 and photos.max() <= 1
    stage = tiny_vae_stages(scale=0.001)[0]
    from dataclasses import replace
    stage = replace(stage, batch_size=4, steps=1)
    hist = train_stage(tiny_vae_v1_2(), _clips(2), stage, images=photos, progress=False)
    assert len(hist) == 1 and hist[0]["nll"] > 0


def test_load_clip_bank_fallback(tmp_path):
    from opensora_nb.vae_train import load_clip_bank
    train, held = load_clip_bank(tmp_path / "missing", size=(16, 16), max_frames=8, by_set=True)
    assert len(train) > 0 and set(held) == {"shapes"} and train[0].shape == (3, 8, 16, 16)


def test_narrow_preset_keeps_latent_and_names():
    from opensora_nb.vae_train import tiny_vae_v1_2_narrow
    narrow, wide = _det(tiny_vae_v1_2_narrow()), tiny_vae_v1_2()
    assert set(narrow.state_dict()) == set(wide.state_dict())
    assert narrow.get_latent_size((17, 32, 32)) == wide.get_latent_size((17, 32, 32)) == [5, 8, 8]
    with torch.no_grad():
        z = narrow.encode(torch.zeros(1, 3, 9, 16, 16))
    assert z.shape == (1, 4, 3, 4, 4)
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in wide.parameters()) / 3


def test_color_jitter_keeps_range_and_is_per_clip():
    from opensora_nb.vae_train import jitter_colors, pan_clip_bank
    x = torch.rand(16, 3, 8, 8) * 2 - 1
    assert torch.equal(jitter_colors(x, share=0.0), x)
    y = jitter_colors(x, share=1.0, seed=1)
    assert y.min() >= -1 and y.max() <= 1 and not torch.equal(x, y)
    torch.testing.assert_close(jitter_colors(x, share=1.0, seed=1), y)   # deterministic
    # a pan clip is jittered as a whole: a static pixel stays static over time
    flat = torch.zeros(1, 3, 4, 8, 8) + torch.tensor([0.5, -0.2, 0.1])[None, :, None, None, None]
    j = jitter_colors(flat.flatten(2, 3), 1.0, seed=2).view_as(flat)
    assert torch.allclose(j[:, :, :1], j)
    pans = pan_clip_bank(3, num_frames=4, size=(8, 8), color_jitter=1.0)
    assert len(pans) == 3 and pans[0].shape == (3, 4, 8, 8)


def test_shipped_world_vae_checksum_and_reconstruction(tmp_path):
    """The tiny world's VAE that the demo ships: its checksum is the recorded one and it reconstructs held-out clips
    (colour-direction pairs it never saw) at over 30 dB with the judge's verdict unchanged."""
    import shutil
    import pytest
    from opensora_nb.io import denormalize
    from opensora_nb.samples import judge_clip
    from opensora_nb.vae_hub import load_pipeline
    from opensora_nb.vae_train import WORLD_VAE_DIR, WORLD_VAE_SHA256, check_world_vae, reconstruct, world_clip_bank, vae_cli
    r = check_world_vae()
    assert r["sha256"] == WORLD_VAE_SHA256 and r["psnr"] > 30
    x = torch.stack(world_clip_bank(12, "heldout", seed=2, width=48))
    rec = reconstruct(load_pipeline(WORLD_VAE_DIR), x)
    assert [judge_clip(denormalize(v)) for v in rec] == [judge_clip(denormalize(v)) for v in x]
    bad = tmp_path / "bad"; shutil.copytree(WORLD_VAE_DIR, bad)
    (bad / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(Exception):
        check_world_vae(bad)
    with pytest.raises(FileNotFoundError, match="opensora-nb vae --world"):
        check_world_vae(tmp_path / "missing")
    assert vae_cli(["--check", str(WORLD_VAE_DIR)]) == 0


# --- issue 24 item 5: tiling really runs at 240p-480p, and its seams stay within a measured bound ---

def _count_tiles(vae2d):
    "The latent (h, w) of every call of the 2D decoder: one per tile (per micro-batch)."
    seen = []
    vae2d.module.decoder.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    return seen


@pytest.mark.parametrize("hw, tiles", [((240, 424), 2 * 3), ((360, 640), 3 * 5), ((480, 848), 4 * 6)])  # ceil(side / 8 / 18) tiles a side
def test_tiling_cuts_240p_to_480p_frames_of_the_production_vae(hw, tiles):
    "The SDXL-architecture 2D VAE (on `meta`: shapes only): diffusers' rule decodes whole, `set_tiling` in 192-pixel tiles."
    from opensora_nb.vae import SDXL_VAE_CONFIG, VAE_TILE_SIZE
    with torch.device("meta"):
        vae = VideoAutoencoderKL.from_config(SDXL_VAE_CONFIG)
    seen = _count_tiles(vae)
    z = torch.empty(1, 4, 2, hw[0] // 8, hw[1] // 8, device="meta")
    with torch.no_grad():
        vae.module.enable_tiling(); vae.decode(z)  # diffusers alone: the frame is under sample_size 1024, one call
        assert seen == [(hw[0] // 8, hw[1] // 8)]; seen.clear()
        out = vae.set_tiling(True).decode(z)
    assert VAE_TILE_SIZE == vae.tile_size == 192 and tuple(out.shape) == (1, 3, 2, *hw)
    assert len(seen) == tiles and all(h <= 24 and w <= 24 for h, w in seen)
    assert vae.set_tiling(False).tile_size is None and not vae.module.use_tiling


def test_tiled_decode_is_within_the_stated_bound_of_the_whole_decode():
    """Tiny random 2D VAE (seed 0), one 240 x 424 frame, default 192-pixel tiles (2 x 3): measured max |diff| 0.150 and
    mean 0.0083 over the frame; 0.111 / 0.0094 in the seam bands (rows 144-192, columns 144-192 and 288-336) and
    0.150 / 0.0077 elsewhere (pixels in [-1, 1], decoded values 0.28 in mean size). Bound: max < 0.2, mean < 0.012."""
    torch.manual_seed(0)
    vae = VideoAutoencoderKL.from_config(TINY_VAE_2D_CONFIG, sample_posterior=False).eval()
    z = torch.randn(1, 4, 1, 60, 106)
    with torch.no_grad():
        whole = vae.decode(z)
        seen = _count_tiles(vae)
        tiled = vae.set_tiling(True).decode(z)
    assert len(seen) == 6  # tiling ran: 2 x 3 tiles of at most 48 latent pixels
    err = (whole - tiled).abs()[0, :, 0]
    seam = torch.zeros(240, 424, dtype=torch.bool)
    seam[144:192] = True; seam[:, 144:192] = True; seam[:, 288:336] = True
    for e in (err, err[:, seam], err[:, ~seam]):
        assert e.max() < 0.2 and e.mean() < 0.012, (e.max(), e.mean())
    assert err[:, seam].mean() > 0  # and it is a different computation (not silently the whole decode)


def test_tile_size_is_checked():
    vae = VideoAutoencoderKL.from_config(TINY_VAE_2D_CONFIG)
    for bad in (100, 8, 0, 64.5):
        with pytest.raises(ValueError, match=f"VAE tile size {bad}: expected a multiple of 16 pixels"):
            vae.set_tiling(True, bad)
    assert vae.set_tiling(True, 64).module.tile_latent_min_size == 16
