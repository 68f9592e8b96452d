"""Terminal progress on stderr; epoch lines overwrite each other on a terminal, every 5th epoch otherwise."""

from __future__ import annotations

import sys
from typing import Callable


class Progress:
    def __init__(self, quiet: bool = False, stream=None):
        self.quiet, self.stream = quiet, stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def line(self, msg: str) -> None:
        if not self.quiet:
            print(("\r\033[K" if self.tty else "") + msg, file=self.stream, flush=True)

    def epoch(self, prefix: str) -> Callable[[int, int, dict], None]:
        def report(epoch: int, epochs: int, info: dict) -> None:
            if self.quiet:
                return
            loss = info.get("loss")
            msg = f"{prefix} epoch {epoch}/{epochs}" + (f" loss {loss:.3f}" if loss is not None else "")
            if self.tty:
                print("\r\033[K" + msg, end="", file=self.stream, flush=True)
            elif epoch == epochs or epoch % 5 == 0:
                print(msg, file=self.stream, flush=True)
        return report
