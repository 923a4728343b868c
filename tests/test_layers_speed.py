"""The leaner layers of chapter 05 compute what the plain ones did: packed cross-attention against the padded boolean
mask, the hand-written RMSNorm backward, the complex-product RoPE, the unbound qkv, contiguous patch tokens, the oneDNN
linear layer against nn.Linear, and the fused LayerNorm-modulation against LayerNorm then modulation."""
import math

import pytest
import torch
import torch.nn.functional as F

from opensora_nb.layers import (Attention, MultiHeadCrossAttention, PatchEmbed3D, RMSNorm, RotaryEmbedding, rotate_half,
                                t2i_modulate)

TOL = 1e-5

MASKS = {
    "mixed lengths, one empty": [[1] * 7 + [0] * 5, [0] * 12, [1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 1, 1]],
    "all valid": [[1] * 12, [1] * 12, [1] * 12],
    "one token each": [[1] + [0] * 11, [0] * 11 + [1], [0] * 5 + [1] + [0] * 6],
    "all empty": [[0] * 12] * 3,
}


def _pair(seed=0, D=32, heads=4):
    torch.manual_seed(seed)
    packed, padded = MultiHeadCrossAttention(D, heads), MultiHeadCrossAttention(D, heads)
    padded.load_state_dict(packed.state_dict())
    packed.packed_keys, padded.packed_keys = True, False
    return packed, padded


def _run(ca, x, y, mask):
    x, y = x.clone().requires_grad_(), y.clone().requires_grad_()
    out = ca(x, y, mask)
    grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), [x, y, *ca.parameters()])
    return out, grads


@pytest.mark.parametrize("queries", [10, 300])  # 300: the plain softmax(qk)v branch (many queries, few keys)
@pytest.mark.parametrize("name", list(MASKS))
def test_packed_cross_attention_equals_padded_mask(name, queries):
    packed, padded = _pair()
    mask = torch.tensor(MASKS[name])
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, queries, 32, generator=g), torch.randn(3, 12, 32, generator=g)
    out, grads = _run(packed, x, y, mask)
    ref, ref_grads = _run(padded, x, y, mask)
    assert torch.isfinite(out).all() and all(torch.isfinite(t).all() for t in grads)
    torch.testing.assert_close(out, ref, atol=TOL, rtol=TOL)
    for a, b in zip(grads, ref_grads):  # parameter gradients sum over every query: rounding grows with their number
        tol = TOL * max(1.0, queries / 30)
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    for b in range(3):
        if not mask[b].any():  # no caption token: zero attention output (the output bias only), zero query gradient
            torch.testing.assert_close(out[b], packed.proj.bias.expand(queries, 32), atol=1e-6, rtol=0)
            assert grads[0][b].abs().max() == 0


def test_packed_ignores_padding_content_and_position():
    packed, _ = _pair()
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(2, 5, 32, generator=g), torch.randn(2, 6, 32, generator=g)
    mask = torch.tensor([[1, 1, 0, 1, 0, 0], [0, 1, 1, 1, 1, 0]])
    out = packed(x, y, mask)
    y2 = y.clone(); y2[mask == 0] = 100.0
    torch.testing.assert_close(packed(x, y2, mask), out, atol=TOL, rtol=TOL)
    torch.testing.assert_close(out[:1], packed(x[:1], y[:1, [0, 1, 3]]), atol=TOL, rtol=TOL)  # no mask = all keys


def test_default_path_is_packed_on_cpu(monkeypatch):
    ca = MultiHeadCrossAttention(16, 2)
    assert ca.packed_keys is None
    called = []
    monkeypatch.setattr(MultiHeadCrossAttention, "attend_padded", lambda self, *a: called.append("padded") or 1 / 0)
    ca(torch.randn(2, 3, 16), torch.randn(2, 4, 16), torch.ones(2, 4))
    assert not called
    with pytest.raises(ZeroDivisionError):  # without a mask there is nothing to pack
        ca(torch.randn(2, 3, 16), torch.randn(2, 4, 16))


def test_cross_attention_shape_errors():
    ca = MultiHeadCrossAttention(16, 2)
    with pytest.raises(ValueError, match="mask must be"):
        ca(torch.randn(2, 3, 16), torch.randn(2, 4, 16), torch.ones(2, 5))
    with pytest.raises(ValueError, match="cond must be"):
        ca(torch.randn(2, 3, 16), torch.randn(3, 4, 16))


def _rms_reference(x, w, eps=1e-6):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


@pytest.mark.parametrize("layout", ["contiguous", "qkv view"])
def test_rmsnorm_backward_equals_autograd(layout):
    g = torch.Generator().manual_seed(3)
    base = torch.randn(2, 7, 3, 4, 16, generator=g)
    n = RMSNorm(16)
    with torch.no_grad():
        n.weight.copy_(torch.randn(16, generator=g))
    outs = []
    for fn in (n, lambda t: _rms_reference(t, n.weight)):
        b = base.clone().requires_grad_()
        x = b.unbind(2)[1].transpose(1, 2) if layout == "qkv view" else b[:, :, 0]
        out = fn(x)
        outs.append((out, *torch.autograd.grad((out * out.detach().cos()).sum(), [b, n.weight])))
    for a, r in zip(*outs):
        torch.testing.assert_close(a, r, atol=TOL, rtol=TOL)


def test_rmsnorm_other_dtypes_keep_the_reference_path():
    n = RMSNorm(8).to(torch.bfloat16)
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    assert n(x).dtype == torch.bfloat16
    torch.testing.assert_close(n(x), n.weight * (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rope_complex_equals_rotate_half(dtype):
    rope = RotaryEmbedding(16)
    g = torch.Generator().manual_seed(4)
    base = torch.randn(2, 9, 3, 2, 16, generator=g, dtype=dtype, requires_grad=True)
    x = base.unbind(2)[1].transpose(1, 2)  # a strided view, as the queries of a temporal block are
    ang = rope.angles(9, dtype=dtype).to(dtype)
    ref = x * ang.cos() + rotate_half(x) * ang.sin()
    out = rope(x)
    torch.testing.assert_close(out, ref, atol=TOL, rtol=TOL)
    torch.testing.assert_close(*(torch.autograd.grad(o.sum() + (o * o).sum(), base)[0] for o in (out, ref)), atol=TOL, rtol=TOL)
    odd = torch.randn(33, dtype=dtype)[1:].view(2, 16)  # storage offset 1: copied, not viewed
    torch.testing.assert_close(rope(odd[None]), rope(odd.clone()[None]))


def test_attention_unbound_qkv_equals_manual():
    torch.manual_seed(5)
    attn = Attention(32, 4, qkv_bias=True, qk_norm=True, rope=RotaryEmbedding(8).rotate_queries_or_keys)
    x = torch.randn(3, 7, 32)
    q, k, v = attn.qkv(x).view(3, 7, 3, 4, 8).permute(2, 0, 3, 1, 4).unbind(0)  # the layout chapter 05 had before
    q, k = attn.rope(attn.q_norm(q)), attn.rope(attn.k_norm(k))
    manual = ((q @ k.transpose(-1, -2)) / math.sqrt(8)).softmax(-1) @ v
    torch.testing.assert_close(attn(x), attn.proj(manual.transpose(1, 2).reshape(3, 7, 32)), atol=TOL, rtol=TOL)


def test_modulate_and_patch_tokens():
    x, shift, scale = torch.randn(2, 5, 8), torch.randn(2, 1, 8), torch.randn(2, 1, 8)
    torch.testing.assert_close(t2i_modulate(x, shift, scale), x * (1 + scale) + shift)
    tok = PatchEmbed3D((1, 2, 2), 4, 16)(torch.randn(2, 4, 3, 6, 6))
    assert tok.is_contiguous()  # a channel-strided residual stream would make every LayerNorm and Linear copy it
    torch.testing.assert_close(F.layer_norm(tok, (16,)), F.layer_norm(tok.clone(), (16,)))




# (the training-step benchmark's quick run: tests/test_benchmarks.py)


# --- OneDNNLinear and norm_modulate (the CPU fast paths, chapter 06d: swapped in by enable_cpu_fast_paths) ---
import platform  # noqa: E402

from opensora_nb import fastpaths as layers_module  # noqa: E402  (the module that holds the kernels)
from opensora_nb.fastpaths import OneDNNLinear, _OneDNNLinearFn, _onednn_linear_op, norm_modulate, onednn_eligible  # noqa: E402

#: The dispatch rule: oneDNN's kernel only on x86-64 (where it was measured faster) with oneDNN built in; elsewhere (aarch64,
#: ...) `nn.Linear` always, by design.
X86 = platform.machine().lower() in ("x86_64", "amd64")
FAST_HERE = X86 and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@pytest.mark.parametrize("machine", ["x86_64", "AMD64", "aarch64", "arm64", "ppc64le"])
def test_onednn_dispatch_rule_per_architecture(machine, monkeypatch):
    "Whatever machine runs the test: the kernel is picked for x86-64 names only (when this torch has it), never elsewhere."
    monkeypatch.setattr(layers_module.platform, "machine", lambda: machine)
    op = _onednn_linear_op()
    if machine.lower() in ("x86_64", "amd64"):
        has = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        assert (op is torch.ops.mkldnn._linear_pointwise.default) if has else op is None
    else:
        assert op is None
    assert (layers_module._ONEDNN_LINEAR is not None) == FAST_HERE  # and this machine got what the rule gives it


@pytest.fixture
def every_size(monkeypatch):
    "The oneDNN path for any number of rows (by default only from ONEDNN_MIN_ROWS, where it is the faster kernel)."
    monkeypatch.setattr(layers_module, "ONEDNN_MIN_ROWS", 1)


@pytest.mark.parametrize("shape", [(2, 33, 24), (3, 1, 5, 24), (7, 24)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("frozen", [False, True])
def test_onednn_linear_matches_nn_linear(shape, bias, frozen, every_size, monkeypatch):
    "Where the oneDNN path runs (x86-64) it computes nn.Linear's result; elsewhere it is never taken."
    calls, apply = [], _OneDNNLinearFn.apply
    monkeypatch.setattr(_OneDNNLinearFn, "apply", lambda *a: calls.append(1) or apply(*a))
    torch.manual_seed(0)
    fast, plain = OneDNNLinear(24, 40, bias=bias), torch.nn.Linear(24, 40, bias=bias)
    plain.load_state_dict(fast.state_dict())
    assert sorted(fast.state_dict()) == sorted(plain.state_dict())
    for m in (fast, plain):
        m.requires_grad_(not frozen)
    x = torch.randn(*shape)
    g = torch.randn(*shape[:-1], 40)
    outs = []
    for m in (fast, plain):
        xi = x.clone().requires_grad_()
        y = m(xi)
        wrt = [xi] + ([] if frozen else list(m.parameters()))
        outs.append((y, torch.autograd.grad(y, wrt, g)))
    (yf, gf), (yp, gp) = outs
    assert bool(calls) == FAST_HERE  # the path under test ran (x86-64), or is off by design (aarch64, ...)
    assert yf.shape == yp.shape
    torch.testing.assert_close(yf, yp, rtol=1e-5, atol=1e-5)
    for a, b in zip(gf, gp):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_onednn_linear_falls_back_where_it_should():
    m = OneDNNLinear(8, 4)
    x = torch.randn(3, 8)
    assert not onednn_eligible(x, m.weight)                 # too few rows: MKL is faster there
    big = torch.randn(2, layers_module.ONEDNN_MIN_ROWS // 2, 8)
    assert onednn_eligible(big, m.weight) == FAST_HERE     # enough rows: oneDNN on x86-64 only
    x = big
    assert not onednn_eligible(torch.empty(3, 8, device="meta"), m.weight)
    assert not onednn_eligible(x.double(), m.weight.double())
    assert not onednn_eligible(torch.empty(0, 8), m.weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not onednn_eligible(x, m.weight)
        assert m(x).dtype == torch.bfloat16            # nn.Linear's autocast behaviour, unchanged
    assert OneDNNLinear(8, 4, device="meta")(torch.empty(3, 8, device="meta")).device.type == "meta"
    m.use_onednn = False                                    # the switch: nn.Linear's own path, bit for bit
    assert torch.equal(m(x), F.linear(x, m.weight, m.bias))


@pytest.mark.parametrize("per_sample", [True, False])
def test_norm_modulate_is_layernorm_then_modulate(per_sample, monkeypatch):
    monkeypatch.setattr(layers_module, "NORM_MODULATE_MIN_PER_SAMPLE", 1 if per_sample else 10**9)
    torch.manual_seed(1)
    x = torch.randn(3, 11, 16, requires_grad=True)
    shift, scale = torch.randn(3, 1, 16, requires_grad=True), torch.randn(3, 1, 16, requires_grad=True)
    a = norm_modulate(x, shift, scale)
    b = t2i_modulate(F.layer_norm(x, (16,), eps=1e-6), shift, scale)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    g = torch.randn_like(a)
    for ga, gb in zip(torch.autograd.grad(a, (x, shift, scale), g), torch.autograd.grad(b, (x, shift, scale), g)):
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-5)
