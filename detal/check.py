"""`detal check`: every problem of a dataset, collected up front, before any training time is spent.

The images detal calls usable are exactly the images Ultralytics keeps: each image goes through
Ultralytics' own `verify_image_label` (Pillow verify, 10 px minimum, supported formats, the corrupt-JPEG
restore), after a plain Pillow header read that gives clear messages for files that are not images at
all. Labels are parsed by detal (detal/data.py, with Ultralytics' rules) and cross-checked against what
Ultralytics reads from the same file, so the box counts in the metrics are the boxes trained on.

Every kind of bad or unusual input and what happens to it (docs/bad-input.md has the same table):

  level    kind                what it is                                         behaviour
  error    label-unreadable    label file not UTF-8 (BOM is fine), or unreadable   stop, exit 2: file:line and fix
  error    label-columns       not 5 values; boxes mixed with polygons              stop, exit 2: file:line and fix
  error    label-number        non-numeric, NaN or inf value                        stop, exit 2: file:line and fix
  error    label-class         class not an integer id in 0..nc-1                   stop, exit 2: file:line and fix
  error    label-coords        centre/size outside [0, 1] (+-1%), zero-area box     stop, exit 2: file:line and fix
  error    label-ultralytics   Ultralytics reads a label differently than detal     stop, exit 2 (quotes Ultralytics)
  error    split-empty         a split with no usable image                         stop, exit 2
  error    split-no-boxes      a split whose images have no box at all              stop, exit 2 (labels not found?)
  exclude  image-unreadable    zero-byte file, not an image, unreadable             left out, one warning line
  exclude  image-corrupt       fails Pillow's verify; truncated JPEG                left out, one warning line
  exclude  image-small         under 10 px a side (Ultralytics' minimum)            left out, one warning line
  exclude  image-format        content Ultralytics does not train on (GIF...)       left out, one warning line
  exclude  image-too-large     over Pillow's decompression-bomb limit (179 Mpx)     left out, one warning line
  exclude  image-name          a line break in the file name                        left out, one warning line
  exclude  image-dangling      a symlink whose target is gone                       left out, one warning line
  exclude  image-missing       listed in a .txt split but not on disk               left out, one warning line
  warning  image-restored      JPEG without end marker that still decodes           used; Ultralytics re-saves it
  warning  label-duplicates    identical box rows                                   removed (as Ultralytics)
  warning  label-shared        two images with one label file (a.jpg, a.png)        used, both get those boxes
  warning  names-duplicate     two classes with the same name                       used
  warning  label-orphan        label file without an image (renamed, deleted?)      not used; one line per split
  note     label-missing       image without a label file                           used as an image with no objects
  note     label-polygon       polygon rows (segmentation labels)                   used as their bounding boxes
  note     image-exif-rotated  EXIF orientation turns a JPEG/PNG                    used turned, as Ultralytics does
  note     image-ignored       hidden file or suffix detal does not read            not used
  note     image-repeated      listed twice in a .txt split                         used once
  note     class-absent        a class with no box in a split                       used (mAP skips it on val)

Accepted without a message (they train exactly like an 8-bit RGB image): CMYK, 16-bit, grayscale, palette
and alpha images, PNG content named .jpg, huge images (Ultralytics resizes them), unicode and spaces in
names, CRLF line ends, a UTF-8 BOM, blank lines, class ids written as 1.0, coordinates up to 1% outside
[0, 1] (Ultralytics' own tolerance, kept as written).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

from detal.data import (IMAGE_SUFFIXES, Dataset, LabelScan, SplitScan, exif_turned, label_path, scan_label_file,
                        scan_split)
from detal.errors import DataError

LEVELS = ("error", "exclude", "warning", "note")
KINDS: dict[str, tuple[str, str]] = {  # kind -> (level, behaviour): the table above, for the summary
    "label-unreadable": ("error", "stops the run"),
    "label-columns": ("error", "stops the run"),
    "label-number": ("error", "stops the run"),
    "label-class": ("error", "stops the run"),
    "label-coords": ("error", "stops the run"),
    "label-ultralytics": ("error", "stops the run"),
    "split-empty": ("error", "stops the run"),
    "split-no-boxes": ("error", "stops the run"),
    "image-unreadable": ("exclude", "left out"),
    "image-corrupt": ("exclude", "left out"),
    "image-small": ("exclude", "left out"),
    "image-format": ("exclude", "left out"),
    "image-too-large": ("exclude", "left out"),
    "image-name": ("exclude", "left out"),
    "image-dangling": ("exclude", "left out"),
    "image-missing": ("exclude", "left out"),
    "image-restored": ("warning", "used; Ultralytics re-saves the file"),
    "label-duplicates": ("warning", "duplicates removed"),
    "label-shared": ("warning", "used"),
    "names-duplicate": ("warning", "used"),
    "label-orphan": ("warning", "not used"),
    "label-missing": ("note", "no objects"),
    "label-polygon": ("note", "bounding boxes"),
    "image-exif-rotated": ("note", "used rotated"),
    "image-ignored": ("note", "not used"),
    "image-repeated": ("note", "used once"),
    "class-absent": ("note", "used"),
}


@dataclass(frozen=True)
class Problem:
    kind: str      # a key of KINDS
    path: Path     # the file (or the data.yaml for dataset-wide problems)
    message: str   # one line: "file[:line]: what is wrong; the fix"
    split: str = ""
    subject: str = ""  # what the summary shows instead of the file, for dataset-wide problems

    @property
    def level(self) -> str:
        return KINDS[self.kind][0]


@dataclass(frozen=True)
class SplitCounts:
    """One split as Ultralytics will see it: usable images and their boxes (after duplicate removal)."""

    images: int
    usable: int
    boxes: int
    unlabelled: int                    # usable images without a label file
    boxes_per_class: tuple[int, ...]
    images_per_class: tuple[int, ...]  # usable images holding at least one box of the class


@dataclass(frozen=True)
class CheckReport:
    yaml_path: Path
    root: Path
    names: tuple[str, ...]
    counts: dict[str, SplitCounts]
    problems: tuple[Problem, ...]
    excluded_train: tuple[tuple[Path, str], ...] = ()  # (image, reason): not trained on, not in the pool
    excluded_val: tuple[tuple[Path, str], ...] = ()    # (image, reason): not evaluated on
    seconds: float = field(default=0.0, compare=False)

    @property
    def fatal(self) -> bool:
        """Training would fail, or would silently drop data the user must fix first."""
        return any(p.level == "error" for p in self.problems)

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.level == "error")

    def by_kind(self) -> dict[str, list[Problem]]:
        out: dict[str, list[Problem]] = defaultdict(list)
        for p in self.problems:
            out[p.kind].append(p)
        return dict(sorted(out.items(), key=lambda kv: (LEVELS.index(KINDS[kv[0]][0]), kv[0])))

    def lines(self, levels: Sequence[str] = ("error", "exclude", "warning")) -> list[str]:
        """One line per problem (file, what, fix), for a log; notes are only counted in the summary.
        Orphan label files are one line per split: a renamed image folder can leave thousands."""
        out, orphans = [], defaultdict(list)
        for p in self.problems:
            if p.level not in levels:
                continue
            if p.kind == "label-orphan":
                orphans[p.split].append(p.path)
            else:
                out.append(f"{p.level}: {p.message}")
        for split, paths in orphans.items():
            more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
            out.append(f"warning: {paths[0]}{more}: label file(s) without an image in split '{split}', not used; "
                       "restore the image (same name, an image suffix) or delete the label file")
        return out

    def summary(self, first: int = 3) -> str:
        """The terminal table: counts per split and class, problems per kind with the first few files."""
        def rel(p: Path) -> str:
            try:
                return str(p.relative_to(self.root))
            except ValueError:
                return str(p)

        out = [f"dataset {self.yaml_path} ({len(self.names)} classes), checked in {self.seconds:.2f} s", ""]
        splits = list(self.counts)
        out.append(f"{'split':<7}{'images':>8}{'usable':>8}{'boxes':>8}{'no label file':>15}")
        for s in splits:
            c = self.counts[s]
            out.append(f"{s:<7}{c.images:>8}{c.usable:>8}{c.boxes:>8}{c.unlabelled:>15}")
        width = max(12, *(len(n) for n in self.names)) + 2
        out += ["", f"{'class':<{width}}" + "".join(f"{s + ' boxes (images)':>22}" for s in splits)]
        for i, name in enumerate(self.names):
            out.append(f"{name:<{width}}" + "".join(
                f"{f'{self.counts[s].boxes_per_class[i]} ({self.counts[s].images_per_class[i]})':>22}" for s in splits))
        groups = self.by_kind()
        if groups:
            out += ["", f"{'level':<9}{'kind':<20}{'count':>6}  {'behaviour':<38}first files"]
            for kind, probs in groups.items():
                level, behaviour = KINDS[kind]
                files = ", ".join(p.subject or rel(p.path) for p in probs[:first])
                files += ", ..." if len(probs) > first else ""
                out.append(f"{level:<9}{kind:<20}{len(probs):>6}  {behaviour:<38}{files}")
        n_ex = len(self.excluded_train) + len(self.excluded_val)
        if self.fatal:
            out += ["", f"FAILED: {len(self.errors)} error(s); the first: {self.errors[0].message}"]
        else:
            left = f"; {len(self.excluded_train)} train and {len(self.excluded_val)} val images left out"
            out += ["", "OK" + (left if n_ex else "")]
        return "\n".join(out)


# --- images: Ultralytics' verdict -----------------------------------------------------------------

def _ultralytics():
    """Ultralytics' verifier and Pillow's unpatched opener, imported only when images are checked."""
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no update checks or downloads while checking files
    from PIL import Image
    from ultralytics.data import utils as yolo_data
    from ultralytics.utils import patches

    # Ultralytics patches Image.open to pip-install an HEIF plugin on any unidentified file (a zero-byte
    # image prints "AutoUpdate skipped (offline)" and "No module named 'pi_heif'"): read headers without it
    return yolo_data, getattr(patches, "_image_open", Image.open)


@dataclass(frozen=True)
class _ImageVerdict:
    kind: str | None = None        # an image kind of KINDS, or None: usable, no remark
    message: str = ""
    rotated: bool = False
    ul_boxes: int | None = None    # boxes Ultralytics reads from the label file (None: it did not read it)
    ul_label_error: str = ""       # Ultralytics rejected the label file although the image is fine


class VerdictCache:
    """Ultralytics' verdicts on images checked before, each under the size and mtime of the image and its label file.

    The scheduled job checks its dataset every run; at 10^5 images opening each one is most of a cycle's fixed cost.
    With a cache, an image whose file and label file are as they were keeps its verdict (a stat each instead of a
    decode); anything changed, or new, is verified again. `rows` path -> (signature, verdict fields); `new` holds
    what this check added, for the caller to store (detal.cycle.store: the `checked` table).
    """

    def __init__(self, rows: dict[str, tuple[str, dict]] | None = None):
        self.rows = dict(rows or {})
        self.new: dict[str, tuple[str, dict]] = {}

    @staticmethod
    def signature(image: Path, label: Path) -> str | None:
        try:
            st = image.stat()
        except OSError:
            return None  # unreadable now: verified (and reported) every time
        try:
            sl = label.stat()
            lab = f"{sl.st_size}:{sl.st_mtime_ns}"
        except OSError:
            lab = "-"
        return f"{st.st_size}:{st.st_mtime_ns}:{lab}"

    def verdict(self, image: Path, label: Path, verify) -> "_ImageVerdict":
        sig = self.signature(image, label)
        hit = self.rows.get(str(image))
        if sig is not None and hit is not None and hit[0] == sig and isinstance(hit[1], dict):
            return _ImageVerdict(**hit[1])
        v = verify()
        if sig is not None:
            self.rows[str(image)] = self.new[str(image)] = (sig, asdict(v))
        return v


def _after(msg: str, marker: str = "ignoring corrupt image/label: ") -> str:
    return msg.split(marker, 1)[-1].splitlines()[0].strip()


def _verify_image(image: Path, nc: int, yolo_data, pil_open) -> _ImageVerdict:
    """What Ultralytics does with this image (and its label file), without ever writing to it."""
    from PIL import Image

    if "\n" in str(image) or "\r" in str(image):
        return _ImageVerdict("image-name", f"{image!r}: a line break in the file name cannot go in Ultralytics' "
                                           "file lists; left out; rename the file")
    try:
        if image.stat().st_size == 0:
            return _ImageVerdict("image-unreadable", f"{image}: empty file (0 bytes); left out; replace or delete it")
        with pil_open(image) as im:
            fmt, (w, h), rotated = im.format, im.size, exif_turned(im)
    except Image.DecompressionBombError:
        return _ImageVerdict("image-too-large", f"{image}: over Pillow's decompression-bomb limit of "
                                                f"{Image.MAX_IMAGE_PIXELS * 2:,} pixels; left out; downscale it")
    except Image.UnidentifiedImageError:
        return _ImageVerdict("image-unreadable", f"{image}: not an image Pillow can read; left out; "
                                                 "replace or delete it")
    except OSError as exc:  # permission denied, a folder named like an image, ...
        return _ImageVerdict("image-unreadable", f"{image}: cannot read ({exc.strerror or exc}); left out; "
                                                 "check its permissions or delete it")
    except (ValueError, SyntaxError) as exc:  # Pillow's words for a damaged header
        return _ImageVerdict("image-corrupt", f"{image}: damaged header ({exc}); left out; replace or delete it")

    restore = fmt == "JPEG" and not _ends_with_eoi(image)
    with tempfile.TemporaryDirectory(prefix="detal-check-") if restore else contextlib.nullcontext() as tmp:
        target = image
        if restore:  # Ultralytics re-saves such a JPEG in place: let it do that to a copy
            target = Path(tmp) / f"copy{image.suffix}"
            shutil.copyfile(image, target)
        result = _verify(yolo_data, target, label_path(image), nc)
        if result[0] is not None:
            kind, msg = (None, "")
            if restore:
                kind, msg = "image-restored", (f"{image}: JPEG that does not end with its end marker (padded or cut); "
                                               "used, but Ultralytics re-saves it in place (quality 100) when it "
                                               "first reads it; re-export it")
            turned = rotated or (w != h and tuple(result[2]) == (w, h))  # Ultralytics' shape is (h, w) as displayed
            return _ImageVerdict(kind, msg, turned, ul_boxes=len(result[1]))
        image_only = _verify(yolo_data, target, Path(os.devnull), nc)  # was it the image, or the label file?
        if image_only[0] is None:
            return _image_failure(image, fmt, w, h, _after(image_only[-1]), restore)
        return _ImageVerdict(None, "", rotated, ul_label_error=_after(result[-1]))


def _verify(yolo_data, image: Path, label: Path, nc: int) -> list:
    """Ultralytics' verdict on one image and label file: (image, boxes, (h, w), ...) or None first when dropped."""
    return yolo_data.verify_image_label((str(image), str(label), "", False, nc, 0, 0, False))


def _image_failure(image: Path, fmt: str, w: int, h: int, reason: str, restore: bool) -> _ImageVerdict:
    first = reason.splitlines()[0]
    if "<10 pixels" in first:
        return _ImageVerdict("image-small", f"{image}: {w}x{h} px, under Ultralytics' 10 px minimum; left out; "
                                            "use a larger image or delete it")
    if "image format" in first.lower():
        return _ImageVerdict("image-format", f"{image}: {fmt} content, a format Ultralytics does not train on; "
                                             "left out; convert it to PNG or JPEG")
    if restore:
        return _ImageVerdict("image-corrupt", f"{image}: truncated JPEG ({first}) that Ultralytics cannot restore; "
                                              "left out; re-export or delete it")
    return _ImageVerdict("image-corrupt", f"{image}: corrupt {fmt} ({first}); left out; re-export or delete it")


def _ends_with_eoi(image: Path) -> bool:
    """Ultralytics' corrupt-JPEG test: the file must end with the end-of-image marker."""
    try:
        with open(image, "rb") as fh:
            fh.seek(-2, os.SEEK_END)
            return fh.read() == b"\xff\xd9"
    except OSError:  # unreadable now: Ultralytics' own verify below reports it
        return True


# --- the whole dataset ----------------------------------------------------------------------------

def _scan_problems(split: str, spec: Path | None) -> list[Problem]:
    """Files of a split folder or list that never made it into the Dataset (load_dataset skipped them)."""
    if spec is None:
        return []
    scan: SplitScan = scan_split(spec)
    out = [Problem("image-dangling", p, f"{p}: dangling symlink (to {_target(p)}); left out; "
                                        "fix or remove the link", split) for p in scan.dangling]
    out += [Problem("image-missing", p, f"{p}: listed in {spec} but not found; left out; fix the path "
                                       "or remove the line", split) for p in scan.missing]
    out += [Problem("image-repeated", p, f"{p}: listed more than once in {spec}; used once", split)
            for p in scan.repeated]
    suffixes = " ".join(sorted(IMAGE_SUFFIXES))
    for p in scan.ignored:
        hidden = spec.is_dir() and any(part.startswith(".") for part in p.relative_to(spec).parts)
        why = "hidden file (Ultralytics skips those too)" if hidden else f"not an image suffix detal reads ({suffixes})"
        out.append(Problem("image-ignored", p, f"{p}: {why}; not used", split))
    return out


def _target(link: Path) -> str:
    try:
        return os.readlink(link)
    except OSError:  # no longer a link
        return "?"


def _label_dirs(spec: Path | None, images: Sequence[Path]) -> set[Path]:
    """Folders where this split's label files live (Ultralytics' images -> labels rule)."""
    dirs = {label_path(p).parent for p in images}
    if spec is not None and spec.is_dir():
        dirs.add(label_path(spec / "x.jpg").parent)
    return {d for d in dirs if d.is_dir()}


def _orphans(ds: Dataset, known: set[Path]) -> list[Problem]:
    """Label files beside a split's images that belong to no image: silently unused by training otherwise."""
    listed = {s for s in (ds.train_spec, ds.val_spec) if s is not None}
    found: dict[Path, str] = {}
    for split, spec, images in (("val", ds.val_spec, ds.val), ("train", ds.train_spec, ds.train)):
        for d in _label_dirs(spec, images):
            # recursive only below a separate labels/ tree; a folder shared with the images is read flat
            pattern = d.rglob("*.txt") if "labels" in d.parts else d.glob("*.txt")
            found.update((p, split) for p in pattern if not p.name.startswith(".") and p.name != "classes.txt")
    return [Problem("label-orphan", p, f"{p}: label file without an image in split '{found[p]}'; not used; restore "
                                       "the image or delete the label file", found[p])
            for p in sorted(set(found) - known - listed)]


def check_dataset(ds: Dataset, unlabelled_pool: bool = False, cache: VerdictCache | None = None) -> CheckReport:
    """Check every image and label file of both splits; collect every problem (nothing raised, nothing written).

    `cache`: verdicts of images unchanged since an earlier check are reused (VerdictCache); label files are
    always read (they are what changes between runs).

    `unlabelled_pool` (the scheduled job): the train split is a pool waiting for annotators, so images without
    a label file are expected, not noted, and an absent val split is allowed (detal reserves one). Label
    files that do exist are checked all the same.
    """
    t0 = time.perf_counter()
    yolo_data, pil_open = _ultralytics()
    problems: list[Problem] = []
    if len(set(ds.names)) < len(ds.names):
        dup = sorted(n for n, c in Counter(ds.names).items() if c > 1)
        msg = f"{ds.yaml_path}: class name(s) {dup} used twice; Label Studio tells classes apart by name, rename them"
        problems.append(Problem("names-duplicate", ds.yaml_path, msg, subject=", ".join(dup)))
    counts, excluded = {}, {"train": [], "val": []}
    known_labels: set[Path] = set()
    for split, images, spec in (("train", ds.train, ds.train_spec), ("val", ds.val, ds.val_spec)):
        split_problems = _scan_problems(split, spec)
        known_labels.update(label_path(p.path) for p in split_problems)
        problems += split_problems
        shared = Counter(label_path(p) for p in images)
        boxes_pc, images_pc = [0] * ds.nc, [0] * ds.nc
        usable = boxes = unlabelled = 0
        for image in images:
            lab = label_path(image)
            known_labels.add(lab)
            verify = lambda: _verify_image(image, ds.nc, yolo_data, pil_open)  # noqa: E731 (bound per image)
            verdict = verify() if cache is None else cache.verdict(image, lab, verify)
            scan: LabelScan = scan_label_file(lab, ds.nc)
            problems += [Problem(kind, lab, msg, split) for kind, msg in scan.errors]
            if verdict.kind is not None:
                problems.append(Problem(verdict.kind, image, verdict.message, split))
            if verdict.kind is not None and KINDS[verdict.kind][0] == "exclude":
                excluded[split].append((image, verdict.message))
                continue
            found = _label_problems(image, lab, scan, verdict, split, shared[lab] > 1)
            if unlabelled_pool and split == "train":
                found = [f for f in found if f.kind != "label-missing"]
            problems += found
            usable += 1
            unlabelled += not scan.found
            boxes += len(scan.boxes)
            classes = scan.boxes[:, 0].astype(int)
            for c, n in Counter(classes.tolist()).items():
                boxes_pc[c] += n
                images_pc[c] += 1
        counts[split] = SplitCounts(len(images), usable, boxes, unlabelled, tuple(boxes_pc), tuple(images_pc))
        if not (unlabelled_pool and (split == "train" and usable or split == "val" and not images)):
            problems += _split_problems(ds, split, counts[split])
    problems += _orphans(ds, known_labels)
    return CheckReport(ds.yaml_path, ds.root, ds.names, counts, tuple(problems), tuple(excluded["train"]),
                       tuple(excluded["val"]), time.perf_counter() - t0)


def _label_problems(image: Path, lab: Path, scan: LabelScan, verdict: _ImageVerdict, split: str,
                    shared: bool) -> list[Problem]:
    out = []
    if verdict.rotated:
        out.append(Problem("image-exif-rotated", image, f"{image}: EXIF orientation turns the image; Ultralytics trains "
                                                        "on the turned view, so labels must be drawn on it", split))
    if scan.duplicates:
        out.append(Problem("label-duplicates", lab, f"{lab}: removed {scan.duplicates} duplicate box(es), as "
                                                    "Ultralytics does; delete the repeated lines", split))
    if scan.polygons and not scan.errors:
        out.append(Problem("label-polygon", lab, f"{lab}: {scan.polygons} polygon row(s) used as their bounding "
                                                 "boxes, as Ultralytics does", split))
    if shared:
        out.append(Problem("label-shared", lab, f"{lab}: label file of more than one image (same name, other "
                                                "suffix), e.g. {image.name}; rename one of the images", split))
    if not scan.found:
        out.append(Problem("label-missing", image, f"{image}: no label file ({lab}); used as an image with "
                                                   "no objects", split))
    if not scan.errors:  # detal read the file cleanly: Ultralytics must read the same boxes
        if verdict.ul_label_error:
            out.append(Problem("label-ultralytics", lab, f"{lab}: Ultralytics rejects this label file "
                                                         f"({verdict.ul_label_error}); fix the file", split))
        elif verdict.ul_boxes is not None and verdict.ul_boxes != len(scan.boxes):
            out.append(Problem("label-ultralytics", lab, f"{lab}: detal reads {len(scan.boxes)} boxes, Ultralytics "
                                                         f"{verdict.ul_boxes}; please report this file", split))
    return out


def _split_problems(ds: Dataset, split: str, c: SplitCounts) -> list[Problem]:
    if c.usable == 0:
        return [Problem("split-empty", ds.yaml_path, f"{ds.yaml_path}: no usable image in split '{split}' "
                                                     f"({c.images} found, all left out); fix the files listed above",
                        split, subject=split)]
    if c.boxes == 0:
        return [Problem("split-no-boxes", ds.yaml_path,
                        f"{ds.yaml_path}: no box in split '{split}' ({c.unlabelled} of {c.usable} images have no "
                        "label file); put labels in a labels/ folder beside images/ (Ultralytics' rule)", split,
                        subject=split)]
    return [Problem("class-absent", ds.yaml_path, f"{ds.yaml_path}: class {i} '{ds.names[i]}' has no box in "
                                                  f"split '{split}'", split, subject=f"{split}: {ds.names[i]}")
            for i, n in enumerate(c.boxes_per_class) if n == 0]


def usable(ds: Dataset, report: CheckReport) -> Dataset:
    """The dataset minus the excluded images: the pool and val set to run on, so metrics count what is trained on.

    A fatal report raises its first error (one line, file and fix) instead: nothing usable to return.
    """
    if report.fatal:
        more = len(report.errors) - 1
        hint = f" ({more} more error(s): run `detal check -c CONFIG` for the list)" if more else ""
        raise DataError(report.errors[0].message + hint)
    drop = {p for p, _ in report.excluded_train} | {p for p, _ in report.excluded_val}
    return replace(ds, train=tuple(p for p in ds.train if p not in drop), val=tuple(p for p in ds.val if p not in drop))
