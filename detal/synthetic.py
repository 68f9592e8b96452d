"""The embedded default dataset: coloured geometric shapes on plain or cluttered backgrounds.

Classes (ids in this order) come in confusable pairs and a long-tailed frequency:

    circle     30 %   ellipse    12 %   (aspect 1.45-2.3, any rotation: a round blob is either)
    square     22 %   rectangle  14 %   (aspect 1.5-2.5; both tilted up to +-12 degrees)
    triangle   17 %   diamond     5 %   (rhombus: a square on its corner, aspect 1-1.5)

so the most common class is 6x the rarest. Colour hints at the confusable PAIR, never at the class
within it: by default 80 % of the objects (`palette_prob`) take their pair's hue family (circle and
ellipse reddish, square and rectangle greenish, triangle and diamond bluish), the others a random
colour; objects are only drawn in colours far enough from the background under them to be seen.
Real classes have typical colours too; without that cue a YOLOv8n trained from scratch on a few
hundred images learns shapes too slowly for a CPU demo (mAP50 0.08 vs 0.19 after 16 epochs on 300
images in the same run), while telling the two shapes of a pair apart stays the hard part.

Difficulty knobs (fields of `Knobs`, defaults in `DEFAULT_KNOBS`):
- object count per image: 0 to 10 (`count_probs`; mean about 5, 6 % of images are empty),
- object size: longest side log-uniform in `size_range` x imgsz (about 19-80 px at 160 px),
- background: plain, linear gradient, or smooth random texture (`background_probs`),
- clutter: unlabelled strokes, arcs (circle-like!) and dots under the objects, thin lines over them,
- occlusion: objects may overlap; an object keeps at least `min_visible` of its pixels,
- outlines: `outline_prob` of the objects are drawn as outlines instead of filled,
- photometric: Gaussian pixel noise up to `noise_sigma_max`, a 3x3 blur with `blur_prob`.

Labels are exact: each box is the tight box of the object's VISIBLE pixels (after later objects
occlude it and after clipping to the image), the COCO/YOLO convention for annotating what is seen.
A placement that would leave an object tiny (< `min_box_px`) or mostly hidden is rejected, so no
visible shape is ever left unlabelled. Distractors are never closed shapes of a labelled class.
Boxes are measured before the last photometric steps (thin over-lines, noise, blur), which can
change at most an edge pixel, as a real annotator's box would ignore them.

Every image i draws from its own child seed `SeedSequence(seed, spawn_key=(i,))`, so an image does
not depend on how many images come before it; only the train/val assignment depends on `n_images`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from detal.data import atomic_write_text, format_labels
from detal.config import SynthConfig
from detal.errors import DataError

CLASS_NAMES: tuple[str, ...] = ("circle", "ellipse", "square", "rectangle", "triangle", "diamond")
CLASS_PROBS: tuple[float, ...] = (0.30, 0.12, 0.22, 0.14, 0.17, 0.05)


_SYNTH = SynthConfig()  # the defaults live in the config; the generator's signature reuses them


@dataclass(frozen=True)
class Knobs:
    """How hard the generated images are (see the module docstring)."""

    count_probs: tuple[float, ...] = (0.06, 0.05, 0.07, 0.09, 0.11, 0.12, 0.12, 0.11, 0.1, 0.09, 0.08)
    size_range: tuple[float, float] = (0.12, 0.5)
    background_probs: tuple[float, float, float] = (0.5, 0.3, 0.2)  # plain, gradient, texture
    distractors_max: int = 4  # strokes/arcs/dots under the objects on gradient and texture images
    over_lines_prob: float = 0.2  # chance of 1-2 thin lines drawn over the objects
    min_visible: float = 0.6
    min_box_px: int = 4
    outline_prob: float = 0.1
    noise_sigma_max: float = 8.0
    blur_prob: float = 0.2
    min_contrast: float = 80.0  # Euclidean BGR distance between an object and the background under it
    palette_prob: float = _SYNTH.palette  # chance an object takes its PAIR's hue family (pairs stay confusable)


DEFAULT_KNOBS = Knobs()
_PLACEMENT_TRIES = 25


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float64)


def _background(rng: np.random.Generator, size: int, kind: int) -> np.ndarray:
    """float32 (size, size, 3) BGR canvas: 0 plain, 1 linear gradient, 2 smooth random texture."""
    import cv2

    if kind == 0:
        return np.broadcast_to(_random_colour(rng).astype(np.float32), (size, size, 3)).copy()
    if kind == 1:
        a, b = _random_colour(rng), _random_colour(rng)
        theta = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
        t = np.cos(theta) * xx + np.sin(theta) * yy
        t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
        return (a + t[..., None] * (b - a)).astype(np.float32)
    cells = int(rng.integers(3, 12))
    low = rng.uniform(0, 255, size=(cells, cells, 3)).astype(np.float32)
    tex = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    # muted towards a base colour: busy enough to need learning, not a wall of colour blobs
    base = _random_colour(rng).astype(np.float32)
    tex = base + np.float32(rng.uniform(0.3, 0.6)) * (tex - tex.mean(axis=(0, 1)))
    return np.clip(tex, 0, 255, out=tex)


def _shape_mask(rng: np.random.Generator, cls: int, side: float, cx: float, cy: float,
                canvas: int) -> np.ndarray:
    """Boolean mask of one shape on a canvas (coordinates already include any padding)."""
    import cv2

    mask = np.zeros((canvas, canvas), np.uint8)
    name = CLASS_NAMES[cls]
    r = side / 2
    if name in ("circle", "ellipse"):
        ratio = 1.0 if name == "circle" else rng.uniform(1.45, 2.3)
        angle = rng.uniform(0, 180) if name == "ellipse" else 0.0
        axes = (max(int(round(r)), 1), max(int(round(r / ratio)), 1))
        cv2.ellipse(mask, (int(round(cx)), int(round(cy))), axes, angle, 0, 360, 1, -1)
        return mask.astype(bool)
    if name in ("square", "rectangle"):
        ratio = 1.0 if name == "square" else rng.uniform(1.5, 2.5)
        hw, hh = r, r / ratio
        if name == "rectangle" and rng.random() < 0.5:
            hw, hh = hh, hw
        pts = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
        theta = np.deg2rad(rng.uniform(-12, 12))
    elif name == "diamond":
        ratio = rng.uniform(1.0, 1.5)
        hw, hh = r, r / ratio
        if rng.random() < 0.5:
            hw, hh = hh, hw
        pts = np.array([[0, -hh], [hw, 0], [0, hh], [-hw, 0]])
        theta = np.deg2rad(rng.uniform(-12, 12))
    else:  # triangle: roughly equilateral, any rotation
        angles = np.array([0.0, 120.0 + rng.uniform(-12, 12), 240.0 + rng.uniform(-12, 12)])
        pts = r * np.stack([np.cos(np.deg2rad(angles)), np.sin(np.deg2rad(angles))], axis=1)
        theta = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pts = pts @ rot.T + (cx, cy)
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _outline(mask: np.ndarray, thickness: int) -> np.ndarray:
    """The inner rim of a filled mask: same tight box, hollow inside."""
    import cv2

    kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8)
    return mask & ~cv2.erode(mask.astype(np.uint8), kernel, borderValue=0).astype(bool)


def _draw_distractors(rng: np.random.Generator, img: np.ndarray, count: int, thin: bool = False) -> None:
    """Unlabelled open strokes, partial arcs and dots: clutter that is never a closed labelled shape."""
    import cv2

    size = img.shape[0]
    for _ in range(count):
        colour = tuple(float(c) for c in _random_colour(rng))
        kind = 0 if thin else int(rng.integers(0, 3))
        thickness = 1 if thin else int(rng.integers(1, 3))
        if kind == 0:  # open polyline
            pts = rng.uniform(-0.1 * size, 1.1 * size, size=(int(rng.integers(2, 5)), 2))
            cv2.polylines(img, [np.round(pts).astype(np.int32)], False, colour, thickness)
        elif kind == 1:  # arc of at most 250 degrees: looks round, is not a circle
            centre = tuple(int(v) for v in rng.integers(0, size, 2))
            rad = int(rng.integers(max(size // 20, 2), max(size // 5, 3)))
            start = float(rng.uniform(0, 360))
            cv2.ellipse(img, centre, (rad, int(rad * rng.uniform(0.5, 1.0))), float(rng.uniform(0, 180)),
                        start, start + float(rng.uniform(60, 250)), colour, thickness)
        else:  # a few dots
            for _ in range(int(rng.integers(3, 10))):
                centre = tuple(int(v) for v in rng.integers(0, size, 2))
                cv2.circle(img, centre, int(rng.integers(1, 3)), colour, -1)


_PAIR_HUES = (0.0, 120.0, 240.0)  # circle/ellipse reddish, square/rectangle greenish, triangle/diamond bluish


def _pair_colour(rng: np.random.Generator, cls: int) -> np.ndarray:
    """A BGR colour from the hue family of the class's confusable pair (both classes of a pair share it)."""
    import colorsys

    hue = (_PAIR_HUES[cls // 2] + rng.uniform(-30, 30)) % 360 / 360
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0))
    return np.array([b, g, r], dtype=np.float64) * 255


def _contrasting_colour(rng: np.random.Generator, under: np.ndarray, min_contrast: float) -> np.ndarray:
    """A random colour far enough from the mean background under the object; else the farthest corner."""
    mean = under.reshape(-1, 3).mean(axis=0)
    for _ in range(10):
        colour = _random_colour(rng)
        if np.linalg.norm(colour - mean) >= min_contrast:
            return colour
    return np.where(mean > 127, 0.0, 255.0)


def render(rng: np.random.Generator, imgsz: int, knobs: Knobs = DEFAULT_KNOBS) -> tuple[np.ndarray, np.ndarray]:
    """One image (uint8 BGR, imgsz x imgsz) and its labels (n, 5): class, cx, cy, w, h normalised."""
    import cv2

    kind = int(rng.choice(3, p=knobs.background_probs))
    img = _background(rng, imgsz, kind)
    if kind > 0:
        _draw_distractors(rng, img, int(rng.integers(0, knobs.distractors_max + 1)))

    pad = imgsz // 2
    canvas = imgsz + 2 * pad
    n_target = int(rng.choice(len(knobs.count_probs), p=knobs.count_probs))
    lo, hi = np.log(knobs.size_range[0] * imgsz), np.log(knobs.size_range[1] * imgsz)
    classes: list[int] = []
    full_area: list[int] = []
    visible: list[np.ndarray] = []
    for _ in range(n_target):
        cls = int(rng.choice(len(CLASS_NAMES), p=CLASS_PROBS))
        for _ in range(_PLACEMENT_TRIES):
            side = float(np.exp(rng.uniform(lo, hi)))
            cx, cy = rng.uniform(0, imgsz, size=2)
            full = _shape_mask(rng, cls, side, cx + pad, cy + pad, canvas)
            mask = full[pad:pad + imgsz, pad:pad + imgsz]
            area = int(full.sum())
            # mostly inside the image, and it must not hide too much of any earlier object
            if area == 0 or mask.sum() < knobs.min_visible * area or not _box_ok(mask, knobs.min_box_px):
                continue
            if any((v & ~mask).sum() < knobs.min_visible * a or not _box_ok(v & ~mask, knobs.min_box_px)
                   for v, a in zip(visible, full_area)):
                continue
            break
        else:
            continue  # no fair placement found: draw nothing rather than an unfair label
        if rng.random() < knobs.outline_prob:
            thick = max(1, int(round(side / 12)))
            mask = _outline(mask, thick)  # same tight box; occlusion below uses the drawn pixels
        colour = None
        if knobs.palette_prob and rng.random() < knobs.palette_prob:
            colour = _pair_colour(rng, cls)
            if np.linalg.norm(colour - img[mask].reshape(-1, 3).mean(axis=0)) < knobs.min_contrast:
                colour = None  # would vanish into the background: fall back to a random contrasting colour
        if colour is None:
            colour = _contrasting_colour(rng, img[mask], knobs.min_contrast)
        img[mask] = colour
        visible = [v & ~mask for v in visible]
        visible.append(mask)
        full_area.append(int(mask.sum()))  # drawn in-image pixels: what occlusion can take away
        classes.append(cls)

    if rng.random() < knobs.over_lines_prob:
        _draw_distractors(rng, img, int(rng.integers(1, 3)), thin=True)
    sigma = rng.uniform(0, knobs.noise_sigma_max)
    img += rng.standard_normal(size=img.shape, dtype=np.float32) * np.float32(sigma)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    if rng.random() < knobs.blur_prob:
        out = cv2.GaussianBlur(out, (3, 3), 0)

    rows = [(cls, *_norm_box(v, imgsz)) for cls, v in zip(classes, visible)]
    return out, np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def _box_ok(mask: np.ndarray, min_px: int) -> bool:
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return len(ys) > 0 and ys[-1] - ys[0] + 1 >= min_px and xs[-1] - xs[0] + 1 >= min_px


def _norm_box(mask: np.ndarray, imgsz: int) -> tuple[float, float, float, float]:
    """Tight box of a pixel mask; pixel i spans [i, i+1), so the box edges are exact pixel edges."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    x0, x1, y0, y1 = xs[0], xs[-1] + 1, ys[0], ys[-1] + 1
    return (x0 + x1) / 2 / imgsz, (y0 + y1) / 2 / imgsz, (x1 - x0) / imgsz, (y1 - y0) / imgsz


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image `index`: independent of how many images are generated."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def _validate(n_images: int, seed: int, imgsz: int, val_fraction: float) -> None:
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 2:
        raise ValueError(f"n_images={n_images!r}: need an integer >= 2 (at least one train and one val image)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r}: need a non-negative integer")
    if isinstance(imgsz, bool) or not isinstance(imgsz, (int, np.integer)) or imgsz < 32:
        raise ValueError(f"imgsz={imgsz!r}: need an integer >= 32 pixels")
    if not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction!r}: need a number strictly between 0 and 1, e.g. 0.2")


def generate(out_dir: Path, n_images: int = _SYNTH.images, seed: int = _SYNTH.seed, imgsz: int = _SYNTH.imgsz,
             val_fraction: float = _SYNTH.val_fraction,
             progress: Callable[[int, int], None] | None = None, *, overwrite: bool = False,
             knobs: Knobs = DEFAULT_KNOBS) -> Path:
    """Write a YOLO dataset: images/{train,val}/NNNNN.png, labels/{train,val}/NNNNN.txt, data.yaml.

    data.yaml has no `path:` key, so Ultralytics resolves the splits relative to the yaml's folder
    and the folder can be moved. Refuses to write into an existing dataset unless `overwrite`
    (which deletes only images/, labels/ and data.yaml there). Returns the data.yaml path.
    """
    _validate(n_images, seed, imgsz, val_fraction)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder; choose another --out")
    yaml_path = out_dir / "data.yaml"
    owned = [out_dir / "images", out_dir / "labels"]
    if any(p.exists() for p in owned) or yaml_path.exists():
        if not overwrite:
            raise DataError(f"{out_dir}: already holds a dataset (images/, labels/ or data.yaml); "
                            "choose a new --out or delete it first")
        for p in owned:
            shutil.rmtree(p, ignore_errors=True)
        yaml_path.unlink(missing_ok=True)

    import cv2

    n_val = min(max(1, int(round(n_images * val_fraction))), n_images - 1)
    is_val = np.zeros(n_images, bool)
    is_val[np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**32,))).permutation(n_images)[:n_val]] = True
    width = max(5, len(str(n_images - 1)))
    for split in ("train", "val"):
        (out_dir / "images" / split).mkdir(parents=True, exist_ok=True)
        (out_dir / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        img, labels = render(image_rng(seed, i), imgsz, knobs)
        split = "val" if is_val[i] else "train"
        stem = f"{i:0{width}d}"
        ok, buf = cv2.imencode(".png", img)
        if not ok:
            raise DataError(f"{out_dir}: OpenCV could not encode image {stem}.png")
        (out_dir / "images" / split / f"{stem}.png").write_bytes(buf.tobytes())
        (out_dir / "labels" / split / f"{stem}.txt").write_text(format_labels(labels), encoding="utf-8")
        if progress is not None:
            progress(i + 1, n_images)
    doc = {"train": "images/train", "val": "images/val", "nc": len(CLASS_NAMES), "names": list(CLASS_NAMES)}
    atomic_write_text(yaml_path, yaml.safe_dump(doc, sort_keys=False))
    return yaml_path
