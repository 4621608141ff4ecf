"""Benchmark: the cost of monitoring against plain generation, time and peak memory, side by side.

Time: in one process, on the same NIAH prompt per length, plain `model.generate` (SDPA attention, no controller)
against `Monitor.generate` streamed to the end (the `rheads` attention with the retrieval heads' recorders, the
per-token signals and the logit statistics), the same number of new tokens (the end token suppressed), runs
interleaved, `--repeats` of each after a warm-up. Reported: total seconds of each and the ratio monitor / plain
(goal <= 1.10), and the same for decoding alone (from the first new token to the last: the prefill, the same
work in both modes, dominates the total at long prompts).

Memory: each (mode, length) in a fresh subprocess; its peak above the memory held after loading (CPU: peak RSS
reset through /proc/self/clear_refs, glibc told to return big frees to the OS; CUDA: max_memory_allocated).
Reported with the ratio monitor / plain (goal <= 1.10).

  python bench/bench_monitor.py --model smollm2-135m --scores docs/runs/smollm2/scores.json
  python bench/bench_monitor.py --model qwen2.5-coder-0.5b --scores docs/runs/qwen/scores.json

Writes bench/results/monitor_overhead_<model>.json (`summary` holds the ratios `rheads monitor evaluate` shows).

Left out on purpose: the benchmark mode's extra recorders (every head, for the baselines): a user monitors with
the retrieval heads only; and batching.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers.generation.streamers import BaseStreamer

from retrieval_heads.models.info import eos_ids
from retrieval_heads.models.loading import load_model
from retrieval_heads.monitor import Monitor
from retrieval_heads.monitor.bench.items import BenchItem, materialize
from retrieval_heads.probes.haystack import get_haystack
from retrieval_heads.probes.needles import get_needles
from retrieval_heads.capture.attention import ATTN_NAME


def prompt(tok, length: int) -> tuple[str, str]:
    nd = get_needles("eval")[0]
    item = BenchItem("b", "niah", "n-00", length, 50, nd.question, nd.real_needle, None, nd.needle)
    return materialize(item, tok, get_haystack("paul-graham")), nd.question


class FirstToken(BaseStreamer):
    """Notes when generate emits its first new token (its first `put` is the prompt)."""

    def __init__(self):
        self.calls, self.t = 0, None

    def put(self, value):
        self.calls += 1
        if self.calls == 2:
            self.t = time.perf_counter()

    def end(self):
        pass


def run_mode(model, tok, mon: Monitor, mode: str, context: str, question: str, new_tokens: int) -> tuple[int, float]:
    """Generate `new_tokens` tokens; returns how many were generated and when the first one was."""
    if mode == "plain":
        model.set_attn_implementation("sdpa")
        ids = torch.tensor([mon.prompt(context, question).input_ids], device=model.device)  # [1, N]
        eos = eos_ids(model, tok)
        first = FirstToken()
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                                 eos_token_id=eos, pad_token_id=eos[0], streamer=first)
        model.set_attn_implementation(ATTN_NAME)
        return out.shape[1] - ids.shape[1], first.t
    if mode == "monitor":
        stream = mon.generate(context, question, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        n, t_first = 0, None
        for _ in stream:
            n += 1
            t_first = t_first or time.perf_counter()
        stream.result()
        return n, t_first
    raise ValueError(mode)


def time_modes(model, tok, mon, args) -> list[dict]:
    rows = []
    for length in _ints(args.time_lengths):
        context, question = prompt(tok, length)
        for mode in ("plain", "monitor"):  # warm-up
            run_mode(model, tok, mon, mode, context, question, 2)
        sums = {"plain": 0.0, "monitor": 0.0}
        dec = {"plain": 0.0, "monitor": 0.0}  # from the first new token to the last
        per = []
        for _ in range(args.repeats):
            rep = {}
            for mode in ("plain", "monitor"):
                t0 = time.perf_counter()
                n, t_first = run_mode(model, tok, mon, mode, context, question, args.new_tokens)
                t1 = time.perf_counter()
                rep[mode] = t1 - t0
                assert n == args.new_tokens, (mode, n)
                sums[mode] += rep[mode]
                dec[mode] += t1 - t_first
            per.append(round(rep["monitor"] / rep["plain"], 4))
        row = {"length": length, "prompt_tokens": mon.prompt(context, question).n, "plain_s": round(sums["plain"], 2),
               "monitor_s": round(sums["monitor"], 2), "ratio": round(sums["monitor"] / sums["plain"], 4),
               "ratio_per_repeat": per,
               "decode_ms_per_token": {m: round(1000 * v / (args.repeats * (args.new_tokens - 1)), 2)
                                       for m, v in dec.items()},
               "decode_ratio": round(dec["monitor"] / dec["plain"], 4)}
        print(f"  {length:>6} tokens: plain {row['plain_s']:8.1f} s  monitor {row['monitor_s']:8.1f} s  "
              f"ratio {row['ratio']:.3f}  per repeat {per}; decoding alone {row['decode_ms_per_token']} ms/token, "
              f"ratio {row['decode_ratio']:.3f}", flush=True)
        rows.append(row)
    return rows


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(field)


def measure_memory(args) -> None:
    """Child process: one (mode, length); prints the peak above the post-load baseline, in MiB."""
    model, tok = load_model(args.model, device=args.device, dtype=args.dtype)
    mon = Monitor(model, tok, args.scores, max_new_tokens=args.new_tokens)
    context, question = prompt(tok, args.length)
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
        base = _rss_kb("VmRSS:") * 1024
    run_mode(model, tok, mon, args.mode, context, question, args.new_tokens)
    peak = torch.cuda.max_memory_allocated() if cuda else _rss_kb("VmHWM:") * 1024
    print(json.dumps({"peak_mib": (peak - base) / 2**20}))


def _ints(spec: str) -> list[int]:
    return [int(x) for x in spec.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--scores", default="docs/runs/smollm2/scores.json")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--time-lengths", default="2000,8000")
    ap.add_argument("--mem-lengths", default="2000,8000")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--out", default=None, help="default: bench/results/monitor_overhead_<model>.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return measure_memory(args)
    out = Path(args.out or f"bench/results/monitor_overhead_{re.sub(r'[^A-Za-z0-9._-]', '_', args.model)}.json")
    model, tok = load_model(args.model, device=args.device, dtype=args.dtype)
    mon = Monitor(model, tok, args.scores, max_new_tokens=args.new_tokens)
    result = {"model": args.model, "scores": args.scores, "device": args.device, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "new_tokens": args.new_tokens, "repeats": args.repeats,
              "retrieval_heads": len(mon.primary.heads),
              "recorded_layers": len({l for l, _ in mon.primary.heads}), "time": [], "memory": []}
    print(f"time, {args.repeats} repeats, {args.new_tokens} new tokens, {torch.get_num_threads()} threads")
    result["time"] = time_modes(model, tok, mon, args)
    del model, mon
    print("peak memory above the loaded model (MiB), one fresh process per cell")
    for length in _ints(args.mem_lengths):
        row = {"length": length}
        for mode in ("plain", "monitor"):
            cmd = [sys.executable, __file__, "--child", "--mode", mode, "--length", str(length), "--model", args.model,
                   "--scores", args.scores, "--device", args.device, "--dtype", args.dtype,
                   "--new-tokens", str(args.new_tokens)]
            env = {**os.environ, "TQDM_DISABLE": "1", "MALLOC_MMAP_THRESHOLD_": "65536"}
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            row[mode] = None if p.returncode else round(json.loads(p.stdout.strip().splitlines()[-1])["peak_mib"], 1)
            if p.returncode:
                row[f"{mode}_error"] = (p.stderr.strip().splitlines() or ["killed"])[-1][:200]
        row["ratio"] = round(row["monitor"] / row["plain"], 4) if row.get("plain") and row.get("monitor") else None
        print(f"  {length:>6} tokens: plain {row['plain']} MiB  monitor {row['monitor']} MiB  ratio {row['ratio']}",
              flush=True)
        result["memory"].append(row)
    result["summary"] = {"time_ratio": {r["length"]: r["ratio"] for r in result["time"]},
                         "decode_ratio": {r["length"]: r["decode_ratio"] for r in result["time"]},
                         "memory_ratio": {r["length"]: r["ratio"] for r in result["memory"]},
                         "goal": "<= 1.10 for both at 2K and 8K"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
