"""Rotary position embedding (RoPE), taken apart for the positional-encoding page.

A rotary model adds no position vector. Instead, inside every attention layer, each query and
key head is cut into pairs of dimensions and each pair is turned by an angle proportional to
the token's position: pair ``i`` turns by ``position * freq[i]`` radians, the first pairs fast
(local order), the last ones slowly (long range). Because a dot product of two rotated vectors
only depends on the *difference* of their angles, q·k then depends on how far apart two tokens
are, not on where they are: the relative-position property this module measures on the real
q and k of a trace.

Pairs follow the model's "rotate half" layout (GPT-NeoX, Llama): pair ``i`` is dimensions
``(i, i + R/2)`` of the head, ``R`` = ``cfg.rot_dim``; dimensions past ``R`` (partial rotary,
GPT-NeoX) never turn. Everything is plain numpy from the config and the trace, so each number
can be checked against ``model.rotary`` and the trace's ``hook_rot_q`` / ``hook_rot_k``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gptviz.config import GPTConfig
from gptviz.model import rope_frequencies
from gptviz.trace import Trace


def _require_rotary(cfg: GPTConfig) -> None:
    if cfg.pos != "rotary":
        raise ValueError(f"this model's positions are {cfg.pos!r}, not rotary")


@dataclass(frozen=True)
class RotaryAngles:
    """The angle of every rotated pair at every position.

    ``freqs`` are the model's angular speeds (radians per position, after Llama 3's scaling when
    it has one); ``base_freqs`` the same rule without the scaling (``None`` when there is none),
    so a page can show what the scaling changed."""

    positions: np.ndarray  # [P] int
    freqs: np.ndarray  # [R/2] float64, radians per position
    base_freqs: np.ndarray | None  # [R/2], without rope_scaling (None: the model has none)
    rot_dim: int  # R: dimensions of each head that rotate
    d_head: int  # Dh: dimensions of each head (R < Dh: partial rotary)
    theta: float

    @property
    def angles(self) -> np.ndarray:
        """``[P, R/2]`` radians (not wrapped): position × frequency."""
        return np.outer(self.positions, self.freqs)

    @property
    def wavelengths(self) -> np.ndarray:
        """``[R/2]``: positions a pair needs for one full turn (2π / freq)."""
        return 2 * math.pi / self.freqs

    @property
    def n_pairs(self) -> int:
        return self.freqs.size

    @property
    def still_dims(self) -> range:
        """Dimensions of each head that never rotate (partial rotary): ``R .. Dh-1``."""
        return range(self.rot_dim, self.d_head)


def rotary_angles(cfg: GPTConfig, n: int) -> RotaryAngles:
    """Angles for positions ``0 .. n-1`` (at most the model's context)."""
    _require_rotary(cfg)
    n = max(1, min(int(n), cfg.n_ctx))
    freqs = rope_frequencies(cfg.rot_dim, cfg.rope_theta, cfg.rope_scaling).double().numpy()
    base = None
    if cfg.rope_scaling is not None:
        base = rope_frequencies(cfg.rot_dim, cfg.rope_theta, None).double().numpy()
    return RotaryAngles(np.arange(n), freqs, base, cfg.rot_dim, cfg.d_head, cfg.rope_theta)


def pair_dims(cfg: GPTConfig, pair: int) -> tuple[int, int]:
    """The two head dimensions that pair ``pair`` turns together: ``(pair, pair + R/2)``."""
    _require_rotary(cfg)
    half = cfg.rot_dim // 2
    if not 0 <= pair < half:
        raise IndexError(f"pair {pair} is outside 0..{half - 1}")
    return pair, pair + half


def rotate(x: np.ndarray, positions: np.ndarray | int, freqs: np.ndarray) -> np.ndarray:
    """Rotate vectors ``x [..., Dh]`` as the model does at ``positions`` (broadcast against
    ``x``'s leading axes): pair ``(i, i + R/2)`` turns by ``position * freqs[i]``, the rest stays."""
    x = np.asarray(x, dtype=np.float64)
    r = 2 * freqs.size
    ang = np.multiply.outer(np.asarray(positions, dtype=np.float64), freqs)  # [..., R/2]
    cos, sin = np.cos(ang), np.sin(ang)
    x1, x2 = x[..., : r // 2], x[..., r // 2 : r]
    return np.concatenate((x1 * cos - x2 * sin, x2 * cos + x1 * sin, x[..., r:]), -1)


@dataclass(frozen=True)
class PairRotation:
    """One query's pair of dimensions before and after its rotation by position."""

    layer: int
    head: int
    pos: int
    pair: int
    dims: tuple[int, int]
    before: np.ndarray  # [2]: (x_i, x_{i+R/2}) of hook_q
    after: np.ndarray  # [2]: the same of hook_rot_q
    angle: float  # radians: pos * freq[pair]
    wavelength: float  # positions per full turn of this pair


def query_pair(trace: Trace, layer: int, head: int, pos: int, pair: int) -> PairRotation:
    """Query ``head`` of the token at ``pos``: its pair ``pair`` as the trace recorded it before
    (``hook_q``) and after (``hook_rot_q``) the rotation, and the angle between them."""
    cfg = trace.config
    dims = pair_dims(cfg, pair)
    q = np.asarray(trace["q", layer][pos, head], dtype=np.float64)
    rq = np.asarray(trace["rot_q", layer][pos, head], dtype=np.float64)
    freqs = rotary_angles(cfg, 1).freqs
    angle = float(pos * freqs[pair])
    return PairRotation(layer, head, pos, pair, dims, q[list(dims)], rq[list(dims)], angle, 2 * math.pi / freqs[pair])


@dataclass(frozen=True)
class RelativeScores:
    """q·k/√Dh of one fixed query vector and one fixed key vector, placed ``offset`` positions
    apart, for several absolute starting positions: the curves coincide (RoPE makes the score
    depend on the distance only). ``actual_*`` is the pair as it sits in the prompt."""

    layer: int
    head: int
    q_pos: int  # the token whose (unrotated) query is used
    k_pos: int  # the token whose (unrotated) key is used
    offsets: np.ndarray  # [N] int, query position − key position
    starts: tuple[int, ...]  # key positions the pair is placed at
    scores: np.ndarray  # [len(starts), N]
    unrotated: float  # q·k/√Dh with no rotation at all (what offset 0 gives too)
    actual_offset: int
    actual_score: float  # the trace's own score of q_pos looking at k_pos


def relative_span(cfg: GPTConfig, n_tokens: int, offset: int = 0) -> tuple[int, tuple[int, int]]:
    """Offsets and starts for ``relative_scores`` that stay inside the context where it allows:
    up to 256 offsets (at least ``offset``, the real pair's distance), the key at 0 and at a
    second start, 100 where the context leaves room, so both placements are real positions."""
    span = max(offset, min(max(64, 2 * n_tokens), 256, cfg.n_ctx // 2))
    return span, (0, max(1, min(100, cfg.n_ctx - 1 - span)))


def relative_scores(
    trace: Trace,
    layer: int,
    head: int,
    q_pos: int,
    k_pos: int,
    max_offset: int = 64,
    starts: tuple[int, ...] = (0, 100),
) -> RelativeScores:
    """Take the real query of ``q_pos`` and the real key of ``k_pos`` (before rotation; query
    ``head`` and the K/V head it shares), put the key at position ``s`` and the query at
    ``s + d`` for every offset ``d`` in ``0 .. max_offset`` and every start ``s``, and score them
    as the model does. ``actual_score`` is the trace's score for the real pair (offset
    ``q_pos - k_pos``): it lies on the curves."""
    cfg = trace.config
    _require_rotary(cfg)
    kh = head // (cfg.n_head // cfg.kv_heads)
    q = np.asarray(trace["q", layer][q_pos, head], dtype=np.float64)
    k = np.asarray(trace["k", layer][k_pos, kh], dtype=np.float64)
    freqs = rotary_angles(cfg, 1).freqs
    offsets = np.arange(0, max(1, int(max_offset)) + 1)
    scale = 1.0 / math.sqrt(cfg.d_head)
    rows = []
    for s in starts:
        rq = rotate(np.broadcast_to(q, (offsets.size, q.size)), s + offsets, freqs)
        rk = rotate(k, s, freqs)
        rows.append(rq @ rk * scale)
    actual = float(trace["scores", layer][head, q_pos, k_pos])
    return RelativeScores(
        layer, head, q_pos, k_pos, offsets, tuple(starts), np.stack(rows), float(q @ k * scale), q_pos - k_pos, actual
    )
