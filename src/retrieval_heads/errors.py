"""User-facing errors: one line that says what went wrong and what to do.

The CLI prints `RHeadsError` messages without a traceback; anything else is a bug and keeps its traceback.
`ParamError` is the error of one bad parameter: the library words it with the parameter's name
(`kv.recent=-1: ...`), and the CLI rewords it with its flag (`--recent -1: ...`) through one table,
`cli/flags.py`, so library messages never name CLI flags.

Deliberately nothing else here: no error codes, no hierarchy beyond what callers catch.
"""

from __future__ import annotations

from typing import Any, Mapping


class RHeadsError(Exception):
    """A problem with the user's input or environment, worded as one actionable line."""


class ParamError(RHeadsError, ValueError):
    """A bad value of one parameter. `param` is its dotted config name (`kv.recent`, `probe.lengths`), `advice`
    what to do; in `advice`, `{name}` placeholders of other parameters are filled by `for_cli` with their flags."""

    def __init__(self, param: str, value: Any, advice: str):
        self.param, self.value, self.advice = param, value, advice
        super().__init__(f"{param}={value!r}: {self._fill(advice, {})}")

    @staticmethod
    def _fill(text: str, flags: Mapping[str, str]) -> str:
        import re

        return re.sub(r"\{([\w.]+)\}", lambda m: flags.get(m.group(1), m.group(1)), text)

    def for_cli(self, flags: Mapping[str, str]) -> str:
        """The message with flags instead of parameter names (names without a flag stay as they are)."""
        flag = flags.get(self.param)
        head = f"{flag} {self.value}" if flag else f"{self.param}={self.value!r}"
        return f"{head}: {self._fill(self.advice, flags)}"
