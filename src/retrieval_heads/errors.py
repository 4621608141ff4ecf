"""User-facing errors: one line that says what went wrong and what to do.

The CLI prints `RHeadsError` messages without a traceback; anything else is a bug and keeps its traceback.
Deliberately nothing else here: no error codes, no hierarchy beyond what callers catch.
"""


class RHeadsError(Exception):
    """A problem with the user's input or environment, worded as one actionable line."""
