"""One command line for gptviz: ``trace``, ``app``, ``train`` and ``eval`` (``--help`` on each)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


def _cmd_train(args: argparse.Namespace) -> int:
    from gptviz.checkpoints import ASSETS
    from gptviz.train import RECIPES, train

    spec = RECIPES[args.recipe]
    changes = {k: v for k, v in {"steps": args.steps, "seed": args.seed}.items() if v is not None}
    spec = dataclasses.replace(spec, **changes)
    card = train(spec, Path(args.out) if args.out else ASSETS, data=args.data, resume=not args.no_resume)
    print(
        json.dumps(
            {k: card[k] for k in ("name", "parameters", "best_val_loss_nats", "test_bits_per_byte", "wall_time_s")}
        )
    )
    return 0


def _cmd_trace(args: argparse.Namespace) -> int:
    import numpy as np

    import gptviz
    from gptviz.tokenizer import get_tokenizer

    try:
        model = gptviz.load_model(args.model)
        trace = gptviz.run(model, args.text)
    except (gptviz.CheckpointError, gptviz.EmptyPromptError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    tok = get_tokenizer(model.cfg.tokenizer)
    cfg = model.cfg
    print(f"model: {model.name} ({model.num_params():,} parameters, {cfg.n_layer} layers x {cfg.n_head} heads)")
    if trace.truncated:
        print(f"note: {trace.n_input_tokens} tokens, truncated to the context of {cfg.n_ctx}")
    print(f"{'pos':>4}  {'id':>6}  token")
    for pos, (i, s) in enumerate(zip(trace.ids.tolist(), trace.tokens, strict=True)):
        print(f"{pos:>4}  {i:>6}  {s!r}")
    probs = trace.probs()
    top = np.argsort(-probs)[: args.top]
    print(f"top {args.top} next tokens:")
    for i in top:
        print(f"  {probs[i]:7.2%}  {int(i):>6}  {tok.token_str(int(i))!r}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import gptviz
    from gptviz.tokenizer import get_tokenizer
    from gptviz.train import bits_per_byte, read_corpus, split_text

    model = gptviz.load_model(args.model)
    test = split_text(read_corpus(args.data))[2]
    bpb = bits_per_byte(model, get_tokenizer(model.cfg.tokenizer), test)
    print(json.dumps({"model": model.name, "test_bytes": len(test.encode()), "test_bits_per_byte": round(bpb, 4)}))
    return 0


def _cmd_app(args: argparse.Namespace) -> int:
    from gptviz.launch import run_app

    return run_app(args.streamlit_args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gptviz", description="See inside a GPT, stage by stage.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a bundled model on Tiny Shakespeare")
    p.add_argument("recipe", choices=["gpt2-style", "seed"], help="which bundled model to train")
    p.add_argument("--steps", type=int, help="optimizer steps (default: the recipe's)")
    p.add_argument("--seed", type=int, help="random seed (default: the recipe's)")
    p.add_argument("--data", help="corpus path (default: ../shared/data/tinyshakespeare.txt)")
    p.add_argument("--out", help="output folder (default: the package's assets folder)")
    p.add_argument("--no-resume", action="store_true", help="start over even if a run was interrupted")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("trace", help="tokenize a prompt, run the model, print tokens and top next tokens")
    p.add_argument("text", help="the prompt")
    p.add_argument("--model", default="bundled:gpt2-style", help="bundled:NAME, a folder, a .safetensors file or gpt2")
    p.add_argument("--top", type=int, default=5, help="how many next-token candidates to print")
    p.set_defaults(func=_cmd_trace)

    p = sub.add_parser("eval", help="test-split bits per byte of a model on Tiny Shakespeare")
    p.add_argument("--model", default="bundled:gpt2-style")
    p.add_argument("--data", help="corpus path (default: ../shared/data/tinyshakespeare.txt)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("app", help="start the Streamlit app (extra arguments go to streamlit run)")
    p.add_argument("streamlit_args", nargs=argparse.REMAINDER, help="e.g. --server.port 8600")
    p.set_defaults(func=_cmd_app)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
