"""Tiny random checkpoints in the OFFICIAL folder layouts, for tests that load them as the real ones are loaded.

`write_official_tiny(root)` writes, deterministically (same bytes every call, the caller's RNG untouched):

- `root/OpenSora-STDiT-v3/`: `config.json` with exactly the keys of the published `hpcai-tech/OpenSora-STDiT-v3`
  config (transformers metadata included) at tiny sizes, and `model.safetensors` with the official parameter names
  (no prefix);
- `root/tiny-sdxl-vae/vae/config.json`: a diffusers `AutoencoderKL` config of the SDXL type (four levels: 8x in space,
  mid-block attention) at tiny width, written by diffusers; no weights, as the pipeline's own file holds them;
- `root/OpenSora-VAE-v1.2/`: `config.json` with the keys of the published `hpcai-tech/OpenSora-VAE-v1.2` config, whose
  `vae_2d` names `root/tiny-sdxl-vae` + subfolder `vae` (as the official one names PixArt's SDXL VAE) and whose
  `vae_temporal` is a tiny `VAE_Temporal`; `model.safetensors` holds `spatial_vae.module.*`, `temporal_vae.*`,
  `scale` and `shift`;
- `root/t5-v1_1-tiny/`: a tiny T5 encoder + tokenizer (`opensora_nb.text.build_tiny_t5`), offline-loadable by
  `T5Encoder.from_pretrained`; its `d_model` is the STDiT's `caption_channels`.
"""
import copy
import json
from pathlib import Path

import torch

#: The published hpcai-tech/OpenSora-STDiT-v3 config.json (transformers 4.36.2 wrote it).
PUBLISHED_STDIT3 = {
    "architectures": ["STDiT3"], "caption_channels": 4096, "class_dropout_prob": 0.1, "depth": 28, "drop_path": 0.0,
    "enable_flash_attn": False, "enable_layernorm_kernel": False, "enable_sequence_parallelism": False,
    "freeze_y_embedder": True, "hidden_size": 1152, "in_channels": 4, "input_size": [None, None, None],
    "input_sq_size": 512, "mlp_ratio": 4.0, "model_max_length": 300, "model_type": "STDiT3", "num_heads": 16,
    "only_train_temporal": False, "patch_size": [1, 2, 2], "pred_sigma": True, "qk_norm": True,
    "skip_y_embedder": False, "torch_dtype": "float32", "transformers_version": "4.36.2"}
#: The published hpcai-tech/OpenSora-VAE-v1.2 config.json.
PUBLISHED_VAE = {
    "architectures": ["VideoAutoencoderPipeline"], "cal_loss": False, "freeze_vae_2d": False, "from_pretrained": None,
    "micro_frame_size": 17, "model_type": "VideoAutoencoderPipeline", "scale": [3.85, 2.32, 2.33, 3.06],
    "shift": [-0.1, 0.34, 0.27, 0.98], "torch_dtype": "float32", "transformers_version": "4.36.2",
    "vae_2d": {"from_pretrained": "PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers", "local_files_only": False,
               "micro_batch_size": 4, "subfolder": "vae", "type": "VideoAutoencoderKL"},
    "vae_temporal": {"from_pretrained": None, "type": "VAE_Temporal_SD"}}

#: Tiny sizes. The T5 width is the STDiT's caption_channels; both use MODEL_MAX_LENGTH tokens.
MODEL_MAX_LENGTH = 16
TINY_T5 = dict(d_model=32, num_layers=1, num_heads=2, d_ff=64, vocab_size=320)
TINY_STDIT3 = dict(hidden_size=32, depth=1, num_heads=2, caption_channels=TINY_T5["d_model"],
                   model_max_length=MODEL_MAX_LENGTH)
#: An SDXL-type AutoencoderKL (4 levels: 8x in space, mid-block attention, 4 latent channels) at tiny width.
TINY_SDXL_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
                     block_out_channels=[16, 32, 32, 32], down_block_types=["DownEncoderBlock2D"] * 4,
                     up_block_types=["UpDecoderBlock2D"] * 4, act_fn="silu", sample_size=64, scaling_factor=0.13025)
TINY_TEMPORAL = dict(in_out_channels=4, latent_embed_dim=4, embed_dim=4, filters=16, num_res_blocks=1,
                     channel_multipliers=[1, 2, 2, 2], temporal_downsample=[False, True, True], num_groups=8,
                     activation_fn="swish")
NAMES = dict(stdit="OpenSora-STDiT-v3", vae="OpenSora-VAE-v1.2", vae_2d="tiny-sdxl-vae", t5="t5-v1_1-tiny")


def _write_json(path: Path, d: dict):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")  # transformers' style: sorted, 2 spaces


def _randomise(model: torch.nn.Module, std=0.02):
    "Every parameter random (the reference init zeroes some), buffers kept: loading then proves every tensor."
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model


def _save(model: torch.nn.Module, path: Path):
    from safetensors.torch import save_file
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(sd, str(path), metadata={"format": "pt"})


def write_official_tiny(root, seed: int = 0) -> dict:
    """Write the four tiny folders under `root` (see the module docstring); returns their paths:
    `stdit`, `vae`, `vae_2d` (the diffusers folder, its config in subfolder `vae`), `t5`, and `root`."""
    from diffusers.models import AutoencoderKL

    from opensora_nb.stdit import STDiT3, STDiT3Config
    from opensora_nb.text import build_tiny_t5
    from opensora_nb.vae import init_posterior_logvar
    from opensora_nb.vae_hub import pipeline_from_config

    root = Path(root).resolve()
    paths = {k: root / v for k, v in NAMES.items()}
    with torch.random.fork_rng(devices=[]):
        # the text encoder: tokenizer + T5 encoder, offline
        build_tiny_t5(paths["t5"], model_max_length=MODEL_MAX_LENGTH, seed=seed, **TINY_T5)

        # STDiT3: the published config's keys, tiny values; weights under the official names
        cfg = {**copy.deepcopy(PUBLISHED_STDIT3), **TINY_STDIT3}
        _write_json(paths["stdit"] / "config.json", cfg)
        torch.manual_seed(seed)
        _save(_randomise(STDiT3(STDiT3Config.from_dict(cfg))), paths["stdit"] / "model.safetensors")

        # the 2D VAE folder the VAE config names: its config only, written by diffusers
        AutoencoderKL.from_config(TINY_SDXL_VAE).save_config(paths["vae_2d"] / "vae")

        # the video VAE: published keys; vae_2d names the folder above, vae_temporal is tiny
        vcfg = copy.deepcopy(PUBLISHED_VAE)
        vcfg["vae_2d"]["from_pretrained"] = str(paths["vae_2d"])
        vcfg["vae_temporal"] = {"from_pretrained": None, "type": "VAE_Temporal", **TINY_TEMPORAL}
        _write_json(paths["vae"] / "config.json", vcfg)
        torch.manual_seed(seed + 1)
        pipe = pipeline_from_config(vcfg, source=str(paths["vae"] / "config.json"))
        init_posterior_logvar(pipe.spatial_vae.module.quant_conv)        # narrow posteriors, as the tiny VAEs start
        init_posterior_logvar(pipe.temporal_vae.quant_conv.conv)
        _save(pipe, paths["vae"] / "model.safetensors")
    return {**paths, "root": root}


#: The hub ids Open-Sora 1.2's checkpoints are published under. The 2D VAE gets an id of its own: the published one
#: (PixArt's SDXL VAE) has a known full-size config that the loader uses without reading the folder.
OFFICIAL_HUB_IDS = dict(stdit="hpcai-tech/OpenSora-STDiT-v3", vae="hpcai-tech/OpenSora-VAE-v1.2",
                        vae_2d="opensora-nb-tests/tiny-sdxl-vae", t5="DeepFloyd/t5-v1_1-xxl")


def write_official_hub_cache(cache, seed: int = 0) -> Path:
    """The tiny folders stored as a Hugging Face hub cache holds the official ids (`models--ORG--NAME/snapshots/REV`,
    `refs/main`), the VAE config naming its 2D VAE by a hub id too: with `HF_HUB_CACHE=cache` and
    `HF_HUB_OFFLINE=1`, `--official` loads every part by its published name, as a user's cache after a download."""
    import hashlib
    import shutil
    cache = Path(cache)
    paths = write_official_tiny(cache / "_folders", seed)
    vcfg = json.loads((paths["vae"] / "config.json").read_text())
    vcfg["vae_2d"]["from_pretrained"] = OFFICIAL_HUB_IDS["vae_2d"]
    _write_json(paths["vae"] / "config.json", vcfg)
    for key, repo in OFFICIAL_HUB_IDS.items():
        rev = hashlib.sha1(repo.encode()).hexdigest()
        d = cache / ("models--" + repo.replace("/", "--"))
        shutil.copytree(paths[key], d / "snapshots" / rev)
        (d / "refs").mkdir(parents=True, exist_ok=True)
        (d / "refs" / "main").write_text(rev)
    shutil.rmtree(cache / "_folders")
    return cache
