"""Generation with a KV cache vs recomputing the whole sequence for every new token.

A generating GPT needs, for each new token, only that token's query: the keys and values of the
earlier tokens do not change, so ``analysis.generation.CachedGeneration`` keeps them in a
``KVCache`` (a value passed through ``forward``) and runs one position per step, where
``generation.generate`` runs the whole prompt + continuation again. Both draw the same tokens
(checked here on every run, and in tests/test_kv_generation.py).

    python benchmarks/generation.py            # bundled model and GPT-2-small shape (random weights)
    python benchmarks/generation.py --quick    # bundled model only, few tokens (a smoke test)
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import hf_checkpoint, interleaved, table  # noqa: E402

import gptviz  # noqa: E402
from gptviz.analysis import generation as gen  # noqa: E402

LINE = "But, soft! what light through yonder window breaks? It is the east, and Juliet is the sun. "


def measure(name: str, spec: str, prompt_tokens: int, new_tokens: int, repeats: int) -> dict:
    model = gptviz.load_model(spec)
    tok = gptviz.get_tokenizer(model.cfg.tokenizer)
    ids = tok.encode(LINE * (prompt_tokens // 10 + 1))[:prompt_tokens]
    cached = gen.generate_cached(model, tok, ids, new_tokens, temperature=0.0)
    recomputed = gen.generate(model, tok, ids, new_tokens, temperature=0.0)
    if cached != recomputed:
        raise AssertionError(f"{name}: cached generation drew other tokens than recomputing")
    times = interleaved(
        {
            "recompute": lambda: gen.generate(model, tok, ids, new_tokens, temperature=0.0),
            "cached": lambda: gen.generate_cached(model, tok, ids, new_tokens, temperature=0.0),
        },
        repeats=repeats,
    )
    return {
        "model": name,
        "prompt": len(ids),
        "new_tokens": new_tokens,
        "recompute_s": f"{times['recompute']:.3f}",
        "cached_s": f"{times['cached']:.3f}",
        "recompute/cached": f"{times['recompute'] / times['cached']:.2f}",
        "positions_run_recompute": sum(len(ids) + s for s in range(new_tokens)),
        "positions_run_cached": len(ids) + new_tokens - 1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--prompt", type=int, default=64, help="prompt tokens")
    ap.add_argument("--new", type=int, default=64, help="tokens generated")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    models = [("bundled:gpt2-style", "bundled:gpt2-style")]
    folder = None
    rows = []
    try:
        if not args.quick:
            folder, _ = hf_checkpoint()
            models.append(("gpt2-small shape", str(folder)))
        for name, spec in models:
            new = 8 if args.quick else args.new
            rows.append(measure(name, spec, args.prompt, new, 1 if args.quick else args.repeats))
            print(rows[-1], flush=True)
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    cols = ["model", "prompt", "new_tokens", "recompute_s", "cached_s", "recompute/cached"]
    print()
    print(table(rows, [*cols, "positions_run_recompute", "positions_run_cached"]))
    print("\nrecompute/cached: how many times faster generation is with the KV cache (same tokens, checked)")


if __name__ == "__main__":
    main()
