"""Scoring a model on text: per-token bits, bits per byte, the fixed-slice loss, samples.

Bits per byte (Σ −log₂ p(token) / UTF-8 bytes) compare across tokenizers; losses per token do
not. ``python -m gptviz eval`` and the model cards use the same functions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gptviz.model import GPT
from gptviz.tokenizer import Tokenizer


@torch.no_grad()
def token_nll_per_token(model: GPT, ids: list[int], ctx: int | None = None) -> list[float]:
    """-log2 p(token) of every token after the first, scored with a sliding window.

    Windows of the model's context, stride half a context: every token after the first is
    scored exactly once, with at least half a context before it (except at the start).
    The first token has no context and is not scored.
    """
    model.eval()
    ctx = ctx or model.cfg.n_ctx
    stride = ctx // 2
    x = torch.tensor(ids, dtype=torch.long, device=model.device)
    out: list[float] = []
    start = 0
    while True:
        end = min(start + ctx, len(ids))
        window = x[start:end][None]
        logp = F.log_softmax(model(window, fused=True)[0, :-1].float(), -1)
        nll = -logp.gather(-1, window[0, 1:, None])[:, 0] / math.log(2)
        first_new = 0 if start == 0 else len(out) - start  # index in nll of the first unscored token
        out.extend(nll[first_new:].tolist())
        if end == len(ids):
            return out
        start += stride


def token_nll(model: GPT, ids: list[int], ctx: int | None = None) -> tuple[float, int]:
    """Sum of -log2 p(token) over ``ids`` (see ``token_nll_per_token``), and tokens scored."""
    bits = token_nll_per_token(model, ids, ctx)
    return sum(bits), len(bits)


def bits_per_byte(model: GPT, tokenizer: Tokenizer, text: str) -> float:
    """Σ −log₂ p(token) / UTF-8 bytes of ``text`` (tokenized once, sliding windows)."""
    bits, _ = token_nll(model, tokenizer.encode(text))
    return bits / len(text.encode("utf-8"))


@torch.no_grad()
def sample(model: GPT, tokenizer: Tokenizer, prompt: str, n: int, temperature: float = 0.8, seed: int = 0) -> str:
    """Sample ``n`` tokens after ``prompt`` (for the model card and quick checks). Drawn on the
    CPU from the logits copied there, so a seed gives the same text on every device."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    ids = tokenizer.encode(prompt)
    for _ in range(n):
        logits = model(torch.tensor([ids[-model.cfg.n_ctx :]], device=model.device), fused=True)[0, -1].float().cpu()
        probs = F.softmax(logits / temperature, -1)
        ids.append(int(torch.multinomial(probs, 1, generator=g)))
    return tokenizer.decode(ids)


@torch.no_grad()
def fixed_slice_loss(model: GPT, ids: torch.Tensor) -> float:
    """Mean cross-entropy (nats per token) over ``ids`` cut into non-overlapping context windows.

    Cheaper than ``token_nll`` (no overlap) and the same slice every time, so it is what training
    compares checkpoints by and what the card records as ``val_loss_fixed_slice_nats``. The model's
    train/eval mode is restored, so it can be called in the middle of training.
    """
    was_training = model.training
    model.eval()
    n_ctx = model.cfg.n_ctx
    n = (len(ids) - 1) // n_ctx
    xs = ids[: n * n_ctx + 1].to(model.device)
    x = xs[:-1].view(n, n_ctx)
    y = xs[1:].view(n, n_ctx)
    loss = F.cross_entropy(model(x, fused=True).flatten(0, 1), y.flatten())
    model.train(was_training)
    return loss.item()
