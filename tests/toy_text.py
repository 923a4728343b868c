"""Toy caption encoders the tests share (no model to download): words hashed to vectors, or shapes only on any device."""
import torch

from opensora_nb.text import TextEncoder


class HashText(TextEncoder):
    "Words hashed to fixed random vectors (the inference chapter's toy encoder)."
    def __init__(self, dim=16, L=8):
        self.output_dim, self.model_max_length, self.device, self.dtype, self.name, self.y_embedder = dim, L, torch.device("cpu"), torch.float32, "hash", None

    def encode(self, prompts):
        y = torch.zeros(len(prompts), 1, self.model_max_length, self.output_dim)
        m = torch.zeros(len(prompts), self.model_max_length, dtype=torch.long)
        for i, p in enumerate(prompts):
            for j, w in enumerate(p.split()[: self.model_max_length]):
                y[i, 0, j] = torch.randn(self.output_dim, generator=torch.Generator().manual_seed(sum(map(ord, w)))); m[i, j] = 1
        return dict(y=y, mask=m)


class MetaText:
    "A text encoder whose states live on the pipeline's device (e.g. meta): shapes only."
    name, y_embedder = "meta", None
    def __init__(self, dim=16, L=8):
        self.output_dim, self.model_max_length, self.device, self.dtype = dim, L, torch.device("cpu"), torch.float32
    def to(self, device=None, dtype=None):
        self.device = torch.device(device) if device is not None else self.device; return self
    def set_null(self, model): self.y_null = model.y_embedder.y_embedding
    def encode(self, prompts):
        n = len(prompts)
        return dict(y=torch.zeros(n, 1, self.model_max_length, self.output_dim, device=self.device),
                    mask=torch.ones(n, self.model_max_length, dtype=torch.long, device=self.device))
    def null(self, n): return self.y_null[None].repeat(n, 1, 1)[:, None]
