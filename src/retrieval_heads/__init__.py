"""retrieval-heads: find, test and use the attention heads that retrieve from long context.

The package follows the pipeline, one folder a stage (imports flow downward only):

    models/       load a model by name, hub id, directory or GGUF; its shape and end tokens
    probes/       haystacks, needles, templates, NIAH prompts in the model's tokens, the sample grid
    runtime/      the registered `rheads` attention: capture recorders, ablation modes, decoding
    scoring/      the paper's copy score, ROUGE, the answer judge
    heads/        head scores (the paper's file format) and mask specs
    experiments/  detect, niah, ablate, evaluate (tasks/), cot, intrinsic
    analysis/     the paper's properties, comparisons, bootstrap intervals
    viz/          every figure, and the HTML/Markdown report
    io/           JSONL and JSON files that survive a kill, run directories that resume
    cli/          the `rheads` command

Library entry points: `load_model`, `detect`, `HeadScores`, `RetrievalHeadCache`, and the configs. Heavy
modules load lazily so that `rheads --help` stays fast.
"""

from .config import DetectConfig, ModelConfig, ProbeConfig
from .errors import RHeadsError
from .version import __version__

__all__ = ["DetectConfig", "HeadScores", "ModelConfig", "ProbeConfig", "RHeadsError", "RetrievalHeadCache",
           "__version__", "detect", "load_model"]


def __getattr__(name):
    if name == "HeadScores":  # lazily: it imports numpy, which `rheads --help` does not need
        from .heads.scores import HeadScores

        return HeadScores
    if name == "detect":
        from .detection.detect import detect

        return detect
    if name == "load_model":
        from .models.loading import load_model

        return load_model
    if name == "RetrievalHeadCache":
        from .kvcache.cache import RetrievalHeadCache

        return RetrievalHeadCache
    raise AttributeError(name)
