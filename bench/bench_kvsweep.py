"""Benchmark: the suite KV sweep with one shared prefill against one prefill per arm, side by side in one run.

One process loads the model once, then runs the same `kv-sweep --suite` twice into fresh folders: first with the
shared prefill (`studies/kvshared.py`, the default), then with `shared_prefill=False` (every arm a `suite run`
of its own). It reports each sweep's wall time, the speedup (per-arm / shared), the arms and samples, and
whether every arm's answers are the same in both (pred, score, new tokens, KV bytes). The order is fixed
(shared first), so a cold cache would favour the per-arm run, not ours.

  python bench/bench_kvsweep.py --model smollm2-135m --dtype bfloat16 --scores docs/runs/smollm2/scores.json \\
      --tasks niah_single_2,vt --lengths 2000 --samples 2 --policies full,snapkv,headkv,hybrid --budgets 0.2,0.5 \\
      --out bench/results/kvsweep_shared_smollm2-135m.json

Left out on purpose: memory (the shared prefill holds one full cache while the arms decode: `bench_kv.py`
measures the caches) and scores (`rheads kv-sweep`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

from retrieval_heads.config import ModelConfig
from retrieval_heads.evals.suite.run import SuiteConfig
from retrieval_heads.io.jsonl import read_jsonl
from retrieval_heads.models.loading import load_model
from retrieval_heads.studies.kvsuite import KVSuiteConfig, run_kv_suite


def _answers(out: Path, arm: str) -> list[tuple]:
    recs = [r for r in read_jsonl(out / arm / "predictions.jsonl") if r.get("type") == "prediction"]
    return sorted((r["id"], r["pred"], r["score"], r["new_tokens"], r.get("kv_bytes")) for r in recs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--scores", required=True)
    ap.add_argument("--tasks", default="niah_single_2,vt")
    ap.add_argument("--lengths", default="2000")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--policies", default="full,snapkv,headkv,hybrid")
    ap.add_argument("--budgets", default="0.2,0.5")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--out", default="bench/results/kvsweep_shared.json")
    a = ap.parse_args()
    mc = ModelConfig(model=a.model, dtype=a.dtype)
    model, tok = load_model(a.model, dtype=a.dtype)
    suite = SuiteConfig(model=mc, tasks=a.tasks.split(","), lengths=[int(x) for x in a.lengths.split(",")],
                        samples=a.samples, scores=a.scores)
    cfg = KVSuiteConfig(suite=suite, policies=a.policies.split(","),
                        budgets=[float(b) for b in a.budgets.split(",")]).validate()
    arms = [name for name, _, _ in cfg.arms()]
    row = {"model": a.model, "dtype": a.dtype, "tasks": suite.tasks, "lengths": suite.lengths,
           "samples_per_cell": a.samples, "arms": arms, "batch_size": a.batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        walls = {}
        for mode, shared in (("shared", True), ("per_arm", False)):
            c = dataclasses.replace(cfg, shared_prefill=shared)
            t0 = time.perf_counter()
            run_kv_suite(model, tok, c, Path(tmp) / mode, progress=False, batch_size=a.batch_size)
            walls[mode] = time.perf_counter() - t0
            print(f"{mode}: {walls[mode]:.1f} s", flush=True)
        same = {arm: _answers(Path(tmp) / "shared", arm) == _answers(Path(tmp) / "per_arm", arm) for arm in arms}
        n = len(_answers(Path(tmp) / "shared", arms[0]))
    row.update(samples=n, shared_s=round(walls["shared"], 1), per_arm_s=round(walls["per_arm"], 1),
               speedup=round(walls["per_arm"] / walls["shared"], 2), same_answers=all(same.values()),
               arms_differing=[k for k, v in same.items() if not v])
    print(json.dumps(row, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
