"""Inference: the `opensora-nb sample` CLI on a tiny random pipeline folder, every mode, sidecars, bad inputs."""
import json
from pathlib import Path

import pytest
import torch

from opensora_nb.inference import OpenSoraPipeline, resolve_num_frames, resolve_size, sample_cli
from opensora_nb.rflow import RFlow
from opensora_nb.stdit import STDiT3
from opensora_nb.text import TextEncoder
from opensora_nb.train import PatchPCAAutoencoder, X0Parameterized


class HashText(TextEncoder):
    def __init__(self, dim=16, L=8):
        self.output_dim, self.model_max_length, self.device, self.dtype, self.name, self.y_embedder = dim, L, torch.device("cpu"), torch.float32, "hash", None
    def encode(self, prompts):
        y = torch.zeros(len(prompts), 1, self.model_max_length, self.output_dim)
        m = torch.zeros(len(prompts), self.model_max_length, dtype=torch.long)
        for i, p in enumerate(prompts):
            for j, w in enumerate(p.split()[: self.model_max_length]):
                y[i, 0, j] = torch.randn(self.output_dim, generator=torch.Generator().manual_seed(sum(map(ord, w)))); m[i, j] = 1
        return dict(y=y, mask=m)


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
    import opensora_nb.train as T
    orig = T.build_text_encoder
    monkeypatch.setattr(T, "build_text_encoder", lambda cfg: HashText() if cfg["text_encoder"]["type"] == "minilm" else orig(cfg))


def test_cli_t2v_with_sidecar(pipe_dir, tmp_path):
    pf = tmp_path / "prompts.txt"; pf.write_text("a red circle moving left\n\na blue square standing still\n")
    assert sample_cli([str(pipe_dir), "--prompt-file", str(pf), "--resolution", "32px", "--aspect-ratio", "2:3",
                       "--num-frames", "8", "--steps", "2", "--aes", "6.5", "--format", "gif", "-o", str(tmp_path / "o"), "--quiet"]) == 0
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
