"""A fake detector backend (detal.detector.Backend), for fast unit tests of the round and the drivers.

It trains nothing: weights are a JSON file recording the labelled images, mAP grows with the labelled
count, and predictions are derived from a hash of (weights, image) so they are deterministic. The real
backend is tested for real in tests/test_detector.py and the integration test.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detal.data import list_images
from detal.types import Prediction

NC = 6
calls = {"train": 0, "scored": 0}


def resolve_device(device: str) -> str:
    return "cpu"


@dataclass(frozen=True)
class TrainResult:
    weights: Path
    epochs: int
    seconds: float


def train(model, data_yaml, epochs, out_dir, **kw):
    import yaml

    calls["train"] += 1
    doc = yaml.safe_load(Path(data_yaml).read_text())
    n = len(list_images(Path(doc["train"])))
    out = Path(out_dir) / "weights" / "last.pt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"n": n, "from": Path(str(model)).name}))
    if kw.get("on_epoch"):
        for e in range(1, epochs + 1):
            kw["on_epoch"](e, epochs, {"loss": 1.0 / e})
    return TrainResult(out, epochs, 0.01)


def evaluate(weights, data_yaml, **kw):
    from detal.detector.train import EvalResult

    n = json.loads(Path(weights).read_text())["n"]
    per_class = tuple((c, 10, n / (n + 50 + 10 * c), n / (n + 25 + 10 * c)) for c in range(NC))
    return EvalResult(n / (n + 50), n / (n + 25), per_class)


class Scorer:
    def __init__(self, weights, **kw):
        self.key = Path(weights).read_text()
        self.features = kw.get("features", True)
        self.flip = kw.get("flip", False)
        self.names = tuple(f"c{i}" for i in range(NC))

    def iter_predictions(self, images):
        for p in images:
            calls["scored"] += 1
            h = int(hashlib.sha256((self.key + str(Path(p).name)).encode()).hexdigest()[:8], 16)
            rng = np.random.default_rng(h)
            n = int(rng.integers(0, 4))
            probs = rng.random((n, NC)).astype(np.float32)
            boxes = np.tile(np.array([[10, 10, 50, 50]], np.float32), (n, 1))
            pred = Prediction(Path(p), 160, 160, boxes, probs.max(1) if n else np.zeros(0, np.float32),
                              probs.argmax(1) if n else np.zeros(0, np.int64), probs,
                              rng.random(8).astype(np.float32) if self.features else None)
            if self.flip:  # drawn last: the other values do not depend on it
                pred.flip = rng.random(n)
            yield pred

    def predict(self, images):
        return list(self.iter_predictions(images))

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
