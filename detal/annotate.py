"""Annotators: who turns selected images into labels, behind one interface for both drivers.

A round *requests* labels for images (with the model's pre-labels and uncertainty) and later *collects*
what is finished. The ground-truth oracle and the simulated Label Studio annotator finish at once, so
`simulate` collects in the same round; human annotators in a live Label Studio project finish whenever
they do, so the scheduled job collects at the start of its next run. What `collect` returns is the
labels of record: the round writes them where training reads them.

Registered annotators (config `annotator:`): `oracle` (here) and `labelstudio`
(detal.labelstudio.annotator.LabelStudioAnnotator). A new annotator implements `Annotator` and gets a
line in `detal.simulate.ANNOTATORS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from detal.cost import effort_counts, trusted
from detal.data import label_path, read_labels
from detal.types import BOX_EFFORT_KEYS, Prediction


@dataclass(frozen=True)
class Request:
    """Images to label, and what annotators should see with them."""

    round: int  # the round the labels will join (images selected after round r join round r + 1)
    images: tuple[Path, ...]
    predictions: dict[Path, Prediction] = field(default_factory=dict)  # pre-labels (boxes >= prelabel.conf)
    scores: dict[Path, float] = field(default_factory=dict)  # uncertainty; NaN for unscored random picks
    model_version: str = "seed"
    # images requested earlier and still open: their pre-labels are replaced by this model's (same pass)
    refresh: tuple[Path, ...] = ()
    sources: dict[Path, str] = field(default_factory=dict)  # "uncertainty" | "random" | "seed" | "val"


@dataclass
class Annotations:
    """What the annotator finished among the images asked about."""

    labels: dict[Path, np.ndarray] = field(default_factory=dict)  # (n, 5) cls cx cy w h; empty = "no objects"
    skipped: list[Path] = field(default_factory=list)  # skipped by the annotator: never turned into labels
    effort: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BOX_EFFORT_KEYS, 0))  # pre-labels vs final
    effort_by_image: dict[Path, dict[str, int]] = field(default_factory=dict)  # the same, per image (when known)
    # the pre-labels each image was shown with: (n, 5) YOLO rows and (n,) scores (when known)
    prelabels: dict[Path, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # a simulated annotator's acceptance tolerance (detal.cost.actions): its labels are the ground truth; None for
    # people, whose unchanged boxes are the accepted ones
    accept_iou: float | None = None
    # images a person reviewed only in part (prelabel.trust): (pre-labels reviewed, what review made of them, the
    # image's true boxes); their cost is that review's, and from scratch they cost all the true boxes
    reviewed: dict[Path, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)


class Annotator(Protocol):
    needs_predictions: bool  # True: the round computes pre-labels for the requested images

    def request(self, req: Request) -> None:
        """Hand the images to annotators (idempotent: requesting the same image again creates nothing)."""
        ...

    def collect(self, images: Sequence[Path]) -> Annotations:
        """Finished labels among `images` (the ones requested and not yet collected)."""
        ...


class GroundTruthOracle:
    """The simulated annotator of experiments: the ground-truth label files next to the images.

    It is shown the pre-labels of the round's model, as a person in Label Studio is, and reports them with the
    labels, so the round counts what correcting them cost (detal.cost); an image requested without pre-labels
    (the seed set: no model yet) is drawn from scratch. A bad label line is a DataError naming file:line,
    raised when the image is requested. With `trust` (prelabel.trust) pre-labels at that confidence or above
    are taken unreviewed (detal.cost.trusted): its labels are those boxes plus the true boxes they miss.
    """

    needs_predictions = True

    def __init__(self, nc: int, accept_iou: float | None = None, trust: float | None = None):
        self.nc, self.accept_iou = nc, accept_iou  # cost.accept_iou: its labels are the ground truth
        self.trust = trust
        self._ready: dict[Path, np.ndarray] = {}
        self._shown: dict[Path, tuple[np.ndarray, np.ndarray]] = {}

    def request(self, req: Request) -> None:
        for p in map(Path, req.images):
            self._ready[p] = read_labels(label_path(p), self.nc)
            pred = req.predictions.get(p)
            if pred is not None and pred.ok:
                self._shown[p] = (pred.yolo(), np.asarray(pred.conf, np.float64))

    def collect(self, images: Sequence[Path]) -> Annotations:
        out = Annotations(accept_iou=self.accept_iou)
        for p in map(Path, images):
            # not requested in this process (a resumed run): the files on disk are the same answer
            out.labels[p] = self._ready.pop(p) if p in self._ready else read_labels(label_path(p), self.nc)
            pre, fin = np.zeros((0, 5)), out.labels[p]
            if p in self._shown:
                out.prelabels[p] = self._shown.pop(p)
                pre = out.prelabels[p][0]
                if self.trust is not None:
                    truth = out.labels[p]
                    out.labels[p], pre, fin = trusted(pre, out.prelabels[p][1], truth, self.trust)
                    out.reviewed[p] = (pre, fin, truth)
            counts = effort_counts(pre, fin, self.accept_iou)
            out.effort_by_image[p] = counts
            for k in BOX_EFFORT_KEYS:
                out.effort[k] += counts[k]
        return out
