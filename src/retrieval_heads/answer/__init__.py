"""Retrieval-head-guided answering: methods that answer a question from a context, behind one interface and a
registry (`base.py`, `registry.py`, one module per method in `methods/`), the shared decoding loop (`loop.py`),
the retrieval-head signals our methods read (`support.py`), and the `rheads answer` run (`run.py`).

Light on import (no torch): the registry and the method list load without the model stack.
"""

from .base import AnswerMethod, Choice, parse_params
from .registry import get_method_class, method_names, parse_methods, register_method, unregister_method

__all__ = ["AnswerMethod", "Choice", "get_method_class", "method_names", "parse_methods", "parse_params",
           "register_method", "unregister_method"]
