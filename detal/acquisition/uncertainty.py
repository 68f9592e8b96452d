"""Uncertainty of a detector's predictions: per-box measures and per-image reductions (numpy only).

Input is the FULL class-score vector of every box kept after NMS, shape (n_boxes, C). YOLOv8-style
heads produce independent sigmoids: each score is in [0, 1] and a vector does not sum to 1. Every
score here means "higher = more worth labelling".

Measures (`MEASURES`, per box):
- `entropy` (DEFAULT): normalise p / sum(p), Shannon entropy in nats, in [0, log C]. It is the "class
  entropy" of the reference experiment detal reproduces, so the default reproduces that protocol. It
  is scale-invariant: it measures confusion BETWEEN classes and ignores how confident the box is
  overall (0.9 on one class and 0.2 on one class both score 0); `entropy_bg`, `binary_entropy` and
  `least_confidence` see low confidence instead.
- `entropy_bg`: append a background class 1 - sum(p) when sum(p) < 1, then Shannon entropy, in
  [0, log(C + 1)]. A weak box is uncertain "object or background".
- `binary_entropy`: -t log t - (1 - t) log(1 - t) of the top score t, in [0, log 2] (PPAL, CVPR 2024).
- `logit_entropy`: softmax of the logits log(p / (1 - p)), then Shannon entropy (never softmax the
  probabilities themselves: that is near-uniform).
- `margin`: 1 - (top1 - top2), in [0, 1]; `least_confidence`: 1 - top1, in [0, 1].
- `flip`: inconsistency under a horizontal flip (CALD, Yu et al. 2022, simplified), in [0, 1]: the box
  is matched to the flipped image's prediction it overlaps most (mirrored back), and scores
  1 - IoU x (1 - JS), JS the Jensen-Shannon divergence (base 2) of the two normalised class vectors.
  It sees unstable localisation as well as class confusion. It needs a second, flipped prediction,
  so only the detector's scorer computes it (`flip_inconsistency`); `box_scores(probs, "flip")` refuses.

Reductions (`REDUCTIONS`, per image): `sum` favours crowded images, `max` hangs on one box, `mean`
depends on the confidence threshold, `topk_mean` (mean of the k highest) sits between max and mean.

Difficulty calibration (`class_difficulty`, `difficulty_weights`; PPAL, Yang et al. CVPR 2024, simplified):
a box's measure is multiplied by a weight of its predicted class, higher for the classes the current
model finds hard on the images already labelled. Difficulty d_c = 1 - q_c, q_c the mean over labelled
boxes of class c of the best IoU x score of a same-class prediction (0 when none); a class with no
labelled box gets d_c = 1. Weights are d_c / mean(d), so an image's score keeps its scale. Uncertainty
alone treats an easy class's confusion like a hard one's; the labelled set says which classes are hard.

Temperature scaling (`class_targets`, `fit_temperature`, `temperature_scale`; Guo et al. ICML 2017, for
independent sigmoids): every class score becomes sigmoid(logit(p) / T), one T for all classes, fitted
on the labelled images by minimising the binary cross-entropy of the scored boxes' class vectors
against their targets: the class of the labelled box a prediction overlaps (IoU >= 0.5), all zeros
for a prediction on background. T > 1 softens an overconfident model's scores, so a measure sees how
unsure the model really is; the ranking of one box's classes never changes.

Scoring threshold: `image_scores(score_conf=...)` drops boxes whose top score is below `score_conf`
before reducing. It is separate from the pre-label threshold (what is shown to annotators) and from
the NMS threshold (what the detector keeps): low-confidence boxes are often exactly the uncertain ones.

Empty images (no box left above `score_conf`) follow an explicit policy, `empty=`:
- `"zero"` (DEFAULT): score 0, the image ranks lowest. Safe when many pool images are truly empty
  (background frames), which would otherwise flood every batch; the cost is that an image full of
  objects the model misses entirely is never picked by uncertainty (the random share of `mix` still
  reaches it).
- `"max"`: score the image as one box of maximal uncertainty (the measure's upper bound for C
  classes, see `measure_bound`), so it ranks with the most uncertain images. Use it early, when a
  weak model misses most objects.
- a float: that fixed score.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from detal.registry import InvalidOption, lookup

_PROB_TOL = 1e-4  # sigmoid outputs in float16/32 can overshoot [0, 1] by rounding
_LOGIT_CLIP = 1e-7  # keeps log(p / (1 - p)) finite for p == 0 or 1


def _check_probs(probs: np.ndarray) -> np.ndarray:
    """Validate an (n, C) class-score array and return it as float64 clipped to [0, 1]."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise InvalidOption(f"class scores must be a 2-D (n_boxes, n_classes) array, got shape {p.shape}")
    if p.size:
        if not np.isfinite(p).all():
            raise InvalidOption("class scores contain NaN or inf; check the detector output")
        lo, hi = float(p.min()), float(p.max())
        if lo < -_PROB_TOL or hi > 1 + _PROB_TOL:
            raise InvalidOption(
                f"class scores must be probabilities in [0, 1], got min {lo:.4g} max {hi:.4g}; "
                "pass sigmoid scores, not logits"
            )
    return np.clip(p, 0.0, 1.0)


def _shannon(q: np.ndarray) -> np.ndarray:
    """Row-wise Shannon entropy (nats) of rows that sum to 1; 0 log 0 = 0."""
    logq = np.log(np.where(q > 0, q, 1.0))
    return np.maximum(-(q * logq).sum(axis=1), 0.0)


def _top2(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if p.shape[1] == 1:
        return p[:, 0], np.zeros(len(p))
    part = np.partition(p, p.shape[1] - 2, axis=1)
    return part[:, -1], part[:, -2]


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy of p / sum(p). A zero vector (no preference at all) scores log C."""
    p = _check_probs(probs)
    n, c = p.shape
    s = p.sum(axis=1, keepdims=True)
    q = np.where(s > 0, p / np.where(s > 0, s, 1.0), 1.0 / max(c, 1))
    return _shannon(q) if c else np.zeros(n)


def entropy_bg(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy over the C classes plus background 1 - sum(p) (only when sum(p) < 1)."""
    p = _check_probs(probs)
    bg = np.maximum(1.0 - p.sum(axis=1, keepdims=True), 0.0)
    full = np.concatenate([p, bg], axis=1)
    # rows with sum >= 1 have bg == 0 and are renormalised; rows with sum < 1 already sum to 1
    return _shannon(full / full.sum(axis=1, keepdims=True))


def binary_entropy(probs: np.ndarray) -> np.ndarray:
    """Binary entropy of the top class score: is this box really its top class?"""
    p = _check_probs(probs)
    if p.shape[1] == 0:
        return np.zeros(len(p))
    t = p.max(axis=1)
    return _shannon(np.stack([t, 1.0 - t], axis=1))


def _logits(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of validated scores, clipped so that 0 and 1 stay finite."""
    pc = np.clip(p, _LOGIT_CLIP, 1 - _LOGIT_CLIP)
    return np.log(pc) - np.log1p(-pc)


def logit_entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy of softmax(log(p / (1 - p))): sigmoid scores mapped back to logits."""
    p = _check_probs(probs)
    if p.shape[1] == 0:
        return np.zeros(len(p))
    z = _logits(p)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return _shannon(e / e.sum(axis=1, keepdims=True))


def margin(probs: np.ndarray) -> np.ndarray:
    """1 - (top1 - top2): close runner-up -> high score. With one class, top2 is 0."""
    p = _check_probs(probs)
    if p.shape[1] == 0:
        return np.zeros(len(p))
    t1, t2 = _top2(p)
    return 1.0 - (t1 - t2)


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """1 - top1."""
    p = _check_probs(probs)
    if p.shape[1] == 0:
        return np.zeros(len(p))
    return 1.0 - p.max(axis=1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) IoU of xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _normalised(probs: np.ndarray) -> np.ndarray:
    p = _check_probs(probs)
    s = p.sum(axis=1, keepdims=True)
    return np.where(s > 0, p / np.where(s > 0, s, 1.0), 1.0 / max(p.shape[1], 1))


def flip_inconsistency(boxes: np.ndarray, probs: np.ndarray, flip_boxes: np.ndarray,
                       flip_probs: np.ndarray) -> np.ndarray:
    """Per-box 1 - IoU x (1 - JS) against the best-overlapping box of the flipped image's prediction.

    `flip_boxes` are the flipped prediction's xyxy boxes already mirrored back into the original image's
    coordinates. A box nothing in the flipped prediction overlaps scores 1 (the detector did not see it
    again); identical predictions score 0.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    fb = np.asarray(flip_boxes, np.float64).reshape(-1, 4)
    if len(b) == 0:
        return np.zeros(0)
    if len(fb) == 0:
        return np.ones(len(b))
    iou = _iou(b, fb)
    j = iou.argmax(axis=1)
    p, q = _normalised(probs), _normalised(np.asarray(flip_probs)[j])
    m = (p + q) / 2
    # JS in bits is in [0, 1]; _shannon is in nats
    js = np.clip((_shannon(m) - (_shannon(p) + _shannon(q)) / 2) / math.log(2), 0.0, 1.0)
    return 1.0 - iou[np.arange(len(b)), j] * (1.0 - js)


MEASURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "entropy": entropy,
    "entropy_bg": entropy_bg,
    "binary_entropy": binary_entropy,
    "logit_entropy": logit_entropy,
    "margin": margin,
    "least_confidence": least_confidence,
}

# Measures of a box against a second prediction (the flipped image): the scorer computes them, and
# image_scores takes them as `box_values`. A config may name them like any measure.
PAIRED_MEASURES: dict[str, Callable[..., np.ndarray]] = {"flip": flip_inconsistency}
ALL_MEASURES = {**MEASURES, **PAIRED_MEASURES}

# Supremum of each measure for one box with C classes (used by the "max" empty-image policy).
_BOUNDS: dict[str, Callable[[int], float]] = {
    "entropy": lambda c: math.log(c) if c > 1 else 0.0,
    "entropy_bg": lambda c: math.log(c + 1),
    "binary_entropy": lambda c: math.log(2.0),
    "logit_entropy": lambda c: math.log(c) if c > 1 else 0.0,
    "margin": lambda c: 1.0,
    "least_confidence": lambda c: 1.0,
    "flip": lambda c: 1.0,
}


def _check_class_ids(gc: np.ndarray, n_classes: int) -> None:
    if len(gc) and (gc.min() < 0 or gc.max() >= n_classes):
        bad = int(gc.max() if gc.max() >= n_classes else gc.min())
        raise InvalidOption(f"label class id {bad} is outside the {n_classes} classes")


def class_difficulty(gt_cls: Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray], pred_cls: Sequence[np.ndarray],
                     pred_conf: Sequence[np.ndarray], pred_boxes: Sequence[np.ndarray], n_classes: int) -> np.ndarray:
    """Per-class difficulty (n_classes,) in [0, 1] of a model on labelled images (see the module docstring).

    Per image i: gt_cls[i] (m,) class ids and gt_boxes[i] (m, 4) xyxy of the labels; pred_cls[i] (n,),
    pred_conf[i] (n,) and pred_boxes[i] (n, 4) xyxy of the predictions, in the same coordinates.
    """
    if not len(gt_cls) == len(gt_boxes) == len(pred_cls) == len(pred_conf) == len(pred_boxes):
        raise InvalidOption("class_difficulty needs the same number of images in every argument")
    total = np.zeros(n_classes, np.float64)
    count = np.zeros(n_classes, np.int64)
    for gc, gb, pc, pf, pb in zip(gt_cls, gt_boxes, pred_cls, pred_conf, pred_boxes):
        gc = np.asarray(gc, np.int64).reshape(-1)
        if not len(gc):
            continue
        _check_class_ids(gc, n_classes)
        pc = np.asarray(pc, np.int64).reshape(-1)
        quality = np.zeros(len(gc))
        if len(pc):
            iou = _iou(np.asarray(gb, np.float64).reshape(-1, 4), np.asarray(pb, np.float64).reshape(-1, 4))
            same = gc[:, None] == pc[None, :]
            quality = np.where(same, iou * np.asarray(pf, np.float64).reshape(1, -1), 0.0).max(axis=1)
        np.add.at(total, gc, quality)
        np.add.at(count, gc, 1)
    q = np.divide(total, count, out=np.zeros(n_classes), where=count > 0)
    return np.where(count > 0, 1.0 - q, 1.0)


def difficulty_weights(difficulty: np.ndarray) -> np.ndarray:
    """Per-class box weights d_c / mean(d) (all 1 when every class is perfectly easy)."""
    d = np.asarray(difficulty, np.float64)
    m = d.mean() if d.size else 0.0
    return d / m if m > 0 else np.ones_like(d)


def _check_temperature(temperature: float) -> float:
    number = isinstance(temperature, (int, float, np.floating)) and not isinstance(temperature, bool)
    if not (number and math.isfinite(temperature) and temperature > 0):
        raise InvalidOption(f"temperature must be a finite number > 0, got {temperature!r}")
    return float(temperature)


def temperature_scale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T) of every class score: T > 1 softens, T < 1 sharpens, T = 1 changes nothing."""
    p = _check_probs(probs)
    t = _check_temperature(temperature)
    if t == 1.0 or p.size == 0:
        return p
    return 1.0 / (1.0 + np.exp(-_logits(p) / t))


def class_targets(gt_cls: np.ndarray, gt_boxes: np.ndarray, pred_boxes: np.ndarray, n_classes: int,
                  iou: float = 0.5) -> np.ndarray:
    """(n_pred, n_classes) 0/1 targets of one image's predictions for `fit_temperature`.

    A prediction's row is one-hot on the class of the labelled box it overlaps most when that IoU is
    >= `iou`, else all zeros (a box on background should score low on every class).
    """
    pb = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
    gc = np.asarray(gt_cls, np.int64).reshape(-1)
    out = np.zeros((len(pb), n_classes), np.float64)
    if not len(pb) or not len(gc):
        return out
    _check_class_ids(gc, n_classes)
    overlap = _iou(pb, np.asarray(gt_boxes, np.float64).reshape(-1, 4))
    best = overlap.argmax(axis=1)
    hit = overlap[np.arange(len(pb)), best] >= iou
    out[np.flatnonzero(hit), gc[best[hit]]] = 1.0
    return out


_T_RANGE = (0.05, 20.0)  # a fitted T outside this says more about the data than about calibration


def fit_temperature(probs: np.ndarray, targets: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the binary cross-entropy of sigmoid(logit(p) / T) against `targets`.

    The loss is convex in a = 1 / T (a logistic regression with one weight and no bias), so its gradient
    is increasing in a and bisection finds the minimum. No box, or only boxes with nothing to learn
    from (every logit 0), gives T = 1: no evidence, no change.
    """
    p = _check_probs(probs)
    y = np.asarray(targets, np.float64)
    if y.shape != p.shape:
        raise InvalidOption(f"targets must have the class scores' shape {p.shape}, got {y.shape}")
    z = _logits(p).ravel()
    y = y.ravel()
    if not z.size or not np.any(z):
        return 1.0

    def grad(a: float) -> float:  # d/da of sum softplus(a z) - y a z
        return float(((1.0 / (1.0 + np.exp(-a * z)) - y) * z).sum())

    lo, hi = 1.0 / _T_RANGE[1], 1.0 / _T_RANGE[0]
    if grad(lo) >= 0:
        return _T_RANGE[1]
    if grad(hi) <= 0:
        return _T_RANGE[0]
    for _ in range(60):  # 2^-60 of the bracket: far below what changes a ranking
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if grad(mid) < 0 else (lo, mid)
    return 1.0 / ((lo + hi) / 2)


def measure_bound(measure: str, n_classes: int) -> float:
    """Largest value `measure` can give one box with `n_classes` classes."""
    lookup(ALL_MEASURES, measure, "uncertainty measure")
    return _BOUNDS[measure](int(n_classes))


def _sum(s: np.ndarray, k: int) -> float:
    return float(s.sum())


def _mean(s: np.ndarray, k: int) -> float:
    return float(s.mean())


def _max(s: np.ndarray, k: int) -> float:
    return float(s.max())


def _topk_mean(s: np.ndarray, k: int) -> float:
    if len(s) <= k:
        return float(s.mean())
    return float(np.partition(s, len(s) - k)[-k:].mean())


# Each maps the (n >= 1,) scores of one image's boxes and k (used by topk_mean only) to one float.
REDUCTIONS: dict[str, Callable[[np.ndarray, int], float]] = {
    "sum": _sum,
    "mean": _mean,
    "max": _max,
    "topk_mean": _topk_mean,
}

EMPTY_POLICIES = ("zero", "max")


def box_scores(probs: np.ndarray, measure: str = "entropy") -> np.ndarray:
    """Per-box uncertainty (n_boxes,) of an (n_boxes, C) class-score array."""
    if measure in PAIRED_MEASURES:
        raise InvalidOption(f"measure {measure!r} compares a box with a second prediction (the flipped image); "
                            "class scores alone cannot give it: the scorer computes it (Prediction.flip)")
    return lookup(MEASURES, measure, "uncertainty measure")(probs)


def check_scoring_options(
    measure: str = "entropy",
    reduction: str = "sum",
    score_conf: float = 0.0,
    empty: str | float = "zero",
    topk: int = 3,
) -> None:
    """Validate scoring options once at the boundary (config load); raise InvalidOption on a bad one."""
    lookup(ALL_MEASURES, measure, "uncertainty measure")
    lookup(REDUCTIONS, reduction, "reduction")
    if isinstance(score_conf, bool) or not isinstance(score_conf, (int, float)) or not 0.0 <= score_conf <= 1.0:
        raise InvalidOption(f"score_conf must be a number in [0, 1], got {score_conf!r}")
    if isinstance(empty, str):
        if empty not in EMPTY_POLICIES:
            lookup(dict.fromkeys(EMPTY_POLICIES), empty, "empty-image policy (or a number)")
    elif isinstance(empty, bool) or not isinstance(empty, (int, float)) or not math.isfinite(empty):
        raise InvalidOption(f"empty must be 'zero', 'max' or a finite number, got {empty!r}")
    if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or topk < 1:
        raise InvalidOption(f"topk must be an integer >= 1, got {topk!r}")


def image_scores(
    probs_per_image: Sequence[np.ndarray],
    measure: str = "entropy",
    reduction: str = "sum",
    score_conf: float = 0.0,
    empty: str | float = "zero",
    topk: int = 3,
    box_values: Sequence[np.ndarray] | None = None,
    class_weights: np.ndarray | None = None,
    temperature: float | None = None,
) -> np.ndarray:
    """One uncertainty score per image (len(probs_per_image),), float64, higher = more worth labelling.

    probs_per_image[i] is the (n_i, C) class-score array of image i's kept boxes; an image without
    boxes is a (0, C) array. Boxes whose top score is below `score_conf` are dropped; an image left
    without boxes gets the `empty` policy score (see the module docstring). `box_values[i]` (n_i,),
    when given, are per-box scores computed elsewhere (`flip`), used instead of `measure` on the probs.
    `class_weights` (C,), when given, multiplies each box's score by the weight of its top class
    (`difficulty_weights`). `temperature`, when given, rescales the class scores the measure sees
    (`temperature_scale`); the `score_conf` threshold still reads the detector's own scores.
    """
    check_scoring_options(measure, reduction, score_conf, empty, topk)
    reduce = REDUCTIONS[reduction]
    arrays = [np.asarray(p, dtype=np.float64) for p in probs_per_image]
    for a in arrays:  # values are validated once, on the concatenation, by the measure
        if a.ndim != 2:
            raise InvalidOption(f"each image's class scores must be a 2-D (n_boxes, n_classes) array, got {a.shape}")
    n_img = len(arrays)
    widths = {a.shape[1] for a in arrays if len(a)}
    if len(widths) > 1:
        raise InvalidOption(f"all images must have the same number of classes, got {sorted(widths)}")
    c = widths.pop() if widths else max((a.shape[1] for a in arrays), default=0)
    if empty == "max":
        if c == 0:
            raise InvalidOption("empty='max' needs the number of classes: pass empty images as (0, C) arrays")
        empty_score = measure_bound(measure, c)
    elif empty == "zero":
        empty_score = 0.0
    else:
        empty_score = float(empty)

    out = np.full(n_img, empty_score, dtype=np.float64)
    counts = np.array([len(a) for a in arrays], dtype=np.int64)
    if counts.sum() == 0:
        return out
    # one vectorised measure call over every box of every image, then per-image reductions
    allp = np.concatenate([a for a in arrays if len(a)], axis=0)
    if box_values is None:
        scores = box_scores(allp if temperature is None else temperature_scale(allp, temperature), measure)
    else:
        if temperature is not None:
            raise InvalidOption("temperature rescales class scores; box_values (flip) are not computed from them")
        vals = [np.asarray(v, np.float64).reshape(-1) for v in box_values]
        if len(vals) != n_img or any(len(v) != len(a) for v, a in zip(vals, arrays)):
            raise InvalidOption("box_values must give one score per box of every image")
        scores = np.concatenate([v for v, a in zip(vals, arrays) if len(a)])
    if class_weights is not None:
        w = np.asarray(class_weights, np.float64).reshape(-1)
        if len(w) != c or not np.isfinite(w).all() or (w < 0).any():
            raise InvalidOption(f"class_weights must be {c} finite non-negative numbers, one per class")
        scores = scores * w[allp.argmax(axis=1)]
    # same as thresholding the clipped scores: tiny negative rounding noise is kept at score_conf 0
    keep = allp.max(axis=1) >= score_conf if (c and score_conf > 0) else np.ones(len(allp), bool)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for i in np.flatnonzero(counts):
        lo, hi = bounds[i], bounds[i + 1]
        s = scores[lo:hi][keep[lo:hi]]
        if len(s):
            out[i] = reduce(s, int(topk))
    return out
