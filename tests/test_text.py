"""Text encoders (nbs/04_text.ipynb): interface shapes, null embeddings, clear errors, the feature cache."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from opensora_nb.text import (MAX_LEN_V1_0, MAX_LEN_V1_2, CachedTextEncoder, MiniLMEncoder, T5Encoder,
                              build_tiny_t5, cache_text_features, load_text_features)

PROMPTS = ["a red circle moving left on a dark background", "a blue square staying still", "zebra? 42!"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_t5(tmp_path_factory.mktemp("t5") / "tiny", d_model=32, num_layers=1, d_ff=64)


@pytest.fixture(scope="module")
def t5(tiny_dir):
    return T5Encoder.from_pretrained(tiny_dir, model_max_length=MAX_LEN_V1_0)


def test_constants():
    assert (MAX_LEN_V1_0, MAX_LEN_V1_2) == (120, 300)


def test_encode_shapes_and_mask(t5):
    out = t5.encode(PROMPTS)
    assert out["y"].shape == (3, 1, 120, 32) and out["mask"].shape == (3, 120)
    assert out["y"].dtype == torch.float32
    m = out["mask"]
    # real tokens first, then padding; every prompt ends with </s> (id 1), pads are 0
    ids, _ = t5.tokenize(PROMPTS)
    for b in range(3):
        n = int(m[b].sum())
        assert m[b, :n].all() and not m[b, n:].any()
        assert ids[b, n - 1] == 1 and (ids[b, n:] == 0).all()
    assert t5.output_dim == 32 and t5.model_max_length == 120
    assert t5.encode("one prompt")["y"].shape == (1, 1, 120, 32)


def test_truncation(t5):
    long = " ".join(["red"] * 500)
    assert t5.encode([long])["mask"].sum() == 120


def test_deterministic_reload(tiny_dir, t5):
    again = T5Encoder.from_pretrained(tiny_dir, model_max_length=MAX_LEN_V1_0)
    torch.testing.assert_close(again.encode(PROMPTS)["y"], t5.encode(PROMPTS)["y"])


def test_null_from_model_and_tensor(t5):
    with pytest.raises(RuntimeError, match="set_null"):
        T5Encoder(t5.tokenizer, t5.model, 120).null(1)
    emb = torch.nn.Module()
    emb.y_embedding = torch.nn.Parameter(torch.randn(120, 32))
    model = torch.nn.Module()
    model.y_embedder = emb
    for src in (model, emb, emb.y_embedding.detach().clone()):
        enc = T5Encoder(t5.tokenizer, t5.model, 120)
        enc.set_null(src)
        n = enc.null(3)
        assert n.shape == (3, 1, 120, 32)
        torch.testing.assert_close(n[2, 0].detach(), emb.y_embedding.detach())
    # null(n, source) sets and returns in one call
    assert T5Encoder(t5.tokenizer, t5.model, 120).null(2, model).shape == (2, 1, 120, 32)
    with pytest.raises(ValueError, match=r"\[120, 32\]"):
        t5.set_null(torch.zeros(300, 32))
    with pytest.raises(TypeError, match="y_embedding"):
        t5.set_null(object())


def test_bad_prompts(t5):
    with pytest.raises(TypeError, match="strings"):
        t5.encode(["ok", 3])


def test_missing_t5_weights_is_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENSORA_T5_PATH", raising=False)
    with pytest.raises(FileNotFoundError, match="OPENSORA_T5_PATH") as e:
        T5Encoder.from_pretrained()
    assert "DeepFloyd/t5-v1_1-xxl" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        T5Encoder.from_pretrained(tmp_path / "empty")
    monkeypatch.setenv("OPENSORA_T5_PATH", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="empty"):
        T5Encoder.from_pretrained()


def test_minilm_offline():
    enc = MiniLMEncoder.from_pretrained(model_max_length=16)
    out = enc.encode(PROMPTS[:2])
    assert out["y"].shape == (2, 1, 16, 384) and enc.output_dim == 384
    assert out["mask"][0].sum() == 11  # [CLS] + 9 words + [SEP]
    # meaning, not spelling: a paraphrase is closer to its own prompt than to a prompt with other words
    pool = lambda o: (o["y"][:, 0] * o["mask"][..., None]).sum(1) / o["mask"].sum(1, keepdim=True)
    e = torch.nn.functional.normalize(pool(enc.encode(["a red circle moving left", "a green triangle moving up",
                                                        "a crimson ball heading to the left"])), dim=-1)
    assert e[2] @ e[0] > e[2] @ e[1]


def test_cache_roundtrip(t5, tmp_path):
    prompts = PROMPTS + PROMPTS[:1]  # duplicates are encoded once
    path = cache_text_features(t5, prompts, tmp_path / "sub" / "feats.safetensors", batch_size=2)
    d = load_text_features(path)
    assert d["prompts"] == PROMPTS and d["model_max_length"] == 120 and d["output_dim"] == 32
    assert d["y"].shape[1] == int(t5.encode(PROMPTS)["mask"].sum(1).max())  # trimmed to the longest prompt
    ct = CachedTextEncoder(path)
    live, cached = t5.encode(PROMPTS[::-1]), ct.encode(PROMPTS[::-1])
    assert cached["y"].shape == live["y"].shape
    torch.testing.assert_close(cached["mask"], live["mask"])
    m = live["mask"][:, None, :, None]
    torch.testing.assert_close(cached["y"] * m, live["y"] * m)
    assert ct.to("cpu", torch.float64).encode(PROMPTS[:1])["y"].dtype == torch.float64
    ct.set_null(torch.zeros(120, 32))
    assert ct.null(2).shape == (2, 1, 120, 32)
    with pytest.raises(KeyError, match="not in the text feature cache"):
        ct.encode(["never cached"])
    with pytest.raises(ValueError) as e:  # issue 24: bad input, one line naming the prompt and what the cache holds
        ct.encode([PROMPTS[0], "never cached"])
    msg = str(e.value)
    assert isinstance(e.value, KeyError) and len(msg.splitlines()) == 1 and not msg.startswith("'")
    assert "'never cached'" in msg and f"it holds {len(PROMPTS)} prompt(s) ({PROMPTS[0]!r}" in msg
    assert not list(tmp_path.glob("sub/*.tmp"))
    with pytest.raises(FileNotFoundError):
        load_text_features(tmp_path / "nope.safetensors")
    with pytest.raises(ValueError, match="no prompts given"):
        cache_text_features(t5, [], tmp_path / "x.safetensors")
