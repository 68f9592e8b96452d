"""Locks: one run at a time per run folder (exclusive, non-blocking), and waiting for a shared training (blocking); both flocks, released when the file closes (crash too)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from detal.errors import BusyError, DetalError


@contextlib.contextmanager
def exclusive(path: Path, *, busy: str):
    """Hold `path` (recording our pid in it); `busy` is the error when another process holds it (its pid appended)."""
    import fcntl

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")
    except OSError as exc:
        raise DetalError(f"{path.parent}: cannot create the run lock ({exc.strerror or exc}); "
                         "choose a writable output_dir") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise BusyError(f"{busy} (pid {fh.read().strip() or '?'})") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield


@contextlib.contextmanager
def waiting(path: Path):
    """Hold `path` exclusively, waiting as long as another process holds it (released on close, crash too)."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
