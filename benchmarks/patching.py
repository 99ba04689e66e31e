"""Research tools' cost, each as seconds and as a ratio to one plain forward pass of the same shape.

Issue 20's bars (CPU):
- patching every (layer, position) of the residual stream, 20-token pair: <= 0.3 s bundled,
  <= 6 s at GPT-2-small shape, and <= 0.5x patching one at a time (printed side by side);
- every (layer, head, position) at GPT-2-small shape, 20 tokens (2,880 patches): <= 60 s;
- integrated gradients, 64 steps, GPT-2-small shape, T = 20: <= 3 s;
- the information-flow graph: <= 2 s bundled, <= 20 s GPT-2-small shape at T = 64.

    python benchmarks/patching.py            # the bundled model and GPT-2-small shape (random weights)
    python benchmarks/patching.py --quick    # a tiny shape, once: a smoke run of the script itself
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved, table

import gptviz
from gptviz.analysis import attribution as at
from gptviz.analysis import flow as fl
from gptviz.analysis import patching as pt
from gptviz.config import preset
from gptviz.model import GPT


def seconds(fn: Callable[[], object], repeats: int) -> float:
    """The best of ``repeats`` runs (after one warm-up): the least disturbed measurement."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def pair(vocab: int, T: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """A random prompt of ``T`` tokens and the same with one token (a "name") replaced."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, vocab, (T,), generator=g).tolist()
    corrupt = list(clean)
    corrupt[T // 3] = (clean[T // 3] + 1) % vocab
    return clean, corrupt


def measure(name: str, model: GPT, T: int, T_flow: int, repeats: int, heads: bool, bars: dict) -> list[dict]:
    cfg = model.cfg
    clean, corrupt = pair(cfg.vocab_size, T)
    metric = pt.default_metric(model, clean, corrupt)
    ids = torch.tensor([clean])
    one = seconds(lambda: pt._forward(model, ids), repeats)
    rows = [{"model": name, "what": f"one forward, T={T}", "seconds": f"{one:.4f}", "x forward": "1.0"}]

    def row(what: str, s: float, bar: float | None = None, extra: str = "") -> None:
        ok = "" if bar is None else ("yes" if s <= bar else "NO")
        rows.append({"model": name, "what": what, "seconds": f"{s:.3f}", "x forward": f"{s / one:.1f}",
                     "bar (s)": "" if bar is None else bar, "within": ok, "note": extra})  # fmt: skip

    batched = seconds(lambda: pt.patch(model, clean, corrupt, "resid_pre", metric), repeats)
    single = seconds(lambda: pt.patch(model, clean, corrupt, "resid_pre", metric, batch_size=1), max(1, repeats // 2))
    n = cfg.n_layer * T
    row(f"residual, every (layer, position): {n} patches, batched", batched, bars.get("resid"),
        f"{batched / single:.2f}x one at a time (bar <= 0.5x)")  # fmt: skip
    row(f"residual, every (layer, position): {n} patches, one at a time", single)
    row(
        "attribution patching, residual",
        seconds(lambda: pt.attribution_patching(model, clean, corrupt, "resid_pre", metric), repeats),
    )
    if heads:
        n = cfg.n_layer * cfg.n_head * T
        s = seconds(lambda: pt.patch(model, clean, corrupt, "head_pos", metric), 1)
        row(f"every (layer, head, position): {n} patches", s, bars.get("head_pos"))
    s = seconds(lambda: at.integrated_gradients(model, clean, metric.answer, steps=64), repeats)
    row(f"integrated gradients, 64 steps, T={T}", s, bars.get("ig"))
    flow_ids = pair(cfg.vocab_size, T_flow)[0]
    s = seconds(lambda: fl.information_flow(model, flow_ids), max(1, repeats // 2))
    row(f"information flow, T={T_flow}", s, bars.get("flow"))
    T_page = min(fl.MAX_FLOW_TOKENS, cfg.n_ctx)
    page_ids = pair(cfg.vocab_size, T_page)[0]
    s = seconds(lambda: fl.information_flow(model, page_ids), max(1, repeats // 2))
    row(f"information flow, T={T_page} (the page's cap)", s)
    acts = fl._capture(model, page_ids)
    layers = [(acts["pattern", i], fl.head_outputs(model, acts["v", i], i).float(),
               acts["resid_pre", i] + acts["attn_out", i]) for i in range(cfg.n_layer)]  # fmt: skip
    both = interleaved({"fast": lambda: [fl._head_proximities(*a) for a in layers],
                        "plain": lambda: [plain_head_proximities(*a) for a in layers]}, max(3, repeats))  # fmt: skip
    row(f"flow: head proximities, every layer, T={T_page}", both["fast"], None,
        f"{both['fast'] / both['plain']:.2f}x the plain block loop ({both['plain']:.2f} s), "
        "medians, interleaved")  # fmt: skip
    return rows


def plain_head_proximities(A: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The reference for ``flow._head_proximities``: per head, blocks of 64 MB contribution
    vectors ``e = A·out`` over every source (causal zeros included), then ``proximity(e, y)``
    (what gptviz computed before 2026-12-06)."""
    H, T, D = out.shape
    prox = torch.zeros(H, T, T)
    rows = max(1, 2**24 // (T * D))
    for h in range(H):
        for i0 in range(0, T, rows):
            i1 = min(T, i0 + rows)
            prox[h, i0:i1] = fl.proximity(A[h, i0:i1, :, None] * out[h][None], y[i0:i1, None])
    return prox


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a tiny shape, once (checks the script, not the bars)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = []
    if args.quick:
        model = GPT(preset("gpt2", n_layer=2, n_head=4, d_model=64, d_mlp=256, n_ctx=64, vocab_size=1000)).eval()
        rows += measure("tiny (smoke run)", model, 20, 32, 1, True, {})
    else:
        bundled = gptviz.load_model("bundled:gpt2-style").eval()
        rows += measure("bundled:gpt2-style", bundled, 20, 64, args.repeats, True, {"resid": 0.3, "flow": 2.0})
        small = GPT(preset("gpt2")).eval()
        rows += measure("GPT-2 small shape", small, 20, 64, args.repeats, True,
                        {"resid": 6.0, "head_pos": 60.0, "ig": 3.0, "flow": 20.0})  # fmt: skip
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(table(rows, ["model", "what", "seconds", "x forward", "bar (s)", "within", "note"]))


if __name__ == "__main__":
    main()
