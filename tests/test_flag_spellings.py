"""One meaning per flag name (issue 24): the output folder is `--output`/`-o` in every subcommand (`samples`,
`curate` and its meta tools, `vae`; `--out`, their old spelling, stays as an alias), and the distributed sampler's
steps are `--sampling-steps` (`--steps`, training steps elsewhere, is a hidden alias that says it is deprecated).
Each command is run with each spelling; the work itself is replaced by a recorder where it would take minutes."""
import argparse

import pandas as pd
import pytest

from opensora_nb import curation_pipeline as P
from opensora_nb import inference, launch, samples, vae_train

OUTPUT = ["--output", "-o", "--out"]


@pytest.mark.parametrize("flag", OUTPUT)
def test_samples(flag, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(samples, "build_samples", lambda out, sets, progress=True: seen.append(out) or {})
    assert samples.samples_cli([flag, str(tmp_path / "s"), "--quiet"]) == 0
    assert seen == [str(tmp_path / "s")]


@pytest.mark.parametrize("flag", OUTPUT)
def test_curate(flag, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(P, "curate", lambda input, out, *a, **k: seen.append(out) or pd.DataFrame({"path": []}))
    (tmp_path / "raw").mkdir()
    assert P.curate_cli([str(tmp_path / "raw"), flag, str(tmp_path / "c"), "--stages", "info"]) == 0
    assert seen == [str(tmp_path / "c")]


@pytest.mark.parametrize("flag", OUTPUT)
def test_curate_meta_tools(flag, tmp_path):
    pd.DataFrame({"path": [f"v{i}.mp4" for i in range(4)], "text": ["NA", "b", "c", "d"]}).to_csv(tmp_path / "m.csv", index=False)
    assert P.curate_cli(["split", str(tmp_path / "m.csv"), "--parts", "2", flag, str(tmp_path / "parts")]) == 0
    assert P.curate_cli(["merge", *map(str, sorted((tmp_path / "parts").glob("*.csv"))), flag, str(tmp_path / "g.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "g.csv")) == 4


@pytest.mark.parametrize("flag", OUTPUT)
def test_vae(flag, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(vae_train, "train_world_vae", lambda out, scale, seed=0, progress=True: seen.append(out))
    monkeypatch.setattr(vae_train, "file_sha256", lambda p: "x")
    assert vae_train.vae_cli(["--world", flag, str(tmp_path / "v"), "--quiet"]) == 0
    assert seen == [str(tmp_path / "v")]


def test_output_is_required_by_its_new_name(capsys):
    with pytest.raises(SystemExit): P.curate_cli(["somewhere"])
    assert "--output" in capsys.readouterr().err


def test_launch_sample_sampling_steps(capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    p = launch.dist_sample_parser()
    assert p.parse_args(["pipe", "--sampling-steps", "7"]).sampling_steps == 7
    assert capsys.readouterr().err == ""
    assert p.parse_args(["pipe", "--steps", "5"]).sampling_steps == 5                # the old spelling, same dest
    assert capsys.readouterr().err.strip().splitlines() == [
        "python -m opensora_nb.launch sample: --steps is deprecated, use --sampling-steps"]
    monkeypatch.setenv("RANK", "1")                                                    # other ranks stay quiet
    assert p.parse_args(["pipe", "--steps", "5"]).sampling_steps == 5 and capsys.readouterr().err == ""
    helptext = p.format_help()
    assert "--sampling-steps" in helptext and "--steps" not in helptext.replace("--sampling-steps", "")
    assert "compute precision: fp32, bf16 or fp16 (sampling casts the weights; default: bf16 with --official, else fp32)" in " ".join(helptext.split())
    single = {a.dest for a in inference.sample_parser()._actions}                   # issue 25: the one sampler's flags, + --sp
    assert {a.dest for a in p._actions} == single | {"sp"}
    assert p.parse_args(["pipe", "-o", "x"]).output == p.parse_args(["pipe", "--output", "x"]).output == "x"
