"""`KVConfig`: the typed KV-cache settings of a run (NIAH's `kv`, the kv-sweep's `kv`), their one validation, and
the reading of older run files that stored them as flat `kv_*` fields.

Fields: `policy` (a registered name, `registry.policy_names()`), `sink` and `recent` (what a compressed KV head
keeps: the first `sink` real tokens and the last `recent` slots), `budget` (the share of the full cache's KV
bytes a budget policy keeps of the prompt, in (0, 1]; None: no budget; `budget.py`), `threshold` / `top` / `seed` (the score-driven policies' selection: a KV
head stays full when a query head of its group scores above `threshold`, or is among the `top` best when
top > 0; `seed` draws the random control), `prefill` (what compressed heads see during prefill: "full", or
"window" = sink + recent already there) and `prefill_chunk` (tokens per prefill forward, 0: the whole prompt).

`KVConfig.validate(scores, masked)` is the one place these are checked (the cache factory calls it; the CLI calls
it before the model loads and checks nothing itself): each bad value raises `ParamError` named `kv.<field>`.
The policy's own checks (e.g. `kv.top >= 0`, scores present) come from the policy class (`check_config`).

Legacy: run files written before this class stored `kv`, `kv_sink`, `kv_recent`, `kv_threshold`, `kv_top`,
`kv_seed`, `kv_prefill`, `prefill_chunk` flat in NiahConfig (and `sink`, `kv_threshold`, ... in the
kv-sweep's config). `nest_kv` moves them into one `kv` dict (the configs' `from_dict` call it);
`upgrade_stored_config` rewrites a run directory's config.json that way before it is compared for a resume, so
an old run directory resumes as the same run.

Importable without torch or transformers. Left out on purpose: building policies or caches (`registry.py`,
`factory.py`) and any CLI wording (`cli/flags.py` maps the parameter names to flags).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import Config
from ..errors import ParamError
from ..io.jsonl import atomic_write_json

PREFILL_MODES = ("full", "window")  # what compressed heads see in a multi-token call (layer.py)

# old flat field -> KVConfig field
NIAH_FLAT_KEYS = {"kv": "policy", "kv_sink": "sink", "kv_recent": "recent", "kv_threshold": "threshold",
                  "kv_top": "top", "kv_seed": "seed", "kv_prefill": "prefill", "prefill_chunk": "prefill_chunk"}
SWEEP_FLAT_KEYS = {"sink": "sink", "kv_threshold": "threshold", "kv_top": "top", "kv_seed": "seed",
                   "kv_prefill": "prefill", "prefill_chunk": "prefill_chunk"}


@dataclass
class KVConfig(Config):
    policy: str = "full"  # a registered KV policy (registry.policy_names())
    sink: int = 4  # compressed KV heads keep each row's first `sink` real tokens ...
    recent: int = 256  # ... and the last `recent` slots
    budget: float | None = None  # budget policies: the share of the full cache's KV bytes kept (budget.py)
    threshold: float = 0.1  # score policies: a KV head stays full when a query head of its group scores above it
    top: int = 0  # score policies: > 0 uses the top K query heads instead of the threshold
    seed: int = 0  # the random policy's draw
    prefill: str = "full"  # compressed heads in prefill: full (attend everything, then compress) or window
    prefill_chunk: int = 0  # tokens per prefill forward (0: the whole prompt at once)

    def policy_class(self):
        """The registered class of `policy` (ParamError `kv.policy` when unknown)."""
        from .registry import get_policy_class

        return get_policy_class(self.policy)

    def validate(self, scores=None, *, masked: bool = False) -> "KVConfig":
        """Every check of these settings, before any work; `scores` the run's retrieval scores (None: none given),
        `masked` whether heads are ablated in the run. Returns self."""
        cls = self.policy_class()
        check_window(self.sink, self.recent)
        self._check_budget(cls)
        if self.prefill not in PREFILL_MODES:
            raise ParamError("kv.prefill", self.prefill, f"use one of {', '.join(PREFILL_MODES)}")
        if self.prefill_chunk < 0:
            raise ParamError("kv.prefill_chunk", self.prefill_chunk,
                             "use a positive number of tokens, or 0 for no chunking")
        if cls.compresses and self.prefill_chunk and self.prefill == "full":
            raise ParamError("kv.prefill_chunk", self.prefill_chunk, "a chunk cannot attend to the tokens the cache "
                             "already dropped: use {kv.prefill} window with chunks, or no chunks")
        if cls.compresses and masked:
            raise ParamError("kv.policy", self.policy, "ablation needs the full cache: use a head mask or a "
                             "compressing KV policy, not both")
        cls.check_config(self, scores)
        return self

    def _check_budget(self, cls) -> None:
        from .budget import check_budget
        from .registry import get_policy_class, policy_names

        takes = [n for n in policy_names() if get_policy_class(n).uses_budget != "never"]
        if self.budget is None:
            if cls.uses_budget == "required":
                raise ParamError("kv.policy", self.policy, "this policy runs at a budget: give {kv.budget}, the share "
                                 "of the full cache's KV bytes to keep (e.g. 0.2)")
            return
        check_budget(self.budget)
        if cls.uses_budget == "never":
            raise ParamError("kv.budget", self.budget, f"the {self.policy} policy takes no budget: leave it out, or "
                             f"use one of {', '.join(takes)}")
        if self.prefill_chunk:
            raise ParamError("kv.prefill_chunk", self.prefill_chunk, "a budget policy picks what each head keeps from "
                             "the whole prompt: no prefill chunks with {kv.budget}")
        if self.prefill != "full":
            raise ParamError("kv.prefill", self.prefill, "a budget policy prefills with full attention: use "
                             "{kv.prefill} full with {kv.budget}")

    def build_policy(self, scores=None):
        """The policy these settings name, built by its class (`from_config`); `scores` for the score-driven ones."""
        policy = self.policy_class().from_config(self, scores)
        policy.budget, policy.sink, policy.recent = self.budget, self.sink, self.recent  # what a budget cache reads
        return policy


def make_policy(name: str, scores=None, *, threshold: float = 0.1, top: int = 0, seed: int = 0):
    """A policy by name (registry.policy_names()), as a run builds it from its `KVConfig`."""
    return KVConfig(policy=name, threshold=threshold, top=top, seed=seed).build_policy(scores)


def check_window(sink: int, recent: int, recent_param: str = "kv.recent") -> None:
    """sink >= 0, recent >= 0 and sink + recent >= 1; `recent_param` names the window (the kv-sweep's windows are
    `recent_windows`)."""
    if sink < 0:
        raise ParamError("kv.sink", sink, "use a number of first tokens >= 0 (sink + recent >= 1)")
    if recent < 0:
        raise ParamError(recent_param, recent, "use a number of recent tokens >= 0 (sink + recent >= 1)")
    if sink + recent < 1:
        raise ParamError(recent_param, recent, f"with {{kv.sink}} {sink} nothing is kept: sink + recent >= 1 is "
                         f"needed (e.g. {{kv.sink}} 4, {{{recent_param}}} 256)")


def nest_kv(d: dict, flat: dict[str, str] = NIAH_FLAT_KEYS) -> dict:
    """`d` (a config dict) with its old flat KV keys (`flat`: old name -> KVConfig field) moved into `d["kv"]`;
    a dict already nested comes back unchanged."""
    if not isinstance(d, dict):
        return d
    old = [k for k in flat if k in d and not (k == "kv" and isinstance(d[k], dict))]
    if not old:
        return d
    out = dict(d)
    kv = dict(out["kv"]) if isinstance(out.get("kv"), dict) else {}
    for k in old:
        kv[flat[k]] = out.pop(k)
    out["kv"] = kv
    return out


def upgrade_stored_config(out: str | Path, upgrade: Callable[[dict], dict]) -> None:
    """Rewrite `out/config.json`'s `config` with `upgrade` (e.g. `nest_kv`) when that changes it, so the run-dir
    check compares like with like; nothing when there is no readable file (the run-dir check reports those)."""
    path = Path(out) / "config.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return
    cfg = meta.get("config") if isinstance(meta, dict) else None
    if isinstance(cfg, dict):
        new = upgrade(cfg)
        if new != cfg:
            atomic_write_json(path, {**meta, "config": new})
