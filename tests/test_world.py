"""One tiny world, one features path (issue 24): `opensora-nb train tiny_world` trains on chapter 02's world through the
shipped world VAE and `builders.encode_features`, the same path the demo and fine-tuning take."""
import json

import torch

import opensora_nb.builders as B
from opensora_nb.cli import main
from opensora_nb.samples import WORLD_FRAMES

SMALL = ["--max_steps", "4", "--data.renders_per_combo", "1", "--model.depth", "1", "--model.hidden_size", "32",
         "--model.num_heads", "2", "--log_every", "2", "--ckpt_every", "2"]


def test_train_tiny_world_runs_on_the_world_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "tiny_world", "-o", str(out), *SMALL]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["vae"] == {"type": "tiny_v1_2", "from_pretrained": "world"} and cfg["data"]["type"] == "world"
    fb = B.FeatureBatches.load(cfg["data"]["features"])
    assert set(fb.buckets) == set(B.WORLD_BUCKETS)
    assert fb.buckets["t9_32x48"]["z"].shape[1:] == (4, 3, 8, 12) and fb.buckets["t9_32x48"]["num_frames"] == WORLD_FRAMES
    assert "trained 4 steps" in capsys.readouterr().out
    # the same command again continues from the last checkpoint (nothing left to do), a larger budget goes on
    assert main(["train", "tiny_world", "-o", str(out), *SMALL, "--max_steps", "6"]) == 0
    assert "trained 6 steps" in capsys.readouterr().out
    # --no-resume starts over and still finds its features (they are written after the folder is cleared)
    assert main(["train", "tiny_world", "-o", str(out), "--no-resume", *SMALL]) == 0


def test_one_world_one_path():
    "The second world and the second and third clip -> features paths are gone; demo and finetune use encode_features."
    for gone in ("TINY_BUCKETS", "TINY_WORLD", "tiny_clip", "render_features", "build_tiny_features", "read_dataset_clips", "fit_clips"):
        assert not hasattr(B, gone), gone
    import inspect
    import opensora_nb.demo as D
    import opensora_nb.finetune as F
    assert "encode_features(" in inspect.getsource(D) and "encode_features(" in inspect.getsource(F)
    assert not hasattr(D, "build_features") and not hasattr(F, "encode_clips")
    assert B.get_config("tiny_world")["stages"] == B.WORLD_STAGES


def test_encode_features_streams_batches_and_encodes_each_caption_once():
    class CountingVAE(torch.nn.Module):
        def __init__(self): super().__init__(); self.w = torch.nn.Parameter(torch.ones(())); self.calls = []
        def encode(self, x): self.calls.append(x.shape[0]); return x[:, :, :, ::4, ::4] * self.w

    class CountingText:
        def __init__(self): self.seen = []
        def encode(self, prompts):
            self.seen += list(prompts)
            return dict(y=torch.zeros(len(prompts), 1, 5, 7), mask=torch.ones(len(prompts), 5, dtype=torch.long))

    clips = (torch.zeros(3, 2, 8, 8) for _ in range(5))  # a generator: read lazily
    vae, te = CountingVAE(), CountingText()
    fb = B.encode_features({"v": (clips, ["a", "b", "a", "c", "b"], 8)}, vae, te, {"v": 16}, encode_batch=2, progress=False)
    assert vae.calls == [2, 2, 1] and sorted(te.seen) == ["a", "b", "c"]
    assert fb.buckets["v"]["z"].shape == (5, 3, 2, 2, 2) and fb.batch_sizes == {"v": 5}
    assert fb.buckets["v"]["text_idx"].tolist() == [0, 1, 0, 2, 1] and (fb.buckets["v"]["height"], fb.buckets["v"]["num_frames"]) == (8, 2)
