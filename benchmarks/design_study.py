"""Which of today's design choices buy what on Tiny Shakespeare: short runs, validation only.

``llama-style`` (rotary positions, RMSNorm, SwiGLU, grouped-query attention) against itself
with one choice reverted to GPT-2's at a time, and against ``gpt2-style``: the same recipe,
data, seed and step count (600 by default, a short schedule of its own), two runs at a time
with one torch thread each. Reported: the best validation loss (nats/token, the number that
picks checkpoints) and the step time of each run. Test figures are not read here.

    python benchmarks/design_study.py              # 6 runs x 600 steps
    python benchmarks/design_study.py --steps 20   # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gptviz.train import RECIPES

BASE = RECIPES["llama-style"]
VARIANTS = {
    "llama-style": {},
    "learned positions instead of rotary": {"changes": {"pos": "learned"}},
    "LayerNorm instead of RMSNorm": {"changes": {"norm_kind": "layernorm"}},
    "GELU MLP (d_mlp 768) instead of SwiGLU": {"d_mlp": 768, "act": "gelu", "changes": {"ffn": "mlp"}},
    "4 K/V heads instead of 2 (multi-head)": {"n_kv_heads": None},
    "gpt2-style": "gpt2-style",
}


def spec_for(name: str, steps: int):
    change = VARIANTS[name]
    spec = RECIPES[change] if isinstance(change, str) else dataclasses.replace(BASE, **change)
    return dataclasses.replace(spec, name="study", steps=steps, snapshots=[], eval_every=min(200, steps))


def run_one(name: str, steps: int, out: Path) -> None:
    """Child process: train one variant with one thread, print its card's numbers as JSON."""
    import torch

    from gptviz.train import train

    torch.set_num_threads(1)
    card = train(spec_for(name, steps), out_dir=out, resume=False)
    hist = card.get("history", [])
    best = min(min(h["val_loss"], h.get("val_loss_ema", 1e9)) for h in hist)
    print("RESULT " + json.dumps({"name": name, "best_val": best, "wall_s": card.get("wall_time_s")}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--only", nargs="*", help="variant names (default: all)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_one(args.child, args.steps, Path(args.out))
        return
    names = args.only or list(VARIANTS)
    results, running = [], []
    with tempfile.TemporaryDirectory() as tmp:
        queue = list(enumerate(names))
        while queue or running:
            while queue and len(running) < args.parallel:
                i, name = queue.pop(0)
                out = Path(tmp) / str(i)  # one folder per run: two runs at once never share one
                cmd = [sys.executable, __file__, "--child", name, "--steps", str(args.steps), "--out", str(out)]
                running.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
            proc = running.pop(0)
            for line in proc.communicate()[0].splitlines():
                if line.startswith("RESULT "):
                    results.append(json.loads(line.removeprefix("RESULT ")))
                    print(line, flush=True)
    ref = next((r["best_val"] for r in results if r["name"] == "llama-style"), None)
    print(f"\n{args.steps} steps each, same seed and data; best validation loss (nats/token)")
    print("| variant | best val | vs llama-style | wall (s, 1 thread, 2 runs at once) |\n|---|---|---|---|")
    for r in results:
        diff = f"{r['best_val'] - ref:+.4f}" if ref is not None else "-"
        print(f"| {r['name']} | {r['best_val']:.4f} | {diff} | {r['wall_s']:.0f} |")


if __name__ == "__main__":
    main()
