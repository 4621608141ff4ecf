"""The built-in KV policies, one module each; `registry.py` imports every module here on its first look-up, so a
new policy is one new file (a `KVPolicy` subclass under `@register_policy(name)`) and no edit elsewhere.

Left out on purpose: an explicit list of the modules (the folder is the list).
"""
