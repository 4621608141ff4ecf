"""Benchmark: the cost of detection against plain generation (float32 and bfloat16), detection throughput at
several batch sizes, and peak memory against eager attention.

Time: on the same NIAH prompts, in one process, greedy decoding with top-1 capture (`rheads` attention)
against plain `model.generate` with SDPA, the same number of new tokens (EOS disabled), runs interleaved,
once per dtype (`--dtypes`; bfloat16 runs on the CPU too). Reported as the ratio of total times (goal <= 1.15).

Throughput: `detect()` itself (probe building, decoding, scoring) on the same `--throughput-samples` NIAH
samples at `--throughput-length` tokens, at each of `--batch-sizes`: samples per minute, side by side.

Memory: each (mode, length) runs in a fresh subprocess, and its peak is measured above the memory held
after loading (CPU: the process's peak RSS, reset through /proc/self/clear_refs; CUDA:
torch.cuda.max_memory_allocated). Modes:
  plain   SDPA model.generate
  detect  the rheads capture (what `rheads detect` runs)
  eager   eager attention with output_attentions=True at the decoding steps, the paper code's method; its
          eager prefill builds a [H, N, N] score matrix per layer
Goal: detect within 10% of plain, and linear in length.

  python bench/bench_detect.py                         # SmolLM2, CPU: fp32 and bf16, batch 1/4/8, 1K-8K memory
  python bench/bench_detect.py --device cuda --model Qwen/Qwen2.5-7B-Instruct --dtypes bfloat16

Left out on purpose: multi-GPU layouts and other models' throughput in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from retrieval_heads.capture.attention import ATTN_NAME
from retrieval_heads.capture.controller import AttentionController
from retrieval_heads.probes.haystack import get_haystack
from retrieval_heads.models.loading import load_model
from retrieval_heads.probes.needles import get_needles
from retrieval_heads.probes.build import build_probe
from retrieval_heads.capture.decoding import new_cache


def prompt_ids(tokenizer, length: int) -> torch.Tensor:
    needle = get_needles("detect")[0]
    probe = build_probe(tokenizer, get_haystack("paul-graham"), needle, length, 50)
    return torch.tensor([probe.input_ids])  # [1, N]


def run_mode(model, mode: str, ids: torch.Tensor, new_tokens: int) -> None:
    ids = ids.to(model.device)
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, temperature=None,
              top_p=None, top_k=None, attention_mask=torch.ones_like(ids), pad_token_id=0)
    with torch.no_grad():
        if mode == "plain":
            model.set_attn_implementation("sdpa")
            model.generate(ids, **kw)
        elif mode == "detect":
            model.set_attn_implementation(ATTN_NAME)
            with AttentionController(capture=True).activate(model) as ctl:
                model.generate(ids, cache=new_cache(model), disable_compile=True, **kw)
            ctl.top1_positions()
        elif mode == "eager":
            model.set_attn_implementation("eager")
            out = model(ids[:, :-1], use_cache=True)  # eager prefill, as the paper's code
            cache, tok = out.past_key_values, ids[:, -1:]
            for _ in range(new_tokens):
                step = model(tok, past_key_values=cache, use_cache=True, output_attentions=True)
                _ = [a[0, :, -1].argmax(-1) for a in step.attentions]  # each [H]
                cache, tok = step.past_key_values, step.logits[:, -1:].argmax(-1)
        else:
            raise ValueError(mode)


def _sync(model) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize()


def time_modes(model, tok, args) -> dict:
    """Plain vs detect at each length, interleaved repeats; per-length rows and the total ratio."""
    print(f"time ({model.dtype}): detection vs plain generate, {args.new_tokens} new tokens, {args.repeats} repeats")
    run_mode(model, "plain", prompt_ids(tok, 500), 4)  # warm-up
    run_mode(model, "detect", prompt_ids(tok, 500), 4)
    totals, rows = {"plain": 0.0, "detect": 0.0}, []
    for length in _ints(args.time_lengths):
        ids = prompt_ids(tok, length)
        t = {"plain": 0.0, "detect": 0.0}
        for r in range(args.repeats):
            for mode in (("plain", "detect") if r % 2 == 0 else ("detect", "plain")):
                _sync(model)
                t0 = time.perf_counter()
                run_mode(model, mode, ids, args.new_tokens)
                _sync(model)
                t[mode] += time.perf_counter() - t0
        for m in t:
            totals[m] += t[m]
        row = {"length": ids.shape[1], "plain_s": t["plain"] / args.repeats, "detect_s": t["detect"] / args.repeats,
               "ratio": t["detect"] / t["plain"]}
        rows.append(row)
        print(f"  {row['length']:>6} tokens  plain {row['plain_s']:.2f} s  detect {row['detect_s']:.2f} s  "
              f"ratio {row['ratio']:.3f}")
    ratio = totals["detect"] / totals["plain"]
    print(f"  total ratio detect / plain: {ratio:.3f} (goal <= 1.15)")
    return {"dtype": str(model.dtype), "rows": rows, "ratio_total": ratio}


def throughput(model, tok, args) -> list[dict]:
    """detect() on the same samples at each batch size: samples per minute (and the scores, which must agree)."""
    from retrieval_heads.config import DetectConfig, ModelConfig, ProbeConfig
    from retrieval_heads.detection.detect import detect

    n = args.throughput_samples
    probe = ProbeConfig(lengths=[args.throughput_length], depths=[100 * i / max(1, n - 1) for i in range(n)],
                        needles_per_cell=1)
    cfg = DetectConfig(model=ModelConfig(model=args.model, device=args.device), probe=probe,
                       max_new_tokens=args.new_tokens)
    print(f"throughput: detect() on {n} samples of {args.throughput_length} tokens")
    model.set_attn_implementation(ATTN_NAME)  # the time runs may have left it on sdpa
    rows, first = [], None
    detect(model, DetectConfig(probe=ProbeConfig(lengths=[300], depths=[50], needles_per_cell=1), max_new_tokens=4),
           tokenizer=tok, progress=False)  # warm-up
    for bs in _ints(args.batch_sizes):
        _sync(model)
        t0 = time.perf_counter()
        scores = detect(model, cfg, tokenizer=tok, progress=False, batch_size=bs)
        _sync(model)
        dt = time.perf_counter() - t0
        paper = scores.to_paper()
        first = paper if first is None else first
        rows.append({"batch_size": bs, "seconds": dt, "samples_per_minute": 60 * n / dt,
                     "same_scores_as_first": paper == first})
        print(f"  batch {bs:>2}: {dt:7.1f} s  {60 * n / dt:6.1f} samples/min  same scores: {paper == first}")
    return rows


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(field)


def measure_memory(args) -> None:
    """Child process: one (mode, length); prints the peak above the post-load baseline, in MiB."""
    model, tok = load_model(args.model, device=args.device, dtype=args.dtype)
    ids = prompt_ids(tok, args.length)
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
        base = _rss_kb("VmRSS:") * 1024
    run_mode(model, args.mode, ids, args.new_tokens)
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _rss_kb("VmHWM:") * 1024
    print(json.dumps({"peak_mib": (peak - base) / 2**20, "prompt_tokens": ids.shape[1]}))


def _ints(spec: str) -> list[int]:
    return [int(x) for x in spec.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto", help="dtype of the memory runs")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="dtypes of the time runs")
    ap.add_argument("--batch-sizes", default="1,4,8", help="throughput batch sizes ('' to skip)")
    ap.add_argument("--throughput-samples", type=int, default=8)
    ap.add_argument("--throughput-length", type=int, default=1000)
    ap.add_argument("--time-lengths", default="1000,2000,4000")
    ap.add_argument("--mem-lengths", default="1000,2000,4000,8000")
    ap.add_argument("--modes", default="plain,detect,eager")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--out", default="bench/results/detect.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return measure_memory(args)

    torch.manual_seed(0)
    result = {"model": args.model, "device": args.device, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "new_tokens": args.new_tokens, "time": {}, "throughput": [],
              "memory": []}
    for dtype in [d for d in args.dtypes.split(",") if d]:
        model, tok = load_model(args.model, device=args.device, dtype=dtype)
        result["time"][dtype] = time_modes(model, tok, args)
        if dtype == args.dtypes.split(",")[0] and args.batch_sizes:
            result["throughput"] = throughput(model, tok, args)
        del model
    print("peak memory above the loaded model (MiB), one fresh process per cell")
    modes = args.modes.split(",")
    print(f"  {'tokens':>6}  " + "  ".join(f"{m:>8}" for m in modes) + "  detect/plain")
    for length in _ints(args.mem_lengths):
        row = {"length": length}
        for mode in modes:
            cmd = [sys.executable, __file__, "--child", "--mode", mode, "--length", str(length), "--model",
                   args.model, "--device", args.device, "--dtype", args.dtype, "--new-tokens", str(args.new_tokens)]
            # a fixed mmap threshold makes glibc return big tensors to the OS when freed, so the peak RSS
            # follows what torch really holds instead of the allocator's heap growth
            env = {**os.environ, "TQDM_DISABLE": "1", "MALLOC_MMAP_THRESHOLD_": "65536"}
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if p.returncode != 0:
                row[mode] = None
                row[f"{mode}_error"] = (p.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1][:200]
            else:
                row[mode] = round(json.loads(p.stdout.strip().splitlines()[-1])["peak_mib"], 1)
        if row.get("plain") and row.get("detect"):
            row["detect_over_plain"] = round(row["detect"] / row["plain"], 3)
        result["memory"].append(row)
        cells = "  ".join(f"{row[m]:>8.1f}" if row[m] is not None else f"{'failed':>8}" for m in modes)
        print(f"  {length:>6}  {cells}  {row.get('detect_over_plain', '-')}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
