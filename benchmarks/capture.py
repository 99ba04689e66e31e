"""Capture cost: gptviz.run against Hugging Face and TransformerLens, same weights, interleaved.

The reference is the fastest plain forward a user could run: Hugging Face GPT2LMHeadModel with
its default SDPA attention and no outputs requested. Every other method is reported as a ratio
to it, measured side by side in this one run.

    python benchmarks/capture.py            # GPT-2-small shape and the bundled shape, T up to 1024
    python benchmarks/capture.py --quick    # a small smoke run (CI)
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import hf_checkpoint, interleaved, table

import gptviz


def transformer_lens_runner(folder: Path, hf_model: torch.nn.Module):
    """TransformerLens 4's run_with_cache on the same weights, or None if it is not installed."""
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:
        return None
    bridge = TransformerBridge.boot_transformers(str(folder), hf_model=hf_model, tokenizer=None)
    bridge.eval()
    return lambda ids: bridge.run_with_cache(ids)


def methods(ours, hf_model, eager, tl, ids: torch.Tensor) -> dict:
    """The contenders on one input; gptviz.run gets the same token ids (no tokenizer cost)."""
    token_ids = ids[0].tolist()
    fns = {
        "hf_plain": lambda: hf_model(ids),
        "gptviz_run": lambda: gptviz.run(ours, precision="compact", token_ids=token_ids),
        "gptviz_full": lambda: gptviz.run(ours, precision="full", token_ids=token_ids),
        "ours_plain": lambda: ours(ids),
        "hf_outputs": lambda: eager(ids, output_attentions=True, output_hidden_states=True),
    }
    if tl is not None:
        fns["tl_cache"] = lambda: tl(ids)
    return fns


def bench_shape(name: str, folder: Path, hf_model, lengths: list[int], repeats: int) -> list[dict]:
    import transformers

    ours = gptviz.load_model(folder)
    eager = transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
    tl = transformer_lens_runner(folder, hf_model)
    rows = []
    for T in lengths:
        ids = torch.randint(0, ours.cfg.vocab_size, (1, T))
        fns = methods(ours, hf_model, eager, tl, ids)
        with torch.inference_mode():
            med = interleaved(fns, repeats)
        base = med["hf_plain"]
        row = {"shape": name, "T": T, "hf_plain_s": f"{base:.4f}"}
        row.update({f"{k}/hf": f"{v / base:.2f}x" for k, v in med.items() if k != "hf_plain"})
        rows.append(row)
        print(row, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny shapes, few repeats (a smoke test)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--lengths", type=int, nargs="*", help="GPT-2-small lengths only (default 16 128 512 1024 + bundled)"
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    shapes = []
    if args.quick:
        shapes.append(("tiny-gpt2", dict(n_layer=2, n_head=4, n_embd=64, n_positions=64), [16, 64], 2))
    elif args.lengths:
        shapes.append(("gpt2-small", {}, args.lengths, args.repeats))
    else:
        bundled = gptviz.load_model("bundled:gpt2-style").cfg
        shapes.append(("gpt2-small", {}, [16, 128, 512, 1024], args.repeats))
        shapes.append(
            (
                "bundled-shape",
                dict(
                    n_layer=bundled.n_layer,
                    n_head=bundled.n_head,
                    n_embd=bundled.d_model,
                    n_positions=bundled.n_ctx,
                    vocab_size=bundled.vocab_size,
                ),
                [16, 128, bundled.n_ctx],
                args.repeats * 4,
            )
        )
    rows = []
    for name, shape, lengths, repeats in shapes:
        folder, hf_model = hf_checkpoint(**shape)
        try:
            rows += bench_shape(name, folder, hf_model, lengths, repeats)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    cols = [
        "shape",
        "T",
        "hf_plain_s",
        "gptviz_run/hf",
        "gptviz_full/hf",
        "ours_plain/hf",
        "hf_outputs/hf",
        "tl_cache/hf",
    ]
    print()
    print(table(rows, cols))
    print("\nratios: median time / Hugging Face plain SDPA forward, same weights, interleaved runs")


if __name__ == "__main__":
    main()
