"""What every Ultralytics entry point shares: offline mode, device names, a quiet logger."""

from __future__ import annotations

import contextlib
import logging
import os
import re

from detal.errors import ConfigError

_DEVICE_RE = re.compile(r"^(cpu|mps|cuda|cuda:\d+|\d+(,\d+)*)$")


def offline() -> None:
    """Ultralytics reads YOLO_OFFLINE once, at import: set it first, so nothing waits on the network."""
    os.environ.setdefault("YOLO_OFFLINE", "1")


def resolve_device(device: str) -> str:
    """'auto' -> '0' (first CUDA GPU) when CUDA is available, else 'cpu'; explicit devices are validated."""
    dev = str(device).strip().lower().replace(" ", "")
    if dev == "auto":
        import torch

        return "0" if torch.cuda.is_available() else "cpu"
    if not _DEVICE_RE.match(dev):
        raise ConfigError(f"model.device {device!r} is not valid; use auto, cpu, mps, 0, 0,1 or cuda:0")
    if dev not in {"cpu", "mps"}:
        import torch

        ids = [int(x) for x in (dev.split(":")[1] if ":" in dev else "0" if dev == "cuda" else dev).split(",")]
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if max(ids) >= n:
            raise ConfigError(f"model.device {device!r} requested but this machine has {n} CUDA GPU(s); "
                              "use device: auto or cpu")
    elif dev == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise ConfigError("model.device 'mps' requested but Apple MPS is not available here; use device: auto or cpu")
    return dev


@contextlib.contextmanager
def quiet(enabled: bool = True):
    """Silence Ultralytics' info output (its progress bars follow the logger level); keep warnings."""
    from ultralytics.utils import LOGGER

    old = LOGGER.level
    if enabled:
        LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(old)


def check_weights_file(path) -> None:
    """A .pt is a torch zip archive: a damaged or truncated one fails here with one line, not a traceback."""
    import zipfile
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: weights file not found; give an existing .pt (e.g. runs/<exp>/seed0/mix/round3/weights/last.pt)")
    if not zipfile.is_zipfile(p):
        raise ConfigError(f"{p}: not a PyTorch weights file (damaged, truncated or another format); "
                          "give a .pt saved by Ultralytics or retrain")
