"""Golden checks for the `official/` folder: the published `config.json` of the official Open-Sora 1.2 checkpoints.

Each `*.config.json` is dispatched on its `model_type`. The project's loader must accept every field, build the
module the reference builds (on the meta device: no weights, no download), and that module's state dict must have
the official layout. When the folder's README gives the size of the `model.safetensors` published beside a config,
the parameter count must account for it (float32 tensors + a safetensors header of at most 256 bytes a key).
"""
import json
import re
from dataclasses import fields

import torch

from opensora_nb.stdit import STDiT3, STDiT3Config
from opensora_nb.vae_hub import pipeline_from_config

METADATA = {"architectures", "model_type", "torch_dtype", "transformers_version"}  # written by transformers
BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def _configs(case):
    files = sorted(case.path.glob("*.config.json"))
    assert files, f"{case.path}: no *.config.json"
    return [(f, json.loads(f.read_text())) for f in files]


def _published_sizes(case) -> dict:
    "config file name -> bytes of the model.safetensors beside it, from the README's bullet for that file."
    readme = case.path / "README.md"
    if not readme.exists(): return {}
    out = {}
    for bullet in re.split(r"\n(?=- `)", readme.read_text()):
        m = re.match(r"- `([^`]+\.config\.json)`", bullet)
        n = re.search(r"(\d{1,3}(?:,\d{3})+|\d{4,}) bytes", bullet)
        if m and n: out[m.group(1)] = int(n.group(1).replace(",", ""))
    return out


def _check_size(name, sd, cfg, size):
    numel = sum(v.numel() for v in sd.values())
    header = size - BYTES[cfg.get("torch_dtype", "float32")] * numel
    assert 0 < header <= 8 + 256 * len(sd), (f"{name}: {numel:,} parameters ({len(sd)} tensors) do not fit the "
                                            f"published {size:,}-byte model.safetensors (header would be {header:,} bytes)")


def _stdit3(name, cfg, size):
    known = {f.name for f in fields(STDiT3Config)}
    assert set(cfg) - known <= METADATA, f"{name}: fields the project's STDiT3Config ignores: {sorted(set(cfg) - known - METADATA)}"
    c = STDiT3Config.from_dict(cfg)
    for k in set(cfg) & known:
        v = getattr(c, k)
        assert (list(v) if isinstance(v, tuple) else v) == cfg[k], f"{name}: {k} = {cfg[k]!r} became {v!r}"
    with torch.device("meta"):
        sd = STDiT3(c).state_dict()
    assert not any(k.startswith(("module.", "model.")) for k in sd), f"{name}: keys carry a prefix"
    for k in ("x_embedder.proj.weight", "y_embedder.y_embedding", "final_layer.scale_shift_table",
              f"spatial_blocks.{c.depth - 1}.attn.qkv.weight", f"temporal_blocks.{c.depth - 1}.cross_attn.kv_linear.weight"):
        assert k in sd, f"{name}: no {k} in the state dict"
    if size: _check_size(name, sd, cfg, size)


def _pipeline(name, cfg, size):
    with torch.device("meta"):
        pipe = pipeline_from_config(cfg)
    sd = pipe.state_dict()
    assert pipe.micro_frame_size == cfg["micro_frame_size"], f"{name}: micro_frame_size {pipe.micro_frame_size}"
    assert pipe.spatial_vae.micro_batch_size == cfg["vae_2d"]["micro_batch_size"], f"{name}: 2D micro_batch_size"
    prefixes = {k.split(".")[0] if k.startswith("temporal_vae.") else ".".join(k.split(".")[:2]) for k in sd}
    assert prefixes == {"spatial_vae.module", "temporal_vae", "scale", "shift"}, f"{name}: state-dict layout {prefixes}"
    for k in ("scale", "shift"):
        assert sd[k].numel() == len(cfg[k]), f"{name}: {k} has {sd[k].numel()} values, config {len(cfg[k])}"
    if size: _check_size(name, sd, cfg, size)


BUILDERS = {"STDiT3": _stdit3, "VideoAutoencoderPipeline": _pipeline}


def check_official_configs(case):
    sizes = _published_sizes(case)
    for f, cfg in _configs(case):
        kind = cfg.get("model_type")
        assert kind in BUILDERS, f"{f.name}: model_type {kind!r} has no check (known: {sorted(BUILDERS)})"
        BUILDERS[kind](f.name, cfg, sizes.get(f.name))
