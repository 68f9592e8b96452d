"""The only Ultralytics/torch boundary: train, evaluate, and score images with full class vectors.

- `runtime`: offline mode, device names, a quiet logger (shared by the others);
- `train`: one round of training and the evaluation on the fixed val split (overall and per class);
- `batches`: decode + letterbox + prefetch (no torch);
- `scorer`: forward + NMS + the full class-score vector of every kept box (+ pooled features).

Heavy imports happen inside functions, so `import detal.detector` stays cheap. The round talks to a
`Backend`: this package, or a fake with the same four names in fast unit tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol

from detal.detector.runtime import check_weights_file, resolve_device
from detal.detector.scorer import Scorer
from detal.detector.train import EvalResult, TrainResult, check_train_overrides, evaluate, train
from detal.types import Prediction

__all__ = ["Backend", "EvalResult", "Scorer", "TrainResult", "check_train_overrides", "check_weights_file",
           "evaluate", "resolve_device", "train"]


class ScorerLike(Protocol):
    names: tuple[str, ...]

    def iter_predictions(self, images: Iterable[Path]) -> Iterator[Prediction]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """What the round needs from a detector: detal.detector itself, or tests.fake_backend."""

    def resolve_device(self, device: str) -> str: ...

    def train(self, model: str | Path, data_yaml: Path, epochs: int, out_dir: Path, *, imgsz: int, batch: int,
              device: str, seed: int, workers: int = 0, extra: dict | None = None,
              on_epoch: Callable[[int, int, dict], None] | None = None, quiet: bool = True,
              threads: int | None = None) -> TrainResult: ...

    def evaluate(self, weights: Path, data_yaml: Path, *, imgsz: int, batch: int, device: str) -> EvalResult: ...

    def Scorer(self, weights: Path, *, imgsz: int, device: str, batch: int, conf: float, iou: float, workers: int,
               features: bool = False, flip: bool = False) -> ScorerLike: ...
