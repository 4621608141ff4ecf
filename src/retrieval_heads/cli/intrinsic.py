"""The `rheads intrinsic` subcommand: the context-extension experiment (`experiments/intrinsic/`).

    rheads intrinsic --out runs/intrinsic --rope theta:10 --steps 60 --seq-len 2048 --lr 3e-5 --warmup 6 \\
        --save-every 10 --niah-lengths 1000,1500,2000 --niah-depths 0,50,100 --detect-lengths 1000,2000 \\
        --detect-depths 0,50,100 --detect-needles-per-cell 2

Left out on purpose: anything the library does not do.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import RHeadsError
from .common import add_out_args, parse_list

from ..studies.intrinsic.config import DEFAULT_ROPE, STAGES


def _grid(spec: str, kind: str, probe: str) -> list:
    from ..probes.grid import parse_grid

    return parse_grid(spec, kind, param=f"{probe}.{kind}")  # its errors name --detect-lengths etc. (flags.py)


def build_config(a):
    """The IntrinsicConfig of the parsed flags (one-line errors for bad values)."""
    from ..config import ModelConfig, ProbeConfig
    from ..studies.intrinsic.config import IntrinsicConfig, TrainConfig
    from ..studies.intrinsic.rope import parse_rope
    from ..studies.intrinsic.stages import base_detect_config

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
                               lengths=_grid(a.detect_lengths, "lengths", "detect_probe"),
                               depths=_grid(a.detect_depths, "depths", "detect_probe"))
    niah_probe = ProbeConfig(haystack=a.haystack, needles="eval", needles_per_cell=1,
                             lengths=_grid(a.niah_lengths, "lengths", "niah_probe"),
                             depths=_grid(a.niah_depths, "depths", "niah_probe"))
    threshold = 0.1
    if a.base_run:  # its grid and threshold replace the --detect-* flags, so that the two runs are comparable
        base = base_detect_config(a.base_run)
        detect_probe, threshold = base.probe, base.threshold
    return IntrinsicConfig(
        model=ModelConfig(model=a.model, device=a.device, dtype=a.dtype), rope=a.rope, context_factor=ctx,
        detect_probe=detect_probe, niah_probe=niah_probe, threshold=threshold,
        base_run=str(a.base_run) if a.base_run else None, max_new_tokens=a.max_new_tokens,
        train=TrainConfig(seq_len=a.seq_len, batch_size=a.batch_size, steps=a.steps, lr=a.lr, warmup=a.warmup,
                          save_every=a.save_every, seed=a.train_seed, text=a.haystack))


def cmd_intrinsic(a) -> None:
    from ..studies.intrinsic.stages import format_markdown, run_intrinsic

    cfg = build_config(a)
    summary = run_intrinsic(cfg, Path(a.out), parse_list(a.stages), progress=not a.no_progress, overwrite=a.overwrite)
    print("\n" + format_markdown(summary) + f"\n\nresults in {a.out}/ (summary.json, timings.json, stage directories)")


def add_parsers(sub) -> None:
    p = sub.add_parser("intrinsic", help="extend the context (RoPE), train a little, compare the heads before/after",
                       description="The intrinsic experiment, in resumable stages: " + ", ".join(STAGES) + ".")
    p.add_argument("--model", default="smollm2-135m", help="named offline model, hub id or local directory")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                   help="for detection and NIAH (training is float32)")
    add_out_args(p, "runs/intrinsic")
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
    p.add_argument("--train-seed", type=int, default=0, help="training seed: data windows and RNG (default: 0)")
    p.add_argument("--haystack", default="paul-graham",
                   help="the probes' haystack and the training text: a name, a .txt file or a directory")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_intrinsic)
