"""The intrinsic experiment's typed configs: the stages, the RoPE change, the probes and the training run.

Left out on purpose: running anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...config import Config, ModelConfig, ProbeConfig

STAGES = ("base-detect", "extend", "niah-before", "train", "niah-after", "after-detect", "compare")
DEFAULT_ROPE = "theta:10"


@dataclass
class TrainConfig(Config):
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
class IntrinsicConfig(Config):
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
