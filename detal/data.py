"""YOLO dataset I/O: data.yaml, image lists, label files, image sizes, per-round split files.

Label arrays are float64 (n, 5): class, cx, cy, w, h with coordinates normalised to [0, 1],
exactly what a YOLO label line holds.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import yaml

from detal.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
EMPTY_LABELS = np.zeros((0, 5), dtype=np.float64)
_TOL = 1e-6  # tolerance for coordinates written as 1.0000001 by other tools


@dataclass(frozen=True)
class Dataset:
    """A YOLO detection dataset: the train split is the active-learning pool, val is never selected."""

    yaml_path: Path
    root: Path
    names: tuple[str, ...]
    train: tuple[Path, ...]
    val: tuple[Path, ...]

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


def list_images(spec: Path) -> list[Path]:
    """Images of a split given as a folder (searched recursively) or a .txt file list."""
    if spec.is_dir():
        return sorted(p for p in spec.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if spec.is_file() and spec.suffix == ".txt":
        out = []
        for line in spec.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line:
                p = Path(line)
                out.append(p if p.is_absolute() else (spec.parent / p).resolve())
        return out
    raise DataError(f"{spec}: split not found; give an image folder or a .txt list of image paths")


def load_dataset(data_yaml: str | Path) -> Dataset:
    """Read a YOLO data.yaml; relative paths resolve against the yaml's folder (and its `path:`)."""
    yaml_path = Path(data_yaml).expanduser().resolve()
    if not yaml_path.is_file():
        raise DataError(f"{yaml_path}: dataset file not found; run `detal synth` or point `data:` at a YOLO data.yaml")
    try:
        raw = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{yaml_path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{yaml_path}: expected a mapping with train, val and names")
    for key in ("train", "val", "names"):
        if key not in raw:
            raise DataError(f"{yaml_path}: missing key '{key}'; a detection data.yaml needs train, val and names")
    root = Path(str(raw.get("path") or "."))
    root = root if root.is_absolute() else (yaml_path.parent / root).resolve()
    splits = {}
    for key in ("train", "val"):
        if not isinstance(raw[key], str):
            raise DataError(f"{yaml_path}: '{key}' must be one folder or .txt path (lists are not supported)")
        spec = Path(raw[key])
        spec = spec if spec.is_absolute() else root / spec
        images = list_images(spec)
        if not images:
            raise DataError(f"{yaml_path}: split '{key}' ({spec}) holds no images")
        splits[key] = tuple(images)
    overlap = set(splits["train"]) & set(splits["val"])
    if overlap:
        raise DataError(f"{yaml_path}: {len(overlap)} images are in both train and val (e.g. {min(overlap)}); keep the splits disjoint")
    return Dataset(yaml_path, root, _names_from(raw["names"], yaml_path), splits["train"], splits["val"])


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last /images/ in the path becomes /labels/, the suffix becomes .txt."""
    s = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in s:
        s = sb.join(s.rsplit(sa, 1))
    return Path(s).with_suffix(".txt")


def parse_labels(text: str, nc: int, source: str = "<labels>") -> np.ndarray:
    """Parse YOLO label text; any bad line raises DataError naming `source:line` and the fix."""
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{source}:{lineno}"
        if len(parts) != 5:
            raise DataError(f'{where}: expected 5 values "class cx cy w h", got {len(parts)}; fix or delete the line')
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            raise DataError(f"{where}: non-numeric value in {line.strip()!r}; use numbers only") from None
        cls = vals[0]
        if not cls.is_integer() or not 0 <= cls < nc:
            raise DataError(f"{where}: class {parts[0]} is not an integer id in 0..{nc - 1}; check names in data.yaml")
        cx, cy, w, h = vals[1:]
        if not all(np.isfinite(vals)) or min(cx, cy) < -_TOL or max(cx, cy) > 1 + _TOL:
            raise DataError(f"{where}: box centre ({parts[1]}, {parts[2]}) outside [0, 1]; coordinates must be normalised")
        if not (0 < w <= 1 + _TOL and 0 < h <= 1 + _TOL):
            raise DataError(f"{where}: box size ({parts[3]}, {parts[4]}) must be in (0, 1]; drop zero-area boxes")
        rows.append(vals)
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def read_labels(path: Path, nc: int) -> np.ndarray:
    """Labels of one image; a missing file means no objects (Ultralytics' convention)."""
    if not path.exists():
        return EMPTY_LABELS.copy()
    return parse_labels(path.read_text(encoding="utf-8"), nc, str(path))


def format_labels(labels: np.ndarray) -> str:
    return "".join(f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in np.asarray(labels).reshape(-1, 5))


def write_labels(path: Path, labels: np.ndarray) -> None:
    """Write a YOLO label file atomically (an empty array writes an empty file: 'no objects')."""
    atomic_write_text(path, format_labels(labels))


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding pixels; EXIF rotation ignored like YOLO labels."""
    from PIL import Image  # pillow ships with ultralytics

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image ({exc}); remove or replace the file") from None


def write_image_list(path: Path, images: Iterable[Path]) -> Path:
    """A .txt file list that Ultralytics reads as a split: subsets without copying images."""
    atomic_write_text(path, "".join(f"{Path(p).resolve()}\n" for p in images))
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
