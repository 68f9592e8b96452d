"""Pure Label Studio formats: labelling config XML, coordinate conversion, prediction regions, effort counts.

Label Studio rectangles are percent of the image with (x, y) the TOP-LEFT corner; YOLO labels are
normalised (cx, cy, w, h). No network here: `detal.labelstudio.client` sends what these functions build.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Sequence
from xml.sax.saxutils import quoteattr

import numpy as np

from detal.cost import MATCH_IOU, box_iou, effort_counts  # noqa: F401 (effort_counts: imported from here too)
from detal.errors import LabelStudioError

log = logging.getLogger(__name__)

FROM_NAME = "label"
TO_NAME = "image"
DATA_KEY = "image"


# ---------------------------------------------------------------- label config

def label_config(names: Sequence[str]) -> str:
    """Labelling config: one RectangleLabels tag whose Label `category` is the YOLO class id."""
    if not names:
        raise LabelStudioError("class names are empty; data.yaml 'names' must list the classes")
    if len(set(names)) != len(names):
        raise LabelStudioError(f"class names must be unique for Label Studio, got {list(names)}; rename duplicates in data.yaml")
    labels = "\n".join(f"    <Label value={quoteattr(str(n))} category=\"{i}\"/>" for i, n in enumerate(names))
    return (f'<View>\n  <Image name="{TO_NAME}" value="${DATA_KEY}" zoom="true"/>\n'
            f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}\n  </RectangleLabels>\n</View>\n')


@dataclass(frozen=True)
class LabelSpec:
    """What a project's config accepts for rectangles: control/object names and label -> class id."""

    from_name: str
    to_name: str
    class_of: dict[str, int]

    @classmethod
    def default(cls, names: Sequence[str]) -> "LabelSpec":
        """The spec of the config `label_config(names)` writes."""
        return cls(FROM_NAME, TO_NAME, {str(n): i for i, n in enumerate(names)})


def parse_label_config(xml: str, names: Sequence[str]) -> LabelSpec:
    """Read the RectangleLabels of a project config and check it labels exactly `names` with ids 0..n-1."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise LabelStudioError(f"project label config is not valid XML ({exc}); recreate the project") from None
    tags = list(root.iter("RectangleLabels"))
    if len(tags) != 1:
        raise LabelStudioError(f"project label config has {len(tags)} RectangleLabels tags, need exactly 1; "
                               "use another project title or fix the config")
    tag = tags[0]
    class_of: dict[str, int] = {}
    for i, lab in enumerate(tag.iter("Label")):
        cat = lab.get("category")
        class_of[lab.get("value", "")] = int(cat) if cat is not None and cat.lstrip("-").isdigit() else i
    expected = {str(n): i for i, n in enumerate(names)}
    if class_of != expected:
        raise LabelStudioError(f"project label config has classes {class_of}, but the dataset has {expected}; "
                               "use another project title or make the dataset names match")
    return LabelSpec(from_name=tag.get("name", FROM_NAME), to_name=tag.get("toName", TO_NAME), class_of=class_of)


# ---------------------------------------------------------------- coordinates

def yolo_to_ls(xywhn: np.ndarray) -> np.ndarray:
    """(n, 4) normalised cx, cy, w, h -> (n, 4) percent x, y (top-left), width, height."""
    a = np.asarray(xywhn, dtype=np.float64).reshape(-1, 4)
    return np.stack([a[:, 0] - a[:, 2] / 2, a[:, 1] - a[:, 3] / 2, a[:, 2], a[:, 3]], axis=1) * 100.0


def ls_to_yolo(xywh_pct: np.ndarray) -> np.ndarray:
    """(n, 4) percent x, y (top-left), width, height -> (n, 4) normalised cx, cy, w, h."""
    a = np.asarray(xywh_pct, dtype=np.float64).reshape(-1, 4) / 100.0
    return np.stack([a[:, 0] + a[:, 2] / 2, a[:, 1] + a[:, 3] / 2, a[:, 2], a[:, 3]], axis=1)


def xyxy_to_ls(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """(n, 4) pixel corners -> (n, 4) percent x, y, width, height (clipped to the image)."""
    a = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    scale = np.array([width, height, width, height], dtype=np.float64)
    a = np.clip(a / scale, 0.0, 1.0) * 100.0
    return np.stack([a[:, 0], a[:, 1], a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]], axis=1)


def clamp_ls(xywh_pct: np.ndarray) -> np.ndarray:
    """Clip percent boxes to the image [0, 100]; a box fully outside gets zero width or height."""
    a = np.asarray(xywh_pct, dtype=np.float64).reshape(-1, 4)
    x0, y0 = np.clip(a[:, 0], 0, 100), np.clip(a[:, 1], 0, 100)
    x1, y1 = np.clip(a[:, 0] + a[:, 2], 0, 100), np.clip(a[:, 1] + a[:, 3], 0, 100)
    return np.stack([x0, y0, np.maximum(x1 - x0, 0), np.maximum(y1 - y0, 0)], axis=1)


def unrotate(x: float, y: float, w: float, h: float, rotation: float, width: float, height: float) -> tuple[float, float, float, float]:
    """Axis-aligned percent box around a rectangle rotated by `rotation` degrees about its top-left corner."""
    if not rotation or not width or not height:
        return x, y, w, h
    t = math.radians(rotation)
    px, py, pw, ph = x * width, y * height, w * width, h * height  # rotation happens in pixel space
    xs = [px + dx * math.cos(t) - dy * math.sin(t) for dx, dy in ((0, 0), (pw, 0), (0, ph), (pw, ph))]
    ys = [py + dx * math.sin(t) + dy * math.cos(t) for dx, dy in ((0, 0), (pw, 0), (0, ph), (pw, ph))]
    return min(xs) / width, min(ys) / height, (max(xs) - min(xs)) / width, (max(ys) - min(ys)) / height


# ---------------------------------------------------------------- predictions

def prediction_regions(boxes_xyxy: np.ndarray, cls: np.ndarray, conf: np.ndarray, width: int, height: int,
                       names: Sequence[str], spec: LabelSpec | None = None) -> list[dict]:
    """One Label Studio rectangle region per box (percent coordinates, per-region score)."""
    spec = spec or LabelSpec.default(names)
    pct = xyxy_to_ls(boxes_xyxy, width, height)
    out = []
    for i, ((x, y, w, h), c, s) in enumerate(zip(pct, np.asarray(cls).reshape(-1), np.asarray(conf).reshape(-1))):
        c = int(c)
        if not 0 <= c < len(names):
            raise LabelStudioError(f"predicted class id {c} outside 0..{len(names) - 1}; the model and data.yaml names disagree")
        out.append({"id": f"p{i}", "type": "rectanglelabels", "from_name": spec.from_name, "to_name": spec.to_name,
                    "original_width": int(width), "original_height": int(height), "image_rotation": 0,
                    "value": {"x": float(x), "y": float(y), "width": float(w), "height": float(h), "rotation": 0,
                              "rectanglelabels": [str(names[c])]},
                    "score": float(s)})
    return out


def label_regions(labels: np.ndarray, width: int, height: int, names: Sequence[str],
                  spec: LabelSpec | None = None) -> list[dict]:
    """YOLO labels (n, 5) -> rectangle regions, as an annotator would draw them (no score)."""
    spec = spec or LabelSpec.default(names)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1, 5)
    out = []
    for i, (row, (x, y, w, h)) in enumerate(zip(labels, yolo_to_ls(labels[:, 1:]))):
        out.append({"id": f"a{i}", "type": "rectanglelabels", "from_name": spec.from_name, "to_name": spec.to_name,
                    "original_width": int(width), "original_height": int(height), "image_rotation": 0,
                    "value": {"x": float(x), "y": float(y), "width": float(w), "height": float(h), "rotation": 0,
                              "rectanglelabels": [str(names[int(row[0])])]}})
    return out


def validate_prediction(pred: dict, spec: LabelSpec, where: str) -> None:
    """Check a prediction against the project config (the server would store a bad one silently)."""
    if not isinstance(pred.get("model_version"), str) or not pred["model_version"]:
        raise LabelStudioError(f"{where}: prediction needs a non-empty model_version string")
    score = pred.get("score")
    if not isinstance(score, (int, float)) or not math.isfinite(score):
        raise LabelStudioError(f"{where}: prediction score {score!r} must be a finite number")
    for r in pred.get("result", []):
        if r.get("type") != "rectanglelabels" or r.get("from_name") != spec.from_name or r.get("to_name") != spec.to_name:
            raise LabelStudioError(f"{where}: region {r.get('id')} must be rectanglelabels {spec.from_name}->{spec.to_name}")
        v = r.get("value", {})
        labels = v.get("rectanglelabels", [])
        if len(labels) != 1 or labels[0] not in spec.class_of:
            raise LabelStudioError(f"{where}: region label {labels} is not one of {sorted(spec.class_of)}")
        nums = [v.get(k) for k in ("x", "y", "width", "height")] + [r.get("score")]
        if not all(isinstance(n, (int, float)) and math.isfinite(n) for n in nums):
            raise LabelStudioError(f"{where}: region {r.get('id')} has non-finite coordinates or score")
        x, y, w, h = nums[:4]
        eps = 1e-6
        if x < -eps or y < -eps or w < 0 or h < 0 or x + w > 100 + eps or y + h > 100 + eps:
            raise LabelStudioError(f"{where}: region {r.get('id')} lies outside the image (x={x}, y={y}, w={w}, h={h} %)")
        if not (r.get("original_width", 0) > 0 and r.get("original_height", 0) > 0):
            raise LabelStudioError(f"{where}: region {r.get('id')} needs positive original_width/height")


# ---------------------------------------------------------------- annotations -> YOLO

def regions_to_yolo(result: list[dict], spec: LabelSpec, where: str) -> np.ndarray:
    """Rectangle regions -> (n, 5) YOLO labels, clamped to the image; zero-area boxes dropped with a warning."""
    rows = []
    for r in result:
        if r.get("type") != "rectanglelabels" or r.get("from_name") != spec.from_name:
            continue  # other tools (relations, text areas) carry no boxes
        v = r.get("value", {})
        labels = v.get("rectanglelabels") or []
        if len(labels) != 1:
            raise LabelStudioError(f"{where}: region {r.get('id')} has labels {labels}; give each box exactly one label")
        if labels[0] not in spec.class_of:
            raise LabelStudioError(f"{where}: label {labels[0]!r} is not a dataset class {sorted(spec.class_of)}; "
                                   "add it to data.yaml names or relabel the box")
        x, y, w, h = unrotate(*(float(v.get(k, 0.0)) / 100.0 for k in ("x", "y", "width", "height")),
                              float(v.get("rotation", 0.0) or 0.0),
                              float(r.get("original_width") or 0), float(r.get("original_height") or 0))
        (x, y, w, h), = clamp_ls(np.array([[x, y, w, h]]) * 100.0)
        if w <= 0 or h <= 0:
            log.warning("%s: dropped zero-area box %s (label %s) after clamping to the image", where, r.get("id"), labels[0])
            continue
        rows.append([spec.class_of[labels[0]], *ls_to_yolo(np.array([[x, y, w, h]]))[0]])
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def region_scores(result: list[dict], spec: LabelSpec) -> np.ndarray:
    """The score of each rectangle that regions_to_yolo keeps, in the same order (1.0 where none is given)."""
    out = []
    for r in result:
        if r.get("type") != "rectanglelabels" or r.get("from_name") != spec.from_name:
            continue
        v = r.get("value", {})
        x, y, w, h = unrotate(*(float(v.get(k, 0.0)) / 100.0 for k in ("x", "y", "width", "height")),
                              float(v.get("rotation", 0.0) or 0.0),
                              float(r.get("original_width") or 0), float(r.get("original_height") or 0))
        (x, y, w, h), = clamp_ls(np.array([[x, y, w, h]]) * 100.0)
        if w > 0 and h > 0:
            out.append(float(r.get("score", 1.0) if r.get("score") is not None else 1.0))
    return np.asarray(out, dtype=np.float64)


# ---------------------------------------------------------------- pre-label quality (effort counts: detal.cost)

def map50(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], nc: int) -> float:
    """mAP at IoU 0.5 of scored boxes against final labels, over images: [(pred (n, 5), scores (n,), truth (m, 5))].

    Per class, predictions of every image ranked by score; a prediction is a true positive when it overlaps
    an unmatched final box of its class at IoU >= 0.5 (COCO-style greedy matching); AP is the area under the
    precision envelope (all-point interpolation). Mean over classes with at least one final box; NaN if none.
    """
    aps = []
    for c in range(nc):
        n_true = 0
        ranked = []  # (score, image index, box row)
        for i, (pred, score, truth) in enumerate(pairs):
            n_true += int((np.asarray(truth).reshape(-1, 5)[:, 0] == c).sum())
            pred = np.asarray(pred).reshape(-1, 5)
            ranked += [(float(score[j]), i, j) for j in np.flatnonzero(pred[:, 0] == c)]
        if n_true == 0:
            continue
        ranked.sort(key=lambda t: (-t[0], t[1], t[2]))
        used: dict[int, set] = {}
        tp = np.zeros(len(ranked))
        for k, (_, i, j) in enumerate(ranked):
            pred, _, truth = pairs[i]
            truth = np.asarray(truth).reshape(-1, 5)
            cand = np.flatnonzero(truth[:, 0] == c)
            if len(cand) == 0:
                continue
            iou = box_iou(np.asarray(pred).reshape(-1, 5)[j:j + 1, 1:], truth[cand, 1:])[0]
            free = [(iou[q], cand[q]) for q in range(len(cand)) if cand[q] not in used.get(i, set())]
            best = max(free, default=(0.0, -1))
            if best[0] >= MATCH_IOU:
                used.setdefault(i, set()).add(best[1])
                tp[k] = 1
        if len(ranked) == 0:
            aps.append(0.0)
            continue
        ctp = np.cumsum(tp)
        recall = np.concatenate([[0.0], ctp / n_true])
        precision = np.concatenate([[1.0], ctp / np.arange(1, len(ranked) + 1)])
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        aps.append(float(np.sum(np.diff(recall) * envelope[1:])))
    return float(np.mean(aps)) if aps else float("nan")
