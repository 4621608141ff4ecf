"""The one table from library parameter names to `rheads` flags, used to reword `ParamError`s for the CLI.

A parameter is named by its dotted path in the run configs (`kv.recent`, `probe.lengths`) or, for a function
argument that is no config field, by the argument's name. Add a row when a library check names a parameter
that has a flag; a name without a row is printed as it is.

Left out on purpose: per-command differences; a parameter has one flag in every command that has it.
"""

PARAM_FLAGS: dict[str, str] = {
    "probe.lengths": "--lengths",
    "probe.depths": "--depths",
    "probe.needles_per_cell": "--needles-per-cell",
    "probe.seed": "--seed",
    "probe.haystack": "--haystack",
    "probe.needles": "--needles",
    "probe.template": "--template",
    "mask": "--mask",
    "mask_seed": "--mask-seed",
    "scores": "--scores",
    "threshold": "--threshold",
    "max_new_tokens": "--max-new-tokens",
    "batch_size": "--batch-size",
    "ks": "--k",
    "kv.policy": "--kv",
    "kv.sink": "--sink",
    "kv.recent": "--recent",
    "kv.threshold": "--kv-threshold",
    "kv.top": "--kv-top",
    "kv.seed": "--kv-seed",
    "kv.prefill": "--kv-prefill",
    "kv.prefill_chunk": "--prefill-chunk",
    "kv.budget": "--kv-budget",
    "recent_windows": "--recent-windows",
    "budgets": "--budgets",
    "policies": "--policies",
    "item_seed": "--item-seed",
    "lengths": "--lengths",
    "depths": "--depths",
    "niah_per_cell": "--niah-per-cell",
    "cf_per_cell": "--cf-per-cell",
    "unanswerable_per_cell": "--unanswerable-per-cell",
    "out": "--out",
    "overwrite": "--overwrite",
    "only": "--only",
    "chat": "--chat",
    "no_chat": "--no-chat",
    "model.device": "--device",
    "model.dtype": "--dtype",
    "random_seeds": "--random-seeds",
    "controls": "--controls",
    "ablation": "--ablation",
    "modes": "--modes",
    "data": "--data",
    "limit": "--limit",
    "steps": "--steps",
    "shots": "--shots",
    "fewshot_file": "--fewshot-file",
    "rope": "--rope",
    "base_run": "--base-run",
    "stages": "--stages",
    "train.seq_len": "--seq-len",
    "detect_probe.lengths": "--detect-lengths",
    "detect_probe.depths": "--detect-depths",
    "niah_probe.lengths": "--niah-lengths",
    "niah_probe.depths": "--niah-depths",
    "methods": "--methods",
    "params": "--param",
    "tasks": "--tasks",
    "samples": "--samples",
    "task_name": "--task-name",
    "qa_data": "--qa-data",
    "heldout": "--heldout",
    "shard": "--shard",
    "copy_items": "--copy-items",
    "families": "--families",
    "halueval_items": "--halueval-items",
    "split": "--split",
    "per_family": "--items-per-family",
}


def cli_message(err: Exception) -> str:
    """The one line the CLI prints for a user error."""
    from ..errors import ParamError

    return err.for_cli(PARAM_FLAGS) if isinstance(err, ParamError) else str(err)
