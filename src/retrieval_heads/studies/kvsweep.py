"""The KV budget sweep: NIAH on one grid under every KV-cache policy and window, against the KV bytes kept.

`run_kv_sweep(model, tokenizer, config, out)` runs, on one loaded model, one `niah.run_niah` directory per arm,
for the registered policies (`kvcache.policy_names()`, in that order) named in `config.policies`:
- `{policy}/` for a policy that keeps everything (`full`: the reference; its NIAH config leaves the KV fields
  at their defaults, so sweeps of one model and grid can share it);
- `{policy}-r{R}/` for each compressing policy and each window R in `config.recent_windows` (the other KV
  settings, sink included, from `config.kv`): retrieval, random (the same number of full KV heads, drawn from
  the non-retrieval ones), streaming (every head on sink + R), and any policy registered by user code;
- `{policy}-b{B}/` for each budget B in `config.budgets` and each chosen policy that runs at a budget (snapkv,
  headkv, hybrid, and retrieval, random, streaming, which take one too): the budget cache (`kvcache/select.py`)
  keeping a share B of the prompt's KV bytes; a policy that needs a budget runs only in these arms;
- `streaming-matched-r{R}/len{N}/` (when `config.matched_streaming`): the streaming control at the budget of
  `retrieval-r{R}`: for each grid length N its own window, the smallest that holds at least the bytes the
  retrieval cache holds at N tokens (`matched_recent`), so both arms keep the same share of KV bytes.
Every arm sees the same prompts (same grid, needles and seed; a per-length part runs `lengths_only` of the whole
grid, so its samples keep their needles). Everything is checked before anything is written to `out` (the config,
the grid against the model's context, every arm's policy, scores and draw). Each run dir resumes per sample, so
the sweep resumes; `only` runs some arms (processes sharing `out` can split the work). Sweep directories written
with the flat KV fields (`sink`, `recent`, `kv_threshold`, ...) resume as the same run (`KVSweepConfig.from_dict`).

Outputs in `out`: config.json, summary.json (`arms`: one row per arm with the policy, window, `kv_share` (mean
per-sample share of the full cache's bytes), `kv_bytes` / `kv_bytes_full` (the most held over the samples),
`mean_score` with a bootstrap 95% interval over samples, per-length scores and shares, response classes,
`vs_full` and for every windowed or budget arm but retrieval's `vs_retrieval` (against retrieval at the same
window or budget; paired differences on the same samples,
bootstrap 95% interval); `missing` lists arms not finished), budget.png (NIAH mean against KV share kept, one
curve per policy) and heatmaps.png (every finished arm's depth x length grid side by side; `viz/kv.py`).

`shard` ("i/n") gives every NIAH run of the sweep the i-th of n parts of its samples, balanced by length
(`cluster/shard.py`): each arm the same part of the grid, each per-length part of a matched arm the same part of
its length's samples (so the shard count is at most the samples per length); `rheads merge` combines the shards.

Left out on purpose: timing and memory (bench/bench_kv.py measures them side by side in one process), and
several random seeds per window (one draw, `kv.seed`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.stats import bootstrap_ci, format_diff, paired_diff_ci
from ..capture.attention import check_model
from ..cluster.shard import parse_shard, select
from ..config import Config, ModelConfig, ProbeConfig
from ..errors import ParamError
from ..evals.grid import prepare
from ..evals.niah import NiahConfig, run_niah
from ..heads.scores import HeadScores
from ..io.jsonl import atomic_write_json, read_jsonl
from ..io.rundir import claim_run_dir
from ..kvcache.cache import expected_bytes
from ..kvcache.config import SWEEP_FLAT_KEYS, KVConfig, check_window, nest_kv, upgrade_stored_config
from ..kvcache.factory import kv_factory
from ..kvcache.registry import get_policy_class, policy_names
from ..scoring.judge import RESPONSE_CLASSES
from ..version import FORMAT_VERSION, __version__
from ..viz.kv import arm_heatmaps, budget_plot
from .sweep import check_only


def kv_probe() -> ProbeConfig:
    return ProbeConfig(needles="eval", lengths=[2000, 4000, 8000], depths=[0, 25, 50, 75, 100], needles_per_cell=1)


def legacy_sweep_config(d: dict) -> dict:
    """A kv-sweep config dict with the old flat fields (`sink`, `kv_threshold`, ..., `recent`) in today's places."""
    d = nest_kv(d, SWEEP_FLAT_KEYS)
    if isinstance(d, dict) and "recent" in d and "recent_windows" not in d:
        d = {("recent_windows" if k == "recent" else k): v for k, v in d.items()}
    return d


def window_policies() -> list[str]:
    """The registered policies that run without a budget (the sweep's default arms)."""
    return [p for p in policy_names() if get_policy_class(p).uses_budget != "required"]


@dataclass
class KVSweepConfig(Config):
    model: ModelConfig = field(default_factory=ModelConfig)
    probe: ProbeConfig = field(default_factory=kv_probe)
    scores: str | None = None  # retrieval scores (scores.json): needed by retrieval, random and matched streaming
    policies: list[str] = field(default_factory=lambda: window_policies())  # default: every windowed policy
    recent_windows: list[int] = field(default_factory=lambda: [64, 128, 256])  # each compressing arm's kv.recent
    budgets: list[float] = field(default_factory=list)  # each budget arm's kv.budget (policies that take one)
    matched_streaming: bool = True  # also streaming at the retrieval cache's budget, per length
    kv: KVConfig = field(default_factory=KVConfig)  # the arms' shared KV settings; policy and recent are per arm
    max_new_tokens: int = 32
    stop: list[str] | None = None  # see NiahConfig
    shard: str | None = None  # "i/n": every NIAH run does the i-th of n parts of its samples (cluster/shard.py)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "KVSweepConfig":
        """Also reads configs written with the flat KV fields (`sink`, `recent`, `kv_threshold`, ...)."""
        return super().from_dict(legacy_sweep_config(d))

    def niah(self, policy: str, recent: int | None, lengths: list[int] | None = None,
             budget: float | None = None) -> NiahConfig:
        """The NIAH config of one arm; a policy that keeps everything keeps KVConfig's defaults otherwise (it
        ignores them), so sweeps of one grid and model share its arm."""
        base = NiahConfig(model=self.model, probe=self.probe, scores=self.scores, max_new_tokens=self.max_new_tokens,
                          stop=self.stop, lengths_only=lengths,  # a part keeps the whole grid's needles
                          shard=self.shard)
        if not get_policy_class(policy).compresses:
            return dataclasses.replace(base, kv=KVConfig(policy=policy))
        if budget is not None:
            return dataclasses.replace(base, kv=dataclasses.replace(self.kv, policy=policy, budget=budget))
        return dataclasses.replace(base, kv=dataclasses.replace(self.kv, policy=policy, recent=recent))

    def validate(self) -> "KVSweepConfig":
        """Every check that needs no model (ParamError): the policies, the windows, each arm's KV settings and
        the scores they need. Returns self."""
        names = policy_names()
        if not self.policies:
            raise ParamError("policies", self.policies, f"pick some of {', '.join(names)}")
        for p in self.policies:
            if p not in names:
                raise ParamError("policies", p, f"unknown KV policy: use some of {', '.join(names)}")
        if not self.recent_windows:
            raise ParamError("recent_windows", self.recent_windows, "give one window or more, e.g. 64,128,256")
        for r in self.recent_windows:
            check_window(self.kv.sink, r, "recent_windows")
        for p in self.policies:
            uses = get_policy_class(p).uses_budget
            if uses == "required" and not self.budgets:
                raise ParamError("budgets", self.budgets, f"the {p} policy runs at a budget: give budgets, e.g. "
                                 "0.1,0.2,0.5, or leave it out of {policies}")
            for r in self.recent_windows if uses != "required" else []:
                self.niah(p, r).kv.validate(self.scores)
            for b in self.budgets if uses != "never" else []:
                self.niah(p, None, budget=b).kv.validate(self.scores)
        if self.matched_streaming and self.scores is None:
            raise ParamError("scores", None, "the matched streaming arms need retrieval scores (the retrieval "
                             "cache's budget): a scores.json from `rheads detect` on this model, or no matched arms")
        parse_shard(self.shard)
        return self


@dataclass
class Arm:
    name: str  # run dir under out (matched streaming: a parent of one dir per length)
    policy: str
    recent: int | None  # None: a policy that keeps everything; for matched streaming the retrieval window it matches
    parts: list[tuple[str, NiahConfig]]  # (run dir, config): one, or one per length
    budget: float | None = None  # a budget arm's kv.budget


def matched_recent(model, full_heads: np.ndarray, tokens: int, sink: int, recent: int) -> int:
    """The smallest window R' such that streaming (every head on sink + R') holds at least the bytes of the cache
    with `full_heads` on sink + `recent`, at `tokens` slots."""
    target = expected_bytes(model.config, full_heads, tokens, sink, recent)
    none = np.zeros_like(full_heads)
    lo, hi = 0, tokens  # streaming at R' = tokens holds everything: >= target
    while lo < hi:
        mid = (lo + hi) // 2
        if expected_bytes(model.config, none, tokens, sink, mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def plan_arms(config: KVSweepConfig, model, scores=None) -> list[Arm]:
    """Every arm of the sweep, in run order (the reference first), after `config.validate()`; `scores`: the
    config's scores already read (else read here, for the matched arms)."""
    config.validate()
    chosen = [p for p in policy_names() if p in config.policies]
    keeps_all = [p for p in chosen if not get_policy_class(p).compresses]
    arms = [Arm(p, p, None, [(p, config.niah(p, None))]) for p in keeps_all]
    full = None
    if config.matched_streaming:
        retrieval = KVConfig(policy="retrieval", threshold=config.kv.threshold, top=config.kv.top)
        full = retrieval.build_policy(config.scores if scores is None else scores).full_kv_heads(model)
    for r in config.recent_windows:
        for p in chosen:
            if p not in keeps_all and get_policy_class(p).uses_budget != "required":
                arms.append(Arm(f"{p}-r{r}", p, r, [(f"{p}-r{r}", config.niah(p, r))]))
        if full is not None:
            parts = []
            for n in config.probe.lengths:
                rm = matched_recent(model, full, n, config.kv.sink, r)
                parts.append((f"streaming-matched-r{r}/len{n}", config.niah("streaming", rm, lengths=[n])))
            arms.append(Arm(f"streaming-matched-r{r}", "streaming-matched", r, parts))
    for b in config.budgets:
        for p in chosen:
            if get_policy_class(p).uses_budget != "never":
                arms.append(Arm(f"{p}-b{b:g}", p, None, [(f"{p}-b{b:g}", config.niah(p, None, budget=b))], budget=b))
    return arms


def check_arms(config: KVSweepConfig, arms: list[Arm], model, tokenizer, batch_size: int,
               scores=None) -> dict[str, list[str]]:
    """What each arm's run would refuse, before anything is written: the grid against the model's context and
    its data (evals.grid.prepare), every arm's cache against the model (attention, scores' shape, the draw), the
    shard against each part's samples. Returns the ids of the samples each part runs (its shard's)."""
    samples = prepare(model, tokenizer, config.probe, config.max_new_tokens, config.stop, batch_size).samples
    expected = {}
    for arm in arms:
        for sub, niah in arm.parts:
            kv_factory(niah.kv, model, niah.scores if scores is None else scores)
            mine = [s for s in samples if niah.lengths_only is None or s.length in niah.lengths_only]
            if config.shard is not None and niah.lengths_only and len(mine) < parse_shard(config.shard).count:
                raise ParamError("shard", config.shard, f"the matched streaming parts run {len(mine)} samples each "
                                 f"(one length): use at most {len(mine)} shards, or no matched arms")
            expected[sub] = [s.id for s in select(mine, config.shard, cost=lambda s: s.length, key=lambda s: s.id)]
    return expected


def run_kv_sweep(model, tokenizer, config: KVSweepConfig, out: str | Path, progress: bool = True,
                 only: list[str] | None = None, overwrite: bool = False, batch_size: int = 1) -> dict[str, Any]:
    """Run the sweep (or its `only` arms) into `out`; returns the summary of what has finished. Nothing is
    written to `out` before every check has passed."""
    check_model(model)
    scores = HeadScores.load(config.scores) if config.scores else None  # read once for the checks
    arms = plan_arms(config, model, scores)
    names = [a.name for a in arms]
    check_only(only, names)
    expected = check_arms(config, arms, model, tokenizer, batch_size, scores)
    out = Path(out)
    meta = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(), "arms": names}
    upgrade_stored_config(out, legacy_sweep_config)  # a sweep dir written with flat KV fields resumes
    claim_run_dir(out, meta, keys=("config",), defaults={"config": config.defaults()}, overwrite=overwrite)
    for arm in arms:
        if only is not None and arm.name not in only:
            continue
        for sub, niah in arm.parts:
            if progress:
                print(f"kv-sweep: {sub}" + (f" (recent {niah.kv.recent})" if arm.recent is not None else ""))
            run_niah(model, tokenizer, niah, out=out / sub, progress=progress, batch_size=batch_size)
    return summarize_sweep(config, arms, out, expected)


def _records(path: Path) -> list[dict]:
    return [r for r in read_jsonl(path / "samples.jsonl") if r.get("type") == "sample"] if \
        (path / "samples.jsonl").exists() else []


def arm_records(arm: Arm, out: Path, expected: dict[str, list[str]] | None = None) -> list[dict] | None:
    """The sample records of every part of an arm; None while any part is unfinished. `expected`: the ids each
    part runs (`check_arms`; default: the part's whole grid)."""
    recs: list[dict] = []
    for sub, niah in arm.parts:
        if not (out / sub / "summary.json").exists():
            return None
        got = _records(out / sub)
        if expected is not None:
            if not set(expected[sub]) <= {r["id"] for r in got}:
                return None
        elif len(got) < len(niah.lengths_only or niah.probe.lengths) * len(niah.probe.depths) * \
                niah.probe.needles_per_cell:
            return None
        recs += got
    return recs


def arm_row(arm: Arm, config: KVSweepConfig, recs: list[dict]) -> dict[str, Any]:
    """One summary row from an arm's finished records (`arm_records`)."""
    windows = {n: niah.kv.recent for _, niah in arm.parts for n in niah.lengths_only or niah.probe.lengths}
    scores = [r["score"] for r in recs]
    shares = [r["kv_bytes"] / r["kv_bytes_full"] for r in recs if r.get("kv_bytes_full")]
    counts = Counter(r["class"] for r in recs)

    def by_length(values: list[tuple[int, float]]) -> dict[str, float]:
        groups: dict[int, list[float]] = {}
        for k, v in values:
            groups.setdefault(k, []).append(v)
        return {str(k): round(float(np.mean(v)), 4) for k, v in sorted(groups.items())}

    return {
        "arm": arm.name, "policy": arm.policy, "recent": arm.recent, "budget": arm.budget,
        "sink": None if arm.recent is None else config.kv.sink,
        "windows": {str(k): v for k, v in windows.items()} if arm.policy == "streaming-matched" else None,
        "n_samples": len(recs), "mean_score": round(float(np.mean(scores)), 2), "ci95": bootstrap_ci(scores),
        "kv_share": round(float(np.mean(shares)), 4) if shares else None,
        "kv_bytes": max((r.get("kv_bytes", 0) for r in recs), default=None),
        "kv_bytes_full": max((r.get("kv_bytes_full", 0) for r in recs), default=None),
        "per_length": by_length([(r["length"], r["score"]) for r in recs]),
        "share_per_length": by_length([(r["length"], r["kv_bytes"] / r["kv_bytes_full"]) for r in recs
                                       if r.get("kv_bytes_full")]),
        "classes": {c: counts.get(c, 0) for c in RESPONSE_CLASSES},
        "seconds": round(sum(r.get("seconds", 0.0) for r in recs), 1),
    }


def paired_diff(a: list[dict], b: list[dict]) -> dict[str, Any] | None:
    """mean(score a - score b) over the samples both arms ran (same id: length, depth, needle), with a paired
    bootstrap 95% interval; None when they share none."""
    sb = {r["id"]: r["score"] for r in b}
    pairs = [(r["score"], sb[r["id"]]) for r in a if r["id"] in sb]
    if not pairs:
        return None
    x, y = [p[0] for p in pairs], [p[1] for p in pairs]
    return {"diff": round(float(np.mean(x) - np.mean(y)), 2), "ci95": paired_diff_ci(x, y), "n": len(pairs)}


def add_diffs(rows: list[dict], records: dict[str, list[dict]]) -> None:
    """Each row gains `vs_full` (its score minus the reference's, paired: the first arm without a window, the full
    cache) and every windowed arm but retrieval's `vs_retrieval` (minus the retrieval arm's at the same window)."""
    full = next((r["arm"] for r in rows if r["recent"] is None and r.get("budget") is None), None)
    for r in rows:
        if full is not None and r["arm"] != full:
            r["vs_full"] = paired_diff(records[r["arm"]], records[full])
        if r.get("budget") is not None:  # a budget arm: against retrieval at the same budget
            ret = f"retrieval-b{r['budget']:g}"
        else:
            ret = f"retrieval-r{r['recent']}" if r["recent"] is not None else None
        if ret is not None and r["policy"] != "retrieval" and ret in records:
            r["vs_retrieval"] = paired_diff(records[r["arm"]], records[ret])


def summarize_sweep(config: KVSweepConfig, arms: list[Arm], out: Path,
                    expected: dict[str, list[str]] | None = None) -> dict[str, Any]:
    found = {arm.name: arm_records(arm, out, expected) for arm in arms}  # None: unfinished
    finished = [arm for arm in arms if found[arm.name] is not None]
    missing = [arm.name for arm in arms if found[arm.name] is None]
    records = {arm.name: found[arm.name] for arm in finished}
    rows = [arm_row(arm, config, records[arm.name]) for arm in finished]
    add_diffs(rows, records)
    summary = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(), "arms": rows,
               "missing": missing}
    atomic_write_json(out / "summary.json", summary)
    if rows:
        budget_plot(rows, out / "budget.png", f"{config.model.model}: NIAH mean vs share of KV bytes kept "
                    f"(sink {config.kv.sink}, lengths {','.join(str(n) for n in config.probe.lengths)})")
        panels = [(f"{a.name} ({100 * r['kv_share']:.0f}% KV)", records[a.name]) for a, r in zip(finished, rows)]
        arm_heatmaps(panels, out / "heatmaps.png", f"{config.model.model}: NIAH per arm")
    return summary


def format_table(summary: dict) -> str:
    """A text table: one row per finished arm."""
    lengths = sorted({int(k) for r in summary["arms"] for k in r["per_length"]})
    lines = [f"{'arm':<24} {'KV kept':>8} {'NIAH':>6}  {'95% CI':>13}  " + " ".join(f"{n:>6}" for n in lengths)
             + f"  {'- full [95% CI]':>22}  {'- retrieval [95% CI]':>22}", "-" * (108 + 7 * len(lengths))]

    def diff(d: dict | None) -> str:
        return format_diff(d, "{:+6.1f}") if d and d["ci95"] else "-"

    for r in summary["arms"]:
        ci = r["ci95"] or [float("nan")] * 2
        share = f"{100 * r['kv_share']:.1f}%" if r["kv_share"] is not None else "-"
        lines.append(f"{r['arm']:<24} {share:>8} {r['mean_score']:>6.1f}  [{ci[0]:5.1f}, {ci[1]:5.1f}]  "
                     + " ".join(f"{r['per_length'].get(str(n), float('nan')):>6.1f}" for n in lengths)
                     + f"  {diff(r.get('vs_full')):>22}  {diff(r.get('vs_retrieval')):>22}")
    if summary["missing"]:
        lines.append(f"not finished: {', '.join(summary['missing'])}")
    return "\n".join(lines)
