"""Peak memory of a capture at GPT-2-small shape: each precision in a fresh process.

python benchmarks/memory.py            # T = 1024
python benchmarks/memory.py --quick    # T = 64 (CI smoke test)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, resource, sys, torch
sys.path.insert(0, {root!r})
import gptviz
from gptviz.trace import trace_nbytes
torch.manual_seed(0)
model = gptviz.GPT(gptviz.preset("gpt2")).eval()
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ids = torch.randint(0, 50257, ({T},)).tolist()
{action}
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"model_kb": base, "peak_kb": peak, "trace_bytes": nbytes}}))
"""
ACTIONS = {
    "plain forward": "with torch.inference_mode(): model(torch.tensor([ids]))\nnbytes = 0",
    "gptviz.run compact": "t = gptviz.run(model, token_ids=ids)\nnbytes = trace_nbytes(t)",
    "gptviz.run full": "t = gptviz.run(model, token_ids=ids, precision='full')\nnbytes = trace_nbytes(t)",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    T = 64 if args.quick else 1024
    results = {}
    for name, action in ACTIONS.items():
        code = CHILD.format(root=str(ROOT), T=T, action=action)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    plain = results["plain forward"]["peak_kb"]
    print(f"GPT-2-small shape, T={T}; peak RSS of the whole process (model included)")
    print("| method | peak RSS (GB) | ratio to plain forward | trace (GB) |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['peak_kb'] / 2**20:.2f} | {r['peak_kb'] / plain:.2f}x | {r['trace_bytes'] / 2**30:.2f} |")
    compact = results["gptviz.run compact"]["peak_kb"] / 2**20
    print(f"\napp default (compact) peak / 2.5 GB bar: {compact / 2.5:.2f}")


if __name__ == "__main__":
    main()
