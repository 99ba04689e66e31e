"""Model configuration: one frozen dataclass describes both the seed's design and GPT-2's.

Keeping the architecture choices (positions, norm placement, activation) as plain fields means
one model class serves the seed's post-LN teaching model and real GPT-2 checkpoints alike, and
the pages can explain *which* variant they are showing by reading the config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Positional = Literal["sinusoidal", "learned"]
NormPlacement = Literal["post", "pre"]
Activation = Literal["relu", "gelu", "gelu_new"]

GPT2_VOCAB = 50257


@dataclass(frozen=True)
class GPTConfig:
    """Shape and recipe of a GPT.

    ``pos``: "sinusoidal" (the seed: fixed sine/cosine added to the embeddings) or "learned"
    (GPT-2). ``norm``: "post" (the seed: LayerNorm after each residual addition) or "pre"
    (GPT-2: LayerNorm before each sub-layer, plus a final LayerNorm). ``act``: the feed-forward
    non-linearity; "gelu_new" is GPT-2's tanh approximation of GELU.
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

    def __post_init__(self) -> None:
        checks = {
            "vocab_size": self.vocab_size > 0,
            "n_layer": self.n_layer > 0,
            "n_head": self.n_head > 0,
            "d_model": self.d_model > 0 and self.d_model % self.n_head == 0,
            "d_mlp": self.d_mlp > 0,
            "n_ctx": self.n_ctx > 0,
            "pos": self.pos in ("sinusoidal", "learned"),
            "norm": self.norm in ("post", "pre"),
            "act": self.act in ("relu", "gelu", "gelu_new"),
            "dropout": 0.0 <= self.dropout < 1.0,
            "attn_dropout": self.attn_dropout is None or 0.0 <= self.attn_dropout < 1.0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid GPTConfig field(s) {bad}: {self}")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

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
}


def preset(name: str, **changes: Any) -> GPTConfig:
    """A named preset, optionally with fields changed (e.g. a smaller vocabulary)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**changes)
