"""Benchmark: the retrieval-head KV cache against the full cache, side by side in one run.

For each prompt length and KV policy (full, retrieval, random, streaming; `runtime/kvpolicy.py`), one fresh
subprocess loads the model, builds a NIAH prompt of that length (needle at depth 50), prefills it (whole, or in
chunks of --prefill-chunk tokens), then decodes --new-tokens tokens greedily one forward at a time, and reports:
  kv_bytes        the most bytes of keys and values the cache held (its own count; equal to the analytic
                  formula, as the tests check)
  kv_bytes_full   what the full cache holds for the same slots (the analytic formula)
  peak_mib        the process's peak memory above what it held after loading and one 16-token warm-up forward
                  (the weights are memory-mapped: the warm-up pages them in) (CPU: peak RSS, reset through
                  /proc/self/clear_refs, glibc returning big blocks to the OS; CUDA: max_memory_allocated);
                  `prefill_peak_mib` the same through the prefill only, `decode_peak_mib` through the decoding
                  only (the peak reset after the prefill), both above the same base
  prefill_s       seconds of the prefill
  decode_ms       milliseconds per decoded token (mean over the steps after the first)
Derived per row against the full cache at the same length: the share of KV bytes saved, decode time ratio, and
how much of the KV saving shows up in the peak (rss_drop / kv_saved). The chunked rows (--chunk-lengths) say
what chunked prefill does to the peak; they run the compressed heads' window pattern in prefill too (--kv-prefill
window: a chunk cannot attend to what the cache dropped), the unchunked rows --kv-prefill (default full).

  python bench/bench_kv.py --model smollm2-135m --scores docs/runs/smollm2/scores.json --lengths 2000,4000,8000
  python bench/bench_kv.py --model qwen2.5-coder-0.5b --scores docs/runs/qwen/scores.json \\
      --lengths 2000,4000,8000,16000 --policies-at 16000=full,retrieval,streaming

A policy written `name@B` runs at the KV budget B (`--kv-budget`: snapkv@0.2, hybrid@0.2, retrieval@0.3; the
budget cache, `kvcache/select.py`). `--batch N` repeats the prompt N times (one forward over the batch);
`--max-batch-mib M` instead searches, per policy and length, the largest batch whose prefill and decoding peaks
both stay within M MiB above the base (batches 1 and 2 run, the line through their peaks predicts the answer, which
is run with the next batch to confirm it; doubling or bisecting where the line misses; each try its own process),
and reports it as `max_batch`, with `batches_run`. `--predict-max-batch M1,M2` runs batches 1 and 2 only and
reports the batch the line predicts within each limit (`predicted_max_batch`; not confirmed: cheaper where an 8K
prefill takes a minute per sequence).

  python bench/bench_kv.py --model smollm2-135m --lengths 8000 --new-tokens 8 \
      --policies full,retrieval,snapkv@0.2,headkv@0.2,hybrid@0.2,snapkv@0.3,hybrid@0.3 --max-batch-mib 4096

Left out on purpose: throughput, and NIAH accuracy (`rheads kv-sweep`).
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

from retrieval_heads.models.loading import load_model
from retrieval_heads.probes.build import build_probe
from retrieval_heads.probes.haystack import get_haystack
from retrieval_heads.probes.needles import get_needles
from retrieval_heads.kvcache import KVConfig, policy_names
from retrieval_heads.kvcache.cache import build_cache, cache_bytes, full_cache_bytes

POLICIES = tuple(policy_names())  # the registered KV policies


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(field)


def child(args) -> None:
    """One (policy, length, chunk) cell; prints one JSON line."""
    model, tok = load_model(args.model, device=args.device, dtype=args.dtype)
    probe = build_probe(tok, get_haystack("paul-graham"), get_needles("eval")[0], args.length, 50)
    ids = torch.tensor([probe.input_ids], device=model.device)  # [1, N]
    name, _, budget = args.policy.partition("@")
    kv = KVConfig(policy=name, sink=args.sink, recent=args.recent, threshold=args.kv_threshold, top=args.kv_top,
                  seed=args.kv_seed, budget=float(budget) if budget else None,
                  prefill="full" if budget else ("window" if args.chunk else args.kv_prefill))
    policy = kv.validate(args.scores).build_policy(args.scores)
    ids = ids.expand(args.batch, -1).contiguous()  # [B, N] the same prompt B times
    with torch.no_grad():  # touch every weight once (they are memory-mapped) so the peak below is the run's own
        from transformers import DynamicCache

        model(input_ids=ids[:, :16], cache=DynamicCache(config=model.config), use_cache=True, logits_to_keep=1)
    cache = build_cache(policy, model, args.sink, args.recent, kv.prefill)  # a chunk: window (it cannot see the drop)
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
        base = _rss_kb("VmRSS:") * 1024

    def sync():
        if cuda:
            torch.cuda.synchronize()

    with torch.no_grad():
        t0 = time.perf_counter()
        chunk = args.chunk or ids.shape[1]
        for i in range(0, ids.shape[1], chunk):  # [B, c] per forward; positions and masks come from the cache
            out = model(input_ids=ids[:, i:i + chunk], cache=cache, use_cache=True, logits_to_keep=1)
        sync()
        prefill_s = time.perf_counter() - t0
        prefill_peak = (torch.cuda.max_memory_allocated() if cuda else _rss_kb("VmHWM:") * 1024) - base
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            Path("/proc/self/clear_refs").write_text("5")
        nxt = out.logits[:, -1:].argmax(-1)  # [B, 1]
        steps = []
        for _ in range(args.new_tokens):
            t0 = time.perf_counter()
            out = model(input_ids=nxt, cache=cache, use_cache=True)
            nxt = out.logits[:, -1:].argmax(-1)
            sync()
            steps.append(time.perf_counter() - t0)
    decode_peak = (torch.cuda.max_memory_allocated() if cuda else _rss_kb("VmHWM:") * 1024) - base
    peak = max(prefill_peak, decode_peak)
    T = ids.shape[1] + args.new_tokens
    held = int(getattr(cache, "peak_bytes", None) or cache_bytes(cache))
    full = full_cache_bytes(model.config, T, batch=args.batch, dtype_bytes=next(model.parameters()).element_size())
    print(json.dumps({"prompt_tokens": ids.shape[1], "batch": args.batch, "kv_bytes": held, "kv_bytes_full": full,
                      "peak_mib": round(peak / 2**20, 1), "prefill_peak_mib": round(prefill_peak / 2**20, 1),
                      "decode_peak_mib": round(decode_peak / 2**20, 1), "prefill_s": round(prefill_s, 2),
                      "decode_ms": round(1000 * sum(steps[1:]) / max(1, len(steps) - 1), 2),
                      "kv_prefill": None if args.policy == "full" else kv.prefill, "budget": kv.budget,
                      "full_kv_heads": policy.describe(model).get("full_kv_heads")}))


def run_cell(args, policy: str, length: int, chunk: int, batch: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--policy", policy, "--length", str(length), "--chunk", str(chunk),
           "--batch", str(batch or args.batch),
           "--model", args.model, "--device", args.device, "--dtype", args.dtype, "--new-tokens", str(args.new_tokens),
           "--sink", str(args.sink), "--recent", str(args.recent), "--kv-threshold", str(args.kv_threshold),
           "--kv-top", str(args.kv_top), "--kv-seed", str(args.kv_seed), "--kv-prefill", args.kv_prefill]
    cmd += ["--scores", args.scores] if args.scores else []
    # a fixed mmap threshold makes glibc return big tensors to the OS when freed, so the peak RSS follows what
    # torch really holds instead of the allocator's heap growth
    env = {**os.environ, "TQDM_DISABLE": "1", "MALLOC_MMAP_THRESHOLD_": "65536"}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    row = {"policy": policy, "length": length, "prefill_chunk": chunk}
    if p.returncode != 0:
        row["error"] = (p.stderr.strip().splitlines() or ["killed (out of memory?)"])[-1][:300]
    else:
        row.update(json.loads(p.stdout.strip().splitlines()[-1]))
    return row


MAX_BATCH = 2**16  # the search gives up above it (a peak that never grows)
MAX_LEAP = 8  # the prediction is at most this many times the largest batch run before it


def predict_max_batch(peak1: float, peak2: float, limit: float) -> int | None:
    """The largest batch within `limit` on the line through the peaks of batches 1 and 2 (None: the line does not
    rise, it predicts nothing)."""
    if peak1 > limit:
        return 0
    slope = peak2 - peak1
    return 1 + int((limit - peak1) // slope) if slope > 0 else None


def search_max_batch(fits, limit: float) -> tuple[int, dict | None, list[int]]:
    """The largest batch b with fits(b) -> (ok, row): b = 1 and 2 are run, the line through their peaks
    (`row["peak_mib"]`) predicts the last batch within `limit`, and that batch and the next are run; where the line
    misses, doubling up or bisecting down finds it. Returns (b, b's row, the batches run, in order). Peaks grow
    with the batch: a batch that does not fit is never followed by a larger one that does."""
    rows: dict[int, tuple[bool, dict]] = {}

    def f(b: int) -> bool:
        if b not in rows:
            rows[b] = fits(b)
        return rows[b][0]

    if not f(1):
        return 0, rows[1][1], list(rows)
    if not f(2):
        return 1, rows[1][1], list(rows)
    pred = predict_max_batch(rows[1][1]["peak_mib"], rows[2][1]["peak_mib"], limit)
    # a flat line (noise, rounding) must not launch a huge batch: double from there
    pred = min(pred if pred is not None else 4, MAX_LEAP * 2)
    lo, hi = 2, None
    if pred > lo:
        lo, hi = (pred, None) if f(pred) else (lo, pred)
    if hi is None:
        lo, hi = (lo + 1, None) if f(lo + 1) else (lo, lo + 1)
    while hi is None:
        if lo >= MAX_BATCH:
            raise RuntimeError(f"batch {lo} still fits within {limit} MiB: is the peak measured?")
        lo, hi = (2 * lo, None) if f(2 * lo) else (lo, 2 * lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if f(mid) else (lo, mid)
    return lo, rows[lo][1], list(rows)


def max_batch(args, policy: str, length: int) -> dict:
    """The largest batch whose prefill and decoding peaks stay within --max-batch-mib (`search_max_batch`)."""
    limit = args.max_batch_mib

    def fits(b: int) -> tuple[bool, dict]:
        row = run_cell(args, policy, length, 0, batch=b)
        return "error" not in row and row["peak_mib"] <= limit, row

    b, row, tried = search_max_batch(fits, limit)
    return {**row, "max_batch": b, "max_batch_mib": limit, "batches_run": tried}


def predicted_max_batch(args, policy: str, length: int) -> dict:
    """Batches 1 and 2 only, and the largest batch that the line through their peaks predicts within each limit
    of --predict-max-batch (not run: `max_batch` confirms it); the row is batch 1's."""
    one, two = (run_cell(args, policy, length, 0, batch=b) for b in (1, 2))
    for r in (one, two):
        if "error" in r:
            return r
    pred = {str(m): predict_max_batch(one["peak_mib"], two["peak_mib"], m) for m in _ints(args.predict_max_batch)}
    return {**one, "batch2_peak_mib": two["peak_mib"], "batch2_prefill_peak_mib": two["prefill_peak_mib"],
            "batch2_decode_peak_mib": two["decode_peak_mib"], "peak_mib_per_sequence": round(
                two["peak_mib"] - one["peak_mib"], 1), "predicted_max_batch": pred}


def derive(rows: list[dict]) -> None:
    """Add, per row, what it saves against the full cache at the same length and chunking."""
    full = {(r["length"], r["prefill_chunk"]): r for r in rows if r["policy"] == "full" and "error" not in r}
    for r in rows:
        f = full.get((r["length"], r["prefill_chunk"]))
        if "error" in r or f is None or r.get("batch") != f.get("batch"):  # --max-batch-mib rows: other batches
            continue
        saved = f["kv_bytes"] - r["kv_bytes"]
        r["kv_saved_share"] = round(saved / f["kv_bytes"], 4)
        r["decode_ratio"] = round(r["decode_ms"] / f["decode_ms"], 3)
        r["rss_drop_mib"] = round(f["peak_mib"] - r["peak_mib"], 1)
        r["rss_drop_over_kv_saved"] = round(r["rss_drop_mib"] * 2**20 / saved, 3) if saved > 0 else None


def _max_b(r: dict) -> str:
    """The searched largest batch, or ~the predicted one within the first limit, or -."""
    if r.get("max_batch") is not None:
        return str(r["max_batch"])
    pred = next(iter(r.get("predicted_max_batch", {}).values()), None)
    return f"~{pred}" if pred is not None else "-"


def table(rows: list[dict]) -> str:
    head = (f"{'tokens':>6} {'chunk':>5} {'policy':<12} {'KV MiB':>8} {'saved':>6} {'peak MiB':>9} {'prefill':>8} "
            f"{'decode':>7} {'drop/saved':>10} {'prefill s':>9} {'ms/token':>8} {'vs full':>7} {'max B':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['length']:>6} {r['prefill_chunk']:>5} {r['policy']:<12} error: {r['error']}")
            continue
        g = lambda k, fmt: format(r[k], fmt) if r.get(k) is not None else "-"  # noqa: E731
        lines.append(f"{r['prompt_tokens']:>6} {r['prefill_chunk'] or '-':>5} {r['policy']:<12} "
                     f"{r['kv_bytes'] / 2**20:>8.1f} {g('kv_saved_share', '>6.1%')} {r['peak_mib']:>9.1f} "
                     f"{g('prefill_peak_mib', '>8.1f')} {g('decode_peak_mib', '>7.1f')} "
                     f"{g('rss_drop_over_kv_saved', '>10.2f')} {r['prefill_s']:>9.1f} {r['decode_ms']:>8.1f} "
                     f"{g('decode_ratio', '>7.2f')} {_max_b(r):>6}")
    return "\n".join(lines)


def _ints(spec: str) -> list[int]:
    return [int(x) for x in spec.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--scores", default="docs/runs/smollm2/scores.json")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--lengths", default="2000,4000,8000")
    ap.add_argument("--policies", default=",".join(POLICIES))
    ap.add_argument("--policies-at", default="", help="per-length policy lists, e.g. 16000=full,retrieval")
    ap.add_argument("--chunk-lengths", default="", help="lengths also measured with chunked prefill (default: the "
                    "longest)")
    ap.add_argument("--prefill-chunk", type=int, default=1024)
    ap.add_argument("--chunk-policies", default="full,retrieval")
    ap.add_argument("--sink", type=int, default=4)
    ap.add_argument("--recent", type=int, default=256)
    ap.add_argument("--kv-threshold", type=float, default=0.1)
    ap.add_argument("--kv-top", type=int, default=0)
    ap.add_argument("--kv-seed", type=int, default=0)
    ap.add_argument("--kv-prefill", default="full", choices=["full", "window"],
                    help="compressed heads in an unchunked prefill (chunked rows always use window)")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1, help="the prompt repeated this many times (default: 1)")
    ap.add_argument("--max-batch-mib", type=int, default=0,
                    help="search the largest batch within this many MiB above the base, per policy and length")
    ap.add_argument("--predict-max-batch", default="", metavar="MIB[,MIB]",
                    help="run batches 1 and 2 only, and predict from their peaks the largest batch within each limit")
    ap.add_argument("--out", default=None, help="default: bench/results/kv_<model>.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--policy", help=argparse.SUPPRESS)
    ap.add_argument("--length", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    if args.predict_max_batch and args.max_batch_mib:
        ap.error("--predict-max-batch and --max-batch-mib: choose one (the prediction, or the search that runs it)")

    lengths = _ints(args.lengths)
    per_length = {int(k): v.split(",") for k, v in (x.split("=") for x in args.policies_at.split(";") if x)}
    chunk_lengths = _ints(args.chunk_lengths) if args.chunk_lengths else lengths[-1:]
    cells = [(p, n, 0) for n in lengths for p in per_length.get(n, args.policies.split(","))]
    cells += [(p, n, args.prefill_chunk) for n in chunk_lengths for p in args.chunk_policies.split(",") if p]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", args.model.removesuffix(".gguf"))  # a dot is not a suffix: qwen2.5-...
    out = Path(args.out or f"bench/results/kv_{name}.json")
    result = {"model": args.model, "scores": args.scores, "device": args.device, "dtype": args.dtype,
              "torch": torch.__version__, "threads": torch.get_num_threads(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "sink": args.sink, "recent": args.recent,
              "kv_threshold": args.kv_threshold, "kv_top": args.kv_top, "kv_seed": args.kv_seed,
              "kv_prefill": args.kv_prefill,
              "new_tokens": args.new_tokens, "batch": args.batch, "max_batch_mib": args.max_batch_mib,
              "predict_max_batch": args.predict_max_batch, "command": " ".join(sys.argv), "rows": []}
    done = {}
    if out.exists():  # resume: keep the cells already measured with the same settings
        old = json.loads(out.read_text())
        if all(old.get(k) == result[k] for k in ("model", "scores", "sink", "recent", "new_tokens", "device", "dtype",
                                                  "kv_prefill", "batch", "max_batch_mib", "predict_max_batch")):
            done = {(r["policy"], r["length"], r["prefill_chunk"]): r for r in old["rows"] if "error" not in r}
    out.parent.mkdir(parents=True, exist_ok=True)
    search = max_batch if args.max_batch_mib else predicted_max_batch if args.predict_max_batch else None
    for policy, length, chunk in cells:
        row = done.get((policy, length, chunk)) or (search(args, policy, length) if search and not chunk
                                                    else run_cell(args, policy, length, chunk))
        result["rows"].append(row)
        shown = {k: v for k, v in row.items() if k not in ("policy", "length")}
        print(f"{policy:<10} {length:>6} chunk {chunk or '-':>5}: " + json.dumps(shown), flush=True)
        derive(result["rows"])
        out.write_text(json.dumps(result, indent=1))
    print(table(result["rows"]))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
