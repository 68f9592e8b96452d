"""From predictions to uncertainty scores and the audit tables: shared by the experiment loop and `detal score`.

Per image: the configured reduction of the per-box measure; unreadable images get -1 (every score is >= 0,
so they rank last and are recorded instead of crashing the run). Per box (audit): class, confidence, the
full class-score vector and the measure.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from detal.config import Config, ScoringConfig
from detal.types import Prediction

UNREADABLE_SCORE = -1.0


def make_scorer(cfg: Config, weights: Path, *, device: str, conf: float, features: bool = False, backend=None):
    """A Scorer with the config's image size, batch, NMS IoU and decode threads (backend: detal.detector or a fake)."""
    if backend is None:
        from detal import detector as backend
    sc = cfg.scoring
    return backend.Scorer(weights, imgsz=cfg.model.imgsz, device=device, batch=sc.batch, conf=conf, iou=sc.iou,
                          workers=sc.workers, features=features)


def image_scores_for(preds: Sequence[Prediction], sc: ScoringConfig) -> np.ndarray:
    from detal.uncertainty import image_scores

    scores = image_scores([p.probs for p in preds], measure=sc.measure, reduction=sc.reduction,
                          score_conf=sc.conf, empty=sc.empty, topk=sc.topk)
    bad = np.array([not p.ok for p in preds], dtype=bool)
    return np.where(bad, UNREADABLE_SCORE, scores)


def image_rows(preds: Sequence[Prediction], scores: np.ndarray) -> list[dict]:
    return [{"image": str(p.path), "score": float(s), "boxes": int(len(p.cls)), "error": p.error or ""}
            for p, s in zip(preds, scores)]


def box_rows(preds: Sequence[Prediction], sc: ScoringConfig, names: Sequence[str]) -> list[dict]:
    from detal.uncertainty import box_scores

    rows = []
    for p in preds:
        if not len(p.cls):
            continue
        measure = box_scores(p.probs, sc.measure)
        for b in range(len(p.cls)):
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
    paths = list_images(images)
    if not paths:
        raise DetalError(f"--images {images}: no images found (looked for .jpg, .png, ...)")
    sc = cfg.scoring
    scorer = make_scorer(cfg, weights, device=detector.resolve_device(cfg.model.device), conf=sc.conf)
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
    out.parent.mkdir(parents=True, exist_ok=True)
    df = pd.DataFrame(img_rows).sort_values("score", ascending=False, kind="stable")
    df.to_csv(out, index=False)
    box_out = out.with_name(out.stem + "_boxes.csv")
    pd.DataFrame(boxes).to_csv(box_out, index=False)
    failed = int((df["error"] != "").sum())
    if failed and not quiet:
        print(f"warning: {failed} unreadable images are listed with score {UNREADABLE_SCORE} and their error", file=sys.stderr)
    return out, box_out
