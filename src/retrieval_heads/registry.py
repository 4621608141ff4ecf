"""One registry mechanism for the package's extension points (KV policies, answer methods, suite tasks): names ->
entries, filled by class decorators, with the built-ins found as the modules of one package folder.

`Registry(what, package, param)` holds the entries of one extension point. `add(name, cls, entry)` registers
`entry` (the class itself, or an instance of it) under `name` and sets its `name`; a second class under a taken
name is refused, the same class again (a module reloaded) replaces it. The built-ins are every module of
`package`, imported on the first look-up (so adding one is one new file); a name registered by user code is
checked against them. `names()` lists the names (by the registry's `order(name, entry)`, default the class's `order`, then
registration),
`get(name)` returns the entry or raises a `ParamError` of `param` that lists the registered names.

Importable without torch or transformers. Left out on purpose: what an entry must implement (each extension
point's base class says), and entry points of other packages (import their module; its decorators register).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from .errors import ParamError, RHeadsError

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # no dashes: run-part names join a name and its settings with '-'


class Registry:
    """The entries of one extension point (module docstring)."""

    def __init__(self, what: str, package: str, param: str, unknown_hint: str = "",
                 order: Callable[[str, Any], Any] | None = None):
        self.what, self.package, self.param, self.unknown_hint = what, package, param, unknown_hint
        self.order = order or (lambda name, entry: getattr(entry, "order", 100))
        self.entries: dict[str, Any] = {}
        self._loaded = False

    def load_builtins(self) -> None:
        """Import every module of the built-ins' package once (their decorators register them)."""
        if self._loaded:
            return
        self._loaded = True
        import importlib
        import pkgutil

        pkg = importlib.import_module(self.package)
        for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            importlib.import_module(f"{self.package}.{m.name}")

    def check_name(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise RHeadsError(f"{self.what} name {name!r}: use lower-case letters, digits and '_', starting with a "
                              "letter")

    def add(self, name: str, cls: type, entry: Any = None) -> None:
        """Register `entry` (default: `cls`) under `name`; see the module docstring."""
        self.check_name(name)
        if not cls.__module__.startswith(f"{self.package}."):
            self.load_builtins()  # a name of user code is checked against the built-ins (not while they load)
        old = self.entries.get(name)
        old_cls = old if isinstance(old, type) else type(old)
        if old is not None and (old_cls.__module__, old_cls.__qualname__) != (cls.__module__, cls.__qualname__):
            raise RHeadsError(f"{self.what} name '{name}' is already registered "
                              f"({old_cls.__module__}.{old_cls.__qualname__}): pick another name")
        entry = cls if entry is None else entry
        entry.name = name
        self.entries[name] = entry

    def decorator(self, name: str) -> Callable[[type], type]:
        """A class decorator that registers the class itself under `name`."""
        self.check_name(name)

        def decorate(cls: type) -> type:
            self.add(name, cls)
            return cls

        return decorate

    def remove(self, name: str) -> None:
        """Remove a registered entry (tests, notebooks); a name not registered is ignored."""
        self.entries.pop(name, None)

    def names(self) -> list[str]:
        """Every registered name, sorted by `order(name, entry)` (default: the entry's `order` attribute), then by
        registration."""
        self.load_builtins()
        return sorted(self.entries, key=lambda n: self.order(n, self.entries[n]))

    def get(self, name: str, param: str | None = None) -> Any:
        """The entry registered under `name`; a ParamError of `param` naming the registered ones otherwise."""
        self.load_builtins()
        if name not in self.entries:
            raise ParamError(param or self.param, name,
                             f"unknown {self.what}: use one of {', '.join(self.names())}{self.unknown_hint}")
        return self.entries[name]
