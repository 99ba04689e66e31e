"""How long a bundled model takes to train from scratch on this machine, when nothing else runs.

Times a number of real optimizer steps of each recipe (same model, batch, fused path as
`python -m gptviz train`) after a warm-up, and projects the full run, against the 20-minute
budget: the steps, plus the renamed-cast windows (re-tokenized on the fly), plus the
validation passes (plain, invented cast, and the weight average if the recipe keeps one, every
``eval_every`` steps) and the final test evaluation, each timed too. Then, side by side, what
the dropout changes bought: a step with dropout on the attention pattern and ``nn.Dropout``
(the first recipes) against the current one. Run it on an idle machine.

    python benchmarks/train_speed.py            # 40 timed steps per recipe
    python benchmarks/train_speed.py --quick    # 3 steps (CI smoke test)
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gptviz.model import GPT, Dropout
from gptviz.tokenizer import Tokenizer, get_tokenizer
from gptviz.train import RECIPES, TrainSpec
from gptviz.train_data import read_corpus, rename_speakers, speaker_names, split_text

BUDGET_MIN = 20.0


def seconds_per_step(model: GPT, batch: int, steps: int) -> float:
    """Mean wall time of one optimizer step (fused path, random tokens), after 3 warm-up steps."""
    cfg = model.cfg
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.n_ctx + 1))

    def step() -> None:
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
    return (time.perf_counter() - t0) / steps


def with_torch_dropout(model: GPT) -> GPT:
    """The same model with ``nn.Dropout`` (bernoulli masks) in place of gptviz's Dropout."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Dropout):
                setattr(parent, name, nn.Dropout(child.p))
    return model


def compare_dropout(steps: int) -> None:
    """gpt2-style's shape, side by side, interleaved: where a training step's time went."""
    spec = RECIPES["gpt2-style"]
    cfg = spec.config(get_tokenizer(spec.tokenizer_name)).replace(dropout=0.2)
    variants = {
        "dropout on the pattern too, nn.Dropout (the first recipes)": lambda: with_torch_dropout(
            GPT(cfg.replace(attn_dropout=None))
        ),
        "dropout on the pattern too, gptviz Dropout": lambda: GPT(cfg.replace(attn_dropout=None)),
        "no dropout on the pattern, gptviz Dropout (now)": lambda: GPT(cfg.replace(attn_dropout=0.0)),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(2):  # interleaved rounds: a noisy machine hits every variant alike
        for k, make in variants.items():
            torch.manual_seed(0)
            times[k].append(seconds_per_step(make().train(), spec.batch, steps))
    base = min(times[next(iter(variants))])
    print(f"\nstep time at {spec.name}'s shape (dropout 0.2), best of 2 interleaved rounds")
    print("| variant | s/step | vs first recipes |\n|---|---|---|")
    for k, ts in times.items():
        print(f"| {k} | {min(ts):.3f} | {min(ts) / base:.2f}x |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--recipes", nargs="*", default=list(RECIPES), help="which recipes (default: all)")
    ap.add_argument("--no-dropout-study", action="store_true", help="skip the dropout side-by-side")
    args = ap.parse_args()
    steps = 3 if args.quick else args.steps
    print(f"torch threads: {torch.get_num_threads()}")
    print("| recipe | parameters | s/step | tokens/s | projected run (min) | run / 20 min |\n|---|---|---|---|---|---|")
    for name in args.recipes:
        spec = RECIPES[name]
        tok = get_tokenizer(spec.tokenizer_name)
        cfg = spec.config(tok)
        torch.manual_seed(0)
        model = GPT(cfg).train()
        per = seconds_per_step(model, spec.batch, steps)
        minutes = (per * spec.steps + overheads(spec, model, tok)) / 60
        print(
            f"| {name} | {model.num_params():,} | {per:.3f} | {spec.batch * cfg.n_ctx / per:,.0f} | "
            f"{minutes:.1f} | {minutes / BUDGET_MIN:.2f} |"
        )
    if not args.no_dropout_study:
        compare_dropout(max(2, steps // 2))


def overheads(spec: TrainSpec, model: GPT, tok: Tokenizer) -> float:
    """Seconds a full run spends outside the optimizer steps (timed here, projected)."""
    train_text, val_text, test_text = split_text(read_corpus())
    cast = speaker_names(train_text)
    pool = spec.name_pool(cast)
    rng = random.Random(0)
    t0 = time.perf_counter()
    for _ in range(50):
        at = rng.randrange(len(train_text) - 8 * (spec.n_ctx + 1))
        tok.encode(rename_speakers(train_text[at : at + 8 * (spec.n_ctx + 1)], rng, pool, spec.name_smoothing))
    renaming = (time.perf_counter() - t0) / 50 * spec.batch * spec.rename_speakers * spec.steps
    ids = torch.tensor(tok.encode(val_text))
    n = (len(ids) - 1) // spec.n_ctx
    model.eval()
    with torch.no_grad():
        t0 = time.perf_counter()
        model(ids[: n * spec.n_ctx].view(n, spec.n_ctx), fused=True)
        val_pass = time.perf_counter() - t0
    model.train()
    passes = (3 if spec.ema else 2) * math.ceil(spec.steps / spec.eval_every)
    test_eval = val_pass * 2 * len(test_text) / len(val_text)  # windows overlap by half
    return renaming + passes * val_pass + test_eval


if __name__ == "__main__":
    main()
