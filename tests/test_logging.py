"""Experiment logging (issue 25 item 5): a short tiny-world `opensora-nb train` writes TensorBoard event files with every
scalar, the per-bucket validation loss and videos (with the tiny world's judged accuracies); the pipeline folder it
writes loads in `opensora-nb sample`; `--load PATH` and `--start-from-scratch` behave as the reference's flags."""
import json

import pytest
import torch
from safetensors.torch import load_file

from opensora_nb.cli import main
from opensora_nb.train import get_config, last_checkpoint, train_cli
from test_train import TINY, toy_features

SCALARS = {"loss", "lr", "grad_norm", "speed/steps_per_s", "speed/samples_per_s", "speed/tokens_per_s", "memory/peak_rss_gib",
           "eval/loss", "judge/color_accuracy", "judge/direction_accuracy", "judge/shape_accuracy", "judge/all_correct_rate"}
TINY_WORLD = ["--model.depth", "1", "--model.hidden_size", "32", "--model.num_heads", "2", "--data.renders_per_combo", "1",
              "--ckpt_every", "0", "--scheduler.num_sampling_steps", "2", "--device", "cpu"]


def events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0}); ea.Reload()
    return ea


@pytest.fixture(scope="module")
def world_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("logging") / "run"
    assert main(["train", "tiny_world", "-o", str(out), "--max-steps", "4", "--log-every", "2", "--eval-every", "2",
                 "--video-every", "4", *TINY_WORLD]) == 0
    return out


def test_train_logs_scalars_eval_per_bucket_and_videos(world_run):
    ea = events(world_run / "tensorboard")
    tags = set(ea.Tags()["scalars"])
    assert SCALARS <= tags, SCALARS - tags
    buckets = set(json.loads((world_run / "config.json").read_text())["data"]["buckets"])
    assert {f"eval/loss/{b}" for b in buckets} <= tags, tags
    assert [e.step for e in ea.Scalars("loss")] == [2, 4] and [e.step for e in ea.Scalars("eval/loss")] == [2, 4]
    assert all(e.value > 0 for e in ea.Scalars("speed/tokens_per_s"))
    videos = [t for t in ea.Tags()["images"] if t.startswith("video/")]
    assert len(videos) == 4, ea.Tags()["images"]
    assert ea.Images(videos[0])[0].encoded_image_string[:6] == b"GIF89a" and ea.Images(videos[0])[0].step == 4


def test_train_writes_a_pipeline_that_sample_loads(world_run, tmp_path):
    assert (world_run / "pipeline" / "model_index.json").exists()
    out = tmp_path / "samples"
    assert main(["sample", str(world_run / "pipeline"), "--prompt", "a small red circle moving left on a dark background",
                 "-o", str(out), "--sampling-steps", "2", "--quiet"]) == 0
    assert list(out.glob("*.mp4"))


def test_no_tensorboard_writes_no_event_files(tmp_path):
    cfg = _features_config(tmp_path)
    assert train_cli([str(cfg), "-o", str(tmp_path / "r"), "--max-steps", "2", "--no-tensorboard"]) == 0
    assert not (tmp_path / "r" / "tensorboard").exists() or not list((tmp_path / "r" / "tensorboard").iterdir())


def _features_config(tmp_path):
    features = toy_features().save(tmp_path / "feat.safetensors")
    cfg = get_config("tiny_world", dict(TINY, ckpt_every=2, log_every=1))
    cfg["data"] = dict(type="features", features=str(features))
    p = tmp_path / "cfg.json"; p.write_text(json.dumps(cfg))
    return p


def _weights(run):
    return load_file(str(last_checkpoint(run) / "model.safetensors"))


def _state(run):
    return json.loads((last_checkpoint(run) / "state.json").read_text())


def test_load_continues_a_run_and_start_from_scratch_restarts_it(tmp_path):
    cfg = _features_config(tmp_path)
    run = lambda out, *a: train_cli([str(cfg), "-o", str(tmp_path / out), "--no-tensorboard", *a])
    assert run("a", "--max-steps", "4") == 0
    # --load: another folder continues run a exactly (step, optimizer, data order, RNG) = run a resumed in its own folder
    assert run("b", "--load", str(tmp_path / "a"), "--max-steps", "6") == 0
    assert run("a", "--max-steps", "6") == 0
    assert _state(tmp_path / "b")["step"] == 6
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # --start-from-scratch: a's weights, but step 0 and a fresh data order (the same as a fresh run's)
    assert run("c", "--load", str(tmp_path / "a" / "step_0000004"), "--start-from-scratch", "--max-steps", "2") == 0
    assert run("fresh", "--max-steps", "2") == 0
    sc, sf = _state(tmp_path / "c"), _state(tmp_path / "fresh")
    assert sc["step"] == 2 and sc["data"] == sf["data"] and sc["stage"] == sf["stage"] == 0
    wc, wf = _weights(tmp_path / "c"), _weights(tmp_path / "fresh")
    assert any(not torch.equal(wc[k], wf[k]) for k in wc)  # it started from a's weights, not from the seed's
    # the same command again (a rerun after a kill, or with more steps): c's own checkpoint wins over --load
    assert run("c", "--load", str(tmp_path / "a" / "step_0000004"), "--start-from-scratch", "--max-steps", "3") == 0
    assert _state(tmp_path / "c")["step"] == 3


def test_load_and_start_from_scratch_input_errors(tmp_path, capsys):
    cfg = _features_config(tmp_path)
    with pytest.raises(SystemExit) as e: train_cli([str(cfg), "-o", str(tmp_path / "r"), "--start-from-scratch"])
    assert e.value.code == 2 and "--start-from-scratch needs --load" in capsys.readouterr().err
    assert main(["train", str(cfg), "-o", str(tmp_path / "r"), "--load", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "--load" in err and "not a checkpoint" in err and "Traceback" not in err
    assert not (tmp_path / "r" / "tensorboard").exists()  # refused before any work


def test_torchrun_train_gets_the_same_hooks(monkeypatch):
    "Under torchrun (WORLD_SIZE > 1) `opensora-nb train` runs chapter 13b's job with the hooks one process uses (videos, pipeline)."
    import opensora_nb.cli as cli
    import opensora_nb.launch as launch
    seen = {}
    monkeypatch.setattr(launch, "dist_train_cli", lambda argv, **kw: seen.update(argv=argv, **kw) or 0)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli.main(["train", "tiny_world", "-o", "x"]) == 0
    assert seen["argv"] == ["tiny_world", "-o", "x"] and seen["hooks"] is cli.train_hooks
    monkeypatch.setattr(launch, "dist_sample_cli", lambda argv, **kw: seen.update(sample_kw=kw) or 0)
    assert cli.main(["sample", "p", "--prompt", "a"]) == 0 and seen["sample_kw"] == {}
