"""Make the `stdit2_*` golden cases by running Open-Sora 1.1's own STDiT2 (hpcaitech/Open-Sora, tag v1.1.0).

    python tests/golden/make_stdit2_golden.py GITDIR [OUT_DIR]

GITDIR is a git directory of hpcaitech/Open-Sora holding tag v1.1.0 (a clone, or a bare mirror). The script reads
`opensora/models/stdit/stdit2.py` and `opensora/models/layers/blocks.py` at that tag with `git show` (nothing is
executed from the working tree), and imports them with stubs for what they import that a CPU box lacks or that plays
no part in a forward pass on one process:

- `xformers.ops.memory_efficient_attention` with `fmha.BlockDiagonalMask.from_seqlens`: written out below as plain
  softmax attention of each sample's queries over its own caption tokens (what the block-diagonal mask means);
- `timm`'s `Mlp` (fc1, act, fc2; no dropout, no norm) and `DropPath` (identity at drop 0, as here);
- `opensora.acceleration.*` (sequence parallelism, gradient checkpointing: off), `opensora.registry.MODELS`,
  `opensora.utils.ckpt_utils.load_checkpoint` (unused here).

The real `rotary_embedding_torch` package is imported (`pip install rotary-embedding-torch beartype`), and the
reference's own Attention, RMSNorm, PositionEmbedding2D, SizeEmbedder, CaptionEmbedder, T2IFinalLayer, STDiT2Block
and STDiT2 run unchanged, on the CPU in float32, eval mode.

Each case: a tiny STDiT2Config, every parameter random (normal, std 0.05; `y_embedding` too), inputs and the outputs
of `model(x, timestep, y, mask, x_mask=None | x_mask, num_frames, height, width, ar, fps)`.
"""
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch
import torch.nn as nn

TAG = "v1.1.0"
FILES = ["opensora/models/stdit/stdit2.py", "opensora/models/layers/blocks.py"]


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def _stubs():
    # xformers: block-diagonal memory-efficient attention, written out
    class BlockDiagonalMask:
        def __init__(self, q_seqlen, kv_seqlen):
            self.q_seqlen, self.kv_seqlen = list(q_seqlen), list(kv_seqlen)

        @classmethod
        def from_seqlens(cls, q_seqlen, kv_seqlen):
            return cls(q_seqlen, kv_seqlen)

    def memory_efficient_attention(q, k, v, p=0.0, attn_bias=None):
        "q [1, Nq, H, D], k/v [1, Nk, H, D]; with a BlockDiagonalMask each query block attends to its key block only."
        assert p == 0.0
        scale = q.shape[-1] ** -0.5
        if attn_bias is None:
            qs, ks = [q.shape[1]], [k.shape[1]]
        else:
            qs, ks = attn_bias.q_seqlen, attn_bias.kv_seqlen
        outs, qi, ki = [], 0, 0
        for nq, nk in zip(qs, ks):
            qb, kb, vb = (t[:, a:a + n].transpose(1, 2) for t, a, n in ((q, qi, nq), (k, ki, nk), (v, ki, nk)))
            a = (qb @ kb.transpose(-2, -1) * scale).softmax(-1)
            outs.append((a @ vb).transpose(1, 2))
            qi, ki = qi + nq, ki + nk
        return torch.cat(outs, 1)

    fmha = _module("xformers.ops.fmha", BlockDiagonalMask=BlockDiagonalMask)
    ops = _module("xformers.ops", memory_efficient_attention=memory_efficient_attention, fmha=fmha)
    _module("xformers", ops=ops)

    # timm: Mlp (fc1, act, fc2) and DropPath (identity at 0)
    class Mlp(nn.Module):
        def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.0, **kw):
            super().__init__()
            out_features, hidden_features = out_features or in_features, hidden_features or in_features
            self.fc1, self.act, self.fc2 = nn.Linear(in_features, hidden_features), act_layer(), nn.Linear(hidden_features, out_features)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    class DropPath(nn.Module):
        def __init__(self, drop_prob=0.0):
            super().__init__()
            assert drop_prob == 0.0

        def forward(self, x):
            return x

    _module("timm"); _module("timm.models"); _module("timm.models.layers", DropPath=DropPath)
    _module("timm.models.vision_transformer", Mlp=Mlp)

    # opensora: only the two files under test are the reference's
    _module("opensora.acceleration"); _module("opensora.acceleration.checkpoint", auto_grad_checkpoint=lambda m, *a, **k: m(*a, **k))
    _module("opensora.acceleration.communications", all_to_all=None, split_forward_gather_backward=None)
    _module("opensora.acceleration.parallel_states", get_sequence_parallel_group=lambda: None)

    class _Registry:
        def register_module(self, name=None, *a, **k):
            return (lambda f: f) if name is None or isinstance(name, str) else name

    _module("opensora.registry", MODELS=_Registry())
    _module("opensora.utils"); _module("opensora.utils.ckpt_utils", load_checkpoint=None)


def load_reference(gitdir):
    "Import the reference's stdit2 module from `gitdir` at TAG (with the stubs); returns (module, commit)."
    commit = subprocess.run(["git", "-C", str(gitdir), "rev-parse", f"{TAG}^{{commit}}"], capture_output=True, text=True,
                            check=True).stdout.strip()
    root = Path(tempfile.mkdtemp(prefix="opensora_v1_1_"))
    for f in FILES:
        src = subprocess.run(["git", "-C", str(gitdir), "show", f"{TAG}:{f}"], capture_output=True, text=True, check=True).stdout
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text(src)
    pkg = _module("opensora"); pkg.__path__ = [str(root / "opensora")]
    for sub in ("opensora.models", "opensora.models.stdit", "opensora.models.layers"):
        _module(sub).__path__ = [str(root / sub.replace(".", "/"))]
    _stubs()
    import importlib
    return importlib.import_module("opensora.models.stdit.stdit2"), commit


CASES = {
    # T=3 latent frames, 5x8 latent (H padded to 6 by the patch), two captions of different lengths, frame 0 of
    # sample 0 and frames 0-1 of sample 1 clean (x_mask False)
    "stdit2_tiny": dict(config=dict(input_sq_size=64, in_channels=4, patch_size=[1, 2, 2], hidden_size=48, depth=2,
                                    num_heads=2, mlp_ratio=2.0, class_dropout_prob=0.1, pred_sigma=True, drop_path=0.0,
                                    caption_channels=16, model_max_length=6, qk_norm=True),
                        shape=(2, 4, 3, 5, 8), lens=(4, 6), x_mask=[[False, True, True], [False, False, True]], fps=(24, 8), seed=0),
    # no qk-norm, no sigma, one frame (an image: fps 120 as the reference's inference sets it), square
    "stdit2_image": dict(config=dict(input_sq_size=32, in_channels=4, patch_size=[1, 2, 2], hidden_size=24, depth=1,
                                     num_heads=3, mlp_ratio=4.0, class_dropout_prob=0.0, pred_sigma=False, drop_path=0.0,
                                     caption_channels=8, model_max_length=5, qk_norm=False),
                         shape=(2, 4, 1, 4, 4), lens=(5, 2), x_mask=[[True], [True]], fps=(120, 120), seed=1),
}


def make_case(ref, commit, name, spec, out: Path):
    from safetensors.torch import save_file
    torch.manual_seed(spec["seed"])
    cfg = ref.STDiT2Config(**spec["config"])
    model = ref.STDiT2(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.05)
        model.y_embedder.y_embedding.normal_(0.0, 0.05)
        model.rope.freqs.copy_(1.0 / (10000 ** (torch.arange(0, model.rope.freqs.numel() * 2, 2).float() / (model.rope.freqs.numel() * 2))))
    B, C, T, H, W = spec["shape"]
    L, Cc = cfg.model_max_length, cfg.caption_channels
    x = torch.randn(B, C, T, H, W)
    timestep = torch.rand(B) * 999
    y = torch.randn(B, 1, L, Cc)
    mask = torch.zeros(B, L, dtype=torch.long)
    for b, n in enumerate(spec["lens"]):
        mask[b, :n] = 1
    x_mask = torch.tensor(spec["x_mask"])
    height, width = torch.full((B,), H * 8.0), torch.full((B,), W * 8.0)
    num_frames, ar, fps = torch.full((B,), float(T)), height / width, torch.tensor(spec["fps"], dtype=torch.float32)
    info = dict(num_frames=num_frames, height=height, width=width, ar=ar, fps=fps)
    with torch.no_grad():
        plain = model(x, timestep, y, mask=mask, **info)
        with_mask = model(x, timestep, y, mask=mask, x_mask=x_mask, **info)
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    tensors.update({"in.x": x, "in.timestep": timestep, "in.y": y, "in.mask": mask, "in.x_mask": x_mask, "in.height": height,
                    "in.width": width, "in.num_frames": num_frames, "in.ar": ar, "in.fps": fps,
                    "out.plain": plain, "out.x_mask": with_mask})
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / f"{name}.safetensors"))
    meta = dict(config=spec["config"], reference=dict(repo="hpcaitech/Open-Sora", tag=TAG, commit=commit, files=FILES),
                made_by="tests/golden/make_stdit2_golden.py", device="cpu", dtype="float32")
    (out / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return plain


if __name__ == "__main__":
    gitdir = sys.argv[1]
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent
    out.mkdir(parents=True, exist_ok=True)
    ref, commit = load_reference(gitdir)
    for name, spec in CASES.items():
        o = make_case(ref, commit, name, spec, out)
        print(name, tuple(o.shape), float(o.abs().mean()))
