"""The built-in answering methods, one module each (imported by `answer.registry` on the first look-up)."""
