"""Model configuration: one frozen dataclass describes the seed's design, GPT-2's and today's.

Keeping the architecture choices (positions, norm kind and placement, feed-forward, K/V heads)
as plain fields means one model class serves the seed's post-LN teaching model, GPT-2
checkpoints and Llama / Mistral / Qwen / Pythia alike, and the pages can explain *which*
variant they are showing by reading the config.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Literal

Positional = Literal["sinusoidal", "learned", "rotary"]
NormPlacement = Literal["post", "pre"]
NormKind = Literal["layernorm", "rmsnorm"]
FeedForward = Literal["mlp", "gated"]
Activation = Literal["relu", "gelu", "gelu_new", "silu"]

GPT2_VOCAB = 50257
DEFAULT_MAX_TOKENS = 1024


def max_tokens() -> int:
    """How many tokens one trace analyses at most (``GPTVIZ_MAX_TOKENS``, default 1,024).

    Explicit attention keeps a [heads, T, T] pattern per layer: Llama 3.2's 131,072 positions
    would need tens of GB per layer, so a model's context is capped to this at load time."""
    raw = os.environ.get("GPTVIZ_MAX_TOKENS", "").strip()
    if not raw:
        return DEFAULT_MAX_TOKENS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"GPTVIZ_MAX_TOKENS must be a positive integer, not {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3's rotary frequency rule (``rope_type: llama3``): wavelengths longer than
    ``original_max_position_embeddings / low_freq_factor`` are stretched by ``factor``, those
    shorter than ``... / high_freq_factor`` kept, and the band between blended smoothly."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclass(frozen=True)
class GPTConfig:
    """Shape and recipe of a GPT.

    ``pos``: "sinusoidal" (the seed: fixed sine/cosine added to the embeddings), "learned"
    (GPT-2) or "rotary" (Llama and after: nothing added; q and k are rotated inside attention by
    an angle proportional to the position, ``rope_theta`` the base of the frequencies,
    ``rotary_dim`` how many dimensions of each head rotate: fewer than ``d_head`` in GPT-NeoX).
    ``norm``: "post" (the seed: norm after each residual addition) or "pre" (GPT-2 on: norm
    before each sub-layer, plus a final norm); ``norm_kind``: "layernorm" or "rmsnorm" (no
    mean subtracted, no shift). ``ffn``: "mlp" (up, activation, down) or "gated" (SwiGLU:
    ``down(act(gate(x)) * up(x))``). ``act``: the non-linearity; "gelu_new" is GPT-2's tanh
    approximation of GELU. ``n_kv_heads`` < ``n_head``: grouped-query attention (query heads
    share K/V heads). ``bias``: biases on the attention and feed-forward projections;
    ``qkv_bias`` overrides it for q/k/v (Qwen2). ``qk_norm``: RMSNorm per head on q and k
    (Qwen3). ``parallel``: attention and feed-forward both read the block's input (GPT-NeoX).
    ``n_ctx``: the positions analysed (a loaded model's context is capped by ``max_tokens()``).
    """

    vocab_size: int = GPT2_VOCAB
    n_layer: int = 12
    n_head: int = 12
    d_model: int = 768
    d_mlp: int = 3072
    n_ctx: int = 1024
    pos: Positional = "learned"
    norm: NormPlacement = "pre"
    act: Activation = "gelu_new"
    tie_weights: bool = True
    ln_eps: float = 1e-5
    dropout: float = 0.0
    attn_dropout: float | None = None  # on the attention pattern; None: same as ``dropout``
    tokenizer: str = "gpt2"
    norm_kind: NormKind = "layernorm"
    ffn: FeedForward = "mlp"
    n_kv_heads: int | None = None  # None: one K/V head per query head
    head_dim: int | None = None  # None: d_model / n_head
    rope_theta: float = 10000.0
    rotary_dim: int | None = None  # None: the whole head
    rope_scaling: RopeScaling | None = None
    bias: bool = True
    qkv_bias: bool | None = None  # None: same as ``bias``
    qk_norm: bool = False
    parallel: bool = False
    unembed_bias: bool | None = None  # None: only an untied output layer has a bias (the seed)

    def __post_init__(self) -> None:
        if isinstance(self.rope_scaling, dict):  # from_dict / JSON
            object.__setattr__(self, "rope_scaling", RopeScaling(**self.rope_scaling))
        rot = self.rotary_dim
        checks = {
            "vocab_size": self.vocab_size > 0,
            "n_layer": self.n_layer > 0,
            "n_head": self.n_head > 0,
            "d_model": self.d_model > 0 and (self.head_dim is not None or self.d_model % self.n_head == 0),
            "head_dim": self.head_dim is None or self.head_dim > 0,
            "n_kv_heads": self.n_kv_heads is None
            or (0 < self.n_kv_heads <= self.n_head and self.n_head % self.n_kv_heads == 0),
            "d_mlp": self.d_mlp > 0,
            "n_ctx": self.n_ctx > 0,
            "pos": self.pos in ("sinusoidal", "learned", "rotary"),
            "norm": self.norm in ("post", "pre"),
            "norm_kind": self.norm_kind in ("layernorm", "rmsnorm"),
            "ffn": self.ffn in ("mlp", "gated"),
            "act": self.act in ("relu", "gelu", "gelu_new", "silu"),
            "rope_theta": self.rope_theta > 0,
            "rotary_dim": rot is None or (0 < rot <= self.d_head and rot % 2 == 0),
            "parallel": not (self.parallel and self.norm == "post"),
            "dropout": 0.0 <= self.dropout < 1.0,
            "attn_dropout": self.attn_dropout is None or 0.0 <= self.attn_dropout < 1.0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid GPTConfig field(s) {bad}: {self}")

    @property
    def d_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        """K/V heads: ``n_head`` for multi-head attention, fewer for grouped-query, 1 for multi-query."""
        return self.n_kv_heads or self.n_head

    @property
    def rot_dim(self) -> int:
        """Dimensions of each head that rotate (0 without rotary positions)."""
        return 0 if self.pos != "rotary" else (self.rotary_dim or self.d_head)

    @property
    def has_qkv_bias(self) -> bool:
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def has_unembed_bias(self) -> bool:
        return (not self.tie_weights) if self.unembed_bias is None else self.unembed_bias

    @property
    def attn_p(self) -> float:
        """Dropout on the attention pattern. Training may turn it off alone: on CPU, PyTorch's
        fused attention with dropout falls back to its math path, ~3x slower than without."""
        return self.dropout if self.attn_dropout is None else self.attn_dropout

    @property
    def final_ln(self) -> bool:
        """Pre-LN models need a final LayerNorm; post-LN ones already end on a LayerNorm."""
        return self.norm == "pre"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPTConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown GPTConfig field(s): {sorted(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> GPTConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, GPTConfig] = {
    # Exactly the seed's design (SEED.md): sinusoidal positions added to the embeddings,
    # post-LayerNorm residual blocks, ReLU feed-forward, a separate linear output layer.
    "seed": GPTConfig(
        n_layer=4,
        n_head=4,
        d_model=128,
        d_mlp=512,
        n_ctx=128,
        pos="sinusoidal",
        norm="post",
        act="relu",
        tie_weights=False,
    ),
    # GPT-2 small: learned positions, pre-LN, GELU (tanh), final LN, tied output weights.
    "gpt2": GPTConfig(),
    # Today's design (Llama 2/3, Mistral, Qwen): rotary positions, pre-norm RMSNorm, a SwiGLU
    # feed-forward (d_mlp = 8/3 d_model keeps the parameters of a 4x MLP), no biases, grouped-
    # query attention (here 4 query heads per K/V head), tied output as in the small Llamas.
    "llama": GPTConfig(
        n_layer=12,
        n_head=12,
        n_kv_heads=4,
        d_model=768,
        d_mlp=2048,
        pos="rotary",
        norm_kind="rmsnorm",
        ffn="gated",
        act="silu",
        bias=False,
        ln_eps=1e-5,
    ),
}


def preset(name: str, **changes: Any) -> GPTConfig:
    """A named preset, optionally with fields changed (e.g. a smaller vocabulary)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**changes)
