"""The information-flow graph: which routes does information take to a prediction?

After Ferrando & Voita (2024, "Information Flow Routes: Automatically Interpreting Language
Models at Scale"), as in LLM Transparency Tool. Every sum the model computes in its residual
stream is split into the contributions that enter it:

- attention, at layer ``l`` and position ``i``: ``y = resid_pre[i] + attn_out[i]``, whose
  contributions are the residual ``resid_pre[i]``, one vector per (head ``h``, source ``j``),
  ``e = A_h[i, j] · (v_j W_O_h^T)``, and the output bias (what is left: ``attn_out[i] − Σ e``);
- feed-forward: ``y = resid_mid[i] + mlp_out[i]``, contributions ``resid_mid[i]`` and ``mlp_out[i]``.

A contribution ``e`` to a sum ``y`` weighs its *proximity* ``max(0, ‖y‖₁ − ‖y − e‖₁)``
(how much closer to ``y`` adding ``e`` gets), divided by the proximities of all contributions
to that sum, so the weights into each sum add up to 1. The sums are taken before a post-LN
model's LayerNorm (proportions are what matters, and the norm rescales them all alike).

Nodes are ``("resid", l, i)``, the residual stream entering layer ``l`` at position ``i``
(``l = n_layer``: the output), and ``("mid", l, i)``, the stream between layer ``l``'s
attention and feed-forward. A GPT-NeoX parallel block's feed-forward reads ``("resid", l, i)``.

The per-(head, source, target) vectors are large (≈0.6 GB per layer at GPT-2-small shape and
128 tokens), so they are computed one layer and a block of query rows at a time and reduced to
weights at once; nothing of that size is ever kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from gptviz.hooks import hook_name, hooks

if TYPE_CHECKING:
    import pandas as pd

    from gptviz.model import GPT

MAX_FLOW_TOKENS = 128  # the longest prompt one request may analyse (the page's token cap)
_CHUNK_ELEMENTS = 2**20  # floats in one block of [rows, T, D] contribution vectors (4 MB: in cache)
COLUMNS = ["kind", "layer", "head", "src_stage", "src_layer", "src_pos", "dst_stage", "dst_layer", "dst_pos", "weight"]


class FlowError(ValueError):
    """A flow request that cannot run as asked (its message says why, for the page)."""


def proximity(e: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``max(0, ‖y‖₁ − ‖y − e‖₁)`` over the last axis (broadcasting ``e`` against ``y``)."""
    return (y.abs().sum(-1) - (y - e).abs().sum(-1)).clamp_min(0.0)


def _w_o(model: GPT, layer: int) -> torch.Tensor:
    """The output projection ``W_O`` of layer ``layer``, ``[D, H*Dh]``."""
    return model.blocks[layer].attn.c_proj.weight


def head_outputs(model: GPT, v: torch.Tensor, layer: int) -> torch.Tensor:
    """Each head's output per source position before the pattern weights it:
    ``v_j W_O_h^T``, ``[H, T, D]``, from ``hook_v`` ``[T, K, Dh]`` (query head ``h`` reads
    K/V head ``h // (H / K)``)."""
    cfg = model.cfg
    H = cfg.n_head
    K = getattr(cfg, "n_kv_heads", None) or H
    Dh = v.shape[-1]
    W = _w_o(model, layer).to(v.dtype)  # [D, H*Dh]
    kv = v[:, torch.arange(H, device=v.device) // (H // K)]  # [T, H, Dh]
    return torch.einsum("thd,mhd->htm", kv, W.view(W.shape[0], H, Dh))


def head_contributions(model: GPT, ids: Sequence[int], layer: int) -> torch.Tensor:
    """Every (head, target, source) contribution to layer ``layer``'s attention output,
    ``[H, T, T, D]`` (``[h, i, j]``: head ``h`` moving position ``j`` into ``i``). Small prompts
    only (notebooks, tests): ``information_flow`` never builds this whole."""
    acts = _capture(model, ids)
    with torch.no_grad():
        return acts["pattern", layer][..., None] * head_outputs(model, acts["v", layer], layer)[:, None]


class _Acts(dict):
    def __getitem__(self, key):
        return super().__getitem__(hook_name(*key))


def _capture(model: GPT, ids: Sequence[int]) -> _Acts:
    kinds = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "pattern", "v")
    names = {hook_name(k, layer) for k in kinds for layer in range(model.cfg.n_layer)}
    acts = _Acts()

    def grab(x: torch.Tensor, name: str) -> None:
        acts[name] = x[0].detach().float()

    device = next(model.parameters()).device
    with torch.no_grad(), hooks(model, [(lambda n: n in names, grab)]):
        model(torch.tensor([list(ids)], device=device))
    return acts


@dataclass(frozen=True)
class FlowGraph:
    """Edge weights of the whole graph, as arrays (each sum's weights add up to 1).

    ``attn[l, h, i, j]``: head ``h`` carrying ``("resid", l, j)`` into ``("mid", l, i)``;
    ``attn_resid[l, i]`` and ``attn_bias[l, i]``: the residual and the output bias into that
    sum; ``mlp[l, i]`` and ``mlp_resid[l, i]``: the feed-forward and the residual into
    ``("resid", l + 1, i)``. ``parallel``: the feed-forward reads ``("resid", l, i)``.
    """

    attn: np.ndarray
    attn_resid: np.ndarray
    attn_bias: np.ndarray
    mlp: np.ndarray
    mlp_resid: np.ndarray
    parallel: bool = False

    @property
    def n_layer(self) -> int:
        return self.attn.shape[0]

    @property
    def n_head(self) -> int:
        return self.attn.shape[1]

    @property
    def n_tokens(self) -> int:
        return self.attn.shape[2]

    def edges(self, tau: float = 0.0) -> pd.DataFrame:
        """Every edge of the graph with weight ``>= tau`` (``tau = 0``: every edge there is:
        each head from every position to itself and later ones, each residual, each
        feed-forward), one row each, columns ``COLUMNS``."""
        keep = np.ones((self.n_layer, self.n_tokens), dtype=bool)
        return self._frame(keep, keep, tau)

    def graph(self, pos: int = -1, tau: float = 0.0) -> pd.DataFrame:
        """The edges that carry information to the prediction at ``pos``: walking back from
        ``("resid", n_layer, pos)``, an edge is kept if its weight is ``>= tau`` and its
        target was reached; its source is then reached (LLM Transparency Tool's pruning)."""
        L, T = self.n_layer, self.n_tokens
        pos = self._pos(pos)
        reach_resid = np.zeros((L + 1, T), dtype=bool)
        reach_resid[L, pos] = True
        reach_mid = np.zeros((L, T), dtype=bool)
        for layer in range(L - 1, -1, -1):
            top = reach_resid[layer + 1]
            res, ffn = top & (self.mlp_resid[layer] >= tau), top & (self.mlp[layer] >= tau)
            reach_mid[layer] = res | (ffn if not self.parallel else False)
            heads = (self.attn[layer] >= tau) & reach_mid[layer][None, :, None] & _causal(T)[None]
            reach_resid[layer] = heads.any(axis=(0, 1)) | (reach_mid[layer] & (self.attn_resid[layer] >= tau))
            if self.parallel:
                reach_resid[layer] |= ffn
        return self._frame(reach_mid, reach_resid[1:], tau)

    def _frame(self, mid: np.ndarray, top: np.ndarray, tau: float) -> pd.DataFrame:
        """Edges with weight ``>= tau`` into the reached ``mid[l, i]`` and ``top[l, i]`` (the
        node ``("resid", l + 1, i)``)."""
        import pandas as pd

        L, H, T = self.n_layer, self.n_head, self.n_tokens
        parts = []
        lh = np.broadcast_to(np.arange(L)[:, None, None, None], self.attn.shape)
        hh = np.broadcast_to(np.arange(H)[None, :, None, None], self.attn.shape)
        ii = np.broadcast_to(np.arange(T)[None, None, :, None], self.attn.shape)
        jj = np.broadcast_to(np.arange(T)[None, None, None, :], self.attn.shape)
        sel = (self.attn >= tau) & mid[:, None, :, None] & _causal(T)[None, None]
        parts.append(
            _rows("head", lh[sel], hh[sel], "resid", lh[sel], jj[sel], "mid", lh[sel], ii[sel], self.attn[sel])
        )
        ll, pp = np.indices((L, T))
        none = np.full(L * T, -1)
        for kind, w, reached, src, dst, dst_off in (
            ("resid", self.attn_resid, mid, "resid", "mid", 0),
            ("resid", self.mlp_resid, top, "mid", "resid", 1),
            ("mlp", self.mlp, top, "resid" if self.parallel else "mid", "resid", 1),
        ):
            s = ((w >= tau) & reached).ravel()
            parts.append(
                _rows(kind, ll.ravel()[s], none[s], src, ll.ravel()[s], pp.ravel()[s], dst,
                      ll.ravel()[s] + dst_off, pp.ravel()[s], w.ravel()[s])
            )  # fmt: skip
        df = pd.concat(parts, ignore_index=True)
        return df.sort_values(["dst_layer", "dst_stage", "dst_pos", "weight"], ascending=[False, True, True, False],
                              ignore_index=True)  # fmt: skip

    def strongest_path(self, pos: int = -1) -> pd.DataFrame:
        """The route from an input token to the prediction at ``pos`` whose edge weights have
        the largest product (one row per edge, from the input up), by dynamic programming over
        the layers (the graph is a layered DAG)."""
        import pandas as pd

        L, T = self.n_layer, self.n_tokens
        pos = self._pos(pos)
        best = np.full(T, -np.inf)  # log-product from ("resid", layer + 1, i) up to the output
        best[pos] = 0.0
        back: list[tuple] = []  # per layer: how each resid / mid node continues upward
        with np.errstate(divide="ignore"):
            for layer in range(L - 1, -1, -1):
                log_res, log_ffn = np.log(self.mlp_resid[layer]), np.log(self.mlp[layer])
                if self.parallel:
                    mid = best + log_res
                    mid_via = np.full(T, "resid", dtype=object)
                else:
                    use_ffn = log_ffn > log_res
                    mid = best + np.where(use_ffn, log_ffn, log_res)
                    mid_via = np.where(use_ffn, "mlp", "resid")
                heads = np.log(self.attn[layer]) + mid[None, :, None]  # [H, i, j]
                heads = np.where(_causal(T)[None], heads, -np.inf)
                flat = heads.reshape(-1, T)
                arg = flat.argmax(axis=0)  # per source j: the best (head, target)
                via_head = flat[arg, np.arange(T)]
                resid = mid + np.log(self.attn_resid[layer])
                cand = [via_head, resid]
                if self.parallel:
                    cand.append(best + log_ffn)
                choice = np.argmax(np.stack(cand), axis=0)
                new = np.max(np.stack(cand), axis=0)
                back.append((layer, arg, choice, mid_via))
                best = new
        start = int(np.argmax(best))
        if not np.isfinite(best[start]):
            return pd.DataFrame(columns=COLUMNS)
        rows, i = [], start
        for layer, arg, choice, mid_via in reversed(back):
            c = int(choice[i])
            if c == 2:  # parallel feed-forward straight to the next layer
                rows.append(("mlp", layer, -1, "resid", layer, i, "resid", layer + 1, i, self.mlp[layer, i]))
                continue
            if c == 0:
                h, target = divmod(int(arg[i]), T)
                rows.append(("head", layer, h, "resid", layer, i, "mid", layer, target, self.attn[layer, h, target, i]))
                i = target
            else:
                rows.append(("resid", layer, -1, "resid", layer, i, "mid", layer, i, self.attn_resid[layer, i]))
            kind = mid_via[i]
            w = self.mlp[layer, i] if kind == "mlp" else self.mlp_resid[layer, i]
            rows.append((kind, layer, -1, "mid", layer, i, "resid", layer + 1, i, w))
        return pd.DataFrame(rows, columns=COLUMNS)

    def _pos(self, pos: int) -> int:
        if not -self.n_tokens <= pos < self.n_tokens:
            raise FlowError(f"position {pos} is outside the prompt ({self.n_tokens} tokens)")
        return pos % self.n_tokens


def _head_proximities(A: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``proximity(A[h, i, j] · out[h, j], y[i])`` for every head ``h``, target ``i`` and
    source ``j``, ``[H, T, T]``, without ever holding the ``[H, T, T, D]`` contributions.

    Why it is shaped so (0.1-0.2x the time of a plain block loop at GPT-2-small shape and
    128 tokens; ``benchmarks/patching.py`` prints both): a block of ``_CHUNK_ELEMENTS`` stays
    in the CPU's cache from ``y − A·out`` to its L1 norm (taken in place); sources after the
    block's last row are skipped, since their pattern weight is zero (causal) and their
    proximity exactly 0. At tiny shapes the loop's overhead dominates either way.
    """
    H, T, D = out.shape
    prox = torch.zeros(H, T, T, device=y.device)
    y_norm = y.abs().sum(-1)  # [T]
    rows = max(1, _CHUNK_ELEMENTS // max(1, T * D))
    for i0 in range(0, T, rows):
        i1 = min(T, i0 + rows)
        for h in range(H):
            rest = y[i0:i1, None] - A[h, i0:i1, :i1, None] * out[h, None, :i1]  # y − e, [rows, i1, D]
            near = y_norm[i0:i1, None] - rest.abs_().sum(-1)  # [rows, i1]
            prox[h, i0:i1, :i1] = near.clamp_min_(0.0)
    return prox.tril_()  # later sources: 0 by the mask, not by two sums' rounding agreeing


def _causal(T: int) -> np.ndarray:
    """``[i, j]`` True where position ``i`` may read position ``j`` (``j <= i``)."""
    return np.tril(np.ones((T, T), dtype=bool))


def _rows(kind, layer, head, src_stage, src_layer, src_pos, dst_stage, dst_layer, dst_pos, weight) -> pd.DataFrame:
    import pandas as pd

    n = len(weight)
    return pd.DataFrame(
        {
            "kind": np.full(n, kind, dtype=object), "layer": np.asarray(layer), "head": np.asarray(head),
            "src_stage": np.full(n, src_stage, dtype=object), "src_layer": np.asarray(src_layer),
            "src_pos": np.asarray(src_pos), "dst_stage": np.full(n, dst_stage, dtype=object),
            "dst_layer": np.asarray(dst_layer), "dst_pos": np.asarray(dst_pos), "weight": np.asarray(weight),
        }
    )  # fmt: skip


def information_flow(
    model: GPT,
    ids: Sequence[int],
    progress: Callable[[int, int], None] | None = None,
    max_tokens: int = MAX_FLOW_TOKENS,
) -> FlowGraph:
    """The weights of every edge of the flow graph of one prompt (see the module).

    One forward pass captures each layer's residual stream, pattern and values; then, layer
    by layer and a block of query rows at a time, the (head, source) contributions are built,
    reduced to proximities at once, and dropped. ``progress(done, n_layer)`` after each layer.
    """
    cfg = model.cfg
    T = len(ids)
    if T == 0:
        raise FlowError("the prompt has no tokens")
    if T > max_tokens:
        raise FlowError(f"the prompt has {T} tokens; the flow graph takes at most {max_tokens}")
    acts = _capture(model, ids)
    L, H = cfg.n_layer, cfg.n_head
    attn = np.zeros((L, H, T, T), dtype=np.float32)
    attn_resid, attn_bias = np.zeros((L, T), np.float32), np.zeros((L, T), np.float32)
    mlp, mlp_resid = np.zeros((L, T), np.float32), np.zeros((L, T), np.float32)
    with torch.no_grad():
        for layer in range(L):
            x, a_out = acts["resid_pre", layer], acts["attn_out", layer]  # [T, D]
            y = x + a_out
            A = acts["pattern", layer]  # [H, T, T]
            out = head_outputs(model, acts["v", layer], layer).float()  # [H, T, D]
            prox = _head_proximities(A, out, y)
            bias = a_out - torch.einsum("hij,hjd->id", A, out)  # what Σ_h Σ_j e leaves: the bias
            p_res, p_bias = proximity(x, y), proximity(bias, y)
            z = (prox.sum(dim=(0, 2)) + p_res + p_bias).clamp_min(1e-30)
            attn[layer] = (prox / z[None, :, None]).cpu().numpy()
            attn_resid[layer], attn_bias[layer] = (p_res / z).cpu().numpy(), (p_bias / z).cpu().numpy()
            mid, m_out = acts["resid_mid", layer], acts["mlp_out", layer]
            y2 = mid + m_out
            q_res, q_mlp = proximity(mid, y2), proximity(m_out, y2)
            z2 = (q_res + q_mlp).clamp_min(1e-30)
            mlp_resid[layer], mlp[layer] = (q_res / z2).cpu().numpy(), (q_mlp / z2).cpu().numpy()
            if progress is not None:
                progress(layer + 1, L)
    return FlowGraph(attn, attn_resid, attn_bias, mlp, mlp_resid, bool(getattr(cfg, "parallel", False)))
