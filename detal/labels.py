"""Labels of record: what the annotator returned, in a run-owned YOLO tree that training reads.

`<root>/images/<key>` is a link to the user's image and `<root>/labels/<key>.txt` (Ultralytics' rule:
the last /images/ becomes /labels/) holds the annotator's labels, written atomically. A user's own
label files are never written: a correction made in Label Studio lives here, and the round's box
counts come from it. The key is the image path relative to the dataset root (POSIX), so the same image
has the same key in every run.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from detal.data import label_path, read_labels, write_labels


def image_key(image: Path, dataset_root: Path) -> str:
    """The image's path relative to the dataset root; images outside it get a stable external/ key."""
    image = Path(image).absolute()
    try:
        return image.relative_to(Path(dataset_root).absolute()).as_posix()
    except ValueError:
        digest = hashlib.sha1(str(image.parent).encode()).hexdigest()[:10]
        return f"external/{digest}/{image.name}"


class LabelStore:
    def __init__(self, root: Path, nc: int):
        self.root, self.nc = Path(root).absolute(), nc

    def image(self, key: str) -> Path:
        """The link training reads (its label file is found by Ultralytics' images -> labels rule)."""
        rel = Path(key)
        if "images" not in rel.parts[:-1]:  # keep Ultralytics' rule working for any dataset layout
            rel = Path("images") / rel
        return self.root / rel

    def label_file(self, key: str) -> Path:
        return label_path(self.image(key))

    def put(self, key: str, source: Path, labels: np.ndarray) -> None:
        """Write the labels (atomically), then point the link at the source image."""
        write_labels(self.label_file(key), labels)
        link = self.image(key)
        link.parent.mkdir(parents=True, exist_ok=True)
        target = Path(source).absolute()
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return
        tmp = link.with_name(f".{link.name}.tmp-link")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, link)  # atomic: a crash leaves the old link or the new one

    def get(self, key: str) -> np.ndarray:
        return read_labels(self.label_file(key), self.nc)
