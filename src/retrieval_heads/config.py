"""Typed run configurations. Each is written, as a dict, into the result files of the run it configures.

Left out on purpose: config files and inheritance; the CLI builds these from flags and the library takes
them as arguments.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class ModelConfig:
    model: str = "smollm2-135m"  # named offline model, hub id, local dir or .gguf file
    device: str = "cpu"
    dtype: str = "auto"  # auto: float32 on CPU, bfloat16 on CUDA
    device_map: str | None = None  # passed to from_pretrained (accelerate), e.g. "auto"


@dataclass
class ProbeConfig:
    haystack: str = "paul-graham"  # registered haystack name, a directory of .txt files, or a .txt file
    needles: str = "detect"  # registered needle set name or a JSONL file {"needle","question","real_needle"}
    lengths: list[int] = field(default_factory=lambda: [1000, 1500, 2000])  # prompt tokens, question included
    depths: list[float] = field(default_factory=lambda: [0, 25, 50, 75, 100])  # percent of the context
    needles_per_cell: int = 2
    template: str = "default"  # registered template name or a format string with {context} and {question}
    chat: bool | None = None  # None: use the chat template when the tokenizer has one (not for 'paper')
    seed: int = 42


class RunConfig:
    """Mixin for run configs that hold a `model: ModelConfig` and a `probe: ProbeConfig`: dict round trip."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        return cls(
            model=ModelConfig(**d.get("model", {})),
            probe=ProbeConfig(**d.get("probe", {})),
            **{f.name: d[f.name] for f in fields(cls) if f.name not in ("model", "probe") and f.name in d},
        )


@dataclass
class DetectConfig(RunConfig):
    model: ModelConfig = field(default_factory=ModelConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    max_new_tokens: int = 32
    threshold: float = 0.1  # heads scoring above it are retrieval heads
    rouge_threshold: float = 0.5  # samples count when ROUGE-1 recall of the answer is above it
