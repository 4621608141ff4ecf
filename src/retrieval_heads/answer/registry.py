"""The answering-method registry: names -> `AnswerMethod` classes, read by `rheads answer --methods` (and
`--methods all`), `rheads answer list` and the docs.

    from retrieval_heads.answer import AnswerMethod, register_method

    @register_method("mine")
    class Mine(AnswerMethod):
        help = "..."
        def start(self, run): run.open_pass("base", run.prompt.input_ids)
        def step(self, run): ...

The built-in methods are one module each in `answer/methods/`, imported on the first look-up (adding one is one
new file). Names are listed by the class's `order` (baselines first), then by registration.

A **variant** `NAME:TAG` (e.g. `copy:k10`) is method NAME run as one more arm of the same run, under its own
parameters (`--param copy:k10.k=10`): how `rheads answer bench --split tune` tries several settings of one method
on the same items and the same shared prefills (`bench/tune.py` then picks one per method).

The mechanism is the package's one `Registry` (`retrieval_heads/registry.py`). Importable without torch or
transformers (the method modules import those inside their methods), so
`rheads answer --help` and `rheads answer list` stay light. Left out on purpose: entry points of other packages
(import their module, and its decorators register its methods).
"""

from __future__ import annotations

import re

from ..errors import ParamError
from ..registry import Registry

_TAG = re.compile(r"^[A-Za-z0-9_-]+$")  # no '.' (it ends the method in METHOD.PARAM=VALUE) and no ','

_REGISTRY = Registry("answer method", f"{__package__}.methods", "methods", unknown_hint=" or all")


def register_method(name: str):
    """Class decorator: register an `AnswerMethod` subclass under `name` (sets its `name`). A second class under a
    taken name is refused; the same class again (a module reloaded) replaces it."""
    return _REGISTRY.decorator(name)


def unregister_method(name: str) -> None:
    """Remove a registered method (tests, notebooks); a name not registered is ignored."""
    _REGISTRY.remove(name)


def method_names() -> list[str]:
    """Every registered method name, by the class's `order`, then by registration."""
    return _REGISTRY.names()


def base_name(name: str) -> str:
    """'copy:k10' -> 'copy' (a variant's method); a plain name as it is."""
    return str(name).partition(":")[0]


def get_method_class(name: str) -> type:
    """The class registered under `name` (a variant `NAME:TAG`: NAME's); ParamError `methods` naming the registered
    ones otherwise, or saying how to write a variant's tag."""
    base, colon, tag = str(name).partition(":")
    if colon and not _TAG.fullmatch(tag):
        raise ParamError("methods", name, "write a variant as METHOD:TAG, the tag of letters, digits, '_' and '-' "
                         "(e.g. copy:k10)")
    return _REGISTRY.get(base)


def parse_methods(spec: str | list[str]) -> list[str]:
    """'greedy,cad,copy:k10' or 'all' -> the method (and variant) names, checked; a list is checked as it is."""
    names = spec if isinstance(spec, list) else [x.strip() for x in str(spec).split(",") if x.strip()]
    if names == ["all"]:
        return method_names()
    if not names:
        raise ParamError("methods", spec, f"name at least one method: {', '.join(method_names())} or all")
    for n in names:
        get_method_class(n)
    if len(set(names)) != len(names):
        raise ParamError("methods", spec, "a method is named twice: name each once")
    return names
