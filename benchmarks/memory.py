"""Peak memory (VmHWM) of loading and capturing, each case in a fresh process, models loaded
from Hugging Face folders as a user does.

Each case runs in a new interpreter (``subprocess`` execs, so no parent's peak is inherited; the
peak is read from ``/proc/self/status``'s VmHWM, not ``ru_maxrss``). Reported beside each peak:
what it is compared with (``torch`` alone, the weights, the trace's own bytes).

    python benchmarks/memory.py            # GPT-2-small shape T=1024, and a Qwen2.5-0.5B shape from bf16
    python benchmarks/memory.py --quick    # a tiny shape, T=64 (smoke test)
    python benchmarks/memory.py --no-qwen  # skip the 0.5 B model (writing it takes a minute)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CHILD = """
import json, sys
sys.path.insert(0, {root!r})
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
import torch
base = hwm()
import gptviz
from gptviz.trace import trace_nbytes
nbytes = 0
{action}
print(json.dumps({{"torch": base, "peak": hwm(), "trace": nbytes}}))
"""
LOAD = "model = gptviz.load_model({folder!r})\n"
ACTIONS = {
    "torch imported": "",
    "load_model (folder)": LOAD,
    "load + plain forward": LOAD
    + "with torch.inference_mode(): model(torch.randint(0, model.cfg.vocab_size, (1, {T})))\n",
    "load + compact capture": LOAD
    + "t = gptviz.run(model, token_ids=torch.randint(0, model.cfg.vocab_size, ({T},)).tolist())\n"
    + "nbytes = trace_nbytes(t)\n",
    "load + full capture": LOAD
    + "t = gptviz.run(model, token_ids=torch.randint(0, model.cfg.vocab_size, ({T},)).tolist(), precision='full')\n"
    + "nbytes = trace_nbytes(t)\n",
}


def weights_info(folder: Path) -> tuple[int, int]:
    """Bytes of the weights as float32, and of the largest tensor, from the safetensors headers."""
    total = largest = 0
    for f in folder.glob("*.safetensors"):
        with f.open("rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        for name, info in header.items():
            if name != "__metadata__":
                n = 4
                for d in info["shape"]:
                    n *= d
                total, largest = total + n, max(largest, n)
    return total, largest


def run_cases(label: str, folder: Path, T: int, cases: list[str]) -> None:
    weights, largest = weights_info(folder)
    print(f"\n{label}, T={T}: weights {weights / 1e9:.2f} GB as float32, largest tensor {largest / 1e9:.3f} GB")
    print("| case | peak VmHWM (GB) | torch alone (GB) | trace (GB) | note |\n|---|---|---|---|---|")
    for name in cases:
        code = CHILD.format(root=str(ROOT), action=ACTIONS[name].format(folder=str(folder), T=T))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        note = ""
        if name == "load_model (folder)":
            bar = r["torch"] + weights + largest + 0.3e9
            note = f"bar torch + weights + largest + 0.3 GB = {bar / 1e9:.2f}: {r['peak'] / bar:.2f} of it"
        print(
            f"| {name} | {r['peak'] / 1e9:.2f} | {r['torch'] / 1e9:.2f} | {r['trace'] / 1e9:.2f} | {note} |", flush=True
        )


def qwen_folder(tmp: Path, quick: bool) -> Path:
    """A random Qwen2.5-0.5B-shape model (24 layers, 14 / 2 heads, d=896, tied) saved in bfloat16."""
    import torch
    import transformers

    sys.path.insert(0, str(ROOT / "tests"))
    from common import QWEN25_05B
    from hf_families import tokenizer_json

    shape = dict(QWEN25_05B)
    if quick:
        shape.update(hidden_size=56, intermediate_size=96, num_hidden_layers=2, vocab_size=512)
    cfg = transformers.Qwen2Config(**shape)
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    folder = tmp / "qwen"
    model.save_pretrained(folder)
    (folder / "tokenizer.json").write_text(tokenizer_json())
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-qwen", action="store_true")
    args = ap.parse_args()
    from common import hf_checkpoint

    T = 64 if args.quick else 1024
    tmp = Path(tempfile.mkdtemp(prefix="gptviz-mem-"))
    try:
        shape = dict(n_layer=2, n_head=4, n_embd=64, n_positions=64) if args.quick else {}
        folder, model = hf_checkpoint(tmp / "gpt2", **shape)
        del model
        run_cases("GPT-2-small shape (float32 folder)", folder, T, list(ACTIONS))
        if not args.no_qwen:
            folder = qwen_folder(tmp, args.quick)
            run_cases(
                "Qwen2.5-0.5B shape (bfloat16 folder)",
                folder,
                T,
                ["torch imported", "load_model (folder)", "load + compact capture"],
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
