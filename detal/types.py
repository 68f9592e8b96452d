"""Plain data passed between the detector, the scorer, the selection and Label Studio (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Prediction:
    """The model's view of one image, after NMS.

    boxes are xyxy in pixels of the original image; probs holds the FULL class-score vector of every
    kept box (n, nc), not only the top class; feature is the pooled backbone feature of the image (d,)
    when the scorer computed it. `error` is set (and the arrays are empty) when the image could not be read.
    """

    path: Path
    width: int
    height: int
    boxes: np.ndarray  # (n, 4) float32 xyxy pixels
    conf: np.ndarray  # (n,) float32 top class score
    cls: np.ndarray  # (n,) int64 top class id
    probs: np.ndarray  # (n, nc) float32 per-class scores (sigmoids)
    feature: np.ndarray | None = None  # (d,) float32
    error: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None
