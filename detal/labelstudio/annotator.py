"""Annotators in a Label Studio project: `request` pushes tasks with pre-labels, `collect` pulls what is done.

`LabelStudioAnnotator` is the live one (people annotate, the scheduled job collects at its next run).
`BotAnnotator`, the simulated annotator of `simulate`, is the same plus a bot that submits the
ground-truth boxes (the label files next to the images) as the annotation of each pushed task, exactly
where a human would correct the pre-labels; the labels then come back through `client.pull`, so an
experiment exercises the whole round trip. Ground-truth boxes reaching outside the image come back
clipped to it, as YOLO trains on them anyway.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from detal.annotate import Annotations, Request
from detal.cost import effort_counts
from detal.data import image_size, label_path, read_labels
from detal.errors import DetalError
from detal.labelstudio import client as ls
from detal.labelstudio.format import LabelSpec, label_regions, prediction_regions, regions_to_yolo
from detal.types import BOX_EFFORT_KEYS, Prediction

log = logging.getLogger(__name__)


class LabelStudioAnnotator:
    """detal.annotate.Annotator through a live server: people annotate in their own time."""

    needs_predictions = True
    answers_at_once = False
    accept_iou: float | None = None  # people: a box left as it was is accepted, any change is a move (detal.cost)

    def __init__(self, *, url: str, api_key: str, project_title: str, names, document_root: Path,
                 image_root: Path, timeout: float, batch_size: int):
        self.url, self.project_title, self.names = url, project_title, [str(n) for n in names]
        self.document_root, self.image_root = Path(document_root).resolve(), Path(image_root).resolve()
        self.timeout, self.batch_size = float(timeout), int(batch_size)
        self._api_key = api_key
        self._conn: ls.Connection | None = None
        self._pid: int | None = None
        self._pushed: set[Path] = set()  # tasks this process pushed (their effort is measured by pull)
        self._prelabels: dict[Path, Prediction] = {}  # last pre-labels per image, for images annotated earlier
        self._pulled: ls.PullResult | None = None  # reused by every collect until the next push

    @classmethod
    def from_config(cls, cfg, ds) -> "LabelStudioAnnotator":
        lc = cfg.labelstudio
        key = os.environ.get(lc.api_key_env)
        if not key:
            raise DetalError(f"annotator: labelstudio needs the API token in ${lc.api_key_env}; "
                             f"export it (see `detal labelstudio serve --help`)")
        return cls(url=lc.url, api_key=key, project_title=ls.project_title(cfg), names=list(ds.names),
                   document_root=ls.document_root(cfg, ds.root), image_root=ds.root, timeout=lc.timeout,
                   batch_size=lc.batch_size)

    def __repr__(self) -> str:  # never print the token
        return f"LabelStudioAnnotator(url={self.url!r}, project_title={self.project_title!r})"

    def _connect(self) -> tuple[ls.Connection, int]:
        if self._conn is None:  # lazily: constructing the annotator must not need a running server
            self._conn = ls.connect(self.url, self._api_key, timeout=self.timeout)
            self._pid = ls.ensure_project(self._conn, self.project_title, self.names,
                                          document_root=self.document_root, image_root=self.image_root)
        return self._conn, self._pid

    def prepare(self) -> None:
        """Project, local-files storage and the annotators' view (most uncertain first), before any push."""
        conn, pid = self._connect()
        ls.ensure_view(conn, pid)

    def task_keys(self) -> dict[str, int]:
        """Every task of the project: image key (relative to the document root) -> task id."""
        conn, pid = self._connect()
        return ls.task_keys(conn, pid)

    def request(self, req: Request) -> ls.PushResult:
        """Push the images (pre-labels where there are some) and refresh still-open tasks to this model."""
        conn, pid = self._connect()
        images = [Path(p).resolve() for p in (*req.images, *req.refresh)]
        by_path = {Path(p).resolve(): pred for p, pred in req.predictions.items()}
        preds = [by_path[p] for p in images if p in by_path and by_path[p].ok]
        bare = [p for p in images if p not in by_path or not by_path[p].ok]
        scores = {Path(k).resolve(): float(v) for k, v in req.scores.items()}
        extra = {Path(p): {"source": s, **({"split": "val"} if s == "val" else {})} for p, s in req.sources.items()}
        self._pulled = None
        res = ls.push(conn, pid, preds, names=self.names, document_root=self.document_root, round_idx=req.round,
                      model_version=req.model_version or "none", scores=scores or None, images=bare,
                      batch_size=self.batch_size, extra=extra)
        self._pushed |= set(res.task_ids)
        self._prelabels.update({Path(p.path).resolve(): p for p in preds})
        return res

    def _pull(self) -> ls.PullResult:
        conn, pid = self._connect()
        if self._pulled is None:  # one pull serves the val set, the pool and the round's first collect
            self._pulled = ls.pull(conn, pid, self.names, document_root=self.document_root)
        return self._pulled

    def latest(self, images: Sequence[Path]) -> dict[Path, np.ndarray]:
        """The newest annotation (by updated_at) of each image that has one, collected or not: how the
        scheduled job follows an annotator who reopens a finished task and changes it."""
        pulled = self._pull()
        return {p: pulled.labels[r] for p in images if (r := Path(p).resolve()) in pulled.labels}

    def timings(self, images: Sequence[Path]) -> dict[Path, tuple]:
        """What each annotated image among `images` cost its annotators, for the live job's lead_time records:
        path -> (labels, pre-labels shown (n, 5) or None, lead_time seconds or None, (annotations, newest updated_at))."""
        pulled = self._pull()
        out = {}
        for p in images:
            if (r := Path(p).resolve()) in pulled.labels:
                shown = pulled.prelabels.get(r)
                out[p] = (pulled.labels[r], None if shown is None else shown[0], pulled.lead_time.get(r),
                          pulled.passes.get(r, (1, "")))
        return out

    def collect(self, images: Sequence[Path]) -> Annotations:
        original = {Path(p).resolve(): Path(p) for p in images}
        pulled = self._pull()
        out = Annotations(accept_iou=self.accept_iou)
        for p, orig in original.items():
            if p in pulled.labels:
                out.labels[orig] = pulled.labels[p]
                if p in self._pushed or p not in self._prelabels:  # the prediction the annotator started from
                    shown = pulled.prelabels.get(p)
                    pre = shown[0] if shown is not None else pulled.labels[p][:0]
                else:  # annotated earlier (e.g. by another arm of the experiment): these pre-labels vs final
                    pre = _prelabels(self._prelabels.get(p), self.names)
                counts = effort_counts(pre, pulled.labels[p], self.accept_iou)
                out.effort_by_image[orig] = counts
                if p in pulled.prelabels:
                    out.prelabels[orig] = pulled.prelabels[p]
                for k in BOX_EFFORT_KEYS:
                    out.effort[k] += counts[k]
        out.skipped = [original[p] for p in pulled.skipped if p in original]
        missing = set(original) - set(pulled.labels) - set(pulled.skipped)
        if missing:  # normal while people work; the bot answers everything at once, so there it is a fault
            (log.warning if self.answers_at_once else log.info)(
                "%d requested images are not annotated yet (e.g. %s)", len(missing), min(missing))
        return out


class BotAnnotator(LabelStudioAnnotator):
    """The simulated annotator of `simulate`: a bot answers every pushed task with the ground truth."""

    answers_at_once = True

    def __init__(self, *, accept_iou: float | None = None, **kw):
        super().__init__(**kw)
        # cost.accept_iou, as the oracle: the bot's labels are the ground truth, never pixel-equal to a pre-label, so
        # a right one within this IoU counts as accepted, as a person would leave it (detal.cost.actions)
        self.accept_iou = accept_iou

    @classmethod
    def from_config(cls, cfg, ds) -> "BotAnnotator":
        bot = super().from_config(cfg, ds)
        bot.accept_iou = cfg.cost.accept_iou
        return bot

    def request(self, req: Request) -> ls.PushResult:
        res = super().request(req)
        conn, pid = self._connect()
        spec = ls.project_spec(conn, pid, self.names)
        nc = len(self.names)
        for path, task_id in res.task_ids.items():
            truth = read_labels(label_path(path), nc)
            w, h = image_size(path)
            ls.submit_annotation(conn, task_id, label_regions(truth, w, h, self.names, spec))
        return res


def _prelabels(pred: Prediction | None, names) -> np.ndarray:
    """A prediction as YOLO labels, through the same regions the server would hold."""
    if pred is None or not pred.ok or not len(pred.boxes):
        return np.zeros((0, 5))
    spec = LabelSpec.default(names)
    regions = prediction_regions(pred.boxes, pred.cls, pred.conf, pred.width, pred.height, names, spec)
    return regions_to_yolo(regions, spec, str(pred.path))
