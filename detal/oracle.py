"""Annotators: who turns selected images into labels.

`GroundTruthOracle` returns the labels already on disk (the simulated annotator of experiments).
`detal.ls_oracle.LabelStudioOracle` does the same through a real Label Studio server (push pre-labels,
a bot annotates with the ground truth, pull the annotations back). Both honour one interface, so the
experiment loop never knows which one it drives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from detal.data import label_path, read_labels
from detal.types import EFFORT_KEYS, Prediction  # noqa: F401 - EFFORT_KEYS re-exported


class Annotator(Protocol):
    needs_predictions: bool

    def annotate(self, round_idx: int, images: list[Path], predictions: list[Prediction] | None,
                 scores: dict[Path, float] | None, model_version: str) -> tuple[dict[Path, np.ndarray], dict[str, int]]:
        """Labels (n, 5) [cls cx cy w h] for the images it annotated, and effort counts (EFFORT_KEYS)."""
        ...


class GroundTruthOracle:
    """Reads the ground-truth label files next to the images (validated: a bad line names file:line)."""

    needs_predictions = False

    def __init__(self, nc: int):
        self.nc = nc

    def annotate(self, round_idx, images, predictions=None, scores=None, model_version=""):
        return {p: read_labels(label_path(p), self.nc) for p in images}, {}
