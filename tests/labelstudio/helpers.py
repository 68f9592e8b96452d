"""Helpers shared by the Label Studio tests: generated images with labels, and predictions equal to labels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from detal.data import write_labels
from detal.types import Prediction

NAMES = ["red", "green", "blue"]


def pred_of(path: Path, labels: np.ndarray, size=(96, 64), conf: float = 0.8) -> Prediction:
    """A prediction whose boxes are exactly `labels` (pixel xyxy, float32 like the detector's)."""
    w, h = size
    cx, cy, bw, bh = labels[:, 1] * w, labels[:, 2] * h, labels[:, 3] * w, labels[:, 4] * h
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).astype(np.float32)
    n = len(labels)
    return Prediction(path=path, width=w, height=h, boxes=boxes.reshape(-1, 4), conf=np.full(n, conf, np.float32),
                      cls=labels[:, 0].astype(np.int64), probs=np.zeros((n, len(NAMES)), np.float32))



def make_images(folder: Path, n: int, *, seed: int, size=(96, 64), boxes_per_image: int = 2,
                nc: int = 3) -> list[tuple[Path, np.ndarray]]:
    """n PNG images with coloured rectangles and their ground-truth YOLO labels (written next to them)."""
    rng = np.random.default_rng(seed)
    w, h = size
    out = []
    for i in range(n):
        img = np.full((h, w, 3), 200, np.uint8)
        rows = []
        for _ in range(boxes_per_image):
            bw, bh = int(rng.integers(10, w // 2)), int(rng.integers(10, h // 2))
            x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            c = int(rng.integers(0, nc))
            cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), (60 * c, 200 - 60 * c, 40), -1)
            rows.append([c, (x0 + bw / 2) / w, (y0 + bh / 2) / h, bw / w, bh / h])
        p = folder / "images" / f"img{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), img)
        labels = np.asarray(rows, dtype=np.float64)
        write_labels(folder / "labels" / f"img{i:03d}.txt", labels)
        out.append((p, labels))
    return out


def assert_no_secret(secret: str, *folders: Path, texts: tuple[str, ...] = ()) -> int:
    """The token appears in no file under `folders` (state, tables, reports, logs, labels) nor in `texts`."""
    needle = secret.encode()
    scanned = 0
    for folder in folders:
        for f in Path(folder).rglob("*"):
            if f.is_file() and not f.is_symlink():
                assert needle not in f.read_bytes(), f"the API token leaked into {f}"
                scanned += 1
    for t in texts:
        assert secret not in t, "the API token leaked into the output"
    return scanned
