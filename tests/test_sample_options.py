"""Issue 29, item 3: the options a reference user types, on `opensora-nb sample` and the pipeline (chapter 11d, chapter 12).

Each option is run on the tiny random pipeline folder the inference tests build; the reference's own prompt-line
functions (tests/reference_prompts.py, verbatim from Open-Sora v1.2.0) are the golden side of the parsing tests, and the
reference's v1.2 inference config (tests/reference_configs/) is read to the settings it stands for."""
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from opensora_nb.builders import PatchPCAAutoencoder, X0Parameterized
from opensora_nb.inference import OpenSoraPipeline, sample_args, sample_cli, sample_parser, sample_pipeline
from opensora_nb.io import video_info, write_video
from opensora_nb.rflow import RFlow
from opensora_nb.sample_options import (extract_json_from_prompts, merge_prompt, output_name, prompt_for_loop,
                                        read_config, split_prompt)
from opensora_nb.stdit import STDiT3
from toy_text import HashText

sys.path.insert(0, str(Path(__file__).parent))
import reference_prompts as ref  # noqa: E402  the reference's functions, verbatim

CONFIGS = Path(__file__).parent / "reference_configs"
REF_V1_2 = CONFIGS / "opensora_v1_2_inference_sample.py"
GEN = ["--image-size", "32x32", "--num-frames", "2", "--quiet"]


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("pipe")
    net = STDiT3(hidden_size=32, depth=1, num_heads=2, patch_size=(1, 1, 1), in_channels=16, caption_channels=16, model_max_length=8,
                 pred_sigma=False, input_sq_size=32)
    ae = PatchPCAAutoencoder(8, 16).fit(torch.rand(4, 3, 2, 32, 32) * 2 - 1)
    OpenSoraPipeline(X0Parameterized(net), ae, HashText(), RFlow(num_sampling_steps=2, cfg_scale=4.0, use_timestep_transform=False)
                     ).save_pretrained(d)
    return d


@pytest.fixture(autouse=True)
def hash_text(monkeypatch):
    import opensora_nb.inference as T
    orig = T.build_text_encoder
    monkeypatch.setattr(T, "build_text_encoder", lambda cfg: HashText() if cfg["text_encoder"]["type"] == "minilm" else orig(cfg))


def _side(folder, name):
    return json.loads((Path(folder) / f"{name}.json").read_text())


def _latents(folder, name):
    return load_file(str(Path(folder) / f"{name}.safetensors"))


def _count_calls(monkeypatch):
    "Records the prompts of every pipeline call."
    calls, orig = [], OpenSoraPipeline.__call__
    def spy(self, prompts, *a, **k):
        calls.append(list(prompts))
        return orig(self, prompts, *a, **k)
    monkeypatch.setattr(OpenSoraPipeline, "__call__", spy)
    return calls


# --- --config: the reference's config file, read without running it ---

def test_reference_v1_2_config_reads_to_its_settings():
    cfg = read_config(REF_V1_2)
    assert cfg == dict(resolution="240p", aspect_ratio="9:16", num_frames=51, fps=24, frame_interval=1, save_fps=24,
                       save_dir="./samples/samples/", seed=42, batch_size=1, multi_resolution="STDiT2", dtype="bf16",
                       condition_frame_length=5, align=5,
                       model=dict(type="STDiT3-XL/2", from_pretrained="hpcai-tech/OpenSora-STDiT-v3", qk_norm=True,
                                  enable_flash_attn=True, enable_layernorm_kernel=True),
                       vae=dict(type="OpenSoraVAE_V1_2", from_pretrained="hpcai-tech/OpenSora-VAE-v1.2", micro_frame_size=17,
                                micro_batch_size=4),
                       text_encoder=dict(type="t5", from_pretrained="DeepFloyd/t5-v1_1-xxl", model_max_length=300),
                       scheduler=dict(type="rflow", use_timestep_transform=True, num_sampling_steps=30, cfg_scale=7.0),
                       aes=6.5, flow=None)
    a = sample_args(sample_parser(), ["--config", str(REF_V1_2), "--prompt", "a cat"])
    got = {k: getattr(a, k) for k in ("official", "transformer", "vae", "text_encoder", "resolution", "aspect_ratio", "num_frames",
                                      "fps", "save_fps", "frame_interval", "output", "seed", "batch_size", "dtype",
                                      "condition_frame_length", "align", "sampling_steps", "cfg", "aes", "flow", "flash_attn",
                                      "layernorm_kernel", "vae_micro_batch")}
    assert got == dict(official=True, transformer="hpcai-tech/OpenSora-STDiT-v3", vae="hpcai-tech/OpenSora-VAE-v1.2",
                       text_encoder="DeepFloyd/t5-v1_1-xxl", resolution="240p", aspect_ratio="9:16", num_frames="51", fps=24,
                       save_fps=24, frame_interval=1, output="./samples/samples/", seed=42, batch_size=1, dtype="bf16",
                       condition_frame_length=5, align=5, sampling_steps=30, cfg=7.0, aes=6.5, flow=None, flash_attn=True,
                       layernorm_kernel=True, vae_micro_batch=4)


def test_flags_typed_override_the_config(tmp_path):
    a = sample_args(sample_parser(), ["--config", str(REF_V1_2), "--prompt", "a cat", "--seed", "7", "--cfg-scale", "3",
                                      "--save-dir", str(tmp_path), "--num-frames", "17", "--flash-attn", "false"])
    assert (a.seed, a.cfg, a.output, a.num_frames, a.flash_attn, a.sampling_steps) == (7, 3.0, str(tmp_path), "17", False, 30)
    cfg = tmp_path / "c.py"
    cfg.write_text(f'prompt = ["from the file"]\nprompt_path = "{tmp_path / "nope.txt"}"\nbatch_size = 2\nnum_sample = 3\n')
    a = sample_args(sample_parser(), ["pipe", "--config", str(cfg)])  # the file's prompt before its prompt_path, as the reference
    assert (a.prompts, a.batch_size, a.num_sample, a.official) == (["from the file"], 2, 3, False)  # a folder: not --official
    assert sample_args(sample_parser(), ["pipe", "--config", str(cfg), "--prompt", "typed"]).prompts == ["typed"]


def test_cli_with_a_config_file(pipe_dir, tmp_path):
    cfg = tmp_path / "sample.py"
    cfg.write_text('"""my settings"""\nimage_size = (32, 32)\nnum_frames = 2\nfps = 8\nsave_fps = 4\nseed = 3\n'
                   f'save_dir = "{tmp_path / "out"}"\nprompt = ["a red circle"]\nloop = 1\naes = -1.5\n'
                   'scheduler = dict(type="rflow", num_sampling_steps=1, cfg_scale=2.0)\n')
    assert sample_cli([str(pipe_dir), "--config", str(cfg), "--seed", "5", "--quiet"]) == 0
    side = _side(tmp_path / "out", "sample_0000")
    assert (side["seed"], side["num_sampling_steps"], side["cfg_scale"], side["save_fps"], side["image_size"]) == (5, 1, 2.0, 4, [32, 32])
    assert side["full_prompts"] == "a red circle aesthetic score: -1.5."


@pytest.mark.parametrize("name, what", [("malicious_config.py", "an import (`import os`)"),
                                        ("malicious_call.py", "a call to __import__('os').system")])
def test_a_config_that_would_run_code_is_refused_without_running(name, what, tmp_path, monkeypatch, capsys):
    from opensora_nb.cli import main
    monkeypatch.chdir(tmp_path)
    assert main(["sample", "pipe", "--config", str(CONFIGS / name), "--prompt", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and what in err and "not allowed" in err and "Traceback" not in err, err
    assert not (tmp_path / "PWNED_BY_CONFIG").exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("text, what", [("offset = 1", "offset is not a setting this project knows"),
                                        ("model = dict(type='STDiT2-XL/2')", "model.type = 'STDiT2-XL/2' is not supported"),
                                        ("scheduler = dict(type='rflow', num_timesteps=1000)", "scheduler.num_timesteps is not a setting"),
                                        ("fps = '24'", "fps = '24': expected int"), ("x = y", "the name 'y'"),
                                        ("fps = f'{24}'", "an f-string"), ("fps = 8 * 3", "binop `8 * 3`"),
                                        ("def f(): pass", "a definition"), ("llm_refine = True", "llm_refine = True is not supported"),
                                        ("_base_ = ['a.py']", "_base_")])
def test_config_refuses_by_name(text, what, tmp_path, capsys):
    from opensora_nb.cli import main
    (tmp_path / "c.py").write_text(text + "\n")
    assert main(["sample", "pipe", "--config", str(tmp_path / "c.py"), "--prompt", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and what in err and "c.py" in err, err


def test_config_literals():
    import ast
    from opensora_nb.sample_options import _literal
    v = lambda s: _literal(ast.parse(s, mode="eval").body, "t")
    assert [v("None"), v("True"), v("-3"), v("+2.5"), v("(1, [2, None])"), v("{'a': dict(b=-1)}")] == [
        None, True, -3, 2.5, (1, [2, None]), {"a": {"b": -1}}]
    for bad in ("dict(**x)", "list()", "{1: 2}", "-x", "b'x'", "lambda: 0"):
        with pytest.raises(ValueError, match="not allowed"): v(bad)


# --- the prompt-line grammar, golden against the reference's own functions ---

PER_LOOP = ["a cat", "|0| a sunny day |2| a rainy day", "|0|one|1|two|2|three", "|0| only one", "a | b", " |0| not at start"]


@pytest.mark.parametrize("prompt", PER_LOOP)
def test_per_loop_prompts_parse_as_the_reference(prompt):
    assert split_prompt(prompt) == ref.split_prompt(prompt)
    merged = merge_prompt(*split_prompt(prompt))
    assert merged == ref.merge_prompt(*ref.split_prompt(prompt))
    for loop_i in range(4):
        assert prompt_for_loop(merged, loop_i) == ref.extract_prompts_loop([merged], loop_i)[0]


def test_per_loop_prompts_bad_ones_are_one_line():
    for bad, what in (("|0|a|x|b", "'x' is not a loop number"), ("|0|a|2", "pairs"), ("|0|a|0|b", "must increase")):
        with pytest.raises(ValueError, match=what): split_prompt(bad)


def test_per_loop_prompts_reach_each_loop(monkeypatch):
    "Loop 0 encodes the first text, loop 1 the second (scores on each, as the reference); loop 0 is the plain prompt's."
    torch.manual_seed(0)
    net = STDiT3(hidden_size=32, depth=1, num_heads=2, patch_size=(1, 1, 1), in_channels=16, caption_channels=16, model_max_length=8,
                 pred_sigma=False, input_sq_size=32)
    ae = PatchPCAAutoencoder(8, 16).fit(torch.rand(4, 3, 2, 32, 32) * 2 - 1)
    pipe = OpenSoraPipeline(X0Parameterized(net), ae, HashText(), RFlow(num_sampling_steps=2, cfg_scale=4.0, use_timestep_transform=False))
    seen, orig = [], pipe.text_encoder.encode
    monkeypatch.setattr(pipe.text_encoder, "encode", lambda texts: seen.append(list(texts)) or orig(texts))
    kw = dict(image_size=(32, 32), num_frames=4, loops=2, condition_frame_length=1, aes=6.5, progress=False)
    res = pipe(["|0| a red circle |1| a blue square"], **kw)
    assert seen == [["a red circle aesthetic score: 6.5."], ["a blue square aesthetic score: 6.5."]]
    assert res["settings"]["full_prompts"] == ["|0|a red circle aesthetic score: 6.5.|1|a blue square aesthetic score: 6.5."]
    plain, other = pipe(["a red circle"], **kw), pipe(["|0|a red circle|1|a red circle"], **kw)
    torch.testing.assert_close(res["latents"][0], plain["latents"][0])
    assert not torch.allclose(res["latents"][1], plain["latents"][1])  # loop 1 follows its own text
    torch.testing.assert_close(other["latents"][1], plain["latents"][1])


JSON_LINES = ['a cat {"reference_path": "cat.png", "mask_strategy": "0"}', "a dog", '{"mask_strategy": "0,0,0,0,1"}',
              'a cow {"reference_path": "a.png;b.mp4"}']


def test_prompt_json_parses_as_the_reference():
    ours = extract_json_from_prompts(JSON_LINES, ["r.png"] * 4, ["1"] * 4)
    theirs = ref.extract_json_from_prompts(list(JSON_LINES), ["r.png"] * 4, ["1"] * 4)
    assert ours[1:] == theirs[1:]
    assert ours[0] == [p.rstrip() for p in theirs[0]]  # the reference keeps the space before '{' in the text; here it is trimmed
    for bad, what in (('a {"seed": 1}', "unknown key 'seed'"), ('a {"x": {"y": 1}}', "more than one"), ("a {nope", "does not parse")):
        with pytest.raises(ValueError, match=what): extract_json_from_prompts([bad])


def test_cli_prompt_json_gives_its_reference(pipe_dir, tmp_path, capsys):
    from opensora_nb.cli import main
    img = tmp_path / "ref.png"; write_video(img, torch.full((1, 3, 32, 32), 180, dtype=torch.uint8))
    pf = tmp_path / "p.txt"
    pf.write_text(f'a grey frame {{"reference_path": "{img}", "mask_strategy": "0"}}\na plain one\n')
    assert sample_cli([str(pipe_dir), "--prompt-file", str(pf), *GEN, "-o", str(tmp_path / "o")]) == 0
    s0, s1 = _side(tmp_path / "o", "sample_0000"), _side(tmp_path / "o", "sample_0001")
    assert (s0["prompts"], s0["reference"], s0["mask_strategy"]) == ("a grey frame", str(img), "0")
    assert (s1["prompts"], s1["reference"], s1["mask_strategy"]) == ("a plain one", "", "")  # none, as the reference writes it
    pf.write_text('x {"reference_path": "missing.png"}\n')
    assert main(["sample", str(pipe_dir), "--prompt-file", str(pf), *GEN]) == 2
    assert "missing.png" in capsys.readouterr().err  # checked before any work, as a --reference


# --- names, several samples, parts of a list, resuming ---

@pytest.mark.parametrize("prompt_as_path, num_sample, sample_name", [(False, 1, None), (True, 1, None), (False, 3, None),
                                                                      (True, 2, "vb_"), (False, 1, "clip")])
def test_output_names_are_the_reference(prompt_as_path, num_sample, sample_name):
    for k in range(num_sample):
        theirs = ref.get_save_path_name("d", sample_name=sample_name, sample_idx=12, prompt="a cat, walking", prompt_as_path=prompt_as_path,
                                        num_sample=num_sample, k=k)
        assert "d/" + output_name(12, "a cat, walking", sample_name, prompt_as_path, num_sample, k) == theirs


def test_num_sample(pipe_dir, tmp_path):
    assert sample_cli([str(pipe_dir), "--prompt", "a", "--prompt", "b", "--num-sample", "2", "--seed", "4", "--save-latents", *GEN,
                       "-o", str(tmp_path / "n")]) == 0
    names = sorted(p.stem for p in (tmp_path / "n").glob("*.json"))
    assert names == ["sample_0000-0", "sample_0000-1", "sample_0001-0", "sample_0001-1"]
    assert [_side(tmp_path / "n", n)["seed"] for n in names] == [4, 1_000_004, 5, 1_000_005]
    assert sample_cli([str(pipe_dir), "--prompt", "a", "--seed", "4", "--save-latents", *GEN, "-o", str(tmp_path / "one")]) == 0
    first, second = _latents(tmp_path / "n", "sample_0000-0"), _latents(tmp_path / "n", "sample_0000-1")
    torch.testing.assert_close(first["loop0"], _latents(tmp_path / "one", "sample_0000")["loop0"])  # sample 0: seed + i as before
    assert not torch.allclose(first["loop0"], second["loop0"])


def test_start_and_end_index(pipe_dir, tmp_path, capsys):
    from opensora_nb.cli import main
    pf = tmp_path / "p.txt"; pf.write_text("zero\none\ntwo\nthree\n")
    common = [str(pipe_dir), "--prompt-file", str(pf), "--save-latents", *GEN]
    assert sample_cli([*common, "--start-index", "1", "--end-index", "3", "-o", str(tmp_path / "part")]) == 0
    assert sorted(p.name for p in (tmp_path / "part").glob("*.json")) == ["sample_0001.json", "sample_0002.json"]
    assert [tuple(_side(tmp_path / "part", f"sample_000{i}")[k] for k in ("prompts", "seed", "index")) for i in (1, 2)] == [
        ("one", 1, 1), ("two", 2, 2)]
    assert sample_cli([*common, "-o", str(tmp_path / "all")]) == 0  # a part of the list is the same as in the whole list
    torch.testing.assert_close(_latents(tmp_path / "part", "sample_0002")["loop0"], _latents(tmp_path / "all", "sample_0002")["loop0"])
    for bad, what in ((["--start-index", "4"], "no prompts from --start-index 4"), (["--start-index", "-1"], "--start-index must be >= 0"),
                      (["--start-index", "2", "--end-index", "1"], "--end-index must be >= 2")):
        assert main(["sample", *common, *bad]) == 2
        assert what in capsys.readouterr().err


def test_prompt_as_path_resumes(pipe_dir, tmp_path, monkeypatch):
    prompts = ["a red circle", "a blue square", "a green star"]
    pf = tmp_path / "p.txt"; pf.write_text("\n".join(prompts) + "\n")
    out = tmp_path / "vbench"
    argv = [str(pipe_dir), "--prompt-file", str(pf), "--prompt-as-path", "--batch-size", "2", *GEN, "-o", str(out)]
    calls = _count_calls(monkeypatch)
    assert sample_cli(argv) == 0
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(Path(ref.get_save_path_name(str(out), sample_idx=i, prompt=p,
                                                                       prompt_as_path=True)).name + ".mp4" for i, p in enumerate(prompts))
    assert calls == [prompts[:2], prompts[2:]]
    (out / "a blue square.json").unlink()  # interrupted after its video, before its sidecar: not done
    before = (out / "a red circle.mp4").stat().st_mtime_ns
    calls.clear()
    assert sample_cli(argv) == 0
    assert calls == [["a blue square"]] and (out / "a blue square.json").exists()  # only what was missing
    assert (out / "a red circle.mp4").stat().st_mtime_ns == before
    calls.clear()
    assert sample_cli(argv) == 0 and calls == []


def test_skip_existing_with_index_names(pipe_dir, tmp_path, monkeypatch):
    argv = [str(pipe_dir), "--prompt", "a", "--prompt", "b", "--num-sample", "2", "--batch-size", "2", "--skip-existing", *GEN, "-o", str(tmp_path)]
    calls = _count_calls(monkeypatch)
    assert sample_cli(argv) == 0 and len(calls) == 2  # one batch per sample k
    (tmp_path / "sample_0001-1.mp4").unlink()
    calls.clear()
    assert sample_cli(argv) == 0 and calls == [["b"]]
    calls.clear()
    assert sample_cli([a for a in argv if a != "--skip-existing"]) == 0 and len(calls) == 2  # without it: all again


def test_prompt_as_path_refuses_a_name_it_cannot_write(pipe_dir, tmp_path, capsys):
    from opensora_nb.cli import main
    assert main(["sample", str(pipe_dir), "--prompt", "ok", "--prompt", "up/down", "--prompt-as-path", *GEN, "-o", str(tmp_path)]) == 2
    assert "prompt 1 ('up/down') cannot be a file name" in capsys.readouterr().err and not list(tmp_path.iterdir())


# --- fps, camera motion, kernels, batch size, spellings ---

def test_save_fps_and_frame_interval(pipe_dir, tmp_path):
    base = [str(pipe_dir), "--prompt", "x", "--image-size", "32x32", "--num-frames", "8", "--fps", "8", "--quiet"]
    assert sample_cli([*base, "--frame-interval", "2", "-o", str(tmp_path / "a")]) == 0
    s = _side(tmp_path / "a", "sample_0000")
    assert (s["fps"], s["save_fps"]) == (8, 4) and round(video_info(tmp_path / "a" / "sample_0000.mp4").fps) == 4
    assert sample_cli([*base, "--save-fps", "6", "--frame-interval", "2", "-o", str(tmp_path / "b")]) == 0
    assert _side(tmp_path / "b", "sample_0000")["save_fps"] == 6 and round(video_info(tmp_path / "b" / "sample_0000.mp4").fps) == 6
    assert sample_cli([*base, "-o", str(tmp_path / "c")]) == 0
    assert _side(tmp_path / "c", "sample_0000")["save_fps"] == 8  # default: the model's fps


def test_camera_motion(pipe_dir, tmp_path):
    assert sample_cli([str(pipe_dir), "--prompt", "a road", "--camera-motion", "pan left", *GEN, "-o", str(tmp_path)]) == 0
    s = _side(tmp_path, "sample_0000")
    assert s["camera_motion"] == "pan left" and s["full_prompts"] == "a road camera motion: pan left."


def test_flash_attn_and_layernorm_kernel(pipe_dir, tmp_path):
    p = sample_parser()
    assert [p.parse_args(["x", *f]).flash_attn for f in ([], ["--flash-attn"], ["--flash-attn", "False"], ["--flash-attn", "yes"])] == [
        None, True, False, True]
    assert p.parse_args(["x", "--layernorm-kernel", "true"]).layernorm_kernel is True
    a = sample_args(p, [str(pipe_dir), "--prompt", "x", "--flash-attn", "--layernorm-kernel", *GEN, "--save-latents", "-o", str(tmp_path / "f")])
    pipe = sample_pipeline(a)
    flags = [m.enable_flash_attn for m in pipe.model.modules() if hasattr(m, "enable_flash_attn")]
    assert flags and all(flags)
    with pytest.warns(UserWarning, match="enable_flash_attn=True is ignored on cpu"):  # on a CPU: PyTorch's default SDPA
        assert sample_cli(a_argv := [str(pipe_dir), "--prompt", "x", "--flash-attn", "--layernorm-kernel", *GEN, "--save-latents",
                                     "-o", str(tmp_path / "f")]) == 0
    assert sample_cli([a for a in a_argv if a not in ("--flash-attn", "--layernorm-kernel")][:-1] + [str(tmp_path / "n")]) == 0
    torch.testing.assert_close(_latents(tmp_path / "f", "sample_0000")["loop0"], _latents(tmp_path / "n", "sample_0000")["loop0"])


def test_batch_size_on_the_command_line(pipe_dir, tmp_path, monkeypatch):
    calls = _count_calls(monkeypatch)
    assert sample_cli([str(pipe_dir), *sum((["--prompt", c] for c in "abc"), []), "--batch-size", "2", *GEN, "-o", str(tmp_path)]) == 0
    assert calls == [["a", "b"], ["c"]]


def test_the_reference_spellings(tmp_path):
    p = sample_parser()
    a = p.parse_args(["x", "--save-dir", "o", "--prompt-path", "p.txt", "--num-sampling-steps", "3", "--cfg-scale", "2.5", "--loop", "2",
                      "--reference-path", "a.png", "b.png", "--ckpt-path", "ck"])
    assert (a.output, a.prompt_file, a.sampling_steps, a.cfg, a.loops, a.reference, a.transformer) == (
        "o", "p.txt", 3, 2.5, 2, ["a.png", "b.png"], "ck")
    a = p.parse_args(["x"])
    assert (a.output, a.prompt_file, a.loops, a.reference) == ("outputs/samples", None, 1, None)  # the aliases keep the defaults


# --- the distributed sampler reuses the same parser and run: the new options under torchrun ---

def test_dist_sample_takes_the_reference_options(pipe_dir, tmp_path):
    "2 gloo ranks (dp = 2) with --num-sample, --start-index, --prompt-as-path, a per-loop prompt: the files of one process."
    import os
    import subprocess
    from opensora_nb.text import cache_text_features
    root = Path(__file__).resolve().parents[1]
    states = cache_text_features(HashText(), ["a red circle", "a blue square", "a green star"], tmp_path / "states.safetensors")
    pipe = OpenSoraPipeline.from_pretrained(pipe_dir)  # the same weights, its text states from a file (the ranks load no encoder)
    pipe.config["text_encoder"] = dict(type="cached", from_pretrained=str(states))
    pipe.save_pretrained(tmp_path / "pipe")
    pf = tmp_path / "p.txt"; pf.write_text("skipped\n|0| a red circle |1| a blue square\na green star\n")
    argv = [str(tmp_path / "pipe"), "--prompt-file", str(pf), "--start-index", "1", "--num-sample", "2", "--prompt-as-path", "--loops", "2",
            "--condition-frame-length", "1", "--image-size", "32x32", "--num-frames", "4", "--save-latents", "--quiet"]
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # on one thread, as the ranks: the same float order, so the same bytes
    try: assert sample_cli([*argv, "-o", str(tmp_path / "one")]) == 0
    finally: torch.set_num_threads(n)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "opensora_nb.launch",
                        "sample", *argv, "-o", str(tmp_path / "two")], capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    names = sorted(f.name for f in (tmp_path / "one").iterdir())
    assert names == sorted(f"{q}-{k}{s}" for q in ("|0| a red circle |1| a blue square", "a green star") for k in (0, 1)
                           for s in (".json", ".mp4", ".safetensors"))
    assert sorted(f.name for f in (tmp_path / "two").iterdir()) == names
    for n in names: assert (tmp_path / "two" / n).read_bytes() == (tmp_path / "one" / n).read_bytes(), n
