"""The KV-policy registry: names -> `KVPolicy` classes, read by the CLI (`rheads niah --kv` choices, `rheads kv-sweep
--policies`), the kv-sweep's arms and the docs lists.

    from retrieval_heads.kvcache import KVPolicy, register_policy

    @register_policy("h2o")
    class H2OPolicy(KVPolicy):
        help = "..."
        def full_kv_heads(self, model): ...

A policy registered before the CLI parser is built shows up in its choices. The built-in policies are one module
each in `kvcache/policies/`, found there and imported on the first look-up (adding one is one new file). Names are
listed by the class's `order` (built-ins first), then by registration.

Importable without torch or transformers (the policy modules import those inside their methods), so `rheads
--help` stays light. Left out on purpose: entry points of other packages (import their module, and its decorators
register its policies), and policy parameters (each class reads what it needs from `KVConfig`).
"""

from __future__ import annotations

import re

from ..errors import ParamError, RHeadsError

_POLICIES: dict[str, type] = {}
_builtins_loaded = False
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # no dashes: arm names are {policy}-r{window}


def _load_builtins() -> None:
    """Import every module of `kvcache/policies/` once (their decorators register them)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    import importlib
    import pkgutil

    from . import policies

    for m in sorted(pkgutil.iter_modules(policies.__path__), key=lambda m: m.name):
        importlib.import_module(f"{policies.__name__}.{m.name}")


def register_policy(name: str):
    """Class decorator: register a `KVPolicy` subclass under `name` (sets its `name`). A second class under a
    taken name is refused; the same class again (a module reloaded) replaces it."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise RHeadsError(f"KV policy name {name!r}: use lower-case letters, digits and '_', starting with a letter")

    def decorate(cls: type) -> type:
        if not cls.__module__.startswith(f"{__package__}.policies."):
            _load_builtins()  # a name of user code is checked against the built-ins (not while they load)
        old = _POLICIES.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
            raise RHeadsError(f"a KV policy named '{name}' is already registered ({old.__module__}.{old.__qualname__})"
                              ": pick another name")
        cls.name = name
        _POLICIES[name] = cls
        return cls

    return decorate


def unregister_policy(name: str) -> None:
    """Remove a registered policy (tests, notebooks); a name not registered is ignored."""
    _POLICIES.pop(name, None)


def policy_names() -> list[str]:
    """Every registered policy name, by the class's `order`, then by registration."""
    _load_builtins()
    return sorted(_POLICIES, key=lambda n: getattr(_POLICIES[n], "order", 100))


def get_policy_class(name: str) -> type:
    """The class registered under `name`; ParamError `kv.policy` naming the registered ones otherwise."""
    _load_builtins()
    if name not in _POLICIES:
        raise ParamError("kv.policy", name, f"unknown KV policy: use one of {', '.join(policy_names())}")
    return _POLICIES[name]

