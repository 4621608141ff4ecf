"""Synthetic detection runs (config.json, samples.jsonl, scores.json) for the analysis and report tests, and a
helper that runs the `compare` / `report` commands in-process."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from retrieval_heads.heads.scores import scores_from_records


def make_run(path: Path, *, L: int = 6, H: int = 8, KV: int | None = 2, family: str = "llama",
             lengths: tuple[int, ...] = (1000, 2000, 3000, 4000), per_length: int = 10, seed: int = 0,
             retrieval: dict[str, float] | None = None, sliding_window: int | None = None,
             layer_types: list[str] | None = None, write_scores: bool = True, uncounted_every: int = 7) -> Path:
    """A run directory as `rheads detect` writes it: config.json, samples.jsonl (header + samples), scores.json.

    `retrieval` maps "layer-head" to the chance it copies in a sample; in a sample where it copies it copies
    1..span_len tokens. Other heads copy a stray token rarely. Heads in sliding layers never copy when the
    answer lies beyond the window (as the mask guarantees in a real run)."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    retrieval = retrieval if retrieval is not None else {"2-1": 0.95, "3-4": 0.6, "4-5": 0.5, "5-0": 1.0, "1-7": 0.3}
    sliding = [t == "sliding_attention" for t in layer_types] if layer_types else (
        [True] * L if sliding_window else [False] * L)
    config = {"model": {"model": f"synthetic-{family}", "device": "cpu", "dtype": "auto", "device_map": None},
              "probe": {"haystack": "paul-graham", "needles": "detect", "lengths": list(lengths),
                        "depths": [0, 50, 100], "needles_per_cell": 1, "template": "default", "chat": None, "seed": 42},
              "max_new_tokens": 32, "threshold": 0.1, "rouge_threshold": 0.5}
    model = {"family": family, "num_layers": L, "num_heads": H, "num_kv_heads": KV, "max_context": 8192,
             "sliding_window": sliding_window, "layer_types": layer_types, "name_or_path": f"synthetic-{family}",
             "dtype": "torch.float32"}
    (path / "config.json").write_text(json.dumps({"version": 1, "toolkit": "0.1.0", "config": config, "model": model}))
    records = []
    i = 0
    for length in lengths:
        for k in range(per_length):
            i += 1
            depth = [0, 50, 100][k % 3]
            span_len = int(rng.integers(3, 7))
            start = int(20 + (length - 80) * depth / 100)
            far = sliding_window is not None and length - (start + span_len) >= sliding_window
            copies = {}
            for key, p in retrieval.items():
                l = int(key.split("-")[0])
                if sliding[l] and far:
                    continue
                if rng.random() < p:
                    copies[key] = int(rng.integers(1, span_len + 1))
            l, h = int(rng.integers(L)), int(rng.integers(H))
            if rng.random() < 0.5 and not (sliding[l] and far):  # a stray copy by some other head
                copies.setdefault(f"{l}-{h}", 1)
            records.append({"type": "sample", "id": f"L{length}-D{depth}-N{k}", "length": length, "depth": depth,
                            "actual_depth": depth, "prompt_length": length, "needle": "n", "question": "q",
                            "real_needle": "a b c", "answer_span": [start, start + span_len], "span_len": span_len,
                            "response": "a b c", "new_tokens": 8, "rouge1_recall": 1.0,
                            "counted": i % uncounted_every != 0, "copies": copies, "seconds": 0.1})
    with open(path / "samples.jsonl", "w") as f:
        f.write(json.dumps({"type": "header", "version": 1, "config": config}) + "\n")
        for r in records:
            f.write(json.dumps(r) + "\n")
    if write_scores:
        scores_from_records(records, L, H).save(path / "scores.json")
    return path


def gemma_like(path: Path, seed: int = 1) -> Path:
    return make_run(path, L=4, H=4, KV=1, family="gemma3_text", sliding_window=512,
                    layer_types=["sliding_attention", "full_attention"] * 2,
                    retrieval={"1-2": 0.9, "3-0": 0.7, "0-1": 0.8, "2-3": 0.5}, seed=seed)


def cli(argv):
    from retrieval_heads.cli.report import add_parsers

    parser = argparse.ArgumentParser(prog="rheads")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    a = parser.parse_args(argv)
    a.func(a)
