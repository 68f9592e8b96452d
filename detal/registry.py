"""Name -> implementation lookup for everything a config names (measures, reductions, strategies).

An unknown name is a one-line error that lists the valid names and suggests the near miss. The error
is both a `ConfigError` (the CLI prints one line, exit code 2) and a `ValueError` (what callers of the
pure numpy modules expect).
"""

from __future__ import annotations

import difflib
from typing import Mapping, TypeVar

from detal.errors import ConfigError

T = TypeVar("T")


class InvalidOption(ConfigError, ValueError):
    """A bad option name or value passed to a pure scoring/selection function."""


def near_miss(name: object, candidates) -> str | None:
    """The closest valid name to a mistyped one (difflib), or None."""
    close = difflib.get_close_matches(str(name), list(candidates), n=1)
    return close[0] if close else None


def lookup(registry: Mapping[str, T], name: object, what: str) -> T:
    """Return registry[name], or raise InvalidOption naming the valid choices and the closest one."""
    if isinstance(name, str) and name in registry:
        return registry[name]
    valid = ", ".join(sorted(registry))
    hint = ""
    if isinstance(name, str) and (close := near_miss(name, registry)):
        hint = f" Did you mean {close!r}?"
    raise InvalidOption(f"unknown {what} {name!r}; valid: {valid}.{hint}")
