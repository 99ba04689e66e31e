"""Hugging Face model families: each ``config.json`` spelling mapped to one ``GPTConfig``, and
each family's weight names mapped to ours, as data: one small table or function per family.

A family is picked by ``config.json``'s ``model_type``. Anything we do not implement exactly
(mixture of experts, an active sliding window shorter than what is analysed, an unknown
rotary rule, an odd rotary dimension, another ``model_type``) raises one ``FamilyError`` that
names the field and lists what is supported: never a silently wrong model.

Both config spellings are read: files written by transformers 5 (``rope_parameters`` with
``rope_theta``, ``rope_type``, ``partial_rotary_factor``) and the ones on the Hub
(``rope_theta``, ``rope_scaling``, ``rotary_pct``, ``rotary_emb_base``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from gptviz.config import GPTConfig, RopeScaling, max_tokens

State = dict[str, torch.Tensor]


class FamilyError(ValueError):
    """A config this code cannot run exactly (the message names the field)."""


@dataclass(frozen=True)
class Family:
    """How to read one ``model_type``: its config and its weight names."""

    model_type: str
    examples: str  # shown in errors and the README
    config: Callable[[dict[str, Any]], GPTConfig]
    weights: Callable[[State, GPTConfig], State]


# --- config fields shared by the rotary families ------------------------------------------

_ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "gelu_new": "gelu_new",
    "gelu_pytorch_tanh": "gelu_new",
    "relu": "relu",
}
_MOE_FIELDS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size")


def _activation(hf: dict, default: str) -> str:
    name = hf.get("hidden_act", hf.get("activation_function", default))
    if name not in _ACTIVATIONS:
        raise FamilyError(f"activation {name!r} (hidden_act) is not supported; supported: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def _refuse_moe(hf: dict) -> None:
    for key in _MOE_FIELDS:
        if hf.get(key):
            raise FamilyError(
                f"mixture of experts ({key} = {hf[key]}) is not supported: only dense feed-forward layers"
            )


def _rope(hf: dict, d_head: int, default_theta: float, default_partial: float = 1.0) -> dict[str, Any]:
    """``rope_theta``, ``rotary_dim`` and ``rope_scaling`` from either spelling."""
    params = dict(hf.get("rope_parameters") or {})
    if params and all(isinstance(v, dict) for v in params.values()):  # one entry per layer type
        kinds = list(params.values())
        if any(k != kinds[0] for k in kinds):
            raise FamilyError(f"rope_parameters differ between layer types ({sorted(params)}): not supported")
        params = dict(kinds[0])
    legacy = dict(hf.get("rope_scaling") or {})
    rope_type = params.get("rope_type") or legacy.get("rope_type") or legacy.get("type") or "default"
    theta = params.get("rope_theta", hf.get("rope_theta", hf.get("rotary_emb_base", default_theta)))
    partial = params.get(
        "partial_rotary_factor", hf.get("partial_rotary_factor", hf.get("rotary_pct", default_partial))
    )
    rot = int(d_head * float(partial))
    if rot <= 0 or rot % 2 or rot > d_head:
        raise FamilyError(
            f"rotary dimension {rot} (head_dim {d_head} x partial_rotary_factor {partial}) must be even and positive"
        )
    scaling = None
    if rope_type == "llama3":
        src = {**legacy, **params}
        try:
            scaling = RopeScaling(
                factor=float(src["factor"]),
                low_freq_factor=float(src["low_freq_factor"]),
                high_freq_factor=float(src["high_freq_factor"]),
                original_max_position_embeddings=int(src["original_max_position_embeddings"]),
            )
        except KeyError as exc:
            raise FamilyError(f"rope_type 'llama3' needs {exc.args[0]!r} in rope_scaling / rope_parameters") from exc
    elif rope_type != "default":
        raise FamilyError(f"rope_type {rope_type!r} is not supported; supported: 'default', 'llama3'")
    return {
        "pos": "rotary",
        "rope_theta": float(theta),
        "rotary_dim": rot if rot < d_head else None,
        "rope_scaling": scaling,
    }


def _context(hf: dict, default: int) -> int:
    """The positions analysed: the model's context, capped by ``GPTVIZ_MAX_TOKENS``."""
    return min(int(hf.get("max_position_embeddings", default)), max_tokens())


def _refuse_short_window(hf: dict, n_layer: int, n_ctx: int, always: bool) -> None:
    """A sliding window changes attention only when it is in effect and shorter than what is
    analysed; Qwen2.5's ``sliding_window: 32768, use_sliding_window: false`` is full attention."""
    window = hf.get("sliding_window")
    if window is None:
        return
    types = hf.get("layer_types") or []
    if always:  # Mistral: a window, when given, is used by every layer
        active = True
    else:  # Qwen2/3: layers from max_window_layers on use it when use_sliding_window is set
        active = "sliding_attention" in types or (
            bool(hf.get("use_sliding_window")) and int(hf.get("max_window_layers", n_layer)) < n_layer
        )
    if active and int(window) < n_ctx:
        raise FamilyError(
            f"sliding_window = {window} is in effect and shorter than the {n_ctx} tokens analysed: "
            "sliding-window attention is not supported (set GPTVIZ_MAX_TOKENS to at most the window)"
        )


def _llama_like(
    hf: dict, *, qkv_bias: bool | None = None, qk_norm: bool = False, window_always: bool = False
) -> GPTConfig:
    """Llama's layout (and Mistral's, Qwen2's, Qwen3's): rotary, RMSNorm, SwiGLU, GQA."""
    _refuse_moe(hf)
    d = int(hf.get("hidden_size", 4096))
    n_head = int(hf.get("num_attention_heads", 32))
    n_layer = int(hf.get("num_hidden_layers", 32))
    head_dim = int(hf.get("head_dim") or d // n_head)
    attn_bias = bool(hf.get("attention_bias") or False)
    mlp_bias = bool(hf.get("mlp_bias") or False)
    if qkv_bias is None and attn_bias != mlp_bias:
        raise FamilyError(f"attention_bias = {attn_bias} with mlp_bias = {mlp_bias} is not supported (only equal)")
    if qkv_bias is not None and attn_bias:
        raise FamilyError("attention_bias = true on the output projection is not supported for this family")
    n_ctx = _context(hf, 2048)
    _refuse_short_window(hf, n_layer, n_ctx, window_always)
    return GPTConfig(
        vocab_size=int(hf.get("vocab_size", 32000)),
        n_layer=n_layer,
        n_head=n_head,
        n_kv_heads=int(hf.get("num_key_value_heads") or n_head),
        d_model=d,
        head_dim=head_dim if head_dim * n_head != d else None,
        d_mlp=int(hf.get("intermediate_size", 11008)),
        n_ctx=n_ctx,
        norm="pre",
        norm_kind="rmsnorm",
        ffn="gated",
        act=_activation(hf, "silu"),
        tie_weights=bool(hf.get("tie_word_embeddings", False)),
        unembed_bias=False,
        ln_eps=float(hf.get("rms_norm_eps", 1e-6)),
        bias=attn_bias if qkv_bias is None else False,
        qkv_bias=qkv_bias,
        qk_norm=qk_norm,
        **_rope(hf, head_dim, 10000.0),
    )


def _gpt_neox(hf: dict) -> GPTConfig:
    """Pythia: rotary on a quarter of each head, LayerNorm, plain GELU MLP, parallel blocks."""
    _refuse_moe(hf)
    d = int(hf.get("hidden_size", 6144))
    n_head = int(hf.get("num_attention_heads", 64))
    return GPTConfig(
        vocab_size=int(hf.get("vocab_size", 50432)),
        n_layer=int(hf.get("num_hidden_layers", 44)),
        n_head=n_head,
        d_model=d,
        d_mlp=int(hf.get("intermediate_size", 24576)),
        n_ctx=_context(hf, 2048),
        norm="pre",
        norm_kind="layernorm",
        ffn="mlp",
        act=_activation(hf, "gelu"),
        tie_weights=bool(hf.get("tie_word_embeddings", False)),
        unembed_bias=False,
        ln_eps=float(hf.get("layer_norm_eps", 1e-5)),
        bias=bool(hf.get("attention_bias", True)),
        parallel=bool(hf.get("use_parallel_residual", True)),
        **_rope(hf, d // n_head, 10000.0, default_partial=0.25),
    )


def _gpt2(hf: dict) -> GPTConfig:
    if hf.get("scale_attn_by_inverse_layer_idx") or hf.get("reorder_and_upcast_attn"):
        raise FamilyError(
            "GPT-2 attention variants (scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn) are not supported"
        )
    d = int(hf.get("n_embd", 768))
    return GPTConfig(
        vocab_size=int(hf.get("vocab_size", 50257)),
        n_layer=int(hf.get("n_layer", 12)),
        n_head=int(hf.get("n_head", 12)),
        d_model=d,
        d_mlp=int(hf.get("n_inner") or 4 * d),
        n_ctx=min(int(hf.get("n_positions", hf.get("n_ctx", 1024))), max_tokens()),
        pos="learned",
        norm="pre",
        act=_activation(hf, "gelu_new"),
        tie_weights=bool(hf.get("tie_word_embeddings", True)),
        ln_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        tokenizer="gpt2",
    )


# --- weight names ----------------------------------------------------------------------------


def _rename(
    state: State, cfg: GPTConfig, top: dict[str, str], layer_re: str, layer: dict[str, str], skip: str
) -> State:
    """Rename by two tables: top-level names, and names inside layer ``i`` (``{i}`` in ours).
    q/k/v pieces named ``q|k|v`` in ``layer`` are concatenated into ``attn.c_attn``. Names we
    do not know are kept as they are, so the strict load reports them instead of dropping them."""
    out: State = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if re.search(skip, key):
            continue
        if key in top:
            if top[key] == "unembed.weight" and cfg.tie_weights:
                continue  # the same matrix as the embedding
            out[top[key]] = value
            continue
        m = re.fullmatch(layer_re, key)
        ours = layer.get(m[2]) if m else None
        if ours is None:
            out[key] = value
        elif ours.startswith(("q.", "k.", "v.")):
            part, kind = ours.split(".")
            qkv.setdefault((m[1], kind), {})[part] = value
        else:
            out[f"blocks.{m[1]}.{ours}"] = value
    for (i, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise FamilyError(f"layer {i}: q/k/v {kind} incomplete (found {sorted(parts)})")
        out[f"blocks.{i}.attn.c_attn.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


_LLAMA_TOP = {
    "model.embed_tokens.weight": "embed.weight",
    "model.norm.weight": "ln_final.weight",
    "lm_head.weight": "unembed.weight",
}
_LLAMA_LAYER = {
    "input_layernorm.weight": "ln1.weight",
    "post_attention_layernorm.weight": "ln2.weight",
    **{f"self_attn.{p}_proj.{kind}": f"{p}.{kind}" for p in "qkv" for kind in ("weight", "bias")},
    "self_attn.o_proj.weight": "attn.c_proj.weight",
    "self_attn.o_proj.bias": "attn.c_proj.bias",
    "self_attn.q_norm.weight": "attn.q_norm.weight",
    "self_attn.k_norm.weight": "attn.k_norm.weight",
    **{
        f"mlp.{hf}_proj.{kind}": f"mlp.{ours}.{kind}"
        for hf, ours in (("gate", "c_gate"), ("up", "c_fc"), ("down", "c_proj"))
        for kind in ("weight", "bias")
    },
}


def _llama_weights(state: State, cfg: GPTConfig) -> State:
    return _rename(state, cfg, _LLAMA_TOP, r"model\.layers\.(\d+)\.(.+)", _LLAMA_LAYER, r"rotary_emb\.inv_freq$")


_NEOX_TOP = {
    "gpt_neox.embed_in.weight": "embed.weight",
    "gpt_neox.final_layer_norm.weight": "ln_final.weight",
    "gpt_neox.final_layer_norm.bias": "ln_final.bias",
    "embed_out.weight": "unembed.weight",
}
_NEOX_LAYER = {
    **{
        f"{hf}.{kind}": f"{ours}.{kind}"
        for hf, ours in (("input_layernorm", "ln1"), ("post_attention_layernorm", "ln2"))
        for kind in ("weight", "bias")
    },
    **{f"attention.query_key_value.{kind}": f"attn.c_attn.{kind}" for kind in ("weight", "bias")},
    **{f"attention.dense.{kind}": f"attn.c_proj.{kind}" for kind in ("weight", "bias")},
    **{f"mlp.dense_h_to_4h.{kind}": f"mlp.c_fc.{kind}" for kind in ("weight", "bias")},
    **{f"mlp.dense_4h_to_h.{kind}": f"mlp.c_proj.{kind}" for kind in ("weight", "bias")},
}


def _neox_weights(state: State, cfg: GPTConfig) -> State:
    """GPT-NeoX fuses q/k/v per head ([H, 3, Dh] rows); ours is [3, H, Dh]: reorder the rows."""
    out = _rename(
        state,
        cfg,
        _NEOX_TOP,
        r"gpt_neox\.layers\.(\d+)\.(.+)",
        _NEOX_LAYER,
        r"attention\.(bias|masked_bias|rotary_emb\.inv_freq)$",
    )
    H, Dh = cfg.n_head, cfg.d_head
    for key in [k for k in out if k.endswith(("attn.c_attn.weight", "attn.c_attn.bias"))]:
        w = out[key]
        out[key] = w.reshape(H, 3, Dh, *w.shape[1:]).transpose(0, 1).reshape(w.shape)
    return out


def _gpt2_weights(state: State, cfg: GPTConfig) -> State:
    """GPT-2's Conv1D weights are [in, out]: transposed. Learned positions are cut to ``n_ctx``."""
    out: State = {}
    for key, value in state.items():
        key = key.removeprefix("transformer.")
        if key.endswith((".attn.bias", ".attn.masked_bias")) or (key == "lm_head.weight" and cfg.tie_weights):
            continue  # causal-mask buffers; a tied lm_head is the embedding
        parts = key.split(".")
        if parts[0] == "h" and len(parts) > 3:
            sub = {"ln_1": "ln1", "ln_2": "ln2"}.get(parts[2], parts[2])
            rest = ".".join([sub, *parts[3:]])
            if rest.endswith("weight") and any(s in rest for s in ("c_attn", "c_proj", "c_fc")):
                value = value.t()
            out[f"blocks.{parts[1]}.{rest}"] = value
        elif key == "wpe.weight":
            out["pos_embed.weight"] = value[: cfg.n_ctx]
        else:
            name = {"wte.weight": "embed.weight", "lm_head.weight": "unembed.weight"}.get(key)
            if name is None and key.startswith("ln_f."):
                name = "ln_final." + key.removeprefix("ln_f.")
            out[name or key] = value
    return out


FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        Family("gpt2", "GPT-2, DistilGPT2", _gpt2, _gpt2_weights),
        Family("llama", "Llama 2/3/3.2, TinyLlama, SmolLM/SmolLM2", _llama_like, _llama_weights),
        Family("mistral", "Mistral (full attention)", lambda hf: _llama_like(hf, window_always=True), _llama_weights),
        Family("qwen2", "Qwen2, Qwen2.5", lambda hf: _llama_like(hf, qkv_bias=True), _llama_weights),
        Family("qwen3", "Qwen3 (dense)", lambda hf: _llama_like(hf, qk_norm=True), _llama_weights),
        Family("gpt_neox", "Pythia, GPT-NeoX", _gpt_neox, _neox_weights),
    )
}


def family_of(hf: dict[str, Any]) -> Family:
    """The family of a parsed ``config.json`` (by ``model_type``), or a ``FamilyError``."""
    kind = hf.get("model_type")
    if kind not in FAMILIES:
        supported = "; ".join(f"{k} ({f.examples})" for k, f in FAMILIES.items())
        raise FamilyError(f"model_type {kind!r} is not supported; supported: {supported}")
    return FAMILIES[kind]
