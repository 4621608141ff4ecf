"""The paper's "intrinsic" evidence at small scale: after continual pretraining to a longer context, a model
keeps the retrieval heads it had (Wu et al. 2024, "Retrieval Head Mechanistically Explains Long-Context
Factuality", section on the intrinsic property).

For one model (default `smollm2-135m`; any spec `load_model` takes), seven resumable stages into `--out`:

  base-detect   retrieval-head detection on the original model         -> OUT/base-detect/ (or --base-run DIR)
  extend        copy the model with its RoPE changed (`--rope`): `theta:F` (ABF, the default theta:10:
                rope_theta x F) or `linear:F` (position interpolation: rope_type linear, factor F);
                max_position_embeddings x --context-factor (default F for linear, 4 for theta); checks that
                the reloaded copy's inv_freq and logits changed        -> OUT/extended/ (safetensors + tokenizer)
  niah-before   NIAH (`eval` needles) on the extended, untrained model  -> OUT/niah-before/
  train         full fine-tuning (float32, torch AdamW, betas 0.9/0.95, no weight decay, grad clip 1.0) on
                random `--seq-len` windows of the haystack text (Paul Graham essays; the needles are not
                in it, so no answer is trained in); lr: linear warmup over `--warmup`
                steps, then cosine down to 10% of `--lr`. Window starts are drawn from a generator seeded
                by (seed, step), so a resumed run sees the same data. Per-step {"step","loss","lr","seconds"}
                in OUT/train/log.jsonl; every `--save-every` steps an atomic checkpoint (tmp dir + rename) in
                OUT/train/ckpt/: weights (safetensors) + optimizer, scheduler, RNG states and step
                                                                        -> OUT/trained/
  niah-after    the same NIAH grid on the trained model                 -> OUT/niah-after/
  after-detect  detection on the trained model, on the base run's grid  -> OUT/after-detect/
  compare       head-by-head comparison of base vs after scores         -> OUT/compare/

then OUT/summary.json (versioned: config, NIAH before/after and gain, train loss, wall seconds per stage,
the comparison, retrieval-head counts) and a Markdown table on stdout. Rerun the same command to resume: a
finished stage is skipped, detection and NIAH resume per sample, training from its last checkpoint (log
lines past it are dropped and redone). OUT/config.json pins the config; a different one is refused.
Each stage adds its wall time (model loads included) to OUT/timings.json, one piece per process, updated
at the end of the stage, on Ctrl-C/SIGTERM and at every training checkpoint; a SIGKILL loses the piece
since the last update.

    OMP_NUM_THREADS=2 rheads intrinsic --out runs/intrinsic
    # the measured run (README): shorter NIAH/detect grids, 60 steps of 2048 tokens
    rheads intrinsic --out runs/intrinsic --rope theta:10 --steps 60 \
        --seq-len 2048 --lr 3e-5 --warmup 6 --save-every 10 --niah-lengths 1000,1500,2000 --niah-depths 0,50,100 \
        --detect-lengths 1000,2000 --detect-depths 0,50,100 --detect-needles-per-cell 2
    rheads intrinsic --stages extend,niah-before --out runs/intrinsic

Measured cost (2-core CPU, one thread, beside another job; README "The intrinsic experiment"): SmolLM2-135M,
theta:10, 60 steps of 2048 tokens: training 1822 s (about 30 s a step), the two detection
runs (12 samples, 1000-2000 tokens) 100 s and 78 s, the two NIAH runs (9 cells) 64 s and 56 s; 35 min in all.

Left out on purpose: LoRA (full fine-tuning of a 135M model fits in memory; `peft` is not a dependency),
mixed precision and gradient accumulation (use --batch-size), multi-device training, YaRN/NTK-by-parts,
NIAH of the original unextended model (run `rheads niah` for it), and any significance test.
SmolLM2-135M already has an 8k context (rope_theta 1e5), so here "extension" perturbs its RoPE and
training re-adapts the model to the new positions; the measured claim is that the same heads retrieve
afterwards. Why theta:10 (NIAH, eval needles, depths 0/50/100, 1 needle per cell, 2-core CPU probe):
the original scores 66.7 at 1000 and 2000 tokens; theta:10 keeps 66.7 at 1000 but falls to 0 at 2000;
theta:30 33.3 and theta:100 0 at 1000; linear:2 20 at 1000, 0 at 2000; linear:4 0 at both (empty
answers): theta:10 is clearly worse on the 1000-4000 grid without being destroyed, and a larger RoPE
base is how the paper's continually pretrained Llama-2-7B-80K (Fu et al. 2024) was extended.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ...analysis.compare import CompareConfig, compare, format_table, run_source, write_compare
from ...analysis.runs import load_run
from ...config import DetectConfig, ModelConfig
from ...errors import ParamError, RHeadsError
from ...io.jsonl import atomic_write_json, read_jsonl
from ...io.rundir import claim_run_dir
from ...models.loading import load_model
from ...version import FORMAT_VERSION, __version__
from ...viz.compare import scatter_plot
from ...detection.detect import detect
from ...detection.detect import format_summary as format_detect
from ...evals.niah import NiahConfig, run_niah
from ...evals.niah import format_summary as format_niah
from .config import STAGES, IntrinsicConfig
from .rope import stage_extend
from .train import stage_train


def stage_detect(cfg: IntrinsicConfig, spec: str, run_dir: Path) -> None:
    mc = ModelConfig(model=spec, device=cfg.model.device, dtype=cfg.model.dtype, device_map=cfg.model.device_map)
    model, tok = load_model(spec, device=mc.device, dtype=mc.dtype, device_map=mc.device_map)
    dc = DetectConfig(model=mc, probe=cfg.detect_probe, max_new_tokens=cfg.max_new_tokens, threshold=cfg.threshold)
    if cfg.base_run:  # only after-detect runs then: exactly as the base run did
        dc = replace(base_detect_config(cfg.base_run), model=mc)
    detect(model, dc, tokenizer=tok, out=run_dir)
    print(format_detect(json.loads((run_dir / "summary.json").read_text())))


def stage_niah(cfg: IntrinsicConfig, spec: str, run_dir: Path) -> None:
    mc = ModelConfig(model=spec, device=cfg.model.device, dtype=cfg.model.dtype, device_map=cfg.model.device_map)
    model, tok = load_model(spec, device=mc.device, dtype=mc.dtype, device_map=mc.device_map)
    summary = run_niah(model, tok, NiahConfig(model=mc, probe=cfg.niah_probe, max_new_tokens=cfg.max_new_tokens),
                       run_dir)
    print(format_niah(summary))


def stage_compare(cfg: IntrinsicConfig, out: Path) -> dict[str, Any]:
    runs = [load_run(base_dir(cfg, out), name="base"), load_run(out / "after-detect", name="after")]
    cc = CompareConfig(ks=list(cfg.ks), threshold=cfg.threshold)
    result = compare(runs[0].scores, runs[1].scores, ks=cc.ks, threshold=cc.threshold)
    src = [run_source(r) for r in runs]
    write_compare(out / "compare", result, src[0], src[1], cc, {"experiment": "intrinsic", "rope": cfg.rope})
    scatter_plot(runs[0].scores, runs[1].scores, out / "compare" / "scatter.png", "base", "after", cc.threshold,
                 f"{cfg.model.model}: before vs after {cfg.rope} + {cfg.train.steps} steps")
    print(format_table(result, "base", "after"))
    return result


def base_detect_config(run_dir: str) -> DetectConfig:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise ParamError("base_run", run_dir, "not a detect run directory (no config.json there)")
    return DetectConfig.from_dict(json.loads(path.read_text())["config"])


def base_dir(cfg: IntrinsicConfig, out: Path) -> Path:
    return Path(cfg.base_run) if cfg.base_run else out / "base-detect"


class Timings:
    """OUT/timings.json: {stage: {"pieces": {run id: seconds}, "seconds": sum}}."""

    def __init__(self, path: Path):
        self.path, self.run_id = path, f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.stage, self.t0 = None, 0.0

    def start(self, stage: str) -> None:
        self.stage, self.t0 = stage, time.perf_counter()

    def flush(self) -> None:
        if self.stage is None:
            return
        data = json.loads(self.path.read_text()) if self.path.exists() else {}
        entry = data.setdefault(self.stage, {"pieces": {}})
        entry["pieces"][self.run_id] = round(time.perf_counter() - self.t0, 2)
        entry["seconds"] = round(sum(entry["pieces"].values()), 2)
        atomic_write_json(self.path, data)


def is_done(stage: str, cfg: IntrinsicConfig, out: Path) -> bool:
    marker = {"base-detect": base_dir(cfg, out) / "scores.json", "extend": out / "extended" / "config.json",
              "niah-before": out / "niah-before" / "summary.json", "train": out / "trained" / "config.json",
              "niah-after": out / "niah-after" / "summary.json", "after-detect": out / "after-detect" / "summary.json",
              "compare": out / "compare" / "compare.json"}[stage]
    return marker.exists()


def needs(stage: str, cfg: IntrinsicConfig, out: Path) -> None:
    pre = {"niah-before": "extend", "train": "extend", "niah-after": "train", "after-detect": "train",
           "compare": "after-detect"}.get(stage)
    for p in [pre] + (["base-detect"] if stage == "compare" else []):
        if p and not is_done(p, cfg, out):
            raise RHeadsError(f"stage {stage} needs the output of stage {p}: run it first (add it to the stages)")


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def write_summary(cfg: IntrinsicConfig, out: Path) -> dict[str, Any]:
    nb, na = _json(out / "niah-before" / "summary.json"), _json(out / "niah-after" / "summary.json")
    log = [r for r in read_jsonl(out / "train" / "log.jsonl") if "loss" in r]
    losses = [r["loss"] for r in log]
    cmp = _json(out / "compare" / "compare.json") or {}
    bd, ad = _json(base_dir(cfg, out) / "summary.json"), _json(out / "after-detect" / "summary.json")
    timings = _json(out / "timings.json") or {}
    before, after = (nb or {}).get("mean_score"), (na or {}).get("mean_score")
    s = {
        "version": FORMAT_VERSION, "toolkit": __version__, "config": cfg.to_dict(),
        "stages_done": [st for st in STAGES if is_done(st, cfg, out)],
        "extend": _json(out / "extended" / "rheads-extend.json"),
        "niah_before": before, "niah_after": after,
        "niah_gain": round(after - before, 4) if before is not None and after is not None else None,
        "train_steps_done": len(losses),
        "train_loss_first": losses[0] if losses else None, "train_loss_last": losses[-1] if losses else None,
        "train_loss_first10": round(float(np.mean(losses[:10])), 4) if losses else None,
        "train_loss_last10": round(float(np.mean(losses[-10:])), 4) if losses else None,
        "seconds_per_train_step": round(float(np.mean([r["seconds"] for r in log])), 3) if log else None,
        "retrieval_heads_before": (bd or {}).get("n_retrieval_heads", cmp.get("n_above_a")),
        "retrieval_heads_after": (ad or {}).get("n_retrieval_heads", cmp.get("n_above_b")),
        "retrieval_heads_both": cmp.get("n_above_both"),
        "detect_counted_before": (bd or {}).get("n_counted"), "detect_counted_after": (ad or {}).get("n_counted"),
        **{k: cmp.get(k) for k in ("pearson", "spearman", "jaccard", "topk_overlap")},
        "seconds": {st: timings[st]["seconds"] for st in STAGES if st in timings},
    }
    s["seconds_total"] = round(sum(s["seconds"].values()), 1)
    atomic_write_json(out / "summary.json", s)
    return s


def format_markdown(s: dict[str, Any]) -> str:
    def f(x, nd=3):
        return "-" if x is None else f"{x:.{nd}f}" if isinstance(x, float) else str(x)

    rows = [("NIAH mean before / after training (0-100)", f"{f(s['niah_before'], 1)} / {f(s['niah_after'], 1)}"),
            ("NIAH gain", f(s["niah_gain"], 1)),
            ("train loss first10 / last10", f"{f(s['train_loss_first10'])} / {f(s['train_loss_last10'])}"),
            ("detect samples counted before / after",
             f"{f(s['detect_counted_before'])} / {f(s['detect_counted_after'])}"),
            ("retrieval heads before / after / both",
             f"{f(s['retrieval_heads_before'])} / {f(s['retrieval_heads_after'])} / {f(s['retrieval_heads_both'])}"),
            ("pearson / spearman", f"{f(s['pearson'])} / {f(s['spearman'])}"), ("jaccard", f(s["jaccard"])),
            ("top-k overlap", ", ".join(f"{k}: {v:.2f}" for k, v in (s["topk_overlap"] or {}).items()) or "-")]
    rows += [(f"wall s: {st}", f(sec, 0)) for st, sec in s["seconds"].items()]
    return "\n".join(["| quantity | value |", "|---|---:|", *(f"| {a} | {b} |" for a, b in rows)])


def run_intrinsic(cfg: IntrinsicConfig, out: str | Path, stages: list[str] | None = None, progress: bool = True,
                  overwrite: bool = False) -> dict[str, Any]:
    """Run the experiment's `stages` (default: all) into `out`, resuming; returns summary.json's contents."""
    stages = list(STAGES) if stages is None else stages
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise ParamError("stages", ",".join(stages), f"unknown stage(s) {', '.join(bad) or '(none)'}: choose from "
                         f"{', '.join(STAGES)}")
    out = claim_run_dir(out, {"version": FORMAT_VERSION, "toolkit": __version__, "config": cfg.to_dict()},
                        defaults={"config": cfg.defaults()}, overwrite=overwrite)
    timer = Timings(out / "timings.json")
    old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        run_stages(cfg, out, stages, timer, progress)
    finally:
        signal.signal(signal.SIGTERM, old_handler)
    return write_summary(cfg, out)


def _on_sigterm(*_) -> None:
    raise KeyboardInterrupt  # so that the finally blocks record the stage's time


def run_stages(cfg: IntrinsicConfig, out: Path, stages: list[str], timer: Timings, progress: bool) -> None:
    """Run the chosen stages in pipeline order, skipping finished ones."""
    for stage in [s for s in STAGES if s in stages]:
        if is_done(stage, cfg, out):
            print(f"== {stage}: done, skipped")
            continue
        if stage == "base-detect" and cfg.base_run:
            raise ParamError("base_run", cfg.base_run, "has no scores.json: finish that detect run first")
        needs(stage, cfg, out)
        print(f"== {stage}")
        timer.start(stage)
        try:
            if stage == "base-detect":
                stage_detect(cfg, cfg.model.model, out / "base-detect")
            elif stage == "extend":
                stage_extend(cfg, out)
            elif stage in ("niah-before", "niah-after"):
                stage_niah(cfg, str(out / ("extended" if stage == "niah-before" else "trained")), out / stage)
            elif stage == "train":
                stage_train(cfg, out, timer.flush, progress)
            elif stage == "after-detect":
                stage_detect(cfg, str(out / "trained"), out / "after-detect")
            else:
                stage_compare(cfg, out)
        finally:
            timer.flush()
            timer.stage = None
