"""The bad-input corpus: generators for every unusual image, label file and data.yaml detal must handle.

Every function writes into a folder the caller owns (a pytest tmp_path) and returns the path it made.
Images are tiny (32x32 unless the case is about size), so the whole corpus builds in well under a second.
The expected behaviour of each case is in docs/bad-input.md and the table at the top of detal/check.py.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import yaml
from PIL import Image

BOX = "0 0.5 0.5 0.25 0.25\n"  # one valid YOLO box line, class 0


def _rgb(w: int = 32, h: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def image(path: Path, w: int = 32, h: int = 32, mode: str = "RGB", fmt: str | None = None, **save) -> Path:
    """A noise image of the given PIL mode ("I;16": a 16-bit ramp); `fmt` defaults to the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        im = Image.fromarray((np.arange(w * h, dtype=np.uint16).reshape(h, w) * 37) % 65535)
    else:
        im = Image.fromarray(_rgb(w, h)).convert(mode)
    im.save(path, format=fmt, **save)
    return path


def jpeg_bytes(w: int = 32, h: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_rgb(w, h)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


# --- images: one function per case --------------------------------------------------------------

def zero_byte(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def not_an_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is a text file with an image suffix\n")
    return path


def truncated_jpeg(path: Path, keep: float = 0.6) -> Path:
    """A JPEG cut mid-scan (a partial download): no end marker, and the scan data runs out."""
    data = jpeg_bytes(64, 64)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def jpeg_missing_eoi(path: Path) -> Path:
    """A complete JPEG whose last two bytes (the end-of-image marker) are missing: decodable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes()[:-2])
    return path


def jpeg_trailing_bytes(path: Path) -> Path:
    """A complete JPEG followed by padding (some cameras and uploaders do this): Ultralytics 'restores' it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(jpeg_bytes() + b"\x00" * 16)
    return path


def truncated_png(path: Path) -> Path:
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, "PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def tiny(path: Path, side: int = 8) -> Path:
    return image(path, side, side)


def exif_rotated(path: Path, w: int = 48, h: int = 32, orientation: int = 6) -> Path:
    """A w x h JPEG whose EXIF says 'rotate 90': viewers and Ultralytics see it h x w."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return image(path, w, h, exif=exif.tobytes())


def exif_rotated_png(path: Path) -> Path:
    return exif_rotated(path.with_suffix(".png"))


def exif_rotated_webp(path: Path) -> Path:
    return exif_rotated(path.with_suffix(".webp"))


def cmyk(path: Path) -> Path:
    return image(path, mode="CMYK", fmt="JPEG")


def png16(path: Path) -> Path:
    return image(path, mode="I;16", fmt="PNG")


def grayscale(path: Path) -> Path:
    return image(path, mode="L")


def alpha(path: Path) -> Path:
    return image(path, mode="RGBA", fmt="PNG")


def palette(path: Path) -> Path:
    return image(path, mode="P", fmt="PNG")


def huge(path: Path, w: int = 4000, h: int = 3000) -> Path:
    """A 4000x3000 PNG of one colour: 12 Mpx, a few kB on disk, quick to write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (90, 120, 150)).save(path, "PNG", compress_level=1)
    return path


def decompression_bomb(path: Path, side: int = 20000) -> Path:
    """A PNG header claiming side x side pixels (400 Mpx, over Pillow's bomb limit); no pixel data needed."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


def gif_named_jpg(path: Path) -> Path:
    return image(path, fmt="GIF")


def png_named_jpg(path: Path) -> Path:
    return image(path, fmt="PNG")


IMAGE_CASES: dict[str, Callable[[Path], Path]] = {
    "zero_byte": zero_byte, "not_an_image": not_an_image, "truncated_jpeg": truncated_jpeg,
    "jpeg_missing_eoi": jpeg_missing_eoi, "jpeg_trailing_bytes": jpeg_trailing_bytes, "truncated_png": truncated_png,
    "tiny_8x8": tiny,
    "exif_rotated": exif_rotated, "exif_rotated_png": exif_rotated_png, "exif_rotated_webp": exif_rotated_webp,
    "cmyk": cmyk, "png16": png16, "grayscale": grayscale, "alpha": alpha,
    "palette": palette, "huge": huge, "decompression_bomb": decompression_bomb, "gif_named_jpg": gif_named_jpg,
    "png_named_jpg": png_named_jpg,
}
IMAGE_SUFFIX = {"cmyk": ".jpg", "exif_rotated": ".jpg", "truncated_jpeg": ".jpg", "jpeg_missing_eoi": ".jpg",
                "jpeg_trailing_bytes": ".jpg", "gif_named_jpg": ".jpg", "png_named_jpg": ".jpg", "zero_byte": ".jpg",
                "not_an_image": ".jpg", "exif_rotated_webp": ".webp"}  # every other case is a .png


# --- labels: text of one label file per case ------------------------------------------------------

LABEL_CASES: dict[str, bytes] = {
    "crlf": b"0 0.5 0.5 0.2 0.2\r\n1 0.25 0.25 0.1 0.1\r\n",
    "bom": "\ufeff0 0.5 0.5 0.2 0.2\n".encode("utf-8"),
    "blank_lines": b"\n0 0.5 0.5 0.2 0.2\n   \n\t\n1 0.25 0.25 0.1 0.1\n\n",
    "non_utf8": "0 0.5 0.5 0.2 0.2\n# caf\xe9\n".encode("latin-1"),
    "extra_column": b"0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2 0.9\n",
    "missing_column": b"0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2\n",
    "nan_width": b"0 0.5 0.5 nan 0.2\n",
    "inf_centre": b"0 inf 0.5 0.2 0.2\n",
    "non_numeric": b"0 0.5 0.5 0.2 abc\n",
    "centre_outside": b"0 1.5 0.5 0.2 0.2\n",
    "size_outside": b"0 0.5 0.5 1.2 0.2\n",
    "negative": b"0 -0.2 0.5 0.2 0.2\n",
    "zero_area": b"0 0.5 0.5 0 0.2\n",
    "class_out_of_range": b"0 0.5 0.5 0.2 0.2\n99 0.5 0.5 0.2 0.2\n",
    "class_negative": b"-1 0.5 0.5 0.2 0.2\n",
    "class_fraction": b"1.5 0.5 0.5 0.2 0.2\n",
    "duplicates": b"0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n0 0.5 0.5 0.2 0.2\n",
    "near_duplicates": b"0 0.5 0.5 0.2 0.2\n0 0.500000001 0.5 0.2 0.2\n",
    "polygon": b"1 0.1 0.1 0.5 0.1 0.5 0.4 0.1 0.4\n",
    "polygon_mixed": b"1 0.1 0.1 0.5 0.1 0.5 0.4 0.1 0.4\n0 0.5 0.5 0.2 0.2\n",
    "empty": b"",
    "class_float_integer": b"1.0 0.5 0.5 0.2 0.2\n",
    "slightly_over_one": b"0 0.5 0.5 1.005 0.2\n",
}


# --- whole datasets ---------------------------------------------------------------------------------

def dataset(root: Path, n_train: int = 3, n_val: int = 2, names=("a", "b", "c"), suffix: str = ".png",
            label: str = BOX, extra: dict | None = None) -> Path:
    """A valid YOLO dataset (images/{train,val}, labels/{train,val}, data.yaml) of 32x32 images."""
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            image(root / "images" / split / f"{split}{i}{suffix}")
            lab = root / "labels" / split / f"{split}{i}.txt"
            lab.parent.mkdir(parents=True, exist_ok=True)
            lab.write_text(label)
    doc = {"path": ".", "train": "images/train", "val": "images/val", "names": list(names)}
    doc.update(extra or {})
    (root / "data.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return root / "data.yaml"


def add_image(root: Path, split: str, name: str, make: Callable[[Path], Path] | None = None,
              label: bytes | str | None = BOX) -> Path:
    """One more image in a split, made by `make` (a valid 32x32 PNG by default), with its label file."""
    img = (make or image)(root / "images" / split / name)
    if label is not None:
        lab = root / "labels" / split / Path(name).with_suffix(".txt")
        lab.parent.mkdir(parents=True, exist_ok=True)
        lab.write_bytes(label.encode() if isinstance(label, str) else label)
    return img


def big_dataset(root: Path, n: int = 2000, boxes: int = 3) -> Path:
    """n small JPEGs (the same bytes) with `boxes` labels each, for timing the checks."""
    data = jpeg_bytes(64, 48)
    lines = "".join(f"{i % 3} {0.2 + 0.2 * i:.2f} 0.5 0.1 0.1\n" for i in range(boxes))
    for split, count in (("train", n - n // 5), ("val", n // 5)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (root / "images" / split / f"{i:05d}.jpg").write_bytes(data)
            (root / "labels" / split / f"{i:05d}.txt").write_text(lines)
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "val": "images/val",
                                                    "names": ["a", "b", "c"]}))
    return root / "data.yaml"
