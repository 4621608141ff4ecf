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

    OMP_NUM_THREADS=2 .venv/bin/python scripts/intrinsic_experiment.py --out runs/intrinsic
    # the measured run (README): shorter NIAH/detect grids, 60 steps of 2048 tokens
    .venv/bin/python scripts/intrinsic_experiment.py --out runs/intrinsic --rope theta:10 --steps 60 \
        --seq-len 2048 --lr 3e-5 --warmup 6 --save-every 10 --niah-lengths 1000,1500,2000 --niah-depths 0,50,100 \
        --detect-lengths 1000,2000 --detect-depths 0,50,100 --detect-needles-per-cell 2
    .venv/bin/python scripts/intrinsic_experiment.py --stages extend,niah-before --out runs/intrinsic

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

import argparse
import copy
import json
import math
import os
import random
import shutil
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from retrieval_heads import __version__
from retrieval_heads.config import DetectConfig, ModelConfig, ProbeConfig
from retrieval_heads.errors import RHeadsError
from retrieval_heads.results import FORMAT_VERSION, JsonlWriter, atomic_write_json, claim_run_dir, read_jsonl

STAGES = ("base-detect", "extend", "niah-before", "train", "niah-after", "after-detect", "compare")
DEFAULT_ROPE = "theta:10"


@dataclass
class TrainConfig:
    seq_len: int = 1024
    batch_size: int = 1
    steps: int = 200
    lr: float = 2e-5
    warmup: int = 20  # linear warmup steps, then cosine to min_lr_ratio * lr
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    save_every: int = 25
    text: str = "paul-graham"  # haystack spec of the training text
    seed: int = 0


@dataclass
class IntrinsicConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    rope: str = DEFAULT_ROPE  # linear:F or theta:F
    context_factor: float = 4.0  # max_position_embeddings multiplier
    detect_probe: ProbeConfig = field(default_factory=ProbeConfig)
    niah_probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(needles="eval", needles_per_cell=1))
    base_run: str | None = None  # an existing detect run used as base-detect
    threshold: float = 0.1
    max_new_tokens: int = 32
    ks: list[int] = field(default_factory=lambda: [5, 10, 20, 50])
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------------ RoPE


def parse_rope(spec: str) -> tuple[str, float]:
    kind, _, num = spec.partition(":")
    try:
        factor = float(num)
    except ValueError:
        factor = 0.0
    if kind not in ("linear", "theta") or factor <= 1.0:
        raise RHeadsError(f"bad --rope {spec!r}: write linear:F (position interpolation) or theta:F (rope_theta x F), "
                          "F > 1, e.g. linear:4")
    return kind, factor


def extend_rope(config, spec: str, context_factor: float) -> None:
    """Change the RoPE of a transformers 5 config in place (every layer type's dict where it is nested)."""
    kind, factor = parse_rope(spec)
    cfg = config.get_text_config()
    params = cfg.rope_parameters
    if not params:
        raise RHeadsError(f"{cfg.model_type} has no rope_parameters: this experiment needs a RoPE model")
    nested = cfg.nested_rope_parameter_keys(params)
    for d in [params[k] for k in nested] if nested else [params]:
        if d is None:
            continue
        if kind == "theta":
            d["rope_theta"] = float(d["rope_theta"]) * factor
        elif d["rope_type"] == "default":
            d.update(rope_type="linear", factor=factor)
        elif d["rope_type"] == "linear":
            d["factor"] = float(d["factor"]) * factor
        else:
            raise RHeadsError(f"cannot stack linear scaling on rope_type {d['rope_type']!r}: use --rope theta:F")
    cfg.max_position_embeddings = int(round(cfg.max_position_embeddings * context_factor))


def rope_state(model) -> dict[str, Any]:
    """The rotary embeddings' inv_freq buffers and attention scalings (what the attention actually uses)."""
    bufs = {n: b.detach().float().cpu() for n, b in model.named_buffers() if n.endswith("inv_freq")
            and "original" not in n}
    scal = {f"{n}.{a}": float(v) for n, m in model.named_modules() if "Rotary" in type(m).__name__
            for a, v in vars(m).items() if a.endswith("attention_scaling") and isinstance(v, (int, float))}
    return {"inv_freq": bufs, "attention_scaling": scal}


def _probe_ids(tok, text: str, n: int = 128) -> torch.Tensor:
    return torch.tensor([tok(text[:20000], add_special_tokens=False)["input_ids"][:n]])  # [1, n]


def stage_extend(cfg: IntrinsicConfig, out: Path) -> None:
    from retrieval_heads.haystack import get_haystack
    from retrieval_heads.models import load_model

    model, tok = load_model(cfg.model.model, dtype="float32", attn_implementation="sdpa")
    ids = _probe_ids(tok, get_haystack(cfg.train.text))
    with torch.no_grad():
        logits0 = model(ids).logits  # [1, n, V]
    rope0, before = rope_state(model), copy.deepcopy(model.config.get_text_config().rope_parameters)
    max0 = model.config.get_text_config().max_position_embeddings
    extend_rope(model.config, cfg.rope, cfg.context_factor)
    tmp, dest = out / "extended.tmp", out / "extended"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    del model
    ext, _ = load_model(str(tmp), dtype="float32", attn_implementation="sdpa")  # rotary embeddings built anew
    rope1 = rope_state(ext)
    with torch.no_grad():
        dlogit = float((ext(ids).logits - logits0).abs().max())
    ratios = {n: (rope0["inv_freq"][n] / rope1["inv_freq"][n]) for n in rope0["inv_freq"]}  # [head_dim/2] each
    if all(torch.allclose(r, torch.ones_like(r)) for r in ratios.values()) and \
            rope0["attention_scaling"] == rope1["attention_scaling"]:
        raise RHeadsError(f"--rope {cfg.rope} did not change the rotary embeddings of the reloaded model: "
                          "this transformers version reads RoPE settings elsewhere")
    if dlogit < 1e-4:
        raise RHeadsError(f"--rope {cfg.rope} changed inv_freq but not the logits (max diff {dlogit:.1e})")
    info = {"rope": cfg.rope, "rope_parameters_before": before, "rope_parameters_after":
            dict(ext.config.get_text_config().rope_parameters), "max_position_embeddings": [max0,
            ext.config.get_text_config().max_position_embeddings],
            "inv_freq_ratio": {n: [round(float(r.min()), 4), round(float(r.max()), 4)] for n, r in ratios.items()},
            "attention_scaling": [rope0["attention_scaling"], rope1["attention_scaling"]],
            "max_abs_logit_change": dlogit, "probe_tokens": ids.shape[1]}
    atomic_write_json(tmp / "rheads-extend.json", info)
    os.replace(tmp, dest)
    print(f"extended: {before} -> {info['rope_parameters_after']}, max positions {info['max_position_embeddings']}, "
          f"inv_freq ratio {info['inv_freq_ratio']}, max logit change {dlogit:.3g}")


# ------------------------------------------------------------------------------------------------ training


def lr_factor(tc: TrainConfig):
    def f(step: int) -> float:
        if step < tc.warmup:
            return (step + 1) / tc.warmup
        t = (step - tc.warmup) / max(1, tc.steps - tc.warmup)
        return tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return f


def batch_at(ids: torch.Tensor, step: int, tc: TrainConfig) -> torch.Tensor:
    """The [B, T] windows of step `step`: starts drawn by a generator seeded with (seed, step)."""
    g = torch.Generator().manual_seed(tc.seed * 1_000_003 + step)
    starts = torch.randint(0, ids.numel() - tc.seq_len + 1, (tc.batch_size,), generator=g)  # [B]
    return torch.stack([ids[s:s + tc.seq_len] for s in starts.tolist()])  # B x [T] -> [B, T]


def save_checkpoint(tdir: Path, model, tok, opt, sched, step: int) -> None:
    tmp, cur, old = tdir / "ckpt.tmp", tdir / "ckpt", tdir / "ckpt.old"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "model")
    tok.save_pretrained(tmp / "model")
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    torch.save({"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng},
               tmp / "state.pt")
    if cur.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(cur, old)
    os.replace(tmp, cur)
    shutil.rmtree(old, ignore_errors=True)


def stage_train(cfg: IntrinsicConfig, out: Path, timer: "Timings", progress: bool) -> None:
    from tqdm.auto import tqdm

    from retrieval_heads.haystack import get_haystack
    from retrieval_heads.models import load_model

    tc, tdir = cfg.train, out / "train"
    tdir.mkdir(exist_ok=True)
    ckpt = next((d for d in (tdir / "ckpt", tdir / "ckpt.old") if (d / "state.pt").exists()), None)
    model, tok = load_model(str(ckpt / "model" if ckpt else out / "extended"), device=cfg.model.device,
                            dtype="float32", attn_implementation="sdpa")
    model.train()
    ids = torch.tensor(tok(get_haystack(tc.text), add_special_tokens=False, verbose=False)["input_ids"])  # [N]
    if ids.numel() <= tc.seq_len:
        raise RHeadsError(f"--seq-len {tc.seq_len} is longer than the training text ({ids.numel()} tokens)")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tc.lr, betas=(0.9, 0.95), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(tc))
    start = 0
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed)
    random.seed(tc.seed)
    if ckpt:
        st = torch.load(ckpt / "state.pt", weights_only=False)  # our own file: optimizer tensors + RNG tuples
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        torch.set_rng_state(st["rng"]["torch"])
        np.random.set_state(st["rng"]["numpy"])
        random.setstate(st["rng"]["python"])
        start = st["step"]
        print(f"train: resuming from step {start} ({ckpt})")
    log = tdir / "log.jsonl"
    kept = [r for r in read_jsonl(log) if r.get("step", 0) <= start]  # steps past the checkpoint are redone
    with open(log.with_suffix(".tmp"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in kept)
    os.replace(log.with_suffix(".tmp"), log)
    device = next(model.parameters()).device
    with JsonlWriter(log) as writer:
        bar = tqdm(range(start, tc.steps), initial=start, total=tc.steps, desc="train", disable=not progress)
        for step in bar:
            t0 = time.perf_counter()
            batch = batch_at(ids, step, tc).to(device)  # [B, T]
            loss = model(input_ids=batch, labels=batch).loss  # labels are shifted inside the model
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            lr = sched.get_last_lr()[0]
            opt.step()
            sched.step()
            writer.write({"step": step + 1, "loss": round(loss.item(), 5), "lr": lr,
                          "seconds": round(time.perf_counter() - t0, 3)})
            bar.set_postfix(loss=f"{loss.item():.3f}")
            if (step + 1) % tc.save_every == 0 or step + 1 == tc.steps:
                save_checkpoint(tdir, model, tok, opt, sched, step + 1)
                timer.flush()
    os.replace(tdir / "ckpt" / "model", out / "trained")  # the last checkpoint's weights are the final model
    shutil.rmtree(tdir / "ckpt")


# ------------------------------------------------------------------------------------------------ eval stages


def stage_detect(cfg: IntrinsicConfig, spec: str, run_dir: Path) -> None:
    from retrieval_heads.detect import detect, format_summary
    from retrieval_heads.models import load_model

    mc = ModelConfig(model=spec, device=cfg.model.device, dtype=cfg.model.dtype, device_map=cfg.model.device_map)
    model, tok = load_model(spec, device=mc.device, dtype=mc.dtype, device_map=mc.device_map)
    dc = DetectConfig(model=mc, probe=cfg.detect_probe, max_new_tokens=cfg.max_new_tokens, threshold=cfg.threshold)
    if cfg.base_run:  # only after-detect runs then: exactly as the base run did
        dc = replace(base_detect_config(cfg.base_run), model=mc)
    detect(model, dc, tokenizer=tok, out=run_dir)
    print(format_summary(json.loads((run_dir / "summary.json").read_text())))


def stage_niah(cfg: IntrinsicConfig, spec: str, run_dir: Path) -> None:
    from retrieval_heads.models import load_model
    from retrieval_heads.niah import NiahConfig, format_summary, run_niah

    mc = ModelConfig(model=spec, device=cfg.model.device, dtype=cfg.model.dtype, device_map=cfg.model.device_map)
    model, tok = load_model(spec, device=mc.device, dtype=mc.dtype, device_map=mc.device_map)
    summary = run_niah(model, tok, NiahConfig(model=mc, probe=cfg.niah_probe, max_new_tokens=cfg.max_new_tokens),
                       run_dir)
    print(format_summary(summary))


def stage_compare(cfg: IntrinsicConfig, out: Path) -> dict[str, Any]:
    from retrieval_heads.compare import (CompareConfig, compare, format_table, run_source, scatter_plot,
                                         write_compare)
    from retrieval_heads.properties import load_run

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
        raise RHeadsError(f"--base-run {run_dir} is not a detect run directory (no config.json there)")
    return DetectConfig.from_dict(json.loads(path.read_text())["config"])


def base_dir(cfg: IntrinsicConfig, out: Path) -> Path:
    return Path(cfg.base_run) if cfg.base_run else out / "base-detect"


# ------------------------------------------------------------------------------------------------ bookkeeping


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
            raise RHeadsError(f"stage {stage} needs the output of stage {p}: run it first (add it to --stages)")


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


# ------------------------------------------------------------------------------------------------ main


def _grid(spec: str, kind: str, flag: str) -> list:
    from retrieval_heads.prompts import parse_grid

    try:
        return parse_grid(spec, kind)
    except RHeadsError as e:
        raise RHeadsError(str(e).replace(f"--{kind}", flag, 1)) from None


def build_config(a) -> IntrinsicConfig:
    kind, factor = parse_rope(a.rope)
    ctx = a.context_factor if a.context_factor is not None else (factor if kind == "linear" else 4.0)
    if ctx < 1:
        raise RHeadsError(f"--context-factor {ctx} would shrink the context: give a number >= 1")
    for name in ("seq_len", "batch_size", "steps", "save_every"):
        if getattr(a, name) < 1:
            raise RHeadsError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if not 0 <= a.warmup < a.steps or a.lr <= 0:
        raise RHeadsError(f"need 0 <= --warmup < --steps and --lr > 0 (got warmup {a.warmup}, steps {a.steps}, "
                          f"lr {a.lr})")
    detect_probe = ProbeConfig(haystack=a.haystack, needles_per_cell=a.detect_needles_per_cell,
                               lengths=_grid(a.detect_lengths, "lengths", "--detect-lengths"),
                               depths=_grid(a.detect_depths, "depths", "--detect-depths"))
    niah_probe = ProbeConfig(haystack=a.haystack, needles="eval", needles_per_cell=1,
                             lengths=_grid(a.niah_lengths, "lengths", "--niah-lengths"),
                             depths=_grid(a.niah_depths, "depths", "--niah-depths"))
    threshold = 0.1
    if a.base_run:  # its grid and threshold replace the --detect-* flags, so that the two runs are comparable
        base = base_detect_config(a.base_run)
        detect_probe, threshold = base.probe, base.threshold
    return IntrinsicConfig(
        model=ModelConfig(model=a.model, device=a.device, dtype=a.dtype), rope=a.rope, context_factor=ctx,
        detect_probe=detect_probe, niah_probe=niah_probe, threshold=threshold,
        base_run=str(a.base_run) if a.base_run else None, max_new_tokens=a.max_new_tokens,
        train=TrainConfig(seq_len=a.seq_len, batch_size=a.batch_size, steps=a.steps, lr=a.lr, warmup=a.warmup,
                          save_every=a.save_every, seed=a.seed, text=a.haystack))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m", help="named offline model, hub id or local directory")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="for detection and NIAH (training is float32)")
    p.add_argument("--out", default="runs/intrinsic")
    p.add_argument("--stages", default=",".join(STAGES), help="comma list of: " + ",".join(STAGES))
    p.add_argument("--rope", default=DEFAULT_ROPE, help="linear:F (position interpolation) or theta:F (ABF)")
    p.add_argument("--context-factor", type=float, default=None,
                   help="max_position_embeddings multiplier (default: F for linear, 4 for theta)")
    p.add_argument("--base-run", default=None, help="an existing detect run dir to use as base-detect")
    p.add_argument("--detect-lengths", default="1000:4000:4")
    p.add_argument("--detect-depths", default="0,50,100")
    p.add_argument("--detect-needles-per-cell", type=int, default=2)
    p.add_argument("--niah-lengths", default="1000:4000:4")
    p.add_argument("--niah-depths", default="0,50,100")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--warmup", type=int, default=20, help="linear warmup steps, then cosine to 10%% of --lr")
    p.add_argument("--save-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0, help="training seed (data windows, RNG)")
    p.add_argument("--haystack", default="paul-graham",
                   help="the probes' haystack and the training text: a name, a .txt file or a directory")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def _on_sigterm(*_) -> None:
    raise KeyboardInterrupt  # so that the finally blocks record the stage's time


def run(argv=None) -> dict[str, Any]:
    a = parse_args(argv)
    stages = [s.strip() for s in a.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad or not stages:
        raise RHeadsError(f"unknown stage(s) {', '.join(bad) or '(none)'} in --stages: choose from "
                          f"{', '.join(STAGES)}")
    cfg = build_config(a)
    out = Path(a.out)
    claim_run_dir(out, {"version": FORMAT_VERSION, "toolkit": __version__, "config": cfg.to_dict()})
    timer = Timings(out / "timings.json")
    old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        run_stages(cfg, out, stages, timer, not a.no_progress)
    finally:
        signal.signal(signal.SIGTERM, old_handler)
    summary = write_summary(cfg, out)
    print("\n" + format_markdown(summary) + f"\n\nresults in {out}/ (summary.json, timings.json, stage directories)")
    return summary


def run_stages(cfg: IntrinsicConfig, out: Path, stages: list[str], timer: Timings, progress: bool) -> None:
    for stage in [s for s in STAGES if s in stages]:
        if is_done(stage, cfg, out):
            print(f"== {stage}: done, skipped")
            continue
        if stage == "base-detect" and cfg.base_run:
            raise RHeadsError(f"--base-run {cfg.base_run} has no scores.json: finish that detect run first")
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
                stage_train(cfg, out, timer, progress)
            elif stage == "after-detect":
                stage_detect(cfg, str(out / "trained"), out / "after-detect")
            else:
                stage_compare(cfg, out)
        finally:
            timer.flush()
            timer.stage = None


def main(argv=None) -> int:
    from retrieval_heads.cli import guarded

    return guarded(lambda: run(argv), "intrinsic_experiment")


if __name__ == "__main__":
    sys.exit(main())
