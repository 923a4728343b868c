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


def _features(n=4, C=16, T=4, S=4, L=32, D=384):
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
    "masks": {"torch.ones(T, dtype=torch.bool)": "frame masks are drawn on the host (python RNG) and moved to x's device in get_masks",
              "torch.tensor([rng.random() > p for _ in range(T)])": "same",
              "torch.arange(n).float() + 1000 * (j + 1)": "draw_mask_strategy: a picture, no model",
              "torch.zeros(1, 1, num_frames, 1, 1)": "draw_mask_strategy: a picture, no model",
              "torch.ones(1, num_frames)": "draw_mask_strategy: a picture, no model"},
}


# (builders is not listed: it makes host-side batches, which Trainer.step moves, and module buffers, moved with .to)
@pytest.mark.parametrize("module", ["train", "inference", "dist", "launch", "text", "rflow", "masks"])
def test_no_tensor_is_made_without_a_device(module):
    "Training, inference, the distributed code and the encoders create tensors on a device, or on the host for a named reason."
    src = (Path(__file__).resolve().parents[1] / "opensora_nb" / f"{module}.py").read_text().splitlines()
    allowed = HOST_SIDE.get(module, {})
    bad = [f"{module}.py:{i}: {l.strip()}" for i, l in enumerate(src, 1)
           if FACTORY.search(l) and "device" not in l and not any(s in l for s in allowed)]
    assert not bad, "\n".join(bad)
