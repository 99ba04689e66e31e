"""A GPT in plain PyTorch with a named hook point at every stage of the pipeline.

One class serves the seed's design (sinusoidal positions, post-LN, ReLU, linear output layer)
and GPT-2's (learned positions, pre-LN, GELU, final LN, tied output). Attention is written out
(scores, causal mask, softmax, weighted sum) because the app must show each of those; a fused
``scaled_dot_product_attention`` path exists for training only and is tested equal.

Shapes in comments: B batch, T tokens, D d_model, H heads, Dh d_head, M d_mlp, V vocab.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gptviz.config import GPTConfig
from gptviz.hooks import HookPoint, name_hook_points


def positional_encoding(seq_len: int, dim: int) -> torch.Tensor:
    """The sinusoidal encoding of "Attention Is All You Need", shape [seq_len, dim].

    Even dimensions hold sin(pos / 10000^(2i/dim)), odd ones cos of the same angle, so every
    position gets a unique pattern and relative offsets are linear maps of each other.
    """
    pos = torch.arange(seq_len, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(seq_len, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe


class Dropout(nn.Module):
    """``nn.Dropout`` (zero with probability p, scale the rest by 1/(1-p)), its mask drawn with
    ``torch.rand``: on CPU ``bernoulli_`` takes twice as long, ~10% of a training step."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        return x * ((torch.rand_like(x) >= self.p) * (1.0 / (1.0 - self.p)))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerNorm(nn.Module):
    """LayerNorm written out so its scale (per-token std) and output can be hooked."""

    def __init__(self, d: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.hook_scale = HookPoint()  # [B, T, 1]
        self.hook_normalized = HookPoint()  # [B, T, D], after the learned scale and shift

    def forward(self, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
        if fused:
            return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return self.hook_normalized(x / scale * self.weight + self.bias)


class Attention(nn.Module):
    """Causal multi-head self-attention, each step a hook point."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model)  # W_Q | W_K | W_V
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model)  # W_O
        self.attn_drop = Dropout(cfg.attn_p)
        self.hook_q = HookPoint()  # [B, T, H, Dh]
        self.hook_k = HookPoint()  # [B, T, H, Dh]
        self.hook_v = HookPoint()  # [B, T, H, Dh]
        self.hook_attn_scores = HookPoint()  # [B, H, Tq, Tk], Q.K^T/sqrt(Dh) before the mask
        self.hook_pattern = HookPoint()  # [B, H, Tq, Tk], softmax of the masked scores
        self.hook_z = HookPoint()  # [B, T, H, Dh], pattern-weighted sum of V

    def forward(self, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
        B, T, D = x.shape
        H, Dh = self.cfg.n_head, self.cfg.d_head
        q, k, v = self.c_attn(x).view(B, T, 3, H, Dh).unbind(2)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, Dh]
        if fused:
            p = self.cfg.attn_p if self.training else 0.0
            z = F.scaled_dot_product_attention(qh, kh, vh, dropout_p=p, is_causal=True)
        else:
            scores = self.hook_attn_scores((qh * (1.0 / math.sqrt(Dh))) @ kh.transpose(-1, -2))
            future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu_(1)
            # mask in place unless a hook may have kept the unmasked scores (saves a [B, H, T, T] copy)
            mask = scores.masked_fill if self.hook_attn_scores.hooked else scores.masked_fill_
            pattern = self.hook_pattern(mask(future, float("-inf")).softmax(-1))
            z = self.attn_drop(pattern) @ vh  # [B, H, T, Dh]
        z = self.hook_z(z.transpose(1, 2))  # [B, T, H, Dh]
        return self.c_proj(z.reshape(B, T, D))


class MLP(nn.Module):
    """Position-wise feed-forward network: D -> M -> activation -> D."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.c_proj = nn.Linear(cfg.d_mlp, cfg.d_model)
        self.act = cfg.act
        self.hook_pre = HookPoint()  # [B, T, M]
        self.hook_post = HookPoint()  # [B, T, M]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(self.c_fc(x))
        if self.act == "relu":
            post = F.relu(pre)
        else:
            post = F.gelu(pre, approximate="tanh" if self.act == "gelu_new" else "none")
        return self.c_proj(self.hook_post(post))


class Block(nn.Module):
    """One transformer layer: attention and feed-forward, each with a residual connection.

    pre-LN (GPT-2):  x + attn(ln1(x)),  then  x + mlp(ln2(x))
    post-LN (seed):  ln1(x + attn(x)),  then  ln2(x + mlp(x))
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.pre = cfg.norm == "pre"
        self.ln1 = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.attn = Attention(cfg)
        self.ln2 = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.mlp = MLP(cfg)
        self.drop = Dropout(cfg.dropout)
        self.hook_resid_pre = HookPoint()  # [B, T, D]
        self.hook_attn_out = HookPoint()  # [B, T, D]
        self.hook_resid_mid = HookPoint()  # [B, T, D]
        self.hook_mlp_out = HookPoint()  # [B, T, D]
        self.hook_resid_post = HookPoint()  # [B, T, D]

    def forward(self, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        if self.pre:
            attn_out = self.hook_attn_out(self.drop(self.attn(self.ln1(x, fused), fused)))
            x = self.hook_resid_mid(x + attn_out)
            mlp_out = self.hook_mlp_out(self.drop(self.mlp(self.ln2(x, fused))))
            return self.hook_resid_post(x + mlp_out)
        attn_out = self.hook_attn_out(self.drop(self.attn(x, fused)))
        x = self.hook_resid_mid(self.ln1(x + attn_out, fused))
        mlp_out = self.hook_mlp_out(self.drop(self.mlp(x)))
        return self.hook_resid_post(self.ln2(x + mlp_out, fused))


class GPT(nn.Module):
    """Token ids [B, T] -> logits [B, T, V], with hook points named as in TransformerLens."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)  # W_E
        if cfg.pos == "learned":
            self.pos_embed = nn.Embedding(cfg.n_ctx, cfg.d_model)  # W_pos
        else:
            self.register_buffer("pe", positional_encoding(cfg.n_ctx, cfg.d_model), persistent=False)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_final = LayerNorm(cfg.d_model, cfg.ln_eps) if cfg.final_ln else None
        self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size, bias=not cfg.tie_weights)  # W_U
        if cfg.tie_weights:
            self.unembed.weight = self.embed.weight
        self.hook_tokens = HookPoint()  # [B, T] int64
        self.hook_embed = HookPoint()  # [B, T, D]
        self.hook_pos_embed = HookPoint()  # [B, T, D]
        self.hook_logits = HookPoint()  # [B, T, V]
        self._init_weights()
        self.hook_points = name_hook_points(self)

    def _init_weights(self) -> None:
        """GPT-2's init: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer)."""
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 1:
                nn.init.ones_(p)
            else:
                std = 0.02 / math.sqrt(2 * self.cfg.n_layer) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def positions(self, T: int) -> torch.Tensor:
        """The positional vectors added at positions 0..T-1, shape [T, D]."""
        if self.cfg.pos == "learned":
            return self.pos_embed.weight[:T]
        return self.pe[:T]

    def forward(self, ids: torch.Tensor, fused: bool = False) -> torch.Tensor:
        """``fused=True`` uses PyTorch's fused attention and LayerNorm (training): no attention
        or LayerNorm internals are hooked then; the residual hooks still fire."""
        B, T = ids.shape
        if T > self.cfg.n_ctx:
            raise ValueError(f"{T} tokens exceed the model's context of {self.cfg.n_ctx}")
        ids = self.hook_tokens(ids)
        x = self.hook_embed(self.embed(ids)) + self.hook_pos_embed(self.positions(T).expand(B, T, -1))
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, fused)
        if self.ln_final is not None:
            x = self.ln_final(x, fused)
        return self.hook_logits(self.unembed(x))

    def hook_names(self) -> list[str]:
        return list(self.hook_points)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
