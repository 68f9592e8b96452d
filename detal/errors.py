"""Project exceptions. The CLI turns a DetalError into one clear line on stderr and exit code 2."""

from __future__ import annotations

import sys
from typing import Callable, Iterable


class DetalError(Exception):
    """A user-facing error: the message names the file/field and the fix."""


class ConfigError(DetalError):
    """Invalid configuration (unknown key, bad value)."""


class DataError(DetalError):
    """Invalid dataset content (missing files, bad label lines)."""


class LabelStudioError(DetalError):
    """Label Studio server or project problem."""


class BusyError(DetalError):
    """Another process holds the run folder's lock (detal.lock.exclusive)."""


def tool_main(lines: Callable[[], Iterable[str]]) -> int:
    """A tools/ script's exit: print the lines `lines()` gives (0), or its DetalError as one line (2)."""
    try:
        out = list(lines())
    except DetalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(out))
    return 0
