"""Benchmark: `rheads answer` with one prefill per question (the default) against one prefill per pass and per
monitor report, side by side in one run.

One process loads the model once, builds the answer bench's items (`answer/bench/items.py`, `--items-per-family`
of each family), then answers them twice into fresh folders with every chosen method: first with the shared
prefill, then with `shared_prefill=False`. It reports each run's wall time (answering and the monitor's reports of
every answer, model loading excluded), the speedup (separate / shared), and whether every (item, method) row has
the same answer, abstention and verdict in both, with the largest difference of the monitor's score. It also
reports, per method, the mean `seconds` of both runs: with the shared prefill an answer is charged the measured
prefills it used, so the two should be close. The order is fixed (shared first), so a cold cache would favour
the separate run, not ours.

  python bench/bench_answer.py --model smollm2-135m --dtype bfloat16 --scores docs/runs/smollm2/scores.json \\
      --lengths 2000 --items-per-family 2 --out bench/results/answer_prefill_smollm2-135m.json

Left out on purpose: accuracy (`rheads answer bench`) and memory (one question's prefixes are held at a time).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

from retrieval_heads.answer.bench.items import bench_items
from retrieval_heads.answer.registry import parse_methods
from retrieval_heads.answer.run import AnswerConfig, run_answer
from retrieval_heads.config import ModelConfig
from retrieval_heads.io.jsonl import read_jsonl
from retrieval_heads.models.info import model_dims
from retrieval_heads.models.loading import load_model


def _rows(out: Path) -> dict[tuple[str, str], dict]:
    return {(r["id"], r["method"]): r for r in read_jsonl(out / "answers.jsonl") if r.get("type") == "answer"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--scores", required=True)
    ap.add_argument("--methods", default="greedy,cad,decore,copy,gated,abstain")
    ap.add_argument("--families", default="niah,counterfactual,halueval")
    ap.add_argument("--lengths", default="2000")
    ap.add_argument("--items-per-family", type=int, default=2)
    ap.add_argument("--out", default="bench/results/answer_prefill.json")
    a = ap.parse_args()
    model, tok = load_model(a.model, dtype=a.dtype)
    items = bench_items(tok, families=a.families.split(","), lengths=[int(x) for x in a.lengths.split(",")],
                        depths=[0, 25, 50, 75, 100], halueval_items=100, seed=42, haystack="paul-graham",
                        template="default", chat=None, max_context=model_dims(model)[2] or None, split="eval",
                        per_family=a.items_per_family)
    answers = [{k: it[k] for k in ("id", "line", "context", "question", "answers")} for it in items]
    base = AnswerConfig(model=ModelConfig(model=a.model, dtype=a.dtype), scores=a.scores,
                        methods=parse_methods(a.methods), input="bench items")
    walls, rows = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode, shared in (("shared", True), ("separate", False)):
            t0 = time.perf_counter()
            run_answer(model, tok, dataclasses.replace(base, shared_prefill=shared), Path(tmp) / mode, answers,
                       progress=False)
            walls[mode] = time.perf_counter() - t0
            rows[mode] = _rows(Path(tmp) / mode)
            print(f"{mode}: {walls[mode]:.1f} s", flush=True)
    keys = sorted(rows["shared"])
    diff = [k for k in keys if any(rows["shared"][k][f] != rows["separate"][k][f]
                                   for f in ("answer", "abstained", "verdict"))]
    score_gap = max((abs(rows["shared"][k]["hallucination_score"] - rows["separate"][k]["hallucination_score"])
                     for k in keys if rows["shared"][k]["hallucination_score"] is not None
                     and rows["separate"][k]["hallucination_score"] is not None), default=0.0)
    per_method = {m: {mode: round(sum(rows[mode][k]["seconds"] for k in keys if k[1] == m)
                                  / sum(k[1] == m for k in keys), 2) for mode in rows} for m in base.methods}
    row = {"model": a.model, "dtype": a.dtype, "families": a.families.split(","), "lengths": a.lengths,
           "items": len(items), "methods": base.methods, "rows": len(keys),
           "shared_s": round(walls["shared"], 1), "separate_s": round(walls["separate"], 1),
           "speedup": round(walls["separate"] / walls["shared"], 2),
           "rows_differing": [list(k) for k in diff], "max_score_gap": round(score_gap, 5),
           "mean_seconds_per_method": per_method}
    print(json.dumps(row, indent=1))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(row, indent=1) + "\n")


if __name__ == "__main__":
    main()
