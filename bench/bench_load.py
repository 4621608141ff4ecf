"""GGUF load: stock transformers (`from_pretrained(dir, gguf_file=..., dtype=...)`) against ours (`models/gguf.py`,
tensor by tensor into the target dtype), each load in its own fresh process, side by side in one run.

Per (model, dtype, loader): wall seconds of the load, peak RSS of the process (ru_maxrss, after the imports and
after the load), the bytes of the loaded weights, and a sha256 over every tensor of the state dict, so the run
also checks that both loaders give bit-identical weights. Writes bench/results/load.json.

    python bench/bench_load.py                                     # smollm2-135m, qwen2.5-coder-0.5b, -1.5b
    python bench/bench_load.py --models gemma3-270m --dtypes bfloat16

Left out on purpose: the tokenizer (converted once and cached), loads onto a GPU, and repeats (a 1.5B load is
minutes on 2 cores; each cell runs once, stock and ours back to back).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "load.json"


def child(model: str, dtype: str, loader: str) -> dict:
    import hashlib
    import resource
    import time

    import torch

    from retrieval_heads.models.registry import OFFLINE_MODELS

    torch.set_num_threads(1)
    path = OFFLINE_MODELS[model].gguf_path()
    dt = getattr(torch, dtype)
    if loader == "stock":
        from transformers import AutoModelForCausalLM
    else:
        from retrieval_heads.models.gguf import build_gguf_model
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    if loader == "stock":
        m = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dt)
    else:
        m = build_gguf_model(path, dt)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    h = hashlib.sha256()
    sd = m.state_dict()
    for k in sorted(sd):
        t = sd[k].contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes())
    weights = sum(p.numel() * p.element_size() for p in m.parameters())
    return {"model": model, "dtype": dtype, "loader": loader, "seconds": round(seconds, 2), "peak_rss": peak,
            "rss_after_imports": base, "weight_bytes": weights, "sha256": h.hexdigest()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="smollm2-135m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--child", nargs=3, metavar=("MODEL", "DTYPE", "LOADER"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child)))
        return
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}
    for model in a.models.split(","):
        for dtype in a.dtypes.split(","):
            for loader in ("stock", "ours"):
                out = subprocess.run([sys.executable, __file__, "--child", model, dtype, loader], env=env,
                                     capture_output=True, text=True)
                if out.returncode:
                    sys.exit(f"{model} {dtype} {loader} failed:\n{out.stderr[-2000:]}")
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{model:20s} {dtype:9s} {loader:5s} {row['seconds']:7.1f} s  peak RSS "
                      f"{row['peak_rss'] / 2**30:5.2f} GiB  weights {row['weight_bytes'] / 2**30:5.2f} GiB", flush=True)
            stock, ours = rows[-2], rows[-1]
            print(f"  ours/stock: time {ours['seconds'] / stock['seconds']:.2f}x, peak RSS "
                  f"{ours['peak_rss'] / stock['peak_rss']:.2f}x; peak / weight bytes {ours['peak_rss'] / ours['weight_bytes']:.2f}x"
                  f"; bit-identical: {ours['sha256'] == stock['sha256']}", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"threads": 1, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
