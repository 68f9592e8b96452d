"""Train a YOLO detector for one round and evaluate it on the fixed val split (overall and per class).

Arguments carry no defaults of their own: the values come from the one Config (`model:` section).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from detal.detector.runtime import offline, quiet as _quiet, resolve_device
from detal.errors import ConfigError
from detal.registry import near_miss

# Keys detal sets itself from its own config; overriding them through train_args would desynchronise the loop.
RESERVED_TRAIN_KEYS = frozenset({
    "model", "data", "epochs", "imgsz", "batch", "device", "seed", "workers", "project", "name", "exist_ok",
    "deterministic", "plots", "val", "mode", "task", "resume", "save_dir", "verbose", "pretrained",
})


def check_train_overrides(extra: dict | None, field: str = "model.train_args") -> dict:
    """Validate Ultralytics train overrides against Ultralytics' own argument list and value checks.

    An unknown or reserved key or a bad value is a ConfigError naming the full key path (`field.key`).
    """
    if not extra:
        return {}
    if not isinstance(extra, dict):
        raise ConfigError(f"{field}: expected a mapping of Ultralytics train settings, got {type(extra).__name__}")
    offline()
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    for key in extra:
        if key in RESERVED_TRAIN_KEYS:
            raise ConfigError(f"{field}.{key}: set by detal from its own config; remove it from {field}")
        if key not in DEFAULT_CFG_DICT:
            near = near_miss(key, DEFAULT_CFG_DICT)
            hint = f"did you mean {near!r}?" if near else "see `yolo cfg` for valid keys"
            raise ConfigError(f"{field}.{key}: not an Ultralytics train setting; {hint}")
    checked = dict(extra)
    try:
        check_cfg(checked, hard=True)  # Ultralytics' own type and range checks
    except (TypeError, ValueError) as exc:
        msg = str(exc).splitlines()[0]
        key = next((k for k in checked if f"'{k}'" in msg), None)
        raise ConfigError(f"{field}{'.' + key if key else ''}: {msg}") from None
    return checked


@dataclass(frozen=True)
class TrainResult:
    weights: Path  # last.pt of this round (warm start of the next round, and scoring)
    epochs: int
    seconds: float


@dataclass(frozen=True)
class EvalResult:
    map50_95: float
    map50: float
    # one row per dataset class: (class_id, instances in val, AP50-95, AP50); AP is NaN without instances
    per_class: tuple[tuple[int, int, float, float], ...] = ()


SAVE_EVERY = 10  # epochs between checkpoints within a round (see _trainer_class)


@lru_cache(maxsize=1)
def _trainer_class():
    """DetectionTrainer without validation: detal evaluates on its fixed val split itself, once per round.

    Stock Ultralytics validates after the final epoch even with val=False, then validates best.pt again
    in final_eval; both would double the per-round cost for numbers we do not use.
    """
    from ultralytics.models.yolo.detect import DetectionTrainer
    from ultralytics.utils import RANK
    from ultralytics.utils.torch_utils import strip_optimizer

    class NoValDetectionTrainer(DetectionTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # Ray is installed (scoring.engine: ray), so Ultralytics registers its Ray Tune callback, which asks
            # for a Tune session after every epoch and warns outside one; detal never trains under Tune
            for hooks in self.callbacks.values():
                hooks[:] = [h for h in hooks if not str(getattr(h, "__module__", "")).endswith("callbacks.raytune")]

        def validate(self):
            return (self.metrics or {}), None  # fitness None: EarlyStopping never fires

        def save_model(self):
            # Stock Ultralytics writes last.pt (and best.pt) after every epoch: ~0.2 s on CPU, a fifth of an
            # epoch on 40 images (134 epochs in a study's first round). detal re-runs an interrupted round from
            # its start, so only the final checkpoint is read; the first and every SAVE_EVERY-th are kept for
            # Ultralytics' NaN recovery, which reloads last.pt. Saving draws no random numbers: the training
            # is the same.
            done = self.epoch + 1
            if done < self.epochs and self.epoch != self.start_epoch and done % SAVE_EVERY:
                return False
            return super().save_model()

        def final_eval(self):
            if RANK in {-1, 0} and self.last.exists():
                strip_optimizer(self.last)  # fp16 EMA weights only, like a released .pt
                self.best.unlink(missing_ok=True)  # without validation "best" is just an unstripped copy of last

    return NoValDetectionTrainer


def _set_cpu_threads(trainer, threads: int) -> None:
    import torch

    if trainer.device.type == "cpu":
        torch.set_num_threads(int(threads))


def _check_weights(model: str) -> None:
    if model.lower().endswith(".pt"):
        if not Path(model).is_file():
            raise ConfigError(f"model: weights file {model} not found; give an existing .pt or an architecture "
                              "like yolov8n.yaml")
        from detal.detector.runtime import check_weights_file

        check_weights_file(Path(model))


def train(
    model: str | Path,
    data_yaml: Path,
    epochs: int,
    out_dir: Path,
    *,
    imgsz: int,
    batch: int,
    device: str,
    seed: int,
    workers: int = 0,
    extra: dict | None = None,
    on_epoch: Callable[[int, int, dict], None] | None = None,
    quiet: bool = True,
    threads: int | None = None,
) -> TrainResult:
    """Train `epochs` epochs on data_yaml into out_dir (a cold start from a .yaml, a warm start from a .pt)."""
    if int(epochs) < 1:
        raise ConfigError(f"epochs must be >= 1, got {epochs}")
    overrides = check_train_overrides(extra)
    model_s = str(model)
    _check_weights(model_s)
    offline()
    from ultralytics import YOLO

    out_dir = Path(out_dir).resolve()
    t0 = time.perf_counter()
    with _quiet(quiet):
        try:
            yolo = YOLO(model_s, task="detect")
        except FileNotFoundError as exc:
            raise ConfigError(f"model: {model_s!r} not found ({str(exc).splitlines()[0]}); "
                              "use e.g. yolov8n.yaml or a .pt path") from None
        if threads is not None:
            # Ultralytics sets torch to cores - 1 threads on CPU (one core left for dataloader workers);
            # with workers=0 that idles a core: on 2 cores, 2 threads train about 1.4x faster.
            yolo.add_callback("on_pretrain_routine_end", lambda trainer: _set_cpu_threads(trainer, threads))
        if on_epoch is not None:
            def _cb(trainer):
                # label_loss_items -> {"train/box_loss": mean over the epoch, ...} (tensor or dict tloss alike)
                items = trainer.label_loss_items(trainer.tloss) if trainer.tloss is not None else {}
                parts = {str(k).split("/")[-1]: float(v) for k, v in items.items()}
                stats = {"loss": round(sum(parts.values()), 5), **parts}
                on_epoch(trainer.epoch + 1, trainer.epochs, stats)

            yolo.add_callback("on_train_epoch_end", _cb)
        args = dict(
            data=str(Path(data_yaml).resolve()), epochs=int(epochs), imgsz=int(imgsz), batch=int(batch),
            device=resolve_device(device), seed=int(seed), deterministic=True, workers=int(workers),
            project=str(out_dir.parent), name=out_dir.name, exist_ok=True, plots=False, val=False,
            verbose=not quiet,
        )
        args.update(overrides)
        yolo.train(trainer=_trainer_class(), **args)
        trainer = yolo.trainer
    last = Path(trainer.last)
    if not last.is_file():
        raise RuntimeError(f"training finished without writing {last}")
    # several GPUs (device 0,1): Ultralytics trains in DDP worker processes, and this parent trainer never runs
    # an epoch (it has no .epoch); the workers ran them all (validate's fitness None: no early stop)
    done = int(trainer.epoch) + 1 if hasattr(trainer, "epoch") else int(epochs)
    return TrainResult(weights=last, epochs=done, seconds=time.perf_counter() - t0)


def evaluate(
    weights: Path,
    data_yaml: Path,
    *,
    imgsz: int,
    batch: int,
    device: str,
    split: str = "val",
    quiet: bool = True,
    workers: int = 0,
) -> EvalResult:
    """mAP50-95, mAP50 and per-class AP of the weights on one split (Ultralytics' val: conf 0.001, iou 0.7)."""
    import tempfile

    if not Path(weights).is_file():
        raise ConfigError(f"weights file {weights} not found")
    offline()
    from ultralytics import YOLO

    with _quiet(quiet), tempfile.TemporaryDirectory(prefix="detal-val-") as tmp:
        metrics = YOLO(str(weights), task="detect").val(
            data=str(Path(data_yaml).resolve()), imgsz=int(imgsz), batch=int(batch), device=resolve_device(device),
            split=split, plots=False, verbose=not quiet, save_json=False, project=tmp, name="val", exist_ok=True,
            workers=int(workers),
        )
    box = metrics.box
    nt = getattr(metrics, "nt_per_class", None)
    nc = len(metrics.names)
    nt = np.zeros(nc, np.int64) if nt is None else np.asarray(nt, np.int64)
    ap = {int(c): box.all_ap[i] for i, c in enumerate(box.ap_class_index)}  # only classes present in val
    per_class = tuple(
        (c, int(nt[c]) if c < len(nt) else 0,
         float(np.mean(ap[c])) if c in ap else float("nan"), float(ap[c][0]) if c in ap else float("nan"))
        for c in range(nc))
    return EvalResult(float(box.map), float(box.map50), per_class)
