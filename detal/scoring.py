"""From predictions to uncertainty scores, pre-labels and audit tables: shared by the round, `detal score`
and `detal labelstudio push`.

Per image: the configured reduction of the per-box measure; unreadable images get -1 (every score is >= 0,
so they rank last and are recorded instead of crashing the run). Per box (audit): class, confidence, the
full class-score vector and the measure.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from detal.config import Config, PrelabelConfig, ScoringConfig
from detal.types import Prediction

UNREADABLE_SCORE = -1.0
FLIP = "flip"  # the measure computed by the scorer from a second, flipped prediction (Prediction.flip)


def _box_values(p: Prediction, sc: ScoringConfig, temperature: float | None = None) -> np.ndarray:
    """Per-box scores of one prediction under the configured measure (class scores at `temperature`)."""
    from detal.acquisition.uncertainty import box_scores, temperature_scale

    if sc.measure != FLIP:
        return box_scores(p.probs if temperature is None else temperature_scale(p.probs, temperature), sc.measure)
    if p.flip is None:
        raise ValueError(f"{p.path}: scored without the flipped pass; build the scorer with make_scorer")
    return p.flip


def make_scorer(cfg: Config, weights: Path, *, device: str, features: bool = False, backend=None):
    """A Scorer with the config's image size, batch, NMS IoU and decode threads (backend: detal.detector or a fake).

    Its threshold is the lower of the scoring and pre-label thresholds: one model pass serves both (NMS
    only lets a box suppress lower-scored ones, so the boxes above either threshold are the same as in a
    pass at that threshold).
    """
    if backend is None:
        from detal import detector as backend
    sc = cfg.scoring
    extra = {"flip": True} if sc.measure == FLIP else {}  # the flipped pass doubles inference: only when used
    if sc.engine == "ray":  # the same backend.Scorer, inside Ray Data actors (docs/scale-out.md)
        from detal.engines.ray_scoring import RayScorer

        return RayScorer(weights, backend=backend.__name__, ray=cfg.ray, imgsz=cfg.model.imgsz, batch=sc.batch,
                         conf=min(sc.conf, cfg.prelabel.conf), iou=sc.iou, workers=sc.workers, features=features,
                         **extra)
    return backend.Scorer(weights, imgsz=cfg.model.imgsz, device=device, batch=sc.batch,
                          conf=min(sc.conf, cfg.prelabel.conf), iou=sc.iou, workers=sc.workers, features=features,
                          **extra)


def prelabels(pred: Prediction, conf: float, agnostic_iou: float | None = None) -> Prediction:
    """The boxes shown to annotators: those at or above the pre-label threshold, and with `agnostic_iou`
    one box per object (greedy class-agnostic suppression: the best-scored class wins)."""
    keep = np.flatnonzero(pred.conf >= conf)
    if agnostic_iou is not None and len(keep) > 1:
        keep = keep[_agnostic_nms(pred.boxes[keep], pred.conf[keep], agnostic_iou)]
    return replace(pred, boxes=pred.boxes[keep], conf=pred.conf[keep], cls=pred.cls[keep], probs=pred.probs[keep],
                   flip=None if pred.flip is None else pred.flip[keep])


def _agnostic_nms(xyxy: np.ndarray, conf: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy NMS over all classes together, in descending confidence."""
    order = np.argsort(-conf, kind="stable")
    x0, y0, x1, y1 = (xyxy[:, i].astype(np.float64) for i in range(4))
    area = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    kept: list[int] = []
    for i in order:
        if kept:
            k = np.asarray(kept)
            inter = (np.clip(np.minimum(x1[i], x1[k]) - np.maximum(x0[i], x0[k]), 0, None)
                     * np.clip(np.minimum(y1[i], y1[k]) - np.maximum(y0[i], y0[k]), 0, None))
            union = area[i] + area[k] - inter
            if (inter / np.where(union > 0, union, 1.0) > iou).any():
                continue
        kept.append(int(i))
    return np.sort(np.asarray(kept, dtype=np.int64))


def prelabels_for(pred: Prediction, cfg: Config | PrelabelConfig) -> Prediction:
    """Pre-labels with the config's threshold and suppression rule (a Config, or its `prelabel` section)."""
    pc = cfg.prelabel if isinstance(cfg, Config) else cfg
    return prelabels(pred, pc.conf, pc.agnostic_iou if pc.agnostic else None)


class ScoringPass:
    """The callback a strategy calls with the pool ids it wants scored: only those images see the model.

    Keeps, per scored image, only what the round needs later: its pre-labels (with `prelabel`: the boxes shown,
    without class vectors of suppressed boxes or the image feature; the selected ones are pushed without a second
    pass). The full predictions of a call live only while it is scored, so the driver's memory grows with the
    boxes it will show, not with the class vectors of every scored image. Also counts the images scored, and
    keeps the audit rows when `audit` is on.
    """

    def __init__(self, scorer, images: Sequence[Path], sc: ScoringConfig, names: Sequence[str], audit: bool = False,
                 cfg: Config | None = None, prelabel: PrelabelConfig | None = None):
        self.scorer, self.images, self.sc, self.names = scorer, images, sc, names
        self.cfg = cfg  # with it, each scored image also gets its expected annotation seconds (Scored.seconds)
        self.prelabel = prelabel  # None: keep whole predictions (tools that inspect them)
        # scoring.calibration, set by the round: per-class box weights (difficulty) or the temperature
        self.class_weights: np.ndarray | None = None
        self.temperature: float | None = None
        self.predictions: dict[int, Prediction] = {}  # pool id -> what is kept of its prediction (above)
        self.audit_images: list[dict] | None = [] if audit else None
        self.audit_boxes: list[dict] | None = [] if audit else None

    CHUNK = 1024  # images whose whole predictions are held at once while scoring

    @property
    def n_scored(self) -> int:
        return len(self.predictions)

    def _stream(self, ids: Sequence[int]):
        """The model's whole predictions for pool ids, one by one (one pass); what is kept of each is cached."""
        pc = self.prelabel
        for i, p in zip(ids, self.scorer.iter_predictions([self.images[int(i)] for i in ids])):
            self.predictions[int(i)] = p if pc is None else replace(prelabels_for(p, pc), feature=None)
            yield int(i), p

    def predict(self, ids: Sequence[int]) -> list[Prediction]:
        """Predictions (pre-labels, with `prelabel`) for pool ids, running the model only on those not seen yet."""
        todo = [int(i) for i in ids if int(i) not in self.predictions]
        for _ in self._stream(todo):
            pass  # cached by _stream
        return [self.predictions[int(i)] for i in ids]

    def __call__(self, ids: np.ndarray):
        from detal.acquisition.selection import Scored

        ids = [int(i) for i in ids]
        scores, classes, seconds, feats = [], [], [], []
        chunk: list[Prediction] = []
        shown: list[Prediction | None] = []  # the pre-labels _stream cut (with `prelabel`), for expected seconds

        def flush() -> None:  # whole predictions of a chunk: class vectors and features score, then they go
            s = image_scores_for(chunk, self.sc, self.class_weights, self.temperature)
            scores.append(s)
            classes.extend(p.cls[p.conf >= self.sc.conf] for p in chunk)
            feats.extend(p.feature for p in chunk)
            if self.cfg is not None:
                seconds.extend(expected_seconds_of(p, self.cfg, cut) for p, cut in zip(chunk, shown))
            if self.audit_images is not None:
                self.audit_images.extend(image_rows(chunk, s))
                self.audit_boxes.extend(box_rows(chunk, self.sc, self.names, self.temperature))
            chunk.clear()
            shown.clear()

        for i, p in self._stream(ids):  # one pass (one Ray job) over every id, scored in chunks as results arrive
            chunk.append(p)
            shown.append(self.predictions[i] if self.prelabel is not None else None)
            if len(chunk) == self.CHUNK:
                flush()
        if chunk:
            flush()
        features = None
        dims = {f.shape for f in feats if f is not None}
        if dims:  # an unreadable image gets a zero feature row (normalises to zero: never "far" from anything)
            zero = np.zeros(dims.pop(), np.float32)
            features = np.stack([zero if f is None else f for f in feats])
        return Scored(scores=np.concatenate(scores) if scores else np.zeros(0), features=features, classes=classes,
                      seconds=np.array(seconds) if self.cfg is not None else None)


def expected_seconds_of(pred: Prediction, cfg: Config, shown: Prediction | None = None) -> float:
    """detal.cost.expected_seconds of one prediction: its pre-labels as shown, and the boxes below their threshold."""
    from detal.cost import expected_seconds

    shown = prelabels_for(pred, cfg) if shown is None else shown  # `shown`: its pre-labels, when already cut
    return expected_seconds(shown.conf, pred.conf[pred.conf < cfg.prelabel.conf], cfg.cost.per_action,
                            cfg.cost.per_image)


def image_scores_for(preds: Sequence[Prediction], sc: ScoringConfig, class_weights: np.ndarray | None = None,
                     temperature: float | None = None) -> np.ndarray:
    from detal.acquisition.uncertainty import image_scores

    values = [_box_values(p, sc) if len(p.cls) else np.zeros(0) for p in preds] if sc.measure == FLIP else None
    scores = image_scores([p.probs for p in preds], measure=sc.measure, reduction=sc.reduction,
                          score_conf=sc.conf, empty=sc.empty, topk=sc.topk, box_values=values,
                          class_weights=class_weights, temperature=temperature)
    bad = np.array([not p.ok for p in preds], dtype=bool)
    return np.where(bad, UNREADABLE_SCORE, scores)


def _labelled_predictions(scorer, images: Sequence[Path], labels: Sequence[np.ndarray], score_conf: float):
    """(prediction above `score_conf`, label classes, label xyxy boxes) per readable labelled image.

    labels[i] is image i's YOLO label array (m, 5): class, centre x, centre y, width, height, normalised.
    Predictions below `score_conf` are dropped, as in scoring; unreadable images are left out.
    """
    for pred, lab in zip(scorer.iter_predictions(list(images)), labels):
        if not pred.ok:
            continue
        lab = np.asarray(lab, np.float64).reshape(-1, 5)
        cx, cy, w, h = (lab[:, i] * s for i, s in zip(range(1, 5), (pred.width, pred.height) * 2))
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        yield prelabels(pred, score_conf), lab[:, 0].astype(np.int64), xyxy  # prelabels: the box threshold


def labelled_difficulty(scorer, images: Sequence[Path], labels: Sequence[np.ndarray], nc: int,
                        score_conf: float) -> np.ndarray:
    """Per-class difficulty of the scorer's model on labelled images (scoring.calibration: difficulty)."""
    from detal.acquisition.uncertainty import class_difficulty

    rows = list(_labelled_predictions(scorer, images, labels, score_conf))
    return class_difficulty([g for _, g, _ in rows], [b for _, _, b in rows], [p.cls for p, _, _ in rows],
                            [p.conf for p, _, _ in rows], [p.boxes for p, _, _ in rows], nc)


def labelled_temperature(scorer, images: Sequence[Path], labels: Sequence[np.ndarray], nc: int,
                         score_conf: float) -> tuple[float, int]:
    """(T, boxes it was fitted on): the scorer's model's temperature on labelled images (scoring.calibration:
    temperature; see detal.acquisition.uncertainty)."""
    from detal.acquisition.uncertainty import class_targets, fit_temperature

    probs, targets = [np.zeros((0, nc))], [np.zeros((0, nc))]
    for pred, gc, gb in _labelled_predictions(scorer, images, labels, score_conf):
        probs.append(np.asarray(pred.probs, np.float64).reshape(-1, nc))
        targets.append(class_targets(gc, gb, pred.boxes, nc))
    p, y = np.concatenate(probs), np.concatenate(targets)
    return fit_temperature(p, y), len(p)


def image_rows(preds: Sequence[Prediction], scores: np.ndarray) -> list[dict]:
    return [{"image": str(p.path), "score": float(s), "boxes": int(len(p.cls)), "error": p.error or ""}
            for p, s in zip(preds, scores)]


def box_rows(preds: Sequence[Prediction], sc: ScoringConfig, names: Sequence[str],
             temperature: float | None = None) -> list[dict]:
    rows = []
    for p in preds:
        if not len(p.cls):
            continue
        measure = _box_values(p, sc, temperature)
        for b in range(len(p.cls)):
            if p.conf[b] < sc.conf:  # below the scoring threshold (kept only for pre-labels)
                continue
            row = {"image": str(p.path), "box": b, "class": names[int(p.cls[b])], "confidence": float(p.conf[b]),
                   "x1": float(p.boxes[b, 0]), "y1": float(p.boxes[b, 1]), "x2": float(p.boxes[b, 2]),
                   "y2": float(p.boxes[b, 3]), sc.measure: float(measure[b])}
            row.update({f"p_{n}": float(v) for n, v in zip(names, p.probs[b])})
            rows.append(row)
    return rows


def score_folder(cfg: Config, weights: Path, images: Path, out: Path, quiet: bool = False) -> tuple[Path, Path]:
    """`detal score`: stream every image through the scorer, write per-image scores and the per-box audit."""
    from detal import detector
    from detal.data import list_images
    from detal.errors import DetalError

    if not weights.is_file():
        raise DetalError(f"--weights {weights}: file not found; give a trained .pt (e.g. runs/demo/seed0/mix/round3/.../last.pt)")
    if out.is_dir() or out.suffix.lower() != ".csv":
        raise DetalError(f"--out {out}: give the path of a .csv file to write (e.g. {out / 'scores.csv' if out.is_dir() else out.with_suffix('.csv')})")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = out.parent / f".{out.name}.probe"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise DetalError(f"--out {out}: cannot write there ({exc.strerror or exc}); choose a writable folder") from None
    paths = list_images(images)
    if not paths:
        raise DetalError(f"--images {images}: no images found (looked for .jpg, .png, ...)")
    sc = cfg.scoring
    scorer = make_scorer(cfg, weights, device=detector.resolve_device(cfg.model.device))
    try:
        return _score_all(scorer, paths, sc, out, quiet)
    finally:
        scorer.close()


def _score_all(scorer, paths, sc: ScoringConfig, out: Path, quiet: bool) -> tuple[Path, Path]:
    from detal.data import atomic_write_text

    img_rows: list[dict] = []
    boxes: list[dict] = []
    chunk: list[Prediction] = []
    t0 = time.perf_counter()

    def flush() -> None:
        img_rows.extend(image_rows(chunk, image_scores_for(chunk, sc)))
        boxes.extend(box_rows(chunk, sc, scorer.names))
        chunk.clear()

    for i, pred in enumerate(scorer.iter_predictions(paths), start=1):
        chunk.append(pred)
        if len(chunk) >= 256:  # bounded memory: predictions are reduced to rows as they stream
            flush()
            if not quiet:
                print(f"\rscored {i}/{len(paths)} images ({i / (time.perf_counter() - t0):.0f}/s)", end="", file=sys.stderr)
    flush()
    if not quiet:
        print(f"\rscored {len(paths)} images in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    df = pd.DataFrame(img_rows).sort_values("score", ascending=False, kind="stable")
    atomic_write_text(out, df.to_csv(index=False))
    box_out = out.with_name(out.stem + "_boxes.csv")
    atomic_write_text(box_out, pd.DataFrame(boxes).to_csv(index=False))
    failed = int((df["error"] != "").sum())
    if failed and not quiet:
        print(f"warning: {failed} unreadable images are listed with score {UNREADABLE_SCORE} and their error", file=sys.stderr)
    return out, box_out
