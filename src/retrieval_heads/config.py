"""Typed run configurations. Each is written, as a dict, into the result files of the run it configures.

`Config` gives every config dataclass its dict round trip: `to_dict()` and `from_dict(d)`, which rebuilds
nested config fields and ignores keys it does not know (files written by other versions).

Left out on purpose: config files and inheritance; the CLI builds these from flags and the library takes
them as arguments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any, get_type_hints


class Config:
    """Mixin for config dataclasses: dict round trip, nested configs included."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        hints = get_type_hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            value, kind = d[f.name], hints.get(f.name)
            if isinstance(kind, type) and issubclass(kind, Config) and isinstance(value, dict):
                value = kind.from_dict(value)
            kwargs[f.name] = value
        return cls(**kwargs)

    def defaults(self) -> dict[str, Any]:
        """The dict of this config class with every field at its default (for run-directory checks)."""
        return type(self)().to_dict()


@dataclass
class ModelConfig(Config):
    model: str = "smollm2-135m"  # named offline model, hub id, local dir or .gguf file
    device: str = "cpu"
    dtype: str = "auto"  # auto: float32 on CPU, bfloat16 on CUDA
    device_map: str | None = None  # passed to from_pretrained (accelerate), e.g. "auto"


@dataclass
class ProbeConfig(Config):
    haystack: str = "paul-graham"  # registered haystack name, a directory of .txt files, or a .txt file
    needles: str = "detect"  # registered needle set name or a JSONL file {"needle","question","real_needle"}
    lengths: list[int] = field(default_factory=lambda: [1000, 1500, 2000])  # prompt tokens, question included
    depths: list[float] = field(default_factory=lambda: [0, 25, 50, 75, 100])  # percent of the context
    needles_per_cell: int = 2
    template: str = "default"  # registered template name or a format string with {context} and {question}
    chat: bool | None = None  # None: use the chat template when the tokenizer has one (not for 'paper')
    seed: int = 42


@dataclass
class DetectConfig(Config):
    model: ModelConfig = field(default_factory=ModelConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    max_new_tokens: int = 32
    stop: list[str] | None = None  # stop strings; None: a newline after the answer for plain templates, none in chat
    threshold: float = 0.1  # heads scoring above it are retrieval heads
    rouge_threshold: float = 0.5  # samples count when ROUGE-1 recall of the answer is above it
    shard: str | None = None  # "i/n": only the i-th of n cost-balanced parts of the samples (cluster/shard.py)
