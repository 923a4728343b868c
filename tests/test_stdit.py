"""STDiT3/STDiT: save/load round trips, strict-loading errors, full-size parameter counts, behaviour checks."""
import json

import pytest
import torch

from opensora_nb.stdit import (STDIT3_3B_2, STDIT3_XL_2, FullAttentionDiT, STDiT3, STDiT3Config, count_params,
                               load_state_dict_strict, stdit3_from_state_dict)
from opensora_nb.stdit_v1 import STDiT

TINY = STDiT3Config(hidden_size=32, depth=2, num_heads=4, caption_channels=16, model_max_length=6)


def _inputs(B=2, T=3, H=6, W=8, L=6, C=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(x=torch.randn(B, 4, T, H, W, generator=g), timestep=torch.tensor([10.0, 700.0])[:B],
                y=torch.randn(B, 1, L, C, generator=g), mask=torch.tensor([[1] * L, [1] * (L - 2) + [0, 0]])[:B],
                fps=torch.full((B,), 24.0), height=torch.full((B,), H * 8.0), width=torch.full((B,), W * 8.0))


def _randomised(model, std=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def test_save_load_round_trip(tmp_path):
    m = _randomised(STDiT3(TINY))
    m.save_pretrained(tmp_path / "tiny")
    cfg = json.loads((tmp_path / "tiny" / "config.json").read_text())
    assert cfg["model_type"] == "STDiT3" and cfg["hidden_size"] == 32 and cfg["patch_size"] == [1, 2, 2]
    m2 = STDiT3.from_pretrained(tmp_path / "tiny")
    assert m2.config == m.config and not m2.training
    with torch.no_grad():
        assert torch.equal(m(**_inputs()), m2(**_inputs()))
    # a bare weights file with an explicit config, and a DDP-style prefixed / wrapped checkpoint
    m3 = STDiT3.from_pretrained(tmp_path / "tiny" / "model.safetensors", config=TINY)
    assert torch.equal(m3.t_block[1].weight, m.t_block[1].weight)
    torch.save({"state_dict": {"module." + k: v for k, v in m.state_dict().items()}}, tmp_path / "ema.pt")
    m4 = STDiT3.from_pretrained(tmp_path / "ema.pt", config=TINY)
    assert torch.equal(m4.final_layer.linear.weight, m.final_layer.linear.weight)


def test_from_pretrained_official_config_fields(tmp_path):
    "An official config.json carries transformers metadata and kernel switches: they are accepted."
    d = tmp_path / "official"
    m = STDiT3(TINY)
    m.save_pretrained(d)
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(architectures=["STDiT3"], transformers_version="4.36.2", torch_dtype="float32", enable_flash_attn=True)
    (d / "config.json").write_text(json.dumps(cfg))
    assert STDiT3.from_pretrained(d).config.enable_flash_attn is True


def test_strict_loading_errors_are_clear():
    m = STDiT3(TINY)
    sd = m.state_dict()
    missing = {k: v for k, v in sd.items() if k != "rope.freqs"}
    with pytest.raises(KeyError, match="missing keys: rope.freqs"):
        stdit3_from_state_dict(TINY, missing)
    with pytest.raises(KeyError, match="unexpected keys: blocks.0.attn.qkv.weight"):
        stdit3_from_state_dict(TINY, {**sd, "blocks.0.attn.qkv.weight": torch.zeros(1)})
    wrong = dict(sd, **{"x_embedder.proj.weight": torch.zeros(32, 4, 1, 4, 4)})
    with pytest.raises(KeyError, match=r"shape mismatches: x_embedder.proj.weight: expected \(32, 4, 1, 2, 2\)"):
        stdit3_from_state_dict(TINY, wrong)
    # an XL checkpoint into a tiny model names the first mismatching keys, not a wall of text
    with pytest.raises(KeyError, match=r"in all"):
        load_state_dict_strict(STDiT3(TINY), {f"k{i}": torch.zeros(1) for i in range(20)})


def test_a_mismatch_is_bad_input_in_one_line():
    "Issue 24: a ValueError (the CLI's one line, exit 2) that is still the KeyError callers catch; the text as written."
    with pytest.raises(ValueError) as e:
        stdit3_from_state_dict(TINY, {k: v for k, v in STDiT3(TINY).state_dict().items() if k != "rope.freqs"})
    assert isinstance(e.value, KeyError) and len(str(e.value).splitlines()) == 1
    assert str(e.value).startswith("STDiT3: state dict does not match the model; missing keys: rope.freqs")


def test_from_pretrained_missing_things(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        STDiT3.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(TINY.to_dict()))
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        STDiT3.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither an existing path"):
        STDiT3.from_pretrained(str(tmp_path / "nope" / "deeper"))
    import huggingface_hub

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(OSError, match="could not fetch hub model 'hpcai-tech/OpenSora-STDiT-v3'.*local path"):
        STDiT3.from_pretrained("hpcai-tech/OpenSora-STDiT-v3")


def test_full_size_parameter_counts_on_meta():
    with torch.device("meta"):
        xl, b3 = STDiT3(STDIT3_XL_2), STDiT3(STDIT3_3B_2)
    assert count_params(xl) == 1_207_643_972
    assert count_params(b3) == 3_182_211_572
    assert xl.x_embedder.proj.weight.is_meta
    assert len(xl.state_dict()) == 17 * 56 + 21  # 17 tensors a block (qk-norm on), 21 outside the blocks


def test_fresh_temporal_blocks_are_identity():
    m = STDiT3(TINY).eval()
    B, T, S = 2, 3, 12
    x, y, t = torch.randn(B, T * S, 32), torch.randn(B, 6, 32), torch.randn(B, 6 * 32)
    with torch.no_grad():
        assert torch.allclose(m.temporal_blocks[0](x, y, t, None, None, None, T, S), x)


def test_x_mask_all_true_equals_plain_and_bad_shapes():
    m = _randomised(STDiT3(TINY))
    kw = _inputs()
    with torch.no_grad():
        plain = m(**kw)
        allt = m(**kw, x_mask=torch.ones(2, 3, dtype=torch.bool))
        some = m(**kw, x_mask=torch.tensor([[False, True, True], [True, True, False]]))
    assert torch.allclose(plain, allt, atol=1e-6)
    assert not torch.allclose(plain, some, atol=1e-4)
    with pytest.raises(ValueError, match="x_mask must be"):
        m(**kw, x_mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"x must be \[B, C, T, H, W\]"):
        m(kw["x"][:, :, 0], kw["timestep"], kw["y"])


def test_mask_broadcast_and_scalar_conditions():
    m = _randomised(STDiT3(TINY))
    kw = _inputs()
    kw["mask"] = torch.ones(2, 6, dtype=torch.long)
    with torch.no_grad():
        a = m(**kw)
        b = m(**{**kw, "mask": torch.ones(1, 6, dtype=torch.long), "fps": 24, "height": 48, "width": 64})
        c = m(**{**kw, "mask": None})
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(a, c, atol=1e-6)


def test_gradient_checkpointing_same_gradients():
    torch.manual_seed(0)
    m = _randomised(STDiT3(TINY)).train()
    m.y_embedder.uncond_prob = 0.0
    kw = _inputs()
    grads = []
    for ckpt in (False, True):
        m.zero_grad()
        m.set_grad_checkpointing(ckpt)
        m(**kw).square().mean().backward()
        grads.append(m.spatial_blocks[0].attn.qkv.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_bf16_forward_returns_float32():
    m = _randomised(STDiT3(TINY)).to(torch.bfloat16)
    with torch.no_grad():
        out = m(**_inputs())
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_full_attention_baseline_same_params_and_mixes_everything():
    fa = _randomised(FullAttentionDiT(TINY))
    assert count_params(fa) == count_params(STDiT3(TINY))
    kw = _inputs()
    with torch.no_grad():
        a = fa(**kw)
        x2 = kw["x"].clone()
        x2[:, :, 0, :2, :2] += 1.0  # one token of frame 0
        b = fa(**{**kw, "x": x2})
    assert (a - b)[:, :, 2, 4:, 4:].abs().max() > 1e-5  # a different frame AND position changes


def test_stdit_v1_init_and_freeze():
    m = STDiT(input_size=(2, 4, 4), hidden_size=32, depth=2, num_heads=4, caption_channels=16, model_max_length=6,
              freeze="not_temporal")
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all("attn_temp" in n for n in trainable)
    assert m.blocks[0].attn_temp.proj.weight.abs().sum() == 0
    with pytest.raises(ValueError, match="freeze"):
        STDiT(input_size=(2, 4, 4), hidden_size=32, depth=1, num_heads=4, freeze="all")


def test_stdit_v1_from_pretrained_recomputes_tables(tmp_path):
    cfg = dict(input_size=(2, 4, 4), hidden_size=32, depth=1, num_heads=4, caption_channels=16, model_max_length=6,
               space_scale=0.5)
    m = _randomised(STDiT(**cfg))
    sd = {k: v for k, v in m.state_dict().items() if k != "pos_embed_temporal"}
    sd["pos_embed"] = torch.zeros_like(sd["pos_embed"])  # stale tables in a checkpoint are replaced
    torch.save(sd, tmp_path / "v1.pth")
    m2 = STDiT.from_pretrained(tmp_path / "v1.pth", **cfg)
    x, y = torch.randn(1, 4, 2, 4, 4), torch.randn(1, 1, 6, 16)
    with torch.no_grad():
        assert torch.equal(m(x, torch.tensor([3.0]), y), m2(x, torch.tensor([3.0]), y))


def test_full_attention_from_pretrained_keeps_class(tmp_path):
    fa = _randomised(FullAttentionDiT(TINY))
    fa.save_pretrained(tmp_path / "fa")
    fa2 = FullAttentionDiT.from_pretrained(tmp_path / "fa")
    assert type(fa2) is FullAttentionDiT
    with torch.no_grad():
        assert torch.equal(fa(**_inputs()), fa2(**_inputs()))


def test_temporal_pos_embed_round_trip_and_same_weights(tmp_path):
    "The frame-index option adds no parameters, loads a plain STDiT3's weights strictly, and survives save/load."
    plain = _randomised(STDiT3(TINY))
    tpe = STDiT3(TINY, temporal_pos_embed=True).eval()
    tpe.load_state_dict(plain.state_dict(), strict=True)
    with torch.no_grad():
        a, b = plain(**_inputs()), tpe(**_inputs())
    assert a.shape == b.shape and not torch.allclose(a, b)
    tpe.save_pretrained(tmp_path / "tpe")
    assert json.loads((tmp_path / "tpe" / "config.json").read_text())["temporal_pos_embed"] is True
    back = STDiT3.from_pretrained(tmp_path / "tpe")
    assert back.config.temporal_pos_embed
    with torch.no_grad():
        assert torch.equal(back(**_inputs()), b)
    # an official config.json has no such key: the reference behaviour (no frame index)
    assert STDiT3Config.from_dict({"hidden_size": 32, "num_heads": 4}).temporal_pos_embed is False
