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

Importable without torch or transformers (the method modules import those inside their methods), so
`rheads answer --help` and `rheads answer list` stay light. Left out on purpose: entry points of other packages
(import their module, and its decorators register its methods).
"""

from __future__ import annotations

import re

from ..errors import ParamError, RHeadsError

_METHODS: dict[str, type] = {}
_builtins_loaded = False
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _load_builtins() -> None:
    """Import every module of `answer/methods/` once (their decorators register them)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    import importlib
    import pkgutil

    from . import methods

    for m in sorted(pkgutil.iter_modules(methods.__path__), key=lambda m: m.name):
        importlib.import_module(f"{methods.__name__}.{m.name}")


def register_method(name: str):
    """Class decorator: register an `AnswerMethod` subclass under `name` (sets its `name`). A second class under a
    taken name is refused; the same class again (a module reloaded) replaces it."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise RHeadsError(f"answer method name {name!r}: use lower-case letters, digits and '_', starting with a "
                          "letter")

    def decorate(cls: type) -> type:
        if not cls.__module__.startswith(f"{__package__}.methods."):
            _load_builtins()  # a name of user code is checked against the built-ins (not while they load)
        old = _METHODS.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise RHeadsError(f"an answer method named '{name}' is already registered "
                              f"({old.__module__}.{old.__qualname__}): pick another name")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorate


def unregister_method(name: str) -> None:
    """Remove a registered method (tests, notebooks); a name not registered is ignored."""
    _METHODS.pop(name, None)


def method_names() -> list[str]:
    """Every registered method name, by the class's `order`, then by registration."""
    _load_builtins()
    return sorted(_METHODS, key=lambda n: getattr(_METHODS[n], "order", 100))


def get_method_class(name: str) -> type:
    """The class registered under `name`; ParamError `methods` naming the registered ones otherwise."""
    _load_builtins()
    if name not in _METHODS:
        raise ParamError("methods", name, f"unknown answer method: use one of {', '.join(method_names())} or all")
    return _METHODS[name]


def parse_methods(spec: str | list[str]) -> list[str]:
    """'greedy,cad' or 'all' -> the method names, checked; a list is checked as it is."""
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
