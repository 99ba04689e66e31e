"""A GPT in plain PyTorch with a named hook point at every stage of the pipeline.

One class serves three generations of design, chosen by the config's fields:
- 2017, the seed: sinusoidal positions added, post-LN, ReLU, a separate linear output layer;
- 2019, GPT-2: learned positions added, pre-LN, GELU, a final LayerNorm, tied output;
- today, Llama / Mistral / Qwen / Pythia: rotary positions (q and k rotated inside attention,
  nothing added), RMSNorm, a gated (SwiGLU) feed-forward, grouped-query attention (fewer K/V
  heads than query heads), and per family: q/k/v biases, q/k norms, parallel blocks.
Attention is written out (scores, causal mask, softmax, weighted sum) whenever a hook watches
the scores or the pattern, because the app must show each of those; otherwise (training, a
compact capture, generation) PyTorch's fused ``scaled_dot_product_attention`` computes the same
thing, tested equal. Generation passes a ``KVCache`` through ``forward`` as a value: the shared model
never holds per-call state.

Shapes in comments: B batch, T new tokens, S all tokens (cache + new), D d_model, H query
heads, K K/V heads, G = H / K query heads per K/V head, Dh d_head, R rotary dims, M d_mlp,
V vocab.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from gptviz.config import GPTConfig, RopeScaling
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


def rope_frequencies(rot_dim: int, theta: float, scaling: RopeScaling | None = None) -> torch.Tensor:
    """Angular speed of each rotated pair, [R / 2]: pair i turns by pos * theta^(-2i/R) radians,
    so the first pairs spin fast (local order) and the last ones slowly (long range)."""
    inv = 1.0 / theta ** (torch.arange(0, rot_dim, 2, dtype=torch.int64).float() / rot_dim)
    if scaling is None:
        return inv
    old = scaling.original_max_position_embeddings
    wavelen = 2 * math.pi / inv
    slow = inv / scaling.factor  # long wavelengths: stretched to reach further
    smooth = (old / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
    blended = (1 - smooth) * slow + smooth * inv
    out = torch.where(wavelen > old / scaling.low_freq_factor, slow, inv)
    between = (wavelen >= old / scaling.high_freq_factor) & (wavelen <= old / scaling.low_freq_factor)
    return torch.where(between, blended, out)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first R dims of each head of x [B, T, h, Dh] by the angles in cos/sin [T, R].

    Pairs are (i, i + R/2), the "rotate half" layout of GPT-NeoX and Llama; dims past R (partial
    rotary) pass unchanged."""
    r = cos.shape[-1]
    cos, sin = cos[:, None, :], sin[:, None, :]  # [T, 1, R], broadcast over heads
    xr, rest = x[..., :r], x[..., r:]
    x1, x2 = xr[..., : r // 2], xr[..., r // 2 :]
    turned = xr * cos + torch.cat((-x2, x1), -1) * sin
    return torch.cat((turned, rest), -1) if rest.shape[-1] else turned


@dataclass
class KVCache:
    """Keys (rotated) and values of the tokens seen so far, one entry per layer, [B, S, K, Dh].

    Generation creates one per sequence and passes it to every ``forward``; each call appends
    its new tokens' keys and values, so the next token computes only its own query."""

    keys: list[torch.Tensor | None] = field(default_factory=list)
    values: list[torch.Tensor | None] = field(default_factory=list)

    @property
    def length(self) -> int:
        """Tokens already cached (the position of the next token)."""
        return self.cached(0)

    def cached(self, layer: int) -> int:
        """Tokens already cached for ``layer``."""
        keys = self.keys[layer] if layer < len(self.keys) else None
        return 0 if keys is None else keys.shape[1]

    def extend(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this call's keys and values for ``layer``; all of them, old and new."""
        while len(self.keys) <= layer:
            self.keys.append(None)
            self.values.append(None)
        if self.keys[layer] is not None:
            k = torch.cat((self.keys[layer], k), 1)
            v = torch.cat((self.values[layer], v), 1)
        self.keys[layer], self.values[layer] = k, v
        return k, v


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


class RMSNorm(nn.Module):
    """RMSNorm: LayerNorm without the mean subtraction and without the shift. Divides by the
    root mean square only, so the vector's direction is kept and only its length set."""

    def __init__(self, d: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))
        self.hook_scale = HookPoint()  # [..., 1], the root mean square
        self.hook_normalized = HookPoint()  # [..., d], after the learned scale

    def forward(self, x: torch.Tensor, fused: bool = False) -> torch.Tensor:
        if fused:
            return F.rms_norm(x, x.shape[-1:], self.weight, self.eps)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return self.hook_normalized(x / scale * self.weight)


def make_norm(cfg: GPTConfig, d: int | None = None) -> LayerNorm | RMSNorm:
    norm = RMSNorm if cfg.norm_kind == "rmsnorm" else LayerNorm
    return norm(d or cfg.d_model, cfg.ln_eps)


class Rotary(nn.Module):
    """Rotary position embedding (RoPE): the angles by which q and k turn at each position."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("inv_freq", self.frequencies(), persistent=False)

    def frequencies(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The angular speed of each pair (``rope_frequencies`` of this config), on ``device``."""
        return rope_frequencies(self.cfg.rot_dim, self.cfg.rope_theta, self.cfg.rope_scaling).to(device)

    def forward(self, start: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of the angles at positions start .. start+T-1, each [T, R]."""
        pos = torch.arange(start, start + T, device=self.inv_freq.device, dtype=torch.float32)
        angles = torch.outer(pos, self.inv_freq.float())  # [T, R/2], float32 whatever the weights
        angles = torch.cat((angles, angles), -1)  # pair i and i + R/2 share an angle
        return angles.cos(), angles.sin()


class Attention(nn.Module):
    """Causal self-attention, each step a hook point; K/V heads may be shared by query heads."""

    def __init__(self, cfg: GPTConfig, layer: int = 0) -> None:
        super().__init__()
        self.cfg, self.layer = cfg, layer
        H, K, Dh = cfg.n_head, cfg.kv_heads, cfg.d_head
        self.c_attn = nn.Linear(cfg.d_model, (H + 2 * K) * Dh, bias=cfg.has_qkv_bias)  # W_Q | W_K | W_V
        self.c_proj = nn.Linear(H * Dh, cfg.d_model, bias=cfg.bias)  # W_O
        if cfg.qk_norm:
            self.q_norm, self.k_norm = RMSNorm(Dh, cfg.ln_eps), RMSNorm(Dh, cfg.ln_eps)
        self.attn_drop = Dropout(cfg.attn_p)
        self.hook_q = HookPoint()  # [B, T, H, Dh], before rotation
        self.hook_k = HookPoint()  # [B, T, K, Dh]
        self.hook_v = HookPoint()  # [B, T, K, Dh]
        if cfg.pos == "rotary":
            self.hook_rot_q = HookPoint()  # [B, T, H, Dh], rotated by position
            self.hook_rot_k = HookPoint()  # [B, T, K, Dh]
        self.hook_attn_scores = HookPoint()  # [B, H, T, S], Q.K^T/sqrt(Dh) before the mask
        self.hook_pattern = HookPoint()  # [B, H, T, S], softmax of the masked scores
        self.hook_z = HookPoint()  # [B, T, H, Dh], pattern-weighted sum of V

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
        fused: bool = False,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        H, K, Dh = self.cfg.n_head, self.cfg.kv_heads, self.cfg.d_head
        G = H // K
        q, k, v = self.c_attn(x).split((H * Dh, K * Dh, K * Dh), -1)
        q, k, v = q.view(B, T, H, Dh), k.view(B, T, K, Dh), v.view(B, T, K, Dh)
        if self.cfg.qk_norm:
            q, k = self.q_norm(q, fused), self.k_norm(k, fused)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        if rope is not None:
            q, k = self.hook_rot_q(rotate(q, *rope)), self.hook_rot_k(rotate(k, *rope))
        start = 0
        if cache is not None:
            start = cache.cached(self.layer)
            k, v = cache.extend(self.layer, k, v)  # [B, S, K, Dh]
        S = k.shape[1]
        qh, kh, vh = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H|K, T|S, Dh]
        # Written out only where someone looks: a hook on the scores or the pattern (a full
        # capture, an intervention). Otherwise PyTorch's fused kernel computes the same softmax
        # without materializing [B, H, T, S] (a compact trace derives the pattern from q and k).
        if fused or not (self.hook_attn_scores.hooked or self.hook_pattern.hooked):
            p = self.cfg.attn_p if self.training else 0.0
            mask = None if start == 0 else torch.ones(T, S, dtype=torch.bool, device=x.device).tril_(start)
            z = F.scaled_dot_product_attention(
                qh, kh, vh, attn_mask=mask, dropout_p=p, is_causal=mask is None, enable_gqa=G > 1
            )
        else:
            # Query heads h = K/V head * G + g: group them so each K/V head is read once, not copied.
            qg = qh.reshape(B, K, G * T, Dh)
            scores = (qg * (1.0 / math.sqrt(Dh))) @ kh.transpose(-1, -2)  # [B, K, G*T, S]
            scores = self.hook_attn_scores(scores.view(B, H, T, S))
            future = torch.ones(T, S, dtype=torch.bool, device=x.device).triu_(start + 1)
            # mask in place unless a hook may have kept the unmasked scores (saves a [B, H, T, S] copy)
            mask = scores.masked_fill if self.hook_attn_scores.hooked else scores.masked_fill_
            pattern = self.hook_pattern(mask(future, float("-inf")).softmax(-1))
            z = (self.attn_drop(pattern).view(B, K, G * T, S) @ vh).view(B, H, T, Dh)
        z = self.hook_z(z.transpose(1, 2))  # [B, T, H, Dh]
        return self.c_proj(z.reshape(B, T, H * Dh))


def activation(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return F.relu(x)
    if name == "silu":
        return F.silu(x)
    return F.gelu(x, approximate="tanh" if name == "gelu_new" else "none")


class MLP(nn.Module):
    """Position-wise feed-forward network: D -> M -> activation -> D."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.d_model, cfg.d_mlp, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.d_mlp, cfg.d_model, bias=cfg.bias)
        self.act = cfg.act
        self.hook_pre = HookPoint()  # [B, T, M]
        self.hook_post = HookPoint()  # [B, T, M]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.hook_post(activation(self.act, self.hook_pre(self.c_fc(x)))))


class GatedMLP(nn.Module):
    """Gated feed-forward (SwiGLU with SiLU): down(act(gate(x)) * up(x)). The gate decides, per
    neuron and token, how much of the linear "up" value passes."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_gate = nn.Linear(cfg.d_model, cfg.d_mlp, bias=cfg.bias)
        self.c_fc = nn.Linear(cfg.d_model, cfg.d_mlp, bias=cfg.bias)  # "up"
        self.c_proj = nn.Linear(cfg.d_mlp, cfg.d_model, bias=cfg.bias)  # "down"
        self.act = cfg.act
        self.hook_pre = HookPoint()  # [B, T, M], gate before the activation
        self.hook_pre_linear = HookPoint()  # [B, T, M], up
        self.hook_post = HookPoint()  # [B, T, M], act(gate) * up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.hook_pre(self.c_gate(x)), self.hook_pre_linear(self.c_fc(x))
        return self.c_proj(self.hook_post(activation(self.act, gate) * up))


class Block(nn.Module):
    """One transformer layer: attention and feed-forward, each with a residual connection.

    pre-norm (GPT-2 on):  x + attn(ln1(x)),  then  x + mlp(ln2(x))
    post-norm (seed):     ln1(x + attn(x)),  then  ln2(x + mlp(x))
    parallel (GPT-NeoX):  x + attn(ln1(x)) + mlp(ln2(x)); resid_mid is still x + attn_out
    """

    def __init__(self, cfg: GPTConfig, layer: int = 0) -> None:
        super().__init__()
        self.pre, self.parallel = cfg.norm == "pre", cfg.parallel
        self.ln1 = make_norm(cfg)
        self.attn = Attention(cfg, layer)
        self.ln2 = make_norm(cfg)
        self.mlp = GatedMLP(cfg) if cfg.ffn == "gated" else MLP(cfg)
        self.drop = Dropout(cfg.dropout)
        self.hook_resid_pre = HookPoint()  # [B, T, D]
        self.hook_attn_out = HookPoint()  # [B, T, D]
        self.hook_resid_mid = HookPoint()  # [B, T, D]
        self.hook_mlp_out = HookPoint()  # [B, T, D]
        self.hook_resid_post = HookPoint()  # [B, T, D]

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: KVCache | None = None,
        fused: bool = False,
    ) -> torch.Tensor:
        x = self.hook_resid_pre(x)
        if not self.pre:
            attn_out = self.hook_attn_out(self.drop(self.attn(x, rope, cache, fused)))
            x = self.hook_resid_mid(self.ln1(x + attn_out, fused))
            mlp_out = self.hook_mlp_out(self.drop(self.mlp(x)))
            return self.hook_resid_post(self.ln2(x + mlp_out, fused))
        attn_out = self.hook_attn_out(self.drop(self.attn(self.ln1(x, fused), rope, cache, fused)))
        mid = self.hook_resid_mid(x + attn_out)
        mlp_out = self.hook_mlp_out(self.drop(self.mlp(self.ln2(x if self.parallel else mid, fused))))
        return self.hook_resid_post(mid + mlp_out)


class GPT(nn.Module):
    """Token ids [B, T] -> logits [B, T, V], with hook points named as in TransformerLens."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)  # W_E
        if cfg.pos == "learned":
            self.pos_embed = nn.Embedding(cfg.n_ctx, cfg.d_model)  # W_pos
        elif cfg.pos == "sinusoidal":
            self.register_buffer("pe", positional_encoding(cfg.n_ctx, cfg.d_model), persistent=False)
        else:
            self.rotary = Rotary(cfg)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.ln_final = make_norm(cfg) if cfg.final_ln else None
        self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size, bias=cfg.has_unembed_bias)  # W_U
        if cfg.tie_weights:
            self.unembed.weight = self.embed.weight
        self.hook_tokens = HookPoint()  # [B, T] int64
        self.hook_embed = HookPoint()  # [B, T, D]
        if cfg.pos != "rotary":
            self.hook_pos_embed = HookPoint()  # [B, T, D]
        self.hook_logits = HookPoint()  # [B, T, V]
        self._init_weights()
        self.hook_points = name_hook_points(self)

    @property
    def device(self) -> torch.device:
        """Where the weights are (the embedding's device): inputs are created there."""
        return self.embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' floating-point type (float32 unless loaded with another ``dtype``)."""
        return self.embed.weight.dtype

    def init_buffers(self) -> None:
        """(Re)compute the buffers no checkpoint stores (sinusoidal table, rotary frequencies) on
        the weights' device: a model built on the meta device and filled by assignment needs them,
        and so does one moved to another dtype. The sinusoidal table takes the weights' dtype (it
        is added to the stream); the rotary frequencies stay float32, as Hugging Face keeps them,
        so positions far into the context still turn by the right angles."""
        device = self.embed.weight.device
        if self.cfg.pos == "sinusoidal":
            self.pe = positional_encoding(self.cfg.n_ctx, self.cfg.d_model).to(device, self.embed.weight.dtype)
        elif self.cfg.pos == "rotary":
            self.rotary.inv_freq = self.rotary.frequencies(device)

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

    def positions(self, T: int, start: int = 0) -> torch.Tensor:
        """The positional vectors added at positions start..start+T-1, shape [T, D] (none for
        rotary models: their positions are rotations inside attention)."""
        if self.cfg.pos == "rotary":
            raise ValueError("a rotary model adds no position vectors; see model.rotary")
        if self.cfg.pos == "learned":
            return self.pos_embed.weight[start : start + T]
        return self.pe[start : start + T]

    def forward(
        self, ids: torch.Tensor, fused: bool = False, cache: KVCache | None = None, unembed: bool = True
    ) -> torch.Tensor:
        """``fused=True`` uses PyTorch's fused attention and norms (training): no attention or
        norm internals are hooked then; the residual hooks still fire. ``cache``: a ``KVCache``
        owned by the caller; the new tokens follow the cached ones and are appended to it.
        ``unembed=False`` stops before the output layer and returns the final normalized stream
        [B, T, D], for callers that unembed a few positions at a time (a [1024, 151936] float32
        logits tensor alone is 0.6 GB)."""
        B, T = ids.shape
        start = cache.length if cache is not None else 0
        if start + T > self.cfg.n_ctx:
            raise ValueError(f"{start + T} tokens exceed the model's context of {self.cfg.n_ctx}")
        ids = self.hook_tokens(ids)
        x = self.hook_embed(self.embed(ids))
        rope = None
        if self.cfg.pos == "rotary":
            cos, sin = self.rotary(start, T)  # float32 angles, then the stream's dtype (as HF does)
            rope = cos.to(x.dtype), sin.to(x.dtype)
        else:
            x = x + self.hook_pos_embed(self.positions(T, start).expand(B, T, -1))
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, rope, cache, fused)
        if self.ln_final is not None:
            x = self.ln_final(x, fused)
        return self.hook_logits(self.unembed(x)) if unembed else x

    def hook_names(self) -> list[str]:
        return list(self.hook_points)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
