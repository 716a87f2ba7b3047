"""Kubo-style durations (``30s``, ``1m30s``, ``500ms``): parsed and printed.

A module of its own, standard library only, because the command line parses
every ``--timeout`` before it knows whether it needs the node at all: commands
answered by a running daemon must not load multiformats or the p2p stack.
:mod:`zikade_py.http.args` re-exports both functions.
"""

from __future__ import annotations

import re

from zikade_py.http.errors import ArgumentError

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, *, allow_zero: bool = False) -> float:
    """Seconds in a Go ``time.ParseDuration`` string (``30s``, ``1m30s``); bare numbers: seconds.

    Timeouts must be positive; ``allow_zero`` is for pauses such as ``ping -i 0``.
    """
    s = text.strip()
    try:
        value = float(s)
    except ValueError:
        pos, value = 0, 0.0
        if not s:
            raise ArgumentError(f"invalid duration {text!r}") from None
        while pos < len(s):
            m = _DURATION_PART.match(s, pos)
            if m is None:
                raise ArgumentError(
                    f"invalid duration {text!r} (use e.g. 30s, 1m, 500ms)"
                ) from None
            value += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
    if allow_zero and value == 0:
        return 0.0
    if not value > 0 or value != value or value == float("inf"):
        raise ArgumentError(f"invalid duration {text!r}: must be positive")
    return value


def format_duration(seconds: float) -> str:
    """The short Go-style form of ``seconds`` (``30s``, ``1.5s``, ``250ms``) for the RPC query."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"
