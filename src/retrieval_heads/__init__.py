"""retrieval-heads: find, test and use the attention heads that retrieve from long context.

Library entry points: `load_model`, `detect`, `HeadScores`, and the configs. Heavy modules load lazily so
that `rheads --help` stays fast.
"""

__version__ = "0.1.0"

from .config import DetectConfig, ModelConfig, ProbeConfig  # noqa: E402
from .errors import RHeadsError  # noqa: E402
from .results import HeadScores  # noqa: E402

__all__ = ["DetectConfig", "HeadScores", "ModelConfig", "ProbeConfig", "RHeadsError", "detect", "load_model"]


def __getattr__(name):
    if name == "detect":
        from .detect import detect

        return detect
    if name == "load_model":
        from .models import load_model

        return load_model
    raise AttributeError(name)
