"""How long a bundled model takes to train from scratch on this machine, when nothing else runs.

Times a number of real optimizer steps of each recipe (same model, batch, fused path as
`python -m gptviz train`) after a warm-up, and projects the full run, against the 20-minute
budget. Run it on an idle machine.

    python benchmarks/train_speed.py            # 40 timed steps per recipe
    python benchmarks/train_speed.py --quick    # 3 steps (CI smoke test)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gptviz.model import GPT
from gptviz.tokenizer import get_tokenizer
from gptviz.train import RECIPES

BUDGET_MIN = 20.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    steps = 3 if args.quick else args.steps
    print(f"torch threads: {torch.get_num_threads()}")
    print("| recipe | parameters | s/step | tokens/s | projected run (min) | run / 20 min |\n|---|---|---|---|---|---|")
    for name, spec in RECIPES.items():
        cfg = spec.config(get_tokenizer(spec.tokenizer_name))
        torch.manual_seed(0)
        model = GPT(cfg).train()
        opt = torch.optim.AdamW(model.parameters(), lr=spec.lr)
        x = torch.randint(0, cfg.vocab_size, (spec.batch, cfg.n_ctx + 1))

        def step(model=model, opt=opt, x=x) -> None:
            loss = F.cross_entropy(model(x[:, :-1], fused=True).flatten(0, 1), x[:, 1:].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        for _ in range(3):
            step()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        per = (time.perf_counter() - t0) / steps
        minutes = per * spec.steps / 60 * 1.05  # +5% for periodic validation and saving
        print(
            f"| {name} | {model.num_params():,} | {per:.3f} | {spec.batch * cfg.n_ctx / per:,.0f} | "
            f"{minutes:.1f} | {minutes / BUDGET_MIN:.2f} |"
        )


if __name__ == "__main__":
    main()
