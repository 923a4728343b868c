"""Device and dtype placement (issue 15): every tensor is made on the device it is used on.

A CPU-only suite cannot see a CUDA bug, so the model and its inputs go to PyTorch's `meta` device: a tensor created
on the CPU by mistake then meets a meta tensor and fails ("Tensor on device meta is not on the expected device cpu").
Values the model reads on the host (the video's pixel height/width for the positional table) stay CPU values."""
import pytest
import torch

from opensora_nb.builders import FeatureBatches, PatchPCAAutoencoder, X0Parameterized, get_config
from opensora_nb.inference import OpenSoraPipeline
from opensora_nb.io import resolve_device, resolve_dtype
from opensora_nb.rflow import RFlow
from opensora_nb.stdit import STDiT3
from opensora_nb.train import Trainer
from opensora_nb.vae import tiny_vae_v1_2
from toy_text import MetaText

META = torch.device("meta")


def _cfg(**kw):
    return get_config("tiny_world", {"model.depth": 1, "model.hidden_size": 32, "model.num_heads": 2, "warmup_steps": 0, **kw})


def _features(n=4, C=4, T=4, S=4, L=32, D=384):  # the tiny_world preset: 4 latent channels, 2x2 patches
    z = torch.randn(n, C, T, S, S)
    return FeatureBatches({"t4": dict(z=z, text_idx=torch.arange(n) % 2, fps=8, height=32, width=32, num_frames=T)},
                          torch.randn(2, L, D), torch.ones(2, L, dtype=torch.long), {"t4": 2}, seed=0)


def test_resolve():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("meta") == META and resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(ValueError, match="dtype 'bf61'"): resolve_dtype("bf61")


def test_training_step_on_meta():
    tr = Trainer(_cfg(device="meta"))
    assert next(tr.model.parameters()).device == META
    loss = tr.step(_features().next_batch())
    assert loss.device == META and loss.shape == ()


def test_training_step_bf16_on_cpu_is_finite():
    tr = Trainer(_cfg(device="cpu", dtype="bf16"))
    fb = _features()
    losses = [float(tr.step(fb.next_batch())) for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(losses)))


def _pipe(vae, in_channels, patch, transform=True):
    net = STDiT3(hidden_size=32, depth=1, num_heads=2, patch_size=patch, in_channels=in_channels, caption_channels=16,
                 model_max_length=8, pred_sigma=False, input_sq_size=32)
    return OpenSoraPipeline(X0Parameterized(net), vae, MetaText(), RFlow(num_sampling_steps=2, cfg_scale=2.0,
                                                                                 use_timestep_transform=transform))


def test_sampling_with_reference_and_mask_on_meta():
    torch.manual_seed(0)
    pipe = _pipe(tiny_vae_v1_2(), 4, (1, 2, 2)).to("meta")
    ref = (torch.rand(1, 3, 32, 32) * 255).to(torch.uint8)
    res = pipe(["a red circle"], image_size=(32, 32), num_frames=17, reference=[ref], mask_strategy="0", progress=False)
    assert res["latents"][0].device == META and tuple(res["videos"][0].shape) == (17, 3, 32, 32)


def test_vae_encode_on_meta():
    vae = tiny_vae_v1_2().to(META)
    z = vae.encode(torch.empty(1, 3, 17, 32, 32, device=META))
    assert z.device == META and tuple(z.shape) == (1, 4, 5, 8, 8)


def test_text_encode_on_meta():
    """The encoder wrapper sends token ids and mask to its device and returns states there. transformers' own SDPA mask
    shortcut reads the mask on the host (`padding_mask.all()`), so its network cannot run on `meta`: it is replaced by
    a stand-in that checks where its inputs arrive (the wrapper's placement is what this test proves)."""
    from types import SimpleNamespace
    from opensora_nb.builders import build_text_encoder
    te = build_text_encoder(_cfg()).to(META)
    seen = {}
    def net(input_ids, attention_mask):
        seen.update(ids=input_ids.device, mask=attention_mask.device)
        return SimpleNamespace(last_hidden_state=torch.zeros(*input_ids.shape, te.output_dim, device=input_ids.device))
    te.model = net
    out = te.encode(["a red circle moving left"])
    assert seen == dict(ids=META, mask=META) and out["y"].device == META and out["mask"].device == META
    te.set_null(torch.zeros(te.model_max_length, te.output_dim))
    assert te.null(2).device == META


def test_pipeline_bf16_on_cpu_is_finite():
    torch.manual_seed(0)
    ae = PatchPCAAutoencoder(8, 16).fit(torch.rand(4, 3, 2, 32, 32) * 2 - 1)
    # (v1.2's timestep transform is not for clips under 17 frames: it maps them to t = 0/0; see chapter 07)
    pipe = _pipe(ae, 16, (1, 1, 1), transform=False).to("cpu", torch.bfloat16)
    res = pipe(["a red circle"], image_size=(32, 32), num_frames=4, progress=False)
    assert torch.isfinite(res["latents"][0].float()).all() and res["videos"][0].dtype == torch.uint8


# --- low-memory options (issue 15 item 3): each is an argument of the pipeline and a CLI flag ---

def test_vae_micro_batch_and_tiling_keep_the_result():
    torch.manual_seed(0)
    pipe = _pipe(tiny_vae_v1_2().eval(), 4, (1, 2, 2))
    kw = dict(image_size=(32, 32), num_frames=17, num_sampling_steps=2, progress=False)
    base = pipe(["a red circle"], **kw)
    micro = pipe.set_memory(vae_micro_batch_size=1)(["a red circle"], **kw)
    assert pipe.vae.spatial_vae.micro_batch_size == 1
    # the same frames (up to float rounding of a different batch shape in the 2D decoder: at most 1 of 255)
    assert (base["videos"][0].int() - micro["videos"][0].int()).abs().max() <= 1
    tiled = pipe.set_memory(vae_tiling=True)(["a red circle"], **kw)
    assert pipe.vae.spatial_vae.module.use_tiling and tiled["videos"][0].shape == base["videos"][0].shape
    with pytest.raises(ValueError, match="has no 2D VAE"):
        _pipe(PatchPCAAutoencoder(8, 16), 16, (1, 1, 1)).set_memory(vae_micro_batch_size=2)


def test_offload_moves_each_part_in_and_out():
    pipe = _pipe(PatchPCAAutoencoder(8, 16), 16, (1, 1, 1))
    pipe.offload, pipe._device = True, torch.device("meta")  # an accelerator stand-in: only the moves are recorded
    moves = []
    class Part:
        def to(self, device): moves.append(str(device)); return self
    with pipe._working(Part()): moves.append("work")
    assert moves == ["meta", "work", "cpu"]
    cpu = _pipe(PatchPCAAutoencoder(8, 16), 16, (1, 1, 1)).to("cpu", offload=True)  # on a CPU there is nothing to move
    assert cpu.offload and cpu.device.type == "cpu"


# --- the static half of the proof: every tensor factory call without a device is a known host-side one ---
import re
from pathlib import Path

FACTORY = re.compile(r"torch\.(zeros|ones|full|tensor|arange|randn|rand|randint|empty|linspace|as_tensor|randperm)\(")
HOST_SIDE = {  # module: {snippet: why it is made on the CPU on purpose}
    "inference": {"torch.randn(1, self.vae.out_channels, *lat, generator=g)": "CPU generators: the same noise on every device, moved with .to(dev)"},
    "text": {"torch.tensor([self.index[p] for p in prompts])": "indexes the CPU cache; the states are moved to the encoder's device"},
    "rflow": {"torch.as_tensor(v).float().flatten()": "timestep transform inputs are host values (as the reference's .item())",
              "torch.as_tensor(t)": "same: the transformed timesteps are moved to the latent's device"},
    "train": {"torch.randperm(n, generator=g)": "holdout: the validation rows are host-side batches, like builders' (step moves them)",
              'lambda v: torch.full((k,), float(v))': "holdout: same (fps, height, width of the held-out rows)",
              "torch.linspace(0, sch.num_timesteps, n_timesteps + 2)[1:-1]": "eval_losses: timesteps read as host floats, each "
                                                                            "made on the device with torch.full(device=dev)",
              "torch.randn(z.shape, generator=torch.Generator().manual_seed(seed + k)).to(dev)": "eval_losses: CPU generator, "
                                                                            "the same noise on every device, moved at once",
              "np.asarray(torch.as_tensor(video).permute(0, 2, 3, 1))": "the log's GIF: host pixels for the encoder"},
    "engine": {"torch.as_tensor(self.opt.get_grad_norm())": "zero2/gemini clip inside their step and give the norm as a host "
                                                              "float: kept as a tensor only for the log"},
    "masks": {"torch.ones(T, dtype=torch.bool)": "frame masks are drawn on the host (python RNG) and moved to x's device in get_masks",
              "torch.tensor([rng.random() > p for _ in range(T)])": "same",
              "torch.arange(n).float() + 1000 * (j + 1)": "draw_mask_strategy: a picture, no model",
              "torch.zeros(1, 1, num_frames, 1, 1)": "draw_mask_strategy: a picture, no model",
              "torch.ones(1, num_frames)": "draw_mask_strategy: a picture, no model"},
}


# (builders is not listed: it makes host-side batches, which Trainer.step moves, and module buffers, moved with .to)
@pytest.mark.parametrize("module", ["train", "inference", "dist", "engine", "launch", "text", "rflow", "masks"])
def test_no_tensor_is_made_without_a_device(module):
    "Training, inference, the distributed code and the encoders create tensors on a device, or on the host for a named reason."
    src = (Path(__file__).resolve().parents[1] / "opensora_nb" / f"{module}.py").read_text().splitlines()
    allowed = HOST_SIDE.get(module, {})
    bad = [f"{module}.py:{i}: {l.strip()}" for i, l in enumerate(src, 1)
           if FACTORY.search(l) and "device" not in l and not any(s in l for s in allowed)]
    assert not bad, "\n".join(bad)


# --- the demo, fine-tuning and the sampling caches on `meta` (issue 24) ---

def test_demo_on_meta(tmp_path, monkeypatch):
    """`opensora-nb demo --device cuda` with meta standing in for CUDA. The VAE and the text encoder are placed once, when
    loaded; training, the pipeline (which then moves nothing), every generation mode and the VAE's held-out reconstructions
    run on meta. Three stand-ins, where meta has no values to give: MiniLM (transformers reads its mask on the host, see
    test_text_encode_on_meta), the features (rendering and curation run for real on the CPU; the clips are then encoded by
    `clip_features` on the CPU, since the one features path returns host tensors, which meta cannot give) and
    `write_results`, the host's part, which judges pixel values."""
    from opensora_nb import demo
    monkeypatch.setattr(demo.text_lib.MiniLMEncoder, "from_pretrained",
                        classmethod(lambda cls, *a, device="cpu", **k: MetaText(384, 32).to(device)))
    got, features = {}, demo.clip_features
    def on_cpu(kept, vae, enc, **kw):
        got["features_from"] = ({p.device for p in vae.parameters()}, enc.device)
        return features(kept, demo.load_world_vae(), MetaText(384, 32), **kw)
    def write_results(out, pipe, trainer, runs, recs, *rest):
        got.update(pipe=pipe, trainer=trainer, runs=runs, recs=recs)
        return {}
    monkeypatch.setattr(demo, "clip_features", on_cpu)
    monkeypatch.setattr(demo, "write_results", write_results, raising=False)  # (raising=False: the code before it had none)
    demo.run_demo(tmp_path, steps=10, n_videos=3, depth=1, hidden_size=32, sampling_steps=2, progress=False, log=lambda *a: None,
                  device="meta", eval_every=6)
    assert got["features_from"] == ({META}, META)  # placed once, at load
    pipe, runs = got["pipe"], got["runs"]
    assert pipe.device == META and pipe.text_encoder.device == META
    assert {p.device for m in (pipe.model, pipe.vae, got["trainer"].model) for p in m.parameters()} == {META}
    results = [runs[k] for k in ("heldout_32x32", "heldout_32x48", "seen_32x32", "i2v", "extension", "looping")] + list(runs["speed"].values())
    assert all(r["latents"][0].device == META and r["videos"][0].device == META for r in results)
    assert {t.device for pair in got["recs"].values() for t in pair} == {META}  # the figures' reconstructions: where the VAE is
    assert got["trainer"].step_count == 10 and all(h["loss"] != h["loss"] for h in got["trainer"].history)  # a dry run: NaN losses


def test_sampling_caches_on_meta(monkeypatch):
    """PAB attention reuse and step skipping (chapter 11c) keep what they store and add on the model's device. Their one host
    read by design, the step-skip decision's relative change (`relative_l1`, a float), is stood in for: on meta it has no
    value. The steps are driven as rflow.sample drives them (begin_step with host noise levels, then the model call)."""
    from opensora_nb import cache as C
    from opensora_nb.masks import multi_resolution_info
    reads = []
    monkeypatch.setattr(C, "relative_l1", lambda a, b: reads.append((a.device, b.device)) or 0.01)
    net = STDiT3(hidden_size=32, depth=2, num_heads=2, patch_size=(1, 2, 2), in_channels=4, caption_channels=16, model_max_length=8,
                 pred_sigma=False, input_sq_size=32).to(META).eval()
    z, y = torch.empty(2, 4, 3, 8, 8, device=META), torch.empty(2, 1, 8, 16, device=META)
    kw = multi_resolution_info(2, (32, 32), 9, 8)
    kw.update(fps=kw["fps"].to(META), mask=torch.ones(2, 8, dtype=torch.long, device=META))
    pab, skip = C.SamplingCache(attention_reuse=dict(spatial=2, temporal=2, cross=2, start=1.0, end=0.0)), C.SamplingCache(step_cache=0.1)
    for c in (pab, skip):
        with torch.no_grad(), c.attach(net):
            for i in range(6):
                c.begin_step(i, 6, 1 - i / 6)
                out = net(z, torch.full((2,), 1000.0 * (1 - i / 6), device=META), y=y, **kw)
                assert out.device == META
    assert pab.stats["attention_reused"] > 0 and skip.stats["skipped_steps"] > 0, (pab.stats, skip.stats)
    assert reads and set(reads) == {(META, META)}


# --- a device this machine does not have: one line, exit status 2, before any work (issue 24) ---
import time

#: a CUDA device this machine lacks (`cuda` on a CPU machine; one past the last GPU on a GPU machine)
MISSING = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    return _pipe(PatchPCAAutoencoder(8, 16), 16, (1, 1, 1)).save_pretrained(tmp_path_factory.mktemp("dev") / "pipe")


@pytest.mark.parametrize("command", ["demo", "train", "finetune", "sample", "sample --official"])
def test_missing_device_is_one_line_before_any_work(command, pipe_dir, tmp_path, capsys, monkeypatch):
    from opensora_nb.cli import main
    from opensora_nb import text
    monkeypatch.setattr(text.MiniLMEncoder, "from_pretrained", classmethod(lambda cls, *a, **k: MetaText()))  # (sample loads it)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    argv = dict(demo=["demo", "--max-steps", "12", "--videos", "2", "--quiet"], train=["train", "tiny_world"],
                finetune=["finetune", str(tmp_path / "my_clips"), "--base", str(pipe_dir)],
                sample=["sample", str(pipe_dir), "--prompt", "a red circle", "--image-size", "32x32", "--num-frames", "4"],
                **{"sample --official": ["sample", "--official", "--prompt", "a red circle"]})[command]
    t0 = time.perf_counter()
    assert main(argv + ["--device", MISSING, "-o", str(out)]) == 2
    seconds = time.perf_counter() - t0
    o, e = capsys.readouterr()
    assert e.splitlines() == [f"opensora-nb {command.split()[0]}: error: device '{MISSING}' is not available on this machine "
                              f"(available: cpu{''.join(f', cuda:{i}' for i in range(torch.cuda.device_count()))}; 'auto' picks CUDA when present)"]
    assert o == "" and list(tmp_path.iterdir()) == []  # nothing written (no output folder, no run folder, no raw videos)
    assert seconds < 5, seconds  # every command checks the device first: no checkpoint (official ones included) is read
