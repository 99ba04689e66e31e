"""Capture cost: gptviz.run against Hugging Face and TransformerLens, same weights, interleaved.

The reference is the fastest plain forward a user could run: Hugging Face's model class with
its default SDPA attention and no outputs requested, loaded from the folder on its own. Nothing
else touches that object: TransformerLens boots from its own copy, and the reference is timed
before and after TransformerLens is set up (the bridge wraps the module it is given and slows
its forward ~1.5x; a ratio against that would flatter everyone). Every method is reported as a
ratio to the reference, measured side by side in this one run:

- ``run_text``: ``gptviz.run(model, text)``, text in (tokenization, truncation, token strings:
  what the app does), the text being exactly the reference's T tokens;
- ``run_ids``: the same from token ids; ``run_full``: every hook in float32;
- ``ours_plain``: our model's forward alone; ``hf_outputs``: HF eager with attentions and hidden
  states; ``tl_cache``: TransformerLens 4's ``run_with_cache`` (if installed).

On a GPU (``--device cuda``) every model, ours and Hugging Face's, sits on the device and the
inputs are created there. A trace ends on the host (numpy), so the reference becomes HF's SDPA
forward *plus* a device-to-host copy of as many bytes as the compact trace of that input holds
(one device buffer into pageable host memory, as the trace's arrays are): the least any capture
to host memory must move. ``torch.cuda.synchronize()`` runs at the end of every timed call, so
the clock is read only once the GPU has finished. TransformerLens is not run on a GPU here.

    python benchmarks/capture.py                  # GPT-2-small and bundled shapes, T up to 1024
    python benchmarks/capture.py --families       # + SmolLM2-135M and Qwen2.5-0.5B shapes, T 128 / 1024
    python benchmarks/capture.py --quick          # a small smoke run
    python benchmarks/capture.py --device cuda    # on a GPU (not measured in BENCHMARKS.md: no GPU here)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import QWEN25_05B, SMOLLM2_135M, interleaved, table, write_folder

import gptviz
from gptviz.checkpoints import bundled_tokenizer_name

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def text_of(tok, T: int) -> tuple[str, list[int]]:
    """A natural text of exactly T tokens (Shakespeare if the corpus is here) and its ids."""
    source = (
        CORPUS.read_text(encoding="utf-8")
        if CORPUS.is_file()
        else "the quick brown fox jumps over the lazy dog " * 4000
    )
    ids = tok.encode(source[: 40 * T])[:T]
    text = tok.decode(ids)
    ids = tok.encode(text)[:T]
    return tok.decode(ids), ids


def transformer_lens_runner(folder: Path):
    """TransformerLens 4's run_with_cache on its own copy of the weights, or None if not installed."""
    try:
        import transformers
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:
        return None
    own = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    bridge = TransformerBridge.boot_transformers(str(folder), hf_model=own, tokenizer=None)
    bridge.eval()
    return lambda ids: bridge.run_with_cache(ids)


def synced(fn, device: torch.device):
    """``fn`` followed by ``torch.cuda.synchronize()`` on a GPU (kernels run asynchronously: the
    clock must not be read before they finish); ``fn`` itself on the CPU."""
    if device.type != "cuda":
        return fn
    return lambda: (fn(), torch.cuda.synchronize(device))[0]


def time_reference(ref, ids: torch.Tensor, n: int = 3) -> float:
    run = synced(lambda: ref(ids), ids.device)
    with torch.inference_mode():
        run()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def to_host(ours, token_ids: list[int]):
    """On a GPU: a copy of as many bytes as the compact trace of ``token_ids`` holds, from one
    device buffer to pageable host memory (the reference's share of a capture); else nothing."""
    if ours.device.type != "cuda":
        return lambda: None
    nbytes = sum(a.nbytes for a in gptviz.run(ours, token_ids=token_ids).store.values())
    src = torch.empty(nbytes, dtype=torch.uint8, device=ours.device)
    dst = torch.empty(nbytes, dtype=torch.uint8)
    return lambda: dst.copy_(src)


def methods(ref, eager, ours, tok, tl, text: str, token_ids: list[int]) -> dict:
    """The contenders on one input (the reference and TransformerLens get the same ids)."""
    ids = torch.tensor([token_ids], device=ours.device)
    copy = to_host(ours, token_ids)
    fns = {
        "hf_plain": lambda: (ref(ids), copy()),
        "run_text": lambda: gptviz.run(ours, text, tokenizer=tok),
        "run_ids": lambda: gptviz.run(ours, token_ids=token_ids),
        "run_full": lambda: gptviz.run(ours, precision="full", token_ids=token_ids),
        "ours_plain": lambda: ours(ids),
        "hf_outputs": lambda: eager(ids, output_attentions=True, output_hidden_states=True),
    }
    if tl is not None:
        fns["tl_cache"] = lambda: tl(ids)
    return {k: synced(fn, ours.device) for k, fn in fns.items()}


def bench_shape(
    name: str, kind: str, shape: dict, lengths: list[int], repeats: int, tmp: Path, device: str = "cpu"
) -> list[dict]:
    import transformers

    folder = tmp / name
    write_folder(kind, shape, folder)
    ours = gptviz.load_model(folder, device=device)
    tok = gptviz.get_tokenizer(ours.cfg.tokenizer)
    if tok.vocab_size > ours.cfg.vocab_size:  # a GPT-2 folder of the bundled shape: the bundled BPE
        tok = gptviz.get_tokenizer(bundled_tokenizer_name())
    load = transformers.AutoModelForCausalLM.from_pretrained
    ref = load(folder, attn_implementation="sdpa").eval().to(ours.device)
    eager = load(folder, attn_implementation="eager").eval().to(ours.device)
    probe = torch.randint(0, ours.cfg.vocab_size, (1, max(lengths))).to(ours.device)
    before = time_reference(ref, probe)
    tl = transformer_lens_runner(folder) if ours.device.type == "cpu" else None
    after = time_reference(ref, probe)
    print(
        f"{name}: reference forward at T={max(lengths)} {before:.3f} s before TransformerLens's set-up, {after:.3f} s after"
    )
    rows = []
    for T in lengths:
        text, token_ids = text_of(tok, T)
        fns = methods(ref, eager, ours, tok, tl, text, token_ids)
        with torch.inference_mode():
            med = interleaved(fns, repeats)
        base = med["hf_plain"]
        row = {"shape": name, "T": len(token_ids), "hf_plain_s": f"{base:.4f}"}
        if ours.device.type != "cpu":
            row["device"] = str(ours.device)
        row.update({f"{k}/hf": f"{v / base:.2f}x" for k, v in med.items() if k != "hf_plain"})
        rows.append(row)
        print(row, flush=True)
    return rows


def shapes(args) -> list[tuple[str, str, dict, list[int], int]]:
    if args.quick:
        tiny = dict(n_layer=2, n_head=4, n_embd=64, n_positions=64)
        llama = dict(
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=512,
            max_position_embeddings=64,
        )
        return [("tiny-gpt2", "gpt2", tiny, [16, 64], 2), ("tiny-llama", "llama", llama, [16, 64], 2)]
    out = [("gpt2-small", "gpt2", {}, args.lengths or [16, 128, 512, 1024], args.repeats)]
    if not args.lengths:
        b = gptviz.load_model("bundled:gpt2-style").cfg
        bundled = dict(
            n_layer=b.n_layer, n_head=b.n_head, n_embd=b.d_model, n_positions=b.n_ctx, vocab_size=b.vocab_size
        )
        out.append(("bundled-shape", "gpt2", bundled, [16, 128], args.repeats * 4))
    if args.families:
        out += [
            ("smollm2-135m", "llama", SMOLLM2_135M, [128, 1024], args.repeats),
            ("qwen2.5-0.5b", "qwen2", QWEN25_05B, [128, 1024], args.repeats),
        ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny shapes, few repeats (a smoke test)")
    ap.add_argument("--families", action="store_true", help="add SmolLM2-135M and Qwen2.5-0.5B shapes")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N: where every model runs")
    ap.add_argument("--shapes", nargs="*", help="only these shape names (e.g. smollm2-135m qwen2.5-0.5b)")
    ap.add_argument(
        "--lengths", type=int, nargs="*", help="GPT-2-small lengths only (default 16 128 512 1024 + bundled)"
    )
    args = ap.parse_args()
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="gptviz-capture-"))
    try:
        for name, kind, shape, lengths, repeats in shapes(args):
            if args.shapes and name not in args.shapes:
                continue
            rows += bench_shape(name, kind, shape, lengths, repeats, tmp, args.device)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cols = [
        "shape",
        *(["device"] if args.device != "cpu" else []),
        "T",
        "hf_plain_s",
        "run_text/hf",
        "run_ids/hf",
        "run_full/hf",
        "ours_plain/hf",
        "hf_outputs/hf",
        "tl_cache/hf",
    ]
    print()
    print(table(rows, cols))
    ref = "plain SDPA forward" + (
        " + a device-to-host copy of the compact trace's bytes" if args.device != "cpu" else ""
    )
    print(f"\nratios: median time / Hugging Face {ref} (its own copy), same weights, interleaved runs")


if __name__ == "__main__":
    main()
