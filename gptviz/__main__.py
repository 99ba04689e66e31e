"""One command line for gptviz: ``trace``, ``app``, ``serve``, ``train``, ``eval`` and ``download`` (``--help`` on each)."""

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
    from gptviz.evaluate import bits_per_byte
    from gptviz.tokenizer import get_tokenizer
    from gptviz.train_data import read_corpus, split_text

    try:
        model = gptviz.load_model(args.model, device=args.device, dtype=args.dtype)
    except gptviz.CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    test = split_text(read_corpus(args.data))[2]
    bpb = bits_per_byte(model, get_tokenizer(model.cfg.tokenizer), test)
    print(json.dumps({"model": model.name, "test_bytes": len(test.encode()), "test_bits_per_byte": round(bpb, 4)}))
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from gptviz import hub

    try:
        plan = hub.plan_download(args.name, revision=args.revision)
        print(plan.describe())
        if args.dry_run:
            print("dry run: nothing downloaded")
            return 0
        from tqdm import tqdm

        with tqdm(total=plan.total_bytes, unit="B", unit_scale=True, desc="downloading", file=sys.stderr) as bar:
            folder = hub.download(plan, progress=lambda done, total: bar.update(done - bar.n))
    except hub.DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"saved in {folder}")
    print(f"open it with: gptviz trace TEXT --model {args.name if args.revision == 'main' else folder}")
    return 0


def _placement_error(args: argparse.Namespace) -> str | None:
    """Why ``--device``/``--dtype`` cannot work here (checked before Streamlit starts), or None."""
    if args.device is None and args.dtype is None:
        return None  # nothing asked: no torch import before the app's own
    from gptviz.checkpoints import CheckpointError, resolve_device, resolve_dtype

    try:
        resolve_device(args.device)
        resolve_dtype(args.dtype)
    except CheckpointError as exc:
        return str(exc)
    return None


def _cmd_app(args: argparse.Namespace) -> int:
    from gptviz.launch import run_app, set_placement

    if (why := _placement_error(args)) is not None:
        print(f"error: {why}", file=sys.stderr)
        return 2
    set_placement(args.device, args.dtype)  # inherited by the Streamlit process
    return run_app(args.streamlit_args)


def _cmd_serve(args: argparse.Namespace) -> int:
    from gptviz.launch import serve_app, set_placement

    if (why := _placement_error(args)) is not None:
        print(f"error: {why}", file=sys.stderr)
        return 2
    set_placement(args.device, args.dtype)  # inherited by the Streamlit process
    return serve_app(args.streamlit_args, models=args.models)


def _app_files() -> str:
    from gptviz.launch import app_path

    try:
        return str(app_path())
    except FileNotFoundError as exc:
        return f"not found ({exc})"


EPILOG = """\
examples:
  gptviz trace "Hello, world!"                 tokens, ids and the top 5 next tokens
  gptviz trace "Hello, world!" --model gpt2    a GPT-2 from the local Hugging Face cache
  gptviz app                                   open the app in the browser
  gptviz app --server.port 8600                any streamlit run option passes through
  gptviz serve --models bundled:*,gpt2          serve a room (served mode: no paths, no downloads)
  gptviz eval                                  test-split bits per byte of the bundled model
  gptviz train gpt2-style                      retrain a bundled model
  gptviz download HuggingFaceTB/SmolLM2-135M   fetch a model from the Hub (the only command that does)

`gptviz COMMAND --help` explains each command. The same from Python and Jupyter:
  import gptviz; trace = gptviz.run(gptviz.load_model("bundled:gpt2-style"), "Hello")
"""

DEVICE_HELP = "where the model runs: cpu (the default), cuda, cuda:N, or auto (cuda if available)"
DTYPE_HELP = "the weights' type: float32 (the default), bfloat16 or float16 (traces stay float32/float16 numpy)"


def _add_placement(p: argparse.ArgumentParser, env: bool = False) -> None:
    """``--device`` and ``--dtype`` (for the app: passed to it as GPTVIZ_DEVICE / GPTVIZ_DTYPE)."""
    for flag, help_ in (("device", DEVICE_HELP), ("dtype", DTYPE_HELP)):
        p.add_argument(f"--{flag}", help=help_ + (f"; sets GPTVIZ_{flag.upper()} for the app" if env else ""))


MODEL_HELP = (
    "bundled:NAME (bundled:gpt2-style, bundled:seed, bundled:gpt2-style@STEP), a Hugging Face GPT-2 "
    "folder, a .safetensors file, or a name found in the local Hugging Face cache such as gpt2 "
    "(default: %(default)s)"
)


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="gptviz",
        description="See inside a GPT, stage by stage: trace a prompt, open the app, evaluate or train a model.",
        epilog=EPILOG,
        formatter_class=raw,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "trace",
        help="run the model on a prompt; print its tokens, ids and top next tokens",
        description="Tokenize TEXT, run the model once with every hook captured, and print each token\n"
        "(position, id, string) and the most likely next tokens.",
        epilog='example:\n  gptviz trace "To be, or not to be" --top 10',
        formatter_class=raw,
    )
    p.add_argument("text", help="the prompt (quote it)")
    p.add_argument("--model", default="bundled:gpt2-style", help=MODEL_HELP)
    p.add_argument("--top", type=int, default=5, help="how many next-token candidates to print (default: 5)")
    p.set_defaults(func=_cmd_trace)

    p = sub.add_parser(
        "app",
        help="start the Streamlit app (other options go to streamlit run)",
        description="Start the gptviz app with `streamlit run` and open it in the browser (Ctrl+C stops it).\n"
        f"app files: {_app_files()}",
        epilog="Every option other than -h/--help is passed to `streamlit run` unchanged, e.g.:\n"
        "  gptviz app --server.port 8600 --server.headless true\n"
        "  gptviz app --theme.base dark\n"
        "Streamlit's own options: `gptviz app -- --help` (everything after -- goes to streamlit run).",
        formatter_class=raw,
        allow_abbrev=False,
    )
    _add_placement(p, env=True)
    p.set_defaults(func=_cmd_app, streamlit_args=[])

    p = sub.add_parser(
        "serve",
        help="serve the app to a room: served mode (allowlisted models only, no downloads)",
        description="Start the app for untrusted visitors (a lecture hall). Served mode: a link or the sidebar\n"
        "can open only bundled models, models already in this machine's Hugging Face cache, and the\n"
        "--models allowlist; no folder path, no download, one refusal message for everything else.\n"
        "Listens on every interface unless --server.address is given (behind a proxy: 127.0.0.1).",
        epilog="Other options go to `streamlit run`, e.g.:\n"
        "  gptviz serve --server.port 8501\n"
        "  gptviz serve --models bundled:*,gpt2,/srv/models/pythia-160m\n"
        "  GPTVIZ_MODEL_CACHE_MB=2000 gptviz serve --server.address 127.0.0.1 --server.port 8601",
        formatter_class=raw,
        allow_abbrev=False,
    )
    p.add_argument(
        "--models",
        help="comma-separated allowlist: bundled:*, cached:* (every model in the Hugging Face cache), "
        "names, folder or .safetensors paths (default: GPTVIZ_MODELS, else bundled and cached models)",
    )
    _add_placement(p, env=True)
    p.set_defaults(func=_cmd_serve, streamlit_args=[])

    p = sub.add_parser(
        "download",
        help="fetch a model from the Hugging Face Hub into the local cache (size shown first)",
        description="Fetch a model's safetensors weights, config and tokenizer files from the Hugging Face Hub\n"
        "into the local cache (HF_HUB_CACHE / HF_HOME), printing the files and their total size first.\n"
        "Pickled weights (.bin, .pt) and code are never downloaded. This is the only way gptviz\n"
        "touches the network: naming an uncached model elsewhere never starts a download.\n"
        "A gated repo (e.g. Llama 3.2) needs its licence accepted on the Hub and HF_TOKEN set.",
        epilog="examples:\n  gptviz download HuggingFaceTB/SmolLM2-135M --dry-run\n"
        "  gptviz download HuggingFaceTB/SmolLM2-135M\n"
        '  gptviz trace "Hello" --model HuggingFaceTB/SmolLM2-135M',
        formatter_class=raw,
    )
    p.add_argument("name", help="the Hub repo, org/name")
    p.add_argument("--revision", default="main", help="branch, tag or commit hash (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="only print the files and the total size")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser(
        "eval",
        help="test-split bits per byte of a model on Tiny Shakespeare",
        description="Measure a model's bits per byte on the test split of Tiny Shakespeare (lower is better).",
        epilog="example:\n  gptviz eval --model bundled:seed",
        formatter_class=raw,
    )
    p.add_argument("--model", default="bundled:gpt2-style", help=MODEL_HELP)
    p.add_argument("--data", help="corpus path (default: ../shared/data/tinyshakespeare.txt)")
    _add_placement(p)
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "train",
        help="train a bundled model on Tiny Shakespeare",
        description="Train one of the bundled models on Tiny Shakespeare with a progress bar. Writes the\n"
        "checkpoint (.safetensors) and its model card (.json); an interrupted run resumes.",
        epilog="example:\n  gptviz train gpt2-style --steps 200 --out /tmp/models",
        formatter_class=raw,
    )
    p.add_argument("recipe", choices=["gpt2-style", "seed", "llama-style"], help="which bundled model to train")
    p.add_argument("--steps", type=int, help="optimizer steps (default: the recipe's)")
    p.add_argument("--seed", type=int, help="random seed (default: the recipe's)")
    p.add_argument("--data", help="corpus path (default: ../shared/data/tinyshakespeare.txt)")
    p.add_argument("--out", help="output folder (default: the package's assets folder)")
    p.add_argument("--no-resume", action="store_true", help="start over even if a run was interrupted")
    p.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in ("app", "serve"):
        args.streamlit_args = rest[1:] if rest[:1] == ["--"] else rest  # `gptviz app -- --help`
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
