"""`opensora-nb demo` smoke run: a few seconds of training, every output written, report.json complete."""
import json
from pathlib import Path

from opensora_nb.demo import demo_cli

KEYS = ("color_accuracy", "direction_accuracy", "i2v_first_frame_psnr", "loop_first_last_psnr", "train_seconds",
        "total_seconds", "num_params")


def test_demo_smoke(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo_cli(["--output", str(out), "--train-seconds", "4", "--renders-per-combo", "1", "--depth", "1",
                     "--hidden-size", "32", "--steps", "3", "--dataset-rows", "8", "--threads", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    r = json.loads((out / "report.json").read_text())
    for k in KEYS: assert isinstance(r[k], (int, float)), k
    assert 0 <= r["color_accuracy"] <= 1 and 0 <= r["direction_accuracy"] <= 1
    assert r["i2v_first_frame_psnr"] > 20  # the given first frame is kept (up to the autoencoder's error)
    for f in ("contact_sheet.png", "report.md", "loss.png", "pipeline/model_index.json", "i2v/i2v_0000.mp4",
              "extension/extension_0000.mp4", "looping/looping_0000.mp4", "long/long_0000.mp4", "t2v_heldout/t2v_0000.mp4",
              "t2v_heldout/t2v_0000.json"):
        assert (out / f).exists(), f
