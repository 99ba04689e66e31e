"""Stages 1–3 beyond the trace: tokenizer views, nearest tokens, PCA, positional tables."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gptviz.model import GPT
from gptviz.tokenizer import Tokenizer


@dataclass(frozen=True)
class TokenView:
    """A text as one tokenizer sees it (no model needed)."""

    tokenizer: str
    ids: list[int]
    tokens: list[str]
    token_bytes: list[bytes]


def tokenize_view(tokenizer: Tokenizer, text: str) -> TokenView:
    ids = tokenizer.encode(text)
    return TokenView(
        tokenizer.name, ids, [tokenizer.token_str(i) for i in ids], [tokenizer.token_bytes(i) for i in ids]
    )


def embedding_matrix(model: GPT) -> np.ndarray:
    """W_E as float32 numpy [V, D], read-only: a view of the weights of a float32 CPU model, a
    host copy of those of a model on a GPU or in another dtype."""
    w = model.embed.weight.detach().float().cpu().numpy()
    w = w.view()
    w.flags.writeable = False
    return w


def nearest_tokens(model: GPT, vector: np.ndarray, k: int = 10, exclude: int | None = None) -> list[tuple[int, float]]:
    """The ``k`` vocabulary tokens whose embeddings have the highest cosine similarity to ``vector``."""
    w = model.embed.weight.detach()
    v = torch.tensor(np.asarray(vector, dtype=np.float32)).to(w.device, w.dtype)  # a copy: trace arrays are read-only
    sims = (w @ v) / (w.norm(dim=1) * v.norm() + 1e-8)
    if exclude is not None:
        sims[exclude] = -np.inf
    top = torch.topk(sims, min(k, len(sims)))
    values, indices = top.values.float().cpu().tolist(), top.indices.cpu().tolist()  # one copy to the host
    return [(int(i), float(s)) for s, i in zip(values, indices, strict=True)]


def embedding_pca(model: GPT, ids: list[int], neighbours: int = 5) -> dict[str, np.ndarray]:
    """2-D PCA of the prompt's token embeddings together with each one's nearest neighbours.

    Returns ``coords`` [N, 2], ``ids`` [N], ``is_prompt`` [N] bool, ``explained`` [2] (the
    fraction of variance each axis keeps — students should know how much a 2-D picture hides).
    """
    w = model.embed.weight.detach()  # rows are copied to the host as needed, never all of W_E
    chosen: list[int] = []
    prompt_set = list(dict.fromkeys(ids))
    for i in prompt_set:
        chosen.append(i)
        row = w[i].float().cpu().numpy()
        chosen += [j for j, _ in nearest_tokens(model, row, neighbours + 1, exclude=i)][:neighbours]
    chosen = list(dict.fromkeys(chosen))
    x = w[chosen].double().cpu().numpy()
    x = x - x.mean(0)
    if len(chosen) < 2:
        coords = np.zeros((len(chosen), 2))
        explained = np.zeros(2)
    else:
        u, s, vt = np.linalg.svd(x, full_matrices=False)
        coords = x @ vt[:2].T
        if coords.shape[1] < 2:
            coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
        var = s**2
        explained = np.pad(var[:2] / var.sum(), (0, max(0, 2 - len(var))))
    return {
        "coords": coords.astype(np.float32),
        "ids": np.asarray(chosen),
        "is_prompt": np.isin(chosen, prompt_set),
        "explained": explained.astype(np.float32),
    }


def positional_table(model: GPT, n: int | None = None) -> np.ndarray:
    """The positional vectors for positions 0..n-1 (default: the whole context), [n, D]."""
    n = min(n or model.cfg.n_ctx, model.cfg.n_ctx)
    with torch.no_grad():
        return model.positions(n).detach().float().cpu().numpy().copy()


def position_similarity(pos: np.ndarray) -> np.ndarray:
    """Cosine similarity between every pair of positional vectors, [n, n]."""
    unit = pos / (np.linalg.norm(pos, axis=1, keepdims=True) + 1e-8)
    return (unit @ unit.T).astype(np.float32)
