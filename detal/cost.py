"""What an annotator pays to turn the pre-labels shown into the final labels: actions and seconds.

Pure functions over YOLO label arrays (n, 5): class, cx, cy, w, h, normalised. The simulated oracle and
the Label Studio pull both count actions here; seconds per action are parameters (the config's, where
the defaults and their sources live), so no driver computes cost on its own.

Actions per image, from matching each final box to at most one pre-label (greedy, IoU >= 0.5, the same
class first, then the highest IoU):
- accepted: matched, same class, box unchanged (a click, or nothing, to confirm);
- moved: matched, same class, box moved or resized;
- relabelled: matched, class changed (the box may have moved too: one relabel and, if so, one move);
- deleted: a pre-label without a match (a false box);
- drawn: a final box without a match (a missed box, drawn from nothing).
An image with no pre-labels costs the drawing of every box: the from-scratch baseline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

MATCH_IOU = 0.5  # a final box counts as the same object as a pre-label at IoU >= 0.5
ACCEPT_TOL = 1e-4  # normalised coordinates: an "accepted as is" box moved by less than this (sub-pixel)
ACTIONS = ("accepted", "moved", "relabelled", "deleted", "drawn")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(m, 4) x (n, 4) normalised cx, cy, w, h -> (m, n) IoU."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    a0, a1 = a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2
    b0, b1 = b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    lo, hi = np.maximum(a0[:, None], b0[None]), np.minimum(a1[:, None], b1[None])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    union = np.prod(a[:, 2:], 1)[:, None] + np.prod(b[:, 2:], 1)[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def actions(pre: np.ndarray, final: np.ndarray, accept_iou: float | None = None) -> dict[str, int]:
    """Counts of ACTIONS that turn the pre-labels `pre` into the labels `final` (both (n, 5) YOLO rows).

    accept_iou: None for labels a person submitted (a box left as it was is accepted, any change is a move);
    a simulated annotator whose final labels are the ground truth accepts a pre-label that overlaps its object
    at IoU >= accept_iou, as a person leaves a box that is already as good as one they would draw.
    """
    pre, final = np.asarray(pre, float).reshape(-1, 5), np.asarray(final, float).reshape(-1, 5)
    iou = box_iou(pre[:, 1:], final[:, 1:])
    same = pre[:, :1] == final[:, 0][None]
    cand = sorted((not same[i, j], -iou[i, j], i, j) for i, j in zip(*np.nonzero(iou >= MATCH_IOU)))
    used_p, used_f = set(), set()
    out = dict.fromkeys(ACTIONS, 0)
    for _, _, i, j in cand:
        if i in used_p or j in used_f:
            continue
        used_p.add(i)
        used_f.add(j)
        moved = (bool(np.max(np.abs(pre[i, 1:] - final[j, 1:])) > ACCEPT_TOL) if accept_iou is None
                 else bool(iou[i, j] < accept_iou))
        if not same[i, j]:
            out["relabelled"] += 1
            out["moved"] += moved  # a relabelled box that also moved pays both
        else:
            out["moved" if moved else "accepted"] += 1
    out["deleted"] = len(pre) - len(used_p)
    out["drawn"] = len(final) - len(used_f)
    return out


def trusted(pre: np.ndarray, conf: np.ndarray, truth: np.ndarray, trust: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Annotating only uncertain boxes: pre-labels at confidence >= `trust` become labels unreviewed.

    The partial-annotation idea of box-level active learning (e.g. ComPAS, BLAD, CVPR 2023): people fix the
    boxes the model is unsure of and the model's confident boxes are taken as they are, mistakes included.
    The annotator still looks over the image for missed objects. A true box counts as covered by a trusted
    pre-label at IoU >= MATCH_IOU (any class; greedy, highest IoU first): nobody draws it again.

    Returns (labels of record: the trusted boxes as predicted plus the uncovered true boxes; the pre-labels
    the annotator reviews; the true boxes that review turns them into).
    """
    pre, truth = np.asarray(pre, float).reshape(-1, 5), np.asarray(truth, float).reshape(-1, 5)
    sure = np.asarray(conf, float).ravel() >= trust
    iou = box_iou(pre[sure, 1:], truth[:, 1:])
    covered = np.zeros(len(truth), bool)
    used = set()
    for k in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(k), len(truth))
        if iou[i, j] < MATCH_IOU:
            break
        if i not in used and not covered[j]:
            used.add(i)
            covered[j] = True
    return np.concatenate([pre[sure], truth[~covered]]), pre[~sure], truth[~covered]


def from_scratch(final: np.ndarray) -> dict[str, int]:
    """The actions of the same image shown no pre-labels: every box drawn."""
    return actions(np.zeros((0, 5)), final)


def effort_counts(pre: np.ndarray, final: np.ndarray, accept_iou: float | None = None) -> dict[str, int]:
    """The report's four effort counts from the same matching: accepted as is; corrected = matched but moved or
    relabelled (one per box, however many actions it took); deleted; added = drawn."""
    act = actions(pre, final, accept_iou)
    matched = len(np.asarray(pre, float).reshape(-1, 5)) - act["deleted"]
    return {"accepted": act["accepted"], "corrected": matched - act["accepted"], "deleted": act["deleted"],
            "added": act["drawn"]}


def seconds(counts: Mapping[str, float], per_action: Mapping[str, float], per_image: float, images: float = 1) -> float:
    """Seconds of `images` images with these action counts: images x per_image + sum of count x seconds."""
    unknown = set(counts) - set(ACTIONS)
    if unknown:
        raise ValueError(f"unknown action(s) {sorted(unknown)}; expected {', '.join(ACTIONS)}")
    return float(images * per_image + sum(float(counts.get(a, 0)) * float(per_action[a]) for a in ACTIONS))


def image_cost(pre: np.ndarray, final: np.ndarray, per_action: Mapping[str, float],
               per_image: float, accept_iou: float | None = None, truth: np.ndarray | None = None
               ) -> tuple[dict[str, int], float, float]:
    """One image: (action counts, seconds with the pre-labels `pre` shown, seconds drawn from scratch).

    truth: the image's true boxes when `pre` -> `final` is only the part a person reviewed (`trusted`); the
    from-scratch baseline draws all of them. None: `final` is the whole image."""
    act = actions(pre, final, accept_iou)
    whole = final if truth is None else truth
    return act, seconds(act, per_action, per_image), seconds(from_scratch(whole), per_action, per_image)


def expected_seconds(shown_conf: np.ndarray, hidden_conf: np.ndarray, per_action: Mapping[str, float],
                     per_image: float) -> float:
    """What an image is expected to cost, from its own predictions, before anyone has looked at it.

    A pre-label shown with confidence c is taken as right with probability c (accepted) and else false
    (deleted); a box the model saw below the pre-label threshold with confidence c is an object it missed with
    probability c (drawn). The model's confidences are not calibrated probabilities: this ranks images by
    their likely cost, it does not predict an annotator's clock.
    """
    shown = np.asarray(shown_conf, np.float64).ravel()
    hidden = np.asarray(hidden_conf, np.float64).ravel()
    return float(per_image + (shown * per_action["accepted"] + (1 - shown) * per_action["deleted"]).sum()
                 + (hidden * per_action["drawn"]).sum())


# ---------------------------------------------------------------- fitting seconds per action to lead_time

FIT_TERMS = ("per_image", *ACTIONS)  # the unknowns of a fit: the fixed time of an image, then one per action


@dataclass(frozen=True)
class Fit:
    """Seconds per image and per action fitted to annotators' lead_time, and how well they predict held-out tasks."""

    seconds: dict[str, float]  # FIT_TERMS -> fitted seconds (non-negative)
    tasks: int  # tasks fitted on (after dropping the clipped outliers)
    clipped: int  # tasks whose lead_time was above the outlier limit: left out
    limit: float  # that limit, seconds (Q3 + 3 x IQR of lead_time)
    heldout_mae: float  # median absolute error on held-out tasks (k-fold), seconds
    heldout_rel: float  # the same, relative to the held-out tasks' median lead_time
    heldout_r2: float  # R^2 of the held-out predictions
    baseline_mae: float  # median absolute error of predicting every task by the median lead_time (for scale)


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    return nnls(a, b)[0]


def fit_seconds(counts: np.ndarray, lead_time: np.ndarray, folds: int = 5, seed: int = 0) -> Fit:
    """Non-negative least squares of lead_time on [1, action counts] (one row per annotated task).

    counts: (n, len(ACTIONS)) in ACTIONS order. People pause and leave tasks open: lead times above
    Q3 + 3 x IQR are left out before fitting. Held-out quality: `folds`-fold cross-validation with a seeded
    shuffle (same data, same numbers). Raises ValueError when there are fewer tasks than unknowns.
    """
    x = np.asarray(counts, np.float64).reshape(-1, len(ACTIONS))
    y = np.asarray(lead_time, np.float64).ravel()
    if len(x) != len(y):
        raise ValueError(f"{len(x)} rows of action counts but {len(y)} lead times")
    ok = np.isfinite(y) & (y >= 0)
    x, y = x[ok], y[ok]
    q1, q3 = (np.percentile(y, [25, 75]) if len(y) else (0.0, 0.0))
    limit = float(q3 + 3 * (q3 - q1))
    keep = y <= limit
    x, y = x[keep], y[keep]
    n_terms = len(FIT_TERMS)
    if len(y) < n_terms + 2:
        raise ValueError(f"{len(y)} annotated tasks with a lead_time; a fit of {n_terms} seconds needs at least "
                         f"{n_terms + 2}: annotate more tasks first")
    a = np.column_stack([np.ones(len(y)), x])
    coef = _nnls(a, y)
    k = min(folds, len(y))
    order = np.random.default_rng(seed).permutation(len(y))
    pred = np.empty(len(y))
    for part in np.array_split(order, k):
        train = np.setdiff1d(order, part)
        pred[part] = a[part] @ _nnls(a[train], y[train])
    err = np.abs(pred - y)
    med = float(np.median(y))
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return Fit(seconds={t: float(c) for t, c in zip(FIT_TERMS, coef)}, tasks=int(len(y)), clipped=int((~keep).sum()),
               limit=limit, heldout_mae=float(np.median(err)), heldout_rel=float(np.median(err) / med) if med else math.nan,
               heldout_r2=1 - float((err ** 2).sum()) / ss_tot if ss_tot else math.nan,
               baseline_mae=float(np.median(np.abs(y - med))))
