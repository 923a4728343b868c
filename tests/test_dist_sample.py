"""Issue 25, item 4: sampling on many ranks is the same sampler. `opensora-nb sample` under torchrun (2 gloo processes on
the CPU) takes every flag of the single-process command and writes the files one process writes: with data parallelism
byte for byte (videos, sidecars, latents), with sequence parallelism equal up to float rounding; an option sequence
parallelism cannot run is refused by name in one line, exit status 2, before any work.

Two launches in all (dp = 2 through the `opensora-nb` console script, sp = 2 through `python -m opensora_nb.launch`);
the single-process references run in this process. A tiny pipeline folder whose text encoder is a feature file, with
stored defaults (size, frames, aesthetic score), a prompt file, per-prompt references with a mask strategy, two loops,
PAB, a LoRA adapter, and (data parallel only) step skipping and --batch-size 2."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from opensora_nb.builders import PatchPCAAutoencoder
from opensora_nb.inference import OpenSoraPipeline, sample_cli
from opensora_nb.io import read_video, write_video
from opensora_nb.rflow import RFlow
from opensora_nb.stdit import STDiT3
from toy_text import HashText

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["a red circle", "a blue square", "a green star"]  # the last one from --prompt-file


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from opensora_nb.lora import add_lora, lora_layers, save_lora
    from opensora_nb.text import cache_text_features
    d = tmp_path_factory.mktemp("dist_sample")
    torch.manual_seed(0)
    net = STDiT3(hidden_size=32, depth=2, num_heads=2, patch_size=(1, 1, 1), in_channels=16, caption_channels=16, model_max_length=8,
                 pred_sigma=False, input_sq_size=32)
    ae = PatchPCAAutoencoder(8, 16).fit(torch.rand(4, 3, 2, 32, 32) * 2 - 1)
    states = cache_text_features(HashText(), [f"{p} aesthetic score: 6.5." for p in PROMPTS], d / "states.safetensors")
    OpenSoraPipeline(net, ae, HashText(), RFlow(num_sampling_steps=4, cfg_scale=4.0, use_timestep_transform=False),
                     config=dict(text_encoder=dict(type="cached", from_pretrained=str(states)),
                                 defaults=dict(image_size=[32, 48], num_frames=5, aes=6.5))).save_pretrained(d / "pipe")
    p = OpenSoraPipeline.from_pretrained(d / "pipe")
    add_lora(p, rank=2, alpha=2)
    with torch.no_grad():
        for m in lora_layers(p).values():
            for lin in m.lora_B.values(): lin.weight.normal_(0, 0.1)  # an adapter that changes the result
    save_lora(p, d / "adapter")
    (d / "prompts.txt").write_text(PROMPTS[2] + "\n")
    for name, level in (("r1.png", 200), ("r2.png", 40)):
        write_video(d / name, torch.full((1, 3, 32, 48), level, dtype=torch.uint8))
    argv = [str(d / "pipe"), "--prompt", PROMPTS[0], "--prompt", PROMPTS[1], "--prompt-file", str(d / "prompts.txt"),
            "--reference", str(d / "r1.png"), "--reference", str(d / "r2.png"), "--reference", str(d / "r1.png"),
            "--mask-strategy", "0", "--loops", "2", "--pab-k", "2,2,2", "--pab-range", "1.0,0.0", "--lora", str(d / "adapter"),
            "--seed", "3", "--save-latents", "--quiet"]
    return d, argv


def _single(argv):
    "The single-process command in this process, on one thread as the ranks."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try: assert sample_cli(argv) == 0
    finally: torch.set_num_threads(n)


def _torchrun(args, cwd, module=True):
    head = ["-m", "opensora_nb.launch"] if module else ["--no-python", "opensora-nb"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *head, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=cwd)
    assert p.returncode == 0, f"torchrun failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    return p.stdout


def _files(folder):
    return sorted(f.name for f in Path(folder).iterdir())


def test_data_parallel_writes_the_files_of_one_process(world):
    "`opensora-nb sample` under torchrun, dp = 2: the same files, byte for byte, as one process (batches [0, 1] and [2])."
    d, argv = world
    extra = ["--batch-size", "2", "--teacache", "0.05"]
    _single([*argv, *extra, "-o", str(d / "one_dp")])
    out = _torchrun(["sample", *argv, *extra, "-o", str(d / "dp")], d, module=False)
    assert "rank 0 (dp 0, sp 0/1): 2 prompts" in out and "rank 1 (dp 1, sp 0/1): 1 prompts" in out, out
    names = _files(d / "one_dp")
    assert names == [f"sample_000{i}{s}" for i in range(3) for s in (".json", ".mp4", ".safetensors")]
    assert _files(d / "dp") == names
    for n in names: assert (d / "dp" / n).read_bytes() == (d / "one_dp" / n).read_bytes(), n
    side = json.loads((d / "dp" / "sample_0002.json").read_text())  # the prompt file's prompt, its seed, the stored defaults
    assert (side["prompts"], side["seed"], side["image_size"], side["loops"], side["lora"]) == (PROMPTS[2], 5, [32, 48], 2, str(d / "adapter"))
    assert side["full_prompts"].endswith("aesthetic score: 6.5.") and side["reference"] == str(d / "r1.png")
    assert side["cache_stats"]["attention_reused"] > 0 and side["batch_size"] == 1  # PAB ran; prompt 2 rode alone


def test_sequence_parallel_equals_one_process(world):
    "`python -m opensora_nb.launch sample --sp 2`: the same names and sidecars, latents equal up to float rounding."
    d, argv = world
    _single([*argv, "-o", str(d / "one_sp")])
    out = _torchrun(["sample", *argv, "--sp", "2", "-o", str(d / "sp")], d)
    assert "rank 1 (dp 0, sp 1/2): 3 prompts" in out, out
    names = _files(d / "one_sp")
    assert _files(d / "sp") == names and len(names) == 9
    for i in range(3):
        a, b = (json.loads((f / f"sample_000{i}.json").read_text()) for f in (d / "sp", d / "one_sp"))
        assert a == b
        za, zb = (load_file(str(f / f"sample_000{i}.safetensors")) for f in (d / "sp", d / "one_sp"))
        assert za.keys() == zb.keys() == {"loop0", "loop1"}
        for k in za: torch.testing.assert_close(za[k], zb[k], atol=1e-4, rtol=0)
        va, vb = (read_video(f / f"sample_000{i}.mp4").float() for f in (d / "sp", d / "one_sp"))
        assert va.shape == vb.shape and (va - vb).abs().mean() < 1.0  # a rounding step can move a pixel a level


def test_an_option_sequence_parallelism_cannot_run_is_refused(world, monkeypatch, capsys):
    "Under torchrun `opensora-nb sample` is chapter 13b's; --teacache with --sp 2 is one line naming it and exit status 2, before any work."
    from opensora_nb import launch
    from opensora_nb.cli import main
    d, argv = world
    monkeypatch.setattr(launch, "init_distributed", lambda *a, **k: pytest.fail("refused after the process groups started"))
    for rank, lines in (("0", 1), ("1", 0)):  # rank 0 says it, once
        monkeypatch.setenv("WORLD_SIZE", "2"); monkeypatch.setenv("RANK", rank)
        with pytest.raises(SystemExit) as e: main(["sample", *argv, "--teacache", "0.1", "--sp", "2", "-o", str(d / "refused")])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == lines, err
        if lines: assert err[0].startswith("python -m opensora_nb.launch sample: error: --sp 2: --teacache ") and "Traceback" not in err[0]
    assert not (d / "refused").exists()
