"""RULER-format JSONL in and out: `read_ruler(path, task_name)` reads a RULER file, or a folder of
`<task>/validation.jsonl`, into records per task; `write_ruler(samples, folder)` writes generated samples so.

The task (and so the metric) is the file's folder name, or `task_name` for a single file. A record needs
`index`, `input` and `outputs` (a list of strings); `answer_prefix` (default '') and `length` are read when
present. Each bad line is a one-line error naming the file, the line and the field.

Left out on purpose: RULER's prediction files (`pred` fields are ignored), and model templates baked into
`input` (generate RULER files with `--model_template_type base`: the chat template is applied here).
"""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import ParamError, RHeadsError
from .registry import get_task, task_names

REQUIRED = ("index", "input", "outputs")
FILE = "validation.jsonl"


def ruler_files(path: str, task_name: str | None = None) -> dict[str, Path]:
    """task -> file for a RULER file or folder (checked: each task registered)."""
    p = Path(path).expanduser()
    if p.is_dir():
        if task_name:
            raise ParamError("task_name", task_name, "names the task of one RULER file; a folder's tasks are its "
                             f"subfolder names (<task>/{FILE})")
        files = {f.parent.name: f for f in sorted(p.glob(f"*/{FILE}"))}
        if not files and (p / FILE).is_file():
            files = {p.name: p / FILE}
        if not files:
            raise ParamError("data", path, f"holds no <task>/{FILE}: give a RULER file or a folder of them")
    elif p.is_file():
        files = {task_name or p.parent.name: p}
    else:
        raise ParamError("data", path, "no such file or folder: give a RULER JSONL or a folder of <task>/" + FILE)
    for name in files:
        if task_name:
            get_task(name, "task_name")
        else:
            try:
                get_task(name)
            except ParamError:
                raise ParamError("data", path, f"its folder name '{name}' is no suite task: use folders named after "
                                 f"tasks ({', '.join(task_names())}), or name the task with {{task_name}}") from None
    return files


def read_file(path: Path) -> list[dict]:
    """The records of one RULER file, each checked (one-line errors naming the line and field)."""
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise RHeadsError(f"{path} line {i}: not JSON ({e.msg}): fix or remove the line") from None
        if not isinstance(rec, dict):
            raise RHeadsError(f"{path} line {i}: not a JSON object: RULER lines are objects with {', '.join(REQUIRED)}")
        for f in REQUIRED:
            if f not in rec:
                raise RHeadsError(f"{path} line {i}: missing field '{f}' (RULER lines need {', '.join(REQUIRED)})")
        outs = rec["outputs"]
        if not isinstance(outs, list) or not outs or not all(isinstance(o, (str, int, float)) for o in outs):
            raise RHeadsError(f"{path} line {i}: field 'outputs' must be a non-empty list of strings")
        if not isinstance(rec["input"], str) or not isinstance(rec.get("answer_prefix", ""), str):
            raise RHeadsError(f"{path} line {i}: fields 'input' and 'answer_prefix' must be strings")
        if "length" in rec and not isinstance(rec["length"], int):
            raise RHeadsError(f"{path} line {i}: field 'length' must be a whole number of tokens")
        out.append({**rec, "outputs": [str(o) for o in outs], "line": i})
    if not out:
        raise RHeadsError(f"{path}: no records")
    return out


def read_ruler(path: str, task_name: str | None = None) -> dict[str, tuple[Path, list[dict]]]:
    """task -> (file, records) of a RULER file or folder."""
    return {t: (f, read_file(f)) for t, f in ruler_files(path, task_name).items()}


def write_ruler(samples, folder: str | Path) -> list[Path]:
    """Write `SuiteSample`s as RULER files: <folder>/<task>/validation.jsonl (one per task, replaced)."""
    by_task: dict[str, list] = {}
    for s in samples:
        by_task.setdefault(s.task, []).append(s)
    paths = []
    for task, ss in by_task.items():
        p = Path(folder) / task / FILE
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("".join(json.dumps(s.ruler(), ensure_ascii=False) + "\n" for s in ss), encoding="utf-8")
        paths.append(p)
    return paths
