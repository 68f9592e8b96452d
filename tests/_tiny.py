"""Reusable tiny YOLO dataset + trained weights for tests (helpers, not fixtures: conftest.py is the lead's).

Usage in a test module:

    @pytest.fixture(scope="session")
    def tiny(tmp_path_factory):
        return tiny_trained(tmp_path_factory.mktemp("tiny"))

tiny_trained caches per directory, so several modules can share one training if they pass the same dir.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLOURS = ((40, 40, 220), (40, 200, 40), (220, 60, 40))  # BGR: red, green, blue rectangles = classes 0, 1, 2
NAMES = ("red", "green", "blue")


@dataclass(frozen=True)
class TinyData:
    root: Path
    data_yaml: Path
    train: tuple[Path, ...]
    val: tuple[Path, ...]
    names: tuple[str, ...] = NAMES


@dataclass(frozen=True)
class TinyModel:
    data: TinyData
    weights: Path


def make_tiny_dataset(root: Path, n_train: int = 24, n_val: int = 8, seed: int = 0,
                      sizes: tuple[int, ...] = (64, 80, 96)) -> TinyData:
    """Coloured rectangles on plain grey-ish backgrounds, 1-3 objects per image, sizes from `sizes`."""
    import cv2

    from detal.data import write_labels, write_split_yaml

    rng = np.random.default_rng(seed)
    root = Path(root)
    paths = {"train": [], "val": []}
    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            w, h = int(rng.choice(sizes)), int(rng.choice(sizes))
            img = np.full((h, w, 3), int(rng.integers(90, 170)), np.uint8)
            labels = []
            for _ in range(int(rng.integers(1, 4))):
                c = int(rng.integers(0, len(COLOURS)))
                bw, bh = int(rng.integers(w // 5, w // 2)), int(rng.integers(h // 5, h // 2))
                x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                cv2.rectangle(img, (x0, y0), (x0 + bw - 1, y0 + bh - 1), COLOURS[c], thickness=-1)
                labels.append([c, (x0 + bw / 2) / w, (y0 + bh / 2) / h, bw / w, bh / h])
            p = root / "images" / split / f"{split}_{i:03d}.png"
            cv2.imwrite(str(p), img)
            write_labels(root / "labels" / split / f"{split}_{i:03d}.txt", np.asarray(labels, np.float64))
            paths[split].append(p)
    data_yaml = write_split_yaml(root / "data.yaml", paths["train"], paths["val"], NAMES)
    return TinyData(root, data_yaml, tuple(paths["train"]), tuple(paths["val"]))


_CACHE: dict[Path, TinyModel] = {}


def tiny_trained(root: Path, epochs: int = 2, imgsz: int = 64, seed: int = 0) -> TinyModel:
    """make_tiny_dataset + a yolov8n trained from scratch for a couple of epochs (about 10 s on 2 cores)."""
    from detal.detector import train

    root = Path(root).resolve()
    if root not in _CACHE:
        data = make_tiny_dataset(root / "data")
        res = train("yolov8n.yaml", data.data_yaml, epochs, root / "run", imgsz=imgsz, batch=8, seed=seed, device="cpu")
        _CACHE[root] = TinyModel(data, res.weights)
    return _CACHE[root]
