"""The `rheads detect` and `rheads models` subcommands.

Left out on purpose: anything the library does not do.
"""

from __future__ import annotations

import json
from pathlib import Path

from .common import (add_model_args, add_out_args, add_probe_args, add_shard_arg, finish_shard, model_config,
                     parse_list, probe_config)


def cmd_detect(a) -> None:
    from ..config import DetectConfig

    config = DetectConfig(model=model_config(a), probe=probe_config(a), max_new_tokens=a.max_new_tokens,
                          threshold=a.threshold, stop=parse_list(a.stop), shard=a.shard)  # flag errors first
    from ..cluster.shard import parse_shard

    parse_shard(a.shard)  # its form before the model loads; its count against the samples before --out is touched
    from ..detection.detect import detect, format_summary
    from ..io.jsonl import of_type, read_jsonl

    out = Path(a.out)
    detect(config.model.model, config, out=out, batch_size=a.batch_size, overwrite=a.overwrite)
    summary = json.loads((out / "summary.json").read_text())
    print(format_summary(summary))
    n = len(of_type(read_jsonl(out / "samples.jsonl"), "sample"))
    finish_shard(a)
    print(f"\n{n} samples in {summary['seconds']:.0f} s of decoding; results in {out}/ "
          "(scores.json, samples.jsonl, heatmap.png, summary.json)")


def cmd_models(a) -> None:
    from ..models.registry import format_models_table, list_models

    print(format_models_table(list_models()))


def add_parsers(sub) -> None:
    p = sub.add_parser("detect", help="score every attention head with the retrieval score")
    add_model_args(p)
    add_probe_args(p, needles="detect", lengths="1000,1500,2000", depths="0:100:5", per_cell=2)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--threshold", type=float, default=0.1, help="heads scoring above it are retrieval heads")
    p.add_argument("--stop", default=None, help="comma list of stop strings ('' for none; default: a newline after "
                   "the answer for plain templates, none with a chat template)")
    p.add_argument("--batch-size", type=int, default=1, help="prompts decoded together (left-padded; same scores)")
    add_out_args(p, "runs/detect")
    add_shard_arg(p)
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("models", help="the offline models this install can load, and how to get the others")
    p.set_defaults(func=cmd_models)
