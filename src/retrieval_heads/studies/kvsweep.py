"""The KV budget sweep: NIAH on one grid under every KV-cache policy and window, against the KV bytes kept.

`run_kv_sweep(model, tokenizer, config, out)` runs, on one loaded model, one `niah.run_niah` directory per arm:
- `full/`: the full cache (the reference; its NIAH config leaves the KV fields at their defaults, so sweeps of
  one model and grid can share it);
- `{policy}-r{R}/` for each policy in `config.policies` other than full and each recent window R in
  `config.recent` (sink `config.sink` for all): retrieval, random (the same number of full KV heads, drawn from
  the non-retrieval ones), streaming (every head on sink + R);
- `streaming-matched-r{R}/len{N}/` (when `config.matched_streaming`): the streaming control at the budget of
  `retrieval-r{R}`: for each grid length N its own window, the smallest that holds at least the bytes the
  retrieval cache holds at N tokens (`matched_recent`), so both arms keep the same share of KV bytes.
Every arm sees the same prompts (same grid, needles and seed; a per-length part runs `lengths_only` of the whole
grid, so its samples keep their needles). Each run dir resumes per sample, so the sweep
resumes; `only` runs some arms (processes sharing `out` can split the work).

Outputs in `out`: config.json, summary.json (`arms`: one row per arm with the policy, window, `kv_share` (mean
per-sample share of the full cache's bytes), `kv_bytes` / `kv_bytes_full` (the most held over the samples),
`mean_score` with a bootstrap 95% interval over samples, per-length scores and shares, response classes,
`vs_full` and for the controls `vs_retrieval` (paired differences on the same samples, bootstrap 95% interval);
`missing` lists arms not finished), budget.png (NIAH mean against KV share kept, one curve per policy) and
heatmaps.png (every finished arm's depth x length grid side by side; `viz/kv.py`).

Left out on purpose: timing and memory (bench/bench_kv.py measures them side by side in one process), and
several random seeds per window (one draw, `kv_seed`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.stats import bootstrap_ci, format_diff, paired_diff_ci
from ..config import Config, ModelConfig, ProbeConfig
from ..errors import RHeadsError
from ..io.jsonl import atomic_write_json, read_jsonl
from ..io.rundir import claim_run_dir
from ..capture.attention import check_model
from ..kvcache.cache import check_window, expected_bytes
from ..kvcache.policy import POLICIES, make_policy
from ..scoring.judge import RESPONSE_CLASSES
from ..version import FORMAT_VERSION, __version__
from ..viz.kv import arm_heatmaps, budget_plot
from ..evals.niah import NiahConfig, run_niah

ARM_POLICIES = ("full", "retrieval", "random", "streaming")


def kv_probe() -> ProbeConfig:
    return ProbeConfig(needles="eval", lengths=[2000, 4000, 8000], depths=[0, 25, 50, 75, 100], needles_per_cell=1)


@dataclass
class KVSweepConfig(Config):
    model: ModelConfig = field(default_factory=ModelConfig)
    probe: ProbeConfig = field(default_factory=kv_probe)
    scores: str | None = None  # retrieval scores (scores.json): needed by retrieval, random and matched streaming
    policies: list[str] = field(default_factory=lambda: list(ARM_POLICIES))
    sink: int = 4
    recent: list[int] = field(default_factory=lambda: [64, 128, 256])
    matched_streaming: bool = True  # also streaming at the retrieval cache's budget, per length
    kv_threshold: float = 0.1
    kv_top: int = 0
    kv_seed: int = 0
    prefill_chunk: int = 0
    kv_prefill: str = "full"  # see NiahConfig
    max_new_tokens: int = 32
    stop: list[str] | None = None  # see NiahConfig

    def niah(self, kv: str, recent: int, lengths: list[int] | None = None) -> NiahConfig:
        """The NIAH config of one arm; the full arm keeps NiahConfig's KV defaults (it ignores them), so sweeps
        of one grid and model share it."""
        base = NiahConfig(model=self.model, probe=self.probe, scores=self.scores, max_new_tokens=self.max_new_tokens,
                          stop=self.stop, lengths_only=lengths)  # a part keeps the whole grid's needles
        if kv == "full":
            return base
        return dataclasses.replace(base, kv=kv, kv_sink=self.sink, kv_recent=recent, kv_threshold=self.kv_threshold,
                                   kv_top=self.kv_top, kv_seed=self.kv_seed, prefill_chunk=self.prefill_chunk,
                                   kv_prefill=self.kv_prefill)


@dataclass
class Arm:
    name: str  # run dir under out (matched streaming: a parent of one dir per length)
    policy: str
    recent: int | None  # None: full; for matched streaming the retrieval window it matches
    parts: list[tuple[str, NiahConfig]]  # (run dir, config): one, or one per length


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


def plan_arms(config: KVSweepConfig, model) -> list[Arm]:
    """Every arm of the sweep, in run order (full first: the reference)."""
    unknown = [p for p in config.policies if p not in POLICIES]
    if unknown:
        raise RHeadsError(f"unknown KV policy '{unknown[0]}': use some of {', '.join(POLICIES)}")
    if not config.recent or any(r < 0 for r in config.recent):
        raise RHeadsError(f"bad --recent {config.recent}: a comma list of windows >= 0, e.g. 64,128,256")
    for r in config.recent:
        check_window(config.sink, r)
    arms = []
    if "full" in config.policies:
        arms.append(Arm("full", "full", None, [("full", config.niah("full", config.recent[0]))]))
    for r in config.recent:
        for policy in ("retrieval", "random", "streaming"):
            if policy in config.policies:
                arms.append(Arm(f"{policy}-r{r}", policy, r, [(f"{policy}-r{r}", config.niah(policy, r))]))
        if config.matched_streaming:
            full = make_policy("retrieval", config.scores, threshold=config.kv_threshold,
                               top=config.kv_top).full_kv_heads(model)
            parts = []
            for n in config.probe.lengths:
                rm = matched_recent(model, full, n, config.sink, r)
                parts.append((f"streaming-matched-r{r}/len{n}", config.niah("streaming", rm, lengths=[n])))
            arms.append(Arm(f"streaming-matched-r{r}", "streaming-matched", r, parts))
    return arms


def run_kv_sweep(model, tokenizer, config: KVSweepConfig, out: str | Path, progress: bool = True,
                 only: list[str] | None = None, overwrite: bool = False, batch_size: int = 1) -> dict[str, Any]:
    """Run the sweep (or its `only` arms) into `out`; returns the summary of what has finished."""
    check_model(model)
    arms = plan_arms(config, model)
    names = [a.name for a in arms]
    if only is not None:
        bad = [o for o in only if o not in names]
        if bad or not only:
            raise RHeadsError(f"--only {','.join(only) or '(empty)'}: pick some of {', '.join(names)}")
    out = Path(out)
    meta = {"version": FORMAT_VERSION, "toolkit": __version__, "config": config.to_dict(), "arms": names}
    claim_run_dir(out, meta, keys=("config",), defaults={"config": config.defaults()}, overwrite=overwrite)
    for arm in arms:
        if only is not None and arm.name not in only:
            continue
        for sub, niah in arm.parts:
            if progress:
                print(f"kv-sweep: {sub} (recent {niah.kv_recent})" if arm.policy != "full" else "kv-sweep: full")
            run_niah(model, tokenizer, niah, out=out / sub, progress=progress, batch_size=batch_size)
    return summarize_sweep(config, arms, out)


def _records(path: Path) -> list[dict]:
    return [r for r in read_jsonl(path / "samples.jsonl") if r.get("type") == "sample"] if \
        (path / "samples.jsonl").exists() else []


def arm_records(arm: Arm, out: Path) -> list[dict] | None:
    """The sample records of every part of an arm; None while any part is unfinished."""
    recs: list[dict] = []
    for sub, _ in arm.parts:
        if not (out / sub / "summary.json").exists():
            return None
        recs += _records(out / sub)
    n_expected = sum(len(n.lengths_only or n.probe.lengths) * len(n.probe.depths) * n.probe.needles_per_cell
                     for _, n in arm.parts)
    return recs if len(recs) >= n_expected else None


def arm_row(arm: Arm, config: KVSweepConfig, recs: list[dict]) -> dict[str, Any]:
    """One summary row from an arm's finished records (`arm_records`)."""
    windows = {n: niah.kv_recent for _, niah in arm.parts for n in niah.lengths_only or niah.probe.lengths}
    scores = [r["score"] for r in recs]
    shares = [r["kv_bytes"] / r["kv_bytes_full"] for r in recs if r.get("kv_bytes_full")]
    counts = Counter(r["class"] for r in recs)

    def by_length(values: list[tuple[int, float]]) -> dict[str, float]:
        groups: dict[int, list[float]] = {}
        for k, v in values:
            groups.setdefault(k, []).append(v)
        return {str(k): round(float(np.mean(v)), 4) for k, v in sorted(groups.items())}

    return {
        "arm": arm.name, "policy": arm.policy, "recent": arm.recent,
        "sink": None if arm.policy == "full" else config.sink,
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
    """Each row gains `vs_full` (its score minus the full cache's, paired) and, for the controls (random,
    streaming, streaming-matched), `vs_retrieval` (minus the retrieval arm's at the same --recent)."""
    full = next((r["arm"] for r in rows if r["policy"] == "full"), None)
    for r in rows:
        if full is not None and r["arm"] != full:
            r["vs_full"] = paired_diff(records[r["arm"]], records[full])
        ret = f"retrieval-r{r['recent']}"
        if r["policy"] in ("random", "streaming", "streaming-matched") and ret in records:
            r["vs_retrieval"] = paired_diff(records[r["arm"]], records[ret])


def summarize_sweep(config: KVSweepConfig, arms: list[Arm], out: Path) -> dict[str, Any]:
    found = {arm.name: arm_records(arm, out) for arm in arms}  # None: unfinished
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
                    f"(sink {config.sink}, lengths {','.join(str(n) for n in config.probe.lengths)})")
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
