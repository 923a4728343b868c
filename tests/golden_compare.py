"""Tensor comparison for the golden tests, aware of the project's deliberate divergences from the reference.

A golden file records what the reference computed. In a few situations the reference computes a meaningless
value (NaN) where this project returns a defined one on purpose; each such situation is registered here BY NAME in
`DIVERGENCES`, with the explanation, the samples it concerns (read from the golden inputs) and the value the
project documents. `close(case, name, got, want, tol, divergences=...)` then:

- compares every finite golden value within `tol` (absolute, or x max(1, |value|) with `rel`), as before;
- at a non-finite golden value, applies the first listed divergence whose samples contain that position, but only
  where the golden value is NaN (the meaningless value): the project's value there must be the documented one.
  Each application is recorded on the case (`case.divergences`; the test turns it into a `record_property` entry
  and the terminal summary lists it) and emitted as a `GoldenDivergenceWarning`;
- a non-finite golden value that no divergence explains passes only if the project gives the identical value
  (NaN where the golden is NaN, the same infinity), i.e. it reproduces the reference; otherwise the check fails and
  names the registered divergences.
"""
import warnings
from dataclasses import dataclass
from typing import Callable

import torch


class GoldenDivergenceWarning(UserWarning):
    "A golden value was not compared as-is: a registered, documented divergence of the project was applied."


@dataclass(frozen=True)
class Divergence:
    explanation: str
    rows: Callable  # case -> bool tensor [B]: the samples the divergence can concern (from the golden inputs)
    project_value: str  # what the project documents for those samples, in words
    holds: Callable  # got values at the diverging positions -> bool: the project's documented value


def _no_denoised_frame(case):
    xm = case.t.get("in.x_mask")
    return None if xm is None else ~xm.bool().any(1)


def _no_caption_token(case):
    m = case.t.get("in.mask")
    if m is None: m = case.t.get("sample.mask")
    return None if m is None else ~(m != 0).any(1)


DIVERGENCES = {
    "rflow_loss_no_denoised_frame": Divergence(
        explanation="the reference's masked mean_flat divides 0 by 0 for a sample whose frame mask x_mask has no True "
                    "frame (every latent frame a clean condition, nothing in the loss) and gives NaN; the project's "
                    "mean_flat (chapter 07) clamps the denominator on purpose so such a sample contributes loss 0 and "
                    "a batch mean stays finite",
        rows=_no_denoised_frame, project_value="exactly 0",
        holds=lambda got: bool((got == 0).all())),
    "cross_attention_no_caption_token": Divergence(
        explanation="for a sample whose caption mask is all 0, the reference's cross-attention takes a softmax over no "
                    "key, which a plain attention computes as NaN; the project's MultiHeadCrossAttention (chapter 05) "
                    "gives such a sample a zero cross-attention output on purpose, so its outputs stay finite",
        rows=_no_caption_token, project_value="finite",
        holds=lambda got: bool(torch.isfinite(got).all())),
}


def _fmt(idx):
    return [tuple(int(i) for i in row) for row in idx[:4].tolist()]


def close(case, name: str, got: torch.Tensor, want: torch.Tensor, tol: float = 1e-4, rel: bool = False,
          divergences=(), double: bool = False):
    "Assert `got` matches golden `want` (see the module docstring); returns the names of the divergences applied."
    label = f"{getattr(case, 'stem', '?')} {name}"
    assert tuple(got.shape) == tuple(want.shape), f"{label}: shape {tuple(got.shape)} != golden {tuple(want.shape)}"
    dt = torch.float64 if double or got.dtype == torch.float64 or want.dtype == torch.float64 else torch.float32
    got, want = got.detach().cpu().to(dt), want.detach().cpu().to(dt)
    finite = torch.isfinite(want)
    bound = tol * want.abs().clamp(min=1) if rel else torch.full_like(want, tol)
    err = (got - want).abs()
    bad = finite & ~(err <= bound)  # a non-finite `got` at a finite golden value fails here too
    assert not bad.any(), (f"{label}: max abs diff {err[finite].max().item():.3g} > {tol}"
                           f"{' x max(1,|v|)' if rel else ''} ({int(bad.sum())} values, first at {_fmt(bad.nonzero())})")
    todo = ~finite
    applied = []
    for key in divergences:
        if not todo.any(): break
        div = DIVERGENCES[key]
        rows = div.rows(case)
        if rows is None or rows.numel() != want.shape[0] or not rows.any(): continue
        sel = todo & torch.isnan(want) & rows.to(todo.device).view(-1, *[1] * (want.ndim - 1))
        if not sel.any(): continue
        assert div.holds(got[sel]), (f"{label}: golden NaN for samples {rows.nonzero().flatten().tolist()} is the "
                                     f"registered divergence {key!r}, but the project's value there is not "
                                     f"{div.project_value}: {got[sel][:6].tolist()}")
        todo &= ~sel
        msg = (f"{label}: divergence {key!r} applied to {int(sel.sum())} golden NaN value(s) of samples "
               f"{sorted(set(sel.nonzero()[:, 0].tolist()))} (project: {div.project_value}); {div.explanation}")
        warnings.warn(GoldenDivergenceWarning(msg), stacklevel=2)
        if hasattr(case, "divergences"): case.divergences.append((key, msg))
        applied.append(key)
    if todo.any():
        same = (torch.isnan(want) & torch.isnan(got)) | (want == got)  # the project reproduces the reference's value
        unexplained = todo & ~same
        assert not unexplained.any(), (
            f"{label}: {int(unexplained.sum())} non-finite golden value(s) (first at {_fmt(unexplained.nonzero())}: "
            f"golden {want[unexplained][:4].tolist()}, project {got[unexplained][:4].tolist()}) that no registered "
            f"divergence explains (checked: {list(divergences) or 'none'}; registered: {sorted(DIVERGENCES)})")
        if hasattr(case, "notes"):
            case.notes.append(f"{label}: {int(todo.sum())} non-finite golden value(s) reproduced exactly by the project")
    return applied
