"""The `train` stage: full fine-tuning on random windows of the haystack text, resumable bit for bit.

float32, torch AdamW (betas 0.9/0.95, no weight decay), grad clip 1.0, linear warmup then cosine down to
10% of the learning rate. Window starts come from a generator seeded by (seed, step), so a resumed run sees
the same data; every `save_every` steps an atomic checkpoint holds the weights, optimizer, scheduler and RNG
states; log lines past the checkpoint are dropped and redone on resume.

Left out on purpose: LoRA, mixed precision, gradient accumulation and multi-device training.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ...errors import ParamError
from ...io.jsonl import JsonlWriter, read_jsonl
from ...models.loading import load_model
from ...probes.haystack import get_haystack
from .config import IntrinsicConfig, TrainConfig


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


def stage_train(cfg: IntrinsicConfig, out: Path, on_checkpoint: Callable[[], None], progress: bool) -> None:
    """Full fine-tuning from OUT/extended (or the last checkpoint) to OUT/trained; see the package docstring."""
    tc, tdir = cfg.train, out / "train"
    tdir.mkdir(exist_ok=True)
    ckpt = next((d for d in (tdir / "ckpt", tdir / "ckpt.old") if (d / "state.pt").exists()), None)
    model, tok = load_model(str(ckpt / "model" if ckpt else out / "extended"), device=cfg.model.device,
                            dtype="float32", attn_implementation="sdpa")
    model.train()
    ids = torch.tensor(tok(get_haystack(tc.text), add_special_tokens=False, verbose=False)["input_ids"])  # [N]
    if ids.numel() <= tc.seq_len:
        raise ParamError("train.seq_len", tc.seq_len, f"longer than the training text ({ids.numel()} tokens)")
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
                on_checkpoint()
    os.replace(tdir / "ckpt" / "model", out / "trained")  # the last checkpoint's weights are the final model
    shutil.rmtree(tdir / "ckpt")
