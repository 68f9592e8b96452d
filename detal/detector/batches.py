"""Decode + letterbox batches of images, prefetched in threads while the model runs (no torch here).

Preprocessing copies Ultralytics' predictor: imread, LetterBox with auto=True when every image of the
batch has the same shape, BGR->RGB. An unreadable image is recorded with its error, never raised:
one bad file must not stop a scoring pass over thousands.
"""

from __future__ import annotations

import itertools
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np


@dataclass
class Batch:
    paths: list[Path]
    shapes: list[tuple[int, int] | None]  # (h, w) of each input, None when it could not be read
    errors: list[str | None]
    pixels: np.ndarray | None  # (k, H, W, 3) uint8 RGB of the k readable images, None when k == 0


def _read(path: Path) -> tuple[np.ndarray | None, str | None]:
    from ultralytics.utils.patches import imread

    try:
        im = imread(path)  # None for a missing, empty or undecodable file
    except Exception as exc:  # noqa: BLE001 - cv2.error, PIL errors...: one bad file must not stop the run
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"cannot decode image ({type(exc).__name__}: {first})"
    if im is None:
        return None, "cannot decode image (corrupt, empty or unsupported file)"
    if im.ndim == 2:
        im = im[..., None]
    if im.ndim != 3 or im.shape[0] < 1 or im.shape[1] < 1:
        return None, f"unexpected image shape {getattr(im, 'shape', None)}"
    if im.shape[2] != 3:
        im = im[..., :3] if im.shape[2] > 3 else np.repeat(im[..., :1], 3, axis=2)
    return im, None


def load_batch(paths: list[Path], imgsz: tuple[int, int], stride: int) -> Batch:
    """Decode and letterbox one batch (runs in a worker thread; cv2 releases the GIL)."""
    from ultralytics.data.augment import LetterBox

    ims, errors = zip(*(_read(p) for p in paths)) if paths else ((), ())
    shapes = [None if im is None else im.shape[:2] for im in ims]
    ok = [im for im in ims if im is not None]
    if not ok:
        return Batch(list(paths), shapes, list(errors), None)
    # Ultralytics' predictor rule: minimum-rectangle letterbox only when the batch shares one shape.
    same = len({im.shape for im in ok}) == 1
    lb = LetterBox(imgsz, auto=same, stride=stride)
    arr = np.stack([lb(image=im) for im in ok])  # (k, H, W, 3) BGR
    # RGB, kept NHWC: permuted to NCHW on the device it is channels_last, the layout AutoBackend gives the
    # model on x86 CPUs, so the first conv needs no reorder; values are those of the predictor's tensor.
    return Batch(list(paths), shapes, list(errors), np.ascontiguousarray(arr[..., ::-1]))


def prefetched(images: Iterable[Path | str], batch: int, load: Callable[[list[Path]], Batch],
               workers: int) -> Iterator[Batch]:
    """Batches in input order; `workers` threads decode the next batches while the caller uses this one.

    Memory is bounded: at most workers + 1 decoded batches wait at any time, whatever the input length.
    """
    it = iter(images)
    chunks = iter(lambda: [Path(p) for p in itertools.islice(it, batch)], [])
    if workers == 0:
        for chunk in chunks:
            yield load(chunk)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="detal-decode")
    pending: deque = deque()
    try:
        for chunk in itertools.islice(chunks, workers + 1):
            pending.append(pool.submit(load, chunk))
        while pending:
            b = pending.popleft().result()
            nxt = next(chunks, None)
            if nxt:
                pending.append(pool.submit(load, nxt))
            yield b
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True)
