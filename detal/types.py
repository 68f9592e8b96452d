"""Plain data passed between the detector, the scorer, the selection and Label Studio (no heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Effort counts an annotator reports per round: pre-labels accepted as is, corrected, deleted, boxes added,
# tasks skipped. The one definition: formats, annotators, metrics and reports import it from here.
BOX_EFFORT_KEYS = ("accepted", "corrected", "deleted", "added")
EFFORT_KEYS = (*BOX_EFFORT_KEYS, "skipped")
# What correcting pre-labels cost (detal.cost): the actions of the labels collected in the round that are not
# already effort keys (accepted and deleted are both), then the seconds of the labelled set the round trained on
# (cumulative, like labeled_images): with the pre-labels shown, and what the same images cost drawn from scratch.
ACTION_COLUMNS = ("moved", "relabelled", "drawn")
SECONDS_COLUMNS = ("annotation_seconds", "scratch_seconds")

# The run folder's tidy tables (one row per record), written by the drivers and read by the report.
METRIC_COLUMNS = (
    "experiment", "strategy", "seed", "round", "epochs_trained", "labeled_images", "labeled_boxes",
    "map50_95", "map50", "train_seconds", "eval_seconds", "select_seconds", "scored_images", "selected_images",
    *EFFORT_KEYS, *ACTION_COLUMNS, *SECONDS_COLUMNS,
)
SELECTION_COLUMNS = ("experiment", "strategy", "seed", "round", "image", "score", "source")
# per_class.csv: AP of each class on the val split after each round's training
PER_CLASS_COLUMNS = ("experiment", "strategy", "seed", "round", "class_id", "class", "instances", "ap50_95", "ap50")
# selected_classes.csv: boxes per class in the labels of the images selected at the end of `round`
SELECTED_CLASS_COLUMNS = ("experiment", "strategy", "seed", "round", "class_id", "class", "boxes", "images")
# pool_classes.csv: ground-truth make-up of the whole pool (simulations only: a live project does not know it)
POOL_CLASS_COLUMNS = ("experiment", "class_id", "class", "boxes", "images")


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
    flip: np.ndarray | None = None  # (n,) per-box flip inconsistency, when the scorer ran the flipped image too

    @property
    def ok(self) -> bool:
        return self.error is None

    def yolo(self) -> np.ndarray:
        """The boxes as YOLO label rows (n, 5): class, cx, cy, w, h normalised by the image size."""
        if not self.ok or not len(self.boxes) or not self.width or not self.height:
            return np.zeros((0, 5))
        b = np.asarray(self.boxes, np.float64).reshape(-1, 4) / [self.width, self.height, self.width, self.height]
        return np.column_stack([np.asarray(self.cls, np.float64), (b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]])
