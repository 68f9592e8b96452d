"""YOLO dataset I/O: data.yaml, image lists, label files, image sizes, per-round split files.

Label arrays are float64 (n, 5): class, cx, cy, w, h with coordinates normalised to [0, 1], exactly
the boxes Ultralytics trains on. The label rules are Ultralytics' own (`verify_image_label`): a file
detal accepts is a file Ultralytics keeps, with the same boxes (duplicates removed, polygons turned
into their bounding box). Where Ultralytics would silently drop an image for a bad line, detal stops
and names the file and line instead; docs/bad-input.md lists every case.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import yaml

from detal.errors import DataError

log = logging.getLogger("detal")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
EMPTY_LABELS = np.zeros((0, 5), dtype=np.float64)
COORD_TOL = 0.01  # Ultralytics keeps coordinates in [-0.01, 1.01] as they are; so does detal
_EXIF_SWAPS = frozenset({5, 6, 7, 8})  # EXIF orientations that turn the image a quarter


@dataclass(frozen=True)
class Dataset:
    """A YOLO detection dataset: the train split is the active-learning pool, val is never selected.

    `train_spec`/`val_spec` are the folder or .txt list each split came from (None when built by hand).
    """

    yaml_path: Path
    root: Path
    names: tuple[str, ...]
    train: tuple[Path, ...]
    val: tuple[Path, ...]
    train_spec: Path | None = field(default=None, compare=False)
    val_spec: Path | None = field(default=None, compare=False)

    @property
    def nc(self) -> int:
        return len(self.names)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_WARNED: set[str] = set()


def _warn_once(msg: str) -> None:
    """Labels are re-read every round; a problem is worth one line per process, not one per round."""
    if msg not in _WARNED:
        _WARNED.add(msg)
        log.warning(msg)


def read_text(path: Path, what: str = "file") -> str:
    """UTF-8 text with or without a byte-order mark (Ultralytics reads both); anything else is a DataError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror or exc}); "
                        "check the path and its permissions") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                        f"re-save the {what} as UTF-8") from None


# --- data.yaml and splits -------------------------------------------------------------------------

def _names_from(raw, yaml_path: Path) -> tuple[str, ...]:
    if isinstance(raw, dict):
        try:
            keys = sorted(int(k) for k in raw)
        except (TypeError, ValueError):
            raise DataError(f"{yaml_path}: 'names' keys must be class ids 0..N-1") from None
        if keys != list(range(len(keys))):
            raise DataError(f"{yaml_path}: 'names' ids must be 0..{len(keys) - 1} without gaps")
        return tuple(str(raw[k] if k in raw else raw[str(k)]) for k in keys)
    if isinstance(raw, (list, tuple)) and raw:
        return tuple(str(n) for n in raw)
    raise DataError(f"{yaml_path}: 'names' must be a non-empty list of class names (or an id: name map)")


@dataclass(frozen=True)
class SplitScan:
    """What a split's folder or list holds: the images, and every file that is not one (with why)."""

    images: tuple[Path, ...]
    dangling: tuple[Path, ...] = ()  # symlinks whose target is gone
    missing: tuple[Path, ...] = ()   # listed in a .txt list, not on disk
    repeated: tuple[Path, ...] = ()  # listed more than once (kept once)
    ignored: tuple[Path, ...] = ()   # hidden files and files without an image suffix detal reads


def _hidden(rel: Path) -> bool:
    # Ultralytics' glob skips dot-files and dot-folders: macOS '._x.jpg' shadows, temp files of atomic writes
    return any(part.startswith(".") for part in rel.parts)


def scan_split(spec: Path) -> SplitScan:
    """The images of a split given as a folder (searched recursively) or a .txt list of image paths."""
    if spec.is_dir():
        images, dangling, ignored = [], [], []
        for p in sorted(spec.rglob("*")):
            if p.is_dir():
                continue
            if _hidden(p.relative_to(spec)) or p.suffix.lower() not in IMAGE_SUFFIXES:
                ignored.append(p)
            elif p.is_file():
                images.append(p)
            elif p.is_symlink():
                dangling.append(p)
        return SplitScan(tuple(images), tuple(dangling), ignored=tuple(ignored))
    if spec.is_file() and spec.suffix == ".txt":
        seen, images, missing, repeated, ignored = set(), [], [], [], []
        for line in read_text(spec, "image list").splitlines():
            line = line.strip()
            if not line:
                continue
            p = Path(line)
            p = p if p.is_absolute() else Path(os.path.normpath(spec.parent / p))  # no resolve(): links stay links
            if p in seen:
                repeated.append(p)
                continue
            seen.add(p)
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                ignored.append(p)
            elif p.is_file():
                images.append(p)
            elif p.is_symlink():
                missing.append(p)  # a dangling link in a list reads as missing
            else:
                missing.append(p)
        return SplitScan(tuple(images), missing=tuple(missing), repeated=tuple(repeated), ignored=tuple(ignored))
    raise DataError(f"{spec}: split not found; give an image folder or a .txt list of image paths")


def _few(paths: Sequence[Path], n: int = 3) -> str:
    more = f", ... ({len(paths)} in all)" if len(paths) > n else ""
    return ", ".join(str(p) for p in paths[:n]) + more


def warn_split(spec: Path, scan: SplitScan) -> None:
    """One warning line per kind of file a split leaves out (so nothing leaves the pool unannounced)."""
    if scan.dangling:
        _warn_once(f"{spec}: skipped {len(scan.dangling)} dangling symlink(s): {_few(scan.dangling)}; "
                   "fix or remove the links")
    if scan.missing:
        _warn_once(f"{spec}: skipped {len(scan.missing)} listed image(s) not found: {_few(scan.missing)}; "
                   "fix the paths or remove the lines")
    if scan.repeated:
        _warn_once(f"{spec}: {len(scan.repeated)} image(s) listed twice, kept once: {_few(scan.repeated)}")


def list_images(spec: Path) -> list[Path]:
    """Images of a split given as a folder (searched recursively) or a .txt file list."""
    scan = scan_split(spec)
    warn_split(spec, scan)
    return list(scan.images)


def load_dataset(data_yaml: str | Path, require_val: bool = True) -> Dataset:
    """Read a YOLO data.yaml; relative paths resolve against the yaml's folder (and its `path:`).

    `require_val=False` (the scheduled job) accepts a data.yaml without `val`: it then reserves a sample
    of the pool for evaluation."""
    yaml_path = Path(data_yaml).expanduser().resolve()
    if not yaml_path.is_file():
        raise DataError(f"{yaml_path}: dataset file not found; run `detal synth` or point `data:` at a YOLO data.yaml")
    try:
        raw = yaml.safe_load(read_text(yaml_path, "data.yaml")) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{yaml_path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{yaml_path}: expected a mapping with train, val and names")
    for key in ("train", "val", "names"):
        if key not in raw and (key != "val" or require_val):
            raise DataError(f"{yaml_path}: missing key '{key}'; a detection data.yaml needs train, val and names")
    names = _names_from(raw["names"], yaml_path)
    if "nc" in raw and raw["nc"] != len(names):
        raise DataError(f"{yaml_path}: nc is {raw['nc']!r} but names lists {len(names)} classes; "
                        f"set nc: {len(names)} or delete the nc line")
    root = Path(str(raw.get("path") or "."))
    root = root if root.is_absolute() else (yaml_path.parent / root).resolve()
    splits, specs = {"val": ()}, {"val": None}
    for key in ("train", "val") if "val" in raw else ("train",):
        if not isinstance(raw[key], str):
            raise DataError(f"{yaml_path}: '{key}' must be one folder or .txt path (lists are not supported)")
        spec = Path(raw[key]).expanduser()
        spec = spec if spec.is_absolute() else root / spec
        if not spec.exists():
            raise DataError(f"{yaml_path}: {key} split {raw[key]!r} not found (looked for {spec}); "
                            f"fix '{key}' (relative paths start at {root})")
        scan = scan_split(spec)
        warn_split(spec, scan)
        if not scan.images:
            why = f"; it holds {len(scan.ignored)} other files (e.g. {scan.ignored[0].name})" if scan.ignored else ""
            raise DataError(f"{yaml_path}: split '{key}' ({spec}) holds no images{why}; "
                            f"detal reads {' '.join(sorted(IMAGE_SUFFIXES))}")
        splits[key], specs[key] = scan.images, spec
    overlap = set(splits["train"]) & set(splits["val"])
    if overlap:
        raise DataError(f"{yaml_path}: {len(overlap)} images are in both train and val (e.g. {min(overlap)}); "
                        "keep the splits disjoint")
    return Dataset(yaml_path, root, names, splits["train"], splits["val"], specs["train"], specs["val"])


# --- label files ----------------------------------------------------------------------------------

def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last /images/ in the path becomes /labels/, the suffix becomes .txt."""
    s = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in s:
        s = sb.join(s.rsplit(sa, 1))
    return Path(s).with_suffix(".txt")


@dataclass(frozen=True)
class LabelScan:
    """One label file as Ultralytics reads it: the boxes it trains on, and every bad line (one line each)."""

    boxes: np.ndarray
    errors: tuple[tuple[str, str], ...] = ()  # (kind, one-line message); kinds are listed in detal/check.py
    duplicates: int = 0  # identical rows removed (Ultralytics does the same)
    polygons: int = 0    # polygon rows turned into their bounding box (Ultralytics does the same)
    found: bool = True   # False: no label file (the image has no objects)


_FIX_COORDS = "coordinates are fractions of the image size (0..1)"


_COLUMNS = ("class", "x centre", "y centre", "width", "height")


def _row_problem(where: str, parts: list[str], vals: list[float], box: list[float],
                 nc: int) -> tuple[str, str] | None:
    """The first problem of one row (its values, and the box they make) as (kind, message), or None."""
    for i, v in enumerate(vals):
        if not np.isfinite(v):  # before the range checks: a NaN width is not a "centre outside [0, 1]"
            name = _COLUMNS[i] if len(vals) == 5 else ("class" if i == 0 else f"value {i + 1}")
            fix = f"use a class id in 0..{nc - 1}" if name == "class" else _FIX_COORDS
            return "label-number", f"{where}: {name} {parts[i]!r} is not a finite number; {fix}"
    cls, cx, cy, w, h = box
    if not cls.is_integer() or not 0 <= cls < nc:
        return "label-class", f"{where}: class {parts[0]} is not an integer id in 0..{nc - 1}; check names in data.yaml"
    if min(cx, cy) < -COORD_TOL or max(cx, cy) > 1 + COORD_TOL:
        return "label-coords", f"{where}: box centre ({cx:g}, {cy:g}) outside [0, 1]; {_FIX_COORDS}"
    if max(w, h) > 1 + COORD_TOL or min(w, h) < 0:
        return "label-coords", f"{where}: box size ({w:g}, {h:g}) outside [0, 1]; {_FIX_COORDS}"
    if min(w, h) == 0:
        return "label-coords", f"{where}: box size ({w:g}, {h:g}) has zero area; drop zero-area boxes"
    return None


def scan_labels(text: str, nc: int, source: str = "<labels>") -> LabelScan:
    """Parse YOLO label text the way Ultralytics does; collect every bad line instead of dropping the image."""
    rows = [(i, line.split()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    polygon_file = any(len(p) > 6 for _, p in rows)  # Ultralytics' rule: one long row makes it a polygon file
    errors, boxes, keys, duplicates = [], [], set(), 0
    for lineno, parts in rows:
        where = f"{source}:{lineno}"
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            errors.append(("label-number", f"{where}: non-numeric value in {' '.join(parts)!r}; use numbers only"))
            continue
        if polygon_file:
            if len(parts) < 7 or len(parts) % 2 == 0:
                what = ("a box row in a file of polygons (Ultralytics would misread it)" if len(parts) == 5
                        else f"{len(parts)} values")
                errors.append(("label-columns", f"{where}: {what}; a polygon row is 'class x1 y1 x2 y2 x3 y3 ...' "
                                                "(3+ points); use boxes or polygons in one file, not both"))
                continue
            xy = np.asarray(vals[1:]).reshape(-1, 2)
            lo, hi = xy.min(0), xy.max(0)  # Ultralytics' segments2boxes
            box = [vals[0], *((lo + hi) / 2).tolist(), *(hi - lo).tolist()]
        elif len(parts) != 5:
            errors.append(("label-columns",
                           f'{where}: expected 5 values "class cx cy w h", got {len(parts)}; fix or delete the line'))
            continue
        else:
            box = vals
        problem = _row_problem(where, parts, vals, box, nc)
        if problem:
            errors.append(problem)
            continue
        key = np.asarray(vals, np.float32).tobytes()  # Ultralytics compares float32 rows
        if key in keys:
            duplicates += 1
            continue
        keys.add(key)
        boxes.append(box)
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    return LabelScan(arr, tuple(errors), duplicates, len(boxes) if polygon_file else 0)


def scan_label_file(path: Path, nc: int) -> LabelScan:
    """One image's label file; a missing file means no objects (Ultralytics' convention)."""
    if not path.exists():
        return LabelScan(EMPTY_LABELS.copy(), found=False)
    try:
        text = read_text(path, "label file")
    except DataError as exc:
        return LabelScan(EMPTY_LABELS.copy(), (("label-unreadable", str(exc)),))
    return scan_labels(text, nc, str(path))


def _labels_or_raise(scan: LabelScan, source: str) -> np.ndarray:
    if scan.errors:
        more = f" ({len(scan.errors) - 1} more bad lines in this file)" if len(scan.errors) > 1 else ""
        raise DataError(scan.errors[0][1] + more)
    if scan.duplicates:
        _warn_once(f"{source}: removed {scan.duplicates} duplicate box(es), as Ultralytics does; "
                   "delete the repeated lines to silence this")
    return scan.boxes


def parse_labels(text: str, nc: int, source: str = "<labels>") -> np.ndarray:
    """Parse YOLO label text; any bad line raises DataError naming `source:line` and the fix."""
    return _labels_or_raise(scan_labels(text, nc, source), source)


def read_labels(path: Path, nc: int) -> np.ndarray:
    """Labels of one image; a missing file means no objects (Ultralytics' convention)."""
    return _labels_or_raise(scan_label_file(path, nc), str(path))


def format_labels(labels: np.ndarray) -> str:
    return "".join(f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in np.asarray(labels).reshape(-1, 5))


def write_labels(path: Path, labels: np.ndarray) -> None:
    """Write a YOLO label file atomically (an empty array writes an empty file: 'no objects')."""
    atomic_write_text(path, format_labels(labels))


# --- images and per-round split files -------------------------------------------------------------

def exif_turned(im) -> bool:
    """Whether an open PIL image's EXIF orientation turns it a quarter (5-8), from the header only.

    Only for the formats whose decoder in Ultralytics applies the turn (its `exif_size`): OpenCV leaves
    WebP and TIFF as stored, whatever their EXIF says.
    """
    if im.format not in ("JPEG", "MPO", "PNG"):
        return False
    if im.format == "PNG" and "exif" not in im.info:
        return False  # Pillow would decode the whole PNG looking for a late eXIf chunk: 10x the cost of the rest
    try:
        return im.getexif().get(0x0112) in _EXIF_SWAPS
    except Exception:  # a damaged EXIF block: Ultralytics ignores it too (exif_size)
        return False


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed: EXIF rotation applied, like Ultralytics and browsers; header only."""
    from PIL import Image  # pillow ships with ultralytics

    try:
        with Image.open(path) as im:
            w, h = im.size
            return (h, w) if exif_turned(im) else (w, h)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read image ({exc}); remove or replace the file") from None


def write_image_list(path: Path, images: Iterable[Path]) -> Path:
    """A .txt file list that Ultralytics reads as a split: subsets without copying images."""
    # absolute, not resolve(): a link in a run-owned label tree must stay a link, since Ultralytics finds
    # the label file from the image path it is given
    atomic_write_text(path, "".join(f"{Path(p).absolute()}\n" for p in images))
    return path


def write_split_yaml(path: Path, train: Sequence[Path], val: Sequence[Path] | Path, names: Sequence[str]) -> Path:
    """data.yaml for one training round: train is a file list, val a file list (or a folder)."""
    path = Path(path).resolve()  # Ultralytics resolves relative split paths against its own datasets dir
    train_txt = write_image_list(path.with_name(path.stem + "_train.txt"), train)
    if isinstance(val, Path):
        val_spec = str(val.resolve())
    else:
        val_spec = str(write_image_list(path.with_name(path.stem + "_val.txt"), val))
    doc = {"path": str(path.parent.resolve()), "train": str(train_txt), "val": val_spec,
           "nc": len(names), "names": {i: n for i, n in enumerate(names)}}
    atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False))
    return path
