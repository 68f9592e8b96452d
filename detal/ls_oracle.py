"""Simulated annotator through a real Label Studio server: push pre-labels, a bot annotates, pull back.

The bot submits the ground-truth boxes (the label files next to the images) as the annotation of
each pushed task, exactly where a human would correct the pre-labels; the labels then come back
through `detal.labelstudio.pull`, so an experiment exercises the whole round trip. Ground-truth
boxes reaching outside the image come back clipped to it, as YOLO trains on them anyway.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from detal import labelstudio as ls
from detal.data import image_size, label_path, read_labels
from detal.labelstudio_format import FROM_NAME, TO_NAME, LabelSpec, prediction_regions, regions_to_yolo
from detal.types import Prediction

log = logging.getLogger(__name__)

EFFORT_KEYS = ("accepted", "corrected", "deleted", "added", "skipped")


class LabelStudioOracle:
    """Annotator interface of the experiment loop (see `detal.oracle.Annotator`)."""

    needs_predictions = True

    def __init__(self, *, url: str, api_key: str, project_title: str, names, document_root: Path,
                 image_root: Path, timeout: float = 120, batch_size: int = 1000):
        self.url, self.project_title, self.names = url, project_title, [str(n) for n in names]
        self.document_root, self.image_root = Path(document_root).resolve(), Path(image_root).resolve()
        self.timeout, self.batch_size = float(timeout), int(batch_size)
        self._api_key = api_key
        self._conn: ls.Connection | None = None
        self._pid: int | None = None

    def __repr__(self) -> str:  # never print the token
        return f"LabelStudioOracle(url={self.url!r}, project_title={self.project_title!r})"

    def _connect(self) -> tuple[ls.Connection, int]:
        if self._conn is None:  # lazily: constructing the annotator must not need a running server
            self._conn = ls.connect(self.url, self._api_key, timeout=self.timeout)
            self._pid = ls.ensure_project(self._conn, self.project_title, self.names,
                                          document_root=self.document_root, image_root=self.image_root)
        return self._conn, self._pid

    def annotate(self, round_idx: int, images: list[Path], predictions: list[Prediction] | None,
                 scores: dict[Path, float] | None, model_version: str) -> tuple[dict[Path, np.ndarray], dict[str, int]]:
        """Push `images` (with their pre-labels), annotate them with the ground truth, pull the labels back."""
        conn, pid = self._connect()
        images = [Path(p).resolve() for p in images]
        wanted = set(images)
        by_path = {Path(p.path).resolve(): p for p in (predictions or []) if Path(p.path).resolve() in wanted}
        preds = [by_path[p] for p in images if p in by_path and by_path[p].ok]
        bare = [p for p in images if p not in by_path or not by_path[p].ok]
        pushed_scores = None
        if scores is not None:
            resolved = {Path(k).resolve(): float(v) for k, v in scores.items()}
            if all(Path(p.path).resolve() in resolved for p in preds):
                pushed_scores = resolved
        res = ls.push(conn, pid, preds, names=self.names, document_root=self.document_root, round_idx=round_idx,
                      model_version=model_version or "none", scores=pushed_scores, images=bare,
                      batch_size=self.batch_size)
        spec = ls.project_spec(conn, pid, self.names)
        nc = len(self.names)
        for path, task_id in res.task_ids.items():
            truth = read_labels(label_path(path), nc)
            w, h = image_size(path)
            ls.submit_annotation(conn, task_id, ls.label_regions(truth, w, h, self.names, spec))
        pulled = ls.pull(conn, pid, self.names, document_root=self.document_root)
        labels = {p: pulled.labels[p] for p in images if p in pulled.labels}
        effort = dict.fromkeys(EFFORT_KEYS, 0)
        for p in labels:
            if p in res.task_ids:
                counts = pulled.effort[p]
            else:  # annotated earlier (e.g. by another arm of the experiment): this round's pre-labels vs final
                counts = ls.effort_counts(_prelabels(by_path.get(p), self.names), labels[p])
            for k, v in counts.items():
                effort[k] += v
        effort["skipped"] = sum(1 for p in pulled.skipped if p in wanted)
        missing = wanted - set(labels) - set(pulled.skipped)
        if missing:
            log.warning("%d pushed images came back without labels (e.g. %s)", len(missing), min(missing))
        return labels, effort


def _prelabels(pred: Prediction | None, names) -> np.ndarray:
    """A prediction as YOLO labels, through the same regions the server would hold."""
    if pred is None or not pred.ok or not len(pred.boxes):
        return np.zeros((0, 5))
    spec = LabelSpec(FROM_NAME, TO_NAME, {str(n): i for i, n in enumerate(names)})
    regions = prediction_regions(pred.boxes, pred.cls, pred.conf, pred.width, pred.height, names, spec)
    return regions_to_yolo(regions, spec, str(pred.path))
