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

The mechanism is the package's one `Registry` (`retrieval_heads/registry.py`). Importable without torch or
transformers (the policy modules import those inside their methods), so `rheads --help` stays light. Left out on purpose: entry points of other packages (import their module, and its decorators
register its policies), and policy parameters (each class reads what it needs from `KVConfig`).
"""

from __future__ import annotations

from ..registry import Registry

_REGISTRY = Registry("KV policy", f"{__package__}.policies", "kv.policy")


def register_policy(name: str):
    """Class decorator: register a `KVPolicy` subclass under `name` (sets its `name`). A second class under a
    taken name is refused; the same class again (a module reloaded) replaces it."""
    return _REGISTRY.decorator(name)


def unregister_policy(name: str) -> None:
    """Remove a registered policy (tests, notebooks); a name not registered is ignored."""
    _REGISTRY.remove(name)


def policy_names() -> list[str]:
    """Every registered policy name, by the class's `order`, then by registration."""
    return _REGISTRY.names()


def get_policy_class(name: str) -> type:
    """The class registered under `name`; ParamError `kv.policy` naming the registered ones otherwise."""
    return _REGISTRY.get(name)
