"""Issue 27, item 2: the CPU fast paths are swapped in from outside the model (chapter 06d), not built into it.

The model chapters (05, 06) build plain `nn.Linear` layers and one block path (LayerNorm + `t2i_modulate`), with no
sampling-cache hooks; `enable_cpu_fast_paths` swaps oneDNN's linear and the fused `norm_modulate` into a built model in
place (same parameters, same state dict), and the trainer and the pipeline switch them on, so what they compute is what
the layers computed when the kernels were built in."""
import pytest
import torch
import torch.nn as nn

from opensora_nb import fastpaths
from opensora_nb.builders import get_config
from opensora_nb.cache import SamplingCache
from opensora_nb.fastpaths import (FastSTDiT3Block, OneDNNLinear, cpu_fast_paths_of, disable_cpu_fast_paths,
                                   enable_cpu_fast_paths)
from opensora_nb.rflow import RFlow
from opensora_nb.stdit import STDiT3, STDiT3Block, STDiT3Config, load_state_dict_strict

TINY = STDiT3Config(hidden_size=32, depth=2, num_heads=2, caption_channels=16, model_max_length=6)


def tiny(seed=0):
    torch.manual_seed(seed)
    net = STDiT3(TINY).eval()
    with torch.no_grad():
        for p in net.parameters(): p.normal_(0, 0.05)  # "trained": the zero-initialised layers would hide differences
    return net


def inputs(B=2):
    g = torch.Generator().manual_seed(1)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]])[:B]
    return (torch.randn(B, 4, 3, 8, 8, generator=g), torch.tensor([100.0, 700.0])[:B], torch.randn(B, 1, 6, 16, generator=g)), \
        dict(mask=mask)


#: The linear layers that were `OneDNNLinear` when the kernel lived in chapter 05's layers: those of `Mlp`, `Attention`,
#: `MultiHeadCrossAttention` and `T2IFinalLayer`; the timestep, fps and t_block linears were plain `nn.Linear`.
def old_onednn_names(net):
    keep = ("attn.qkv", "attn.proj", "cross_attn.q_linear", "cross_attn.kv_linear", "cross_attn.proj", "mlp.fc1", "mlp.fc2")
    return {n for n, m in net.named_modules() if isinstance(m, nn.Linear) and
            (n.endswith(keep) or n.startswith("y_embedder.y_proj.") or n == "final_layer.linear")}


def test_the_model_chapters_build_the_plain_model():
    "Fails before issue 27: every linear layer was OneDNNLinear and the block had a cache hook and two modulation paths."
    net = STDiT3(TINY)
    assert {type(m) for m in net.modules() if isinstance(m, nn.Linear)} == {nn.Linear}
    assert {type(b) for b in net.blocks()} == {STDiT3Block}
    for name in ("cache", "reuse"):
        assert not hasattr(STDiT3Block, name) and not hasattr(STDiT3, name), name
    import opensora_nb.layers as layers
    assert not hasattr(layers, "OneDNNLinear") and not hasattr(layers, "norm_modulate")


def test_enable_swaps_exactly_the_layers_that_had_the_kernel():
    net = tiny()
    keys = {k: v.clone() for k, v in net.state_dict().items()}
    params = {n: id(p) for n, p in net.named_parameters()}
    assert enable_cpu_fast_paths(net) is net
    assert {n for n, m in net.named_modules() if isinstance(m, OneDNNLinear)} == old_onednn_names(net)
    assert all(type(b) is FastSTDiT3Block for b in net.blocks())
    assert cpu_fast_paths_of(net) == dict(linear=len(old_onednn_names(net)), blocks=2 * TINY.depth)
    sd = net.state_dict()
    assert list(sd) == list(keys) and all(torch.equal(sd[k], keys[k]) for k in keys)   # the official keys, the weights
    assert {n: id(p) for n, p in net.named_parameters()} == params                        # the same parameter objects
    load_state_dict_strict(net, keys)                                                   # checkpoints load strictly
    enable_cpu_fast_paths(net)                                                          # twice: no change
    assert cpu_fast_paths_of(net)["blocks"] == 2 * TINY.depth
    disable_cpu_fast_paths(net)
    assert cpu_fast_paths_of(net) == dict(linear=0, blocks=0) and {type(b) for b in net.blocks()} == {STDiT3Block}


@pytest.mark.parametrize("x_mask", [False, True])
def test_same_results_on_and_off(x_mask, monkeypatch):
    "Below the thresholds the swapped model is the plain one bit for bit; above them the same up to float rounding."
    net = tiny()
    args, kw = inputs()
    if x_mask: kw["x_mask"] = torch.tensor([[False, True, True], [True, True, True]])
    with torch.no_grad():
        plain = net(*args, **kw)
        enable_cpu_fast_paths(net)
        assert torch.equal(net(*args, **kw), plain)
        monkeypatch.setattr(fastpaths, "ONEDNN_MIN_ROWS", 1)
        monkeypatch.setattr(fastpaths, "NORM_MODULATE_MIN_PER_SAMPLE", 1)
        calls, real = [], fastpaths._OneDNNLinearFn.apply
        monkeypatch.setattr(fastpaths._OneDNNLinearFn, "apply", lambda *a: calls.append(1) or real(*a))
        fast = net(*args, **kw)
    assert calls or fastpaths._ONEDNN_LINEAR is None
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)


def test_lora_base_layers_are_swapped():
    "Under a LoRA adapter (peft) the base linear layer gets the kernel, the adapter's own A and B do not."
    peft = pytest.importorskip("peft")
    from opensora_nb.lora import add_lora
    net = tiny()
    add_lora(net, rank=2)
    enable_cpu_fast_paths(net)
    qkv = net.spatial_blocks[0].attn.qkv
    assert type(qkv.base_layer) is OneDNNLinear and type(qkv.lora_A["default"]) is nn.Linear
    assert isinstance(qkv, peft.tuners.lora.LoraLayer)


def test_the_trainer_and_the_pipeline_switch_them_on():
    from opensora_nb.inference import OpenSoraPipeline
    from opensora_nb.text import TextEncoder
    from opensora_nb.train import Trainer
    cfg = get_config("tiny_world", {"device": "cpu"})
    tr = Trainer(cfg, model=tiny())
    assert cpu_fast_paths_of(tr.model)["blocks"] == 2 * TINY.depth and cpu_fast_paths_of(tr.ema)["blocks"] == 2 * TINY.depth

    class ZeroText(TextEncoder):
        def __init__(self): self.output_dim, self.model_max_length, self.device, self.dtype, self.name, self.y_embedder = 16, 6, torch.device("cpu"), torch.float32, "zero", None
        def encode(self, prompts): return dict(y=torch.zeros(len(prompts), 1, 6, 16), mask=torch.ones(len(prompts), 6, dtype=torch.long))
    net = tiny()
    OpenSoraPipeline(net, nn.Identity(), ZeroText())
    assert cpu_fast_paths_of(net)["linear"] == len(old_onednn_names(net))


def test_the_sampling_cache_is_swapped_in_from_outside():
    "attach puts the cache's run_blocks and attentions on the model for one call and takes them off again."
    net = tiny()
    z, y = torch.randn(2, 4, 3, 8, 8), torch.randn(2, 1, 6, 16)
    rf = RFlow(num_sampling_steps=4, cfg_scale=4.0, use_timestep_transform=False)
    run = lambda cache=None: rf.sample(net, z, y=y, y_null=torch.zeros_like(y), progress=False, cache=cache)
    with torch.no_grad():
        plain = run()
        c = SamplingCache(attention_reuse=dict(start=1.0, end=0.0))
        with c.attach(net):
            assert "run_blocks" in vars(net) and all("attend" in vars(b) for b in net.blocks())
            with pytest.raises(ValueError, match="already attached"):
                with SamplingCache().attach(net): pass
        assert "run_blocks" not in vars(net) and not any("attend" in vars(b) or "forward" in vars(b.cross_attn) for b in net.blocks())
        assert torch.equal(run(SamplingCache()), plain)   # attached with both options off: bit for bit
        reused = SamplingCache(attention_reuse=dict(start=1.0, end=0.0))
        run(reused)
    assert reused.stats["attention_reused"] > 0
