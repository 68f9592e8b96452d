"""The only module that imports ultralytics/torch: train, evaluate, and score images with full class vectors.

Heavy imports happen inside the functions so `import detal.detector` stays cheap. Every entry point sets
YOLO_OFFLINE=1 before importing ultralytics (it reads the variable once, at import): nothing waits on
the network, no weights or fonts are fetched.

Scoring threshold: `Scorer(conf=DEFAULT_SCORE_CONF)` = 0.1. Boxes whose top class score lies between 0.1
and the usual pre-label threshold (0.25) are exactly the hesitant detections uncertainty sampling is
after, so scoring needs a threshold below 0.25. 0.001 (the mAP setting) instead keeps up to max_det
background boxes per image: their class vectors are all near zero, so once normalised they look nearly
uniform, i.e. maximally "uncertain", and would swamp `sum`/`mean` reductions (and cost NMS time).
Pre-labels use their own threshold (the caller passes e.g. Scorer(conf=0.25)).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from detal.errors import ConfigError
from detal.registry import near_miss
from detal.types import Prediction

log = logging.getLogger("detal")

DEFAULT_SCORE_CONF = 0.1
_DEVICE_RE = re.compile(r"^(cpu|mps|cuda|cuda:\d+|\d+(,\d+)*)$")
# Keys detal sets itself from its own config; overriding them through `extra` would desynchronise the loop.
_RESERVED = frozenset({
    "model", "data", "epochs", "imgsz", "batch", "device", "seed", "workers", "project", "name", "exist_ok",
    "deterministic", "plots", "val", "mode", "task", "resume", "save_dir", "verbose", "pretrained",
})


def _offline() -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")


def resolve_device(device: str) -> str:
    """'auto' -> '0' (first CUDA GPU) when CUDA is available, else 'cpu'; explicit devices are validated."""
    dev = str(device).strip().lower().replace(" ", "")
    if dev == "auto":
        import torch

        return "0" if torch.cuda.is_available() else "cpu"
    if not _DEVICE_RE.match(dev):
        raise ConfigError(f"device {device!r} is not valid; use auto, cpu, mps, 0, 0,1 or cuda:0")
    if dev not in {"cpu", "mps"}:
        import torch

        ids = [int(x) for x in (dev.split(":")[1] if ":" in dev else "0" if dev == "cuda" else dev).split(",")]
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if max(ids) >= n:
            raise ConfigError(f"device {device!r} requested but this machine has {n} CUDA GPU(s); use device: auto or cpu")
    elif dev == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise ConfigError("device 'mps' requested but Apple MPS is not available here; use device: auto or cpu")
    return dev


@contextlib.contextmanager
def _quiet(quiet: bool):
    """Silence Ultralytics' info output (and its progress bars, which follow the logger level); keep warnings."""
    from ultralytics.utils import LOGGER

    old = LOGGER.level
    if quiet:
        LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(old)


def check_train_overrides(extra: dict | None, field: str = "extra") -> dict:
    """Validate user Ultralytics train overrides: an unknown or reserved key or a bad value is a ConfigError."""
    if not extra:
        return {}
    if not isinstance(extra, dict):
        raise ConfigError(f"{field}: expected a mapping of Ultralytics train settings, got {type(extra).__name__}")
    _offline()
    from ultralytics.cfg import DEFAULT_CFG_DICT, check_cfg

    for key in extra:
        if key in _RESERVED:
            raise ConfigError(f"{field}.{key}: set by detal from its own config; remove it from {field}")
        if key not in DEFAULT_CFG_DICT:
            near = near_miss(key, DEFAULT_CFG_DICT)
            hint = f"did you mean {near!r}?" if near else "see `yolo cfg` for valid keys"
            raise ConfigError(f"{field}.{key}: not an Ultralytics train setting; {hint}")
    checked = dict(extra)
    try:
        check_cfg(checked, hard=True)  # type/range checks; converts e.g. int -> float for float keys
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{field}: {str(exc).splitlines()[0]}") from None
    return checked


@dataclass(frozen=True)
class TrainResult:
    weights: Path  # last.pt of this round (warm start of the next round, and scoring)
    epochs: int
    seconds: float


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
        def validate(self):
            return (self.metrics or {}), None  # fitness None: EarlyStopping never fires

        def final_eval(self):
            if RANK in {-1, 0} and self.last.exists():
                strip_optimizer(self.last)  # fp16 EMA weights only, like a released .pt
                self.best.unlink(missing_ok=True)  # without validation "best" is just an unstripped copy of last

    return NoValDetectionTrainer


def _set_cpu_threads(trainer, threads: int) -> None:
    import torch

    if trainer.device.type == "cpu":
        torch.set_num_threads(int(threads))


def train(
    model: str | Path,
    data_yaml: Path,
    epochs: int,
    out_dir: Path,
    *,
    imgsz: int = 160,
    batch: int = 16,
    device: str = "cpu",
    seed: int = 0,
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
    if model_s.lower().endswith(".pt") and not Path(model_s).is_file():
        raise ConfigError(f"model: weights file {model_s} not found; give an existing .pt or an architecture like yolov8n.yaml")
    _offline()
    from ultralytics import YOLO

    out_dir = Path(out_dir).resolve()
    t0 = time.perf_counter()
    with _quiet(quiet):
        try:
            yolo = YOLO(model_s, task="detect")
        except FileNotFoundError as exc:
            raise ConfigError(f"model: {model_s!r} not found ({str(exc).splitlines()[0]}); use e.g. yolov8n.yaml or a .pt path") from None
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
    return TrainResult(weights=last, epochs=int(trainer.epoch) + 1, seconds=time.perf_counter() - t0)


def evaluate(
    weights: Path,
    data_yaml: Path,
    *,
    imgsz: int = 160,
    batch: int = 32,
    device: str = "cpu",
    split: str = "val",
    quiet: bool = True,
    workers: int = 0,
) -> dict[str, float]:
    """{'map50_95', 'map50'} of the weights on one split of data_yaml (Ultralytics' val: conf 0.001, iou 0.7)."""
    if not Path(weights).is_file():
        raise ConfigError(f"weights file {weights} not found")
    _offline()
    from ultralytics import YOLO

    with _quiet(quiet), tempfile.TemporaryDirectory(prefix="detal-val-") as tmp:
        metrics = YOLO(str(weights), task="detect").val(
            data=str(Path(data_yaml).resolve()), imgsz=int(imgsz), batch=int(batch), device=resolve_device(device),
            split=split, plots=False, verbose=not quiet, save_json=False, project=tmp, name="val", exist_ok=True,
            workers=int(workers),
        )
    return {"map50_95": float(metrics.box.map), "map50": float(metrics.box.map50)}


def _empty(path: Path, nc: int, error: str | None, width: int = 0, height: int = 0) -> Prediction:
    return Prediction(
        path=path, width=width, height=height, boxes=np.zeros((0, 4), np.float32), conf=np.zeros(0, np.float32),
        cls=np.zeros(0, np.int64), probs=np.zeros((0, nc), np.float32), feature=None, error=error,
    )


@dataclass
class _Batch:
    paths: list[Path]
    shapes: list[tuple[int, int] | None]  # (h, w) of each input, None when it could not be read
    errors: list[str | None]
    tensor: np.ndarray | None  # (k, H, W, 3) uint8 RGB, k = readable images


class Scorer:
    """Streams Predictions with the FULL class-score vector of every kept box (see docs/uncertainty.md).

    Preprocessing copies Ultralytics' predictor (imread, LetterBox with auto=True when every image of the
    batch has the same shape, BGR->RGB, /255, fused model through AutoBackend) so that for the same weights,
    imgsz, batch, conf and iou the kept boxes are those of `YOLO(weights).predict` (tests/test_detector.py).
    Two known departures: `half=None` means fp16 on CUDA (predict runs fp32 unless quantize=16; pass
    half=False to match it there), and an unreadable image leaves a short batch here, where predict refills
    it with the next file (batch companions only matter through the shared letterbox shape).
    Like predict, construction goes through Ultralytics' select_device, which sets torch's global thread
    count to cpu_count - 1 on CPU; decoding threads use the remaining core.
    """

    def __init__(
        self,
        weights: Path | str,
        *,
        imgsz: int = 160,
        device: str = "cpu",
        batch: int = 32,
        conf: float = DEFAULT_SCORE_CONF,
        iou: float = 0.7,
        max_det: int = 300,
        workers: int = 2,
        features: bool = True,
        half: bool | None = None,
    ):
        for name, val, lo, hi in (("conf", conf, 0.0, 1.0), ("iou", iou, 0.0, 1.0)):
            if not lo <= float(val) <= hi:
                raise ConfigError(f"scorer {name}={val} must be in [{lo}, {hi}]")
        for name, val in (("batch", batch), ("imgsz", imgsz), ("max_det", max_det), ("workers", workers)):
            if int(val) < (0 if name == "workers" else 1):
                raise ConfigError(f"scorer {name}={val} must be a positive integer")
        if not Path(weights).is_file():
            raise ConfigError(f"weights file {weights} not found; train a round first or give an existing .pt")
        _offline()
        import torch
        import torchvision  # noqa: F401 - present in sys.modules, Ultralytics' NMS uses its C++ kernel (same boxes)
        from ultralytics.nn.autobackend import AutoBackend
        from ultralytics.utils.checks import check_imgsz
        from ultralytics.utils.torch_utils import select_device

        self._torch = torch
        self.device = select_device(resolve_device(device), verbose=False)
        fp16 = self.device.type == "cuda" if half is None else bool(half) and self.device.type == "cuda"
        with _quiet(True):
            # end2end=False as in the predictor (nms unset): NMS-free heads (YOLO26) then run their one-to-many
            # branch, which has per-class scores, followed by the same external NMS.
            self._model = AutoBackend(model=str(weights), device=self.device, fp16=fp16, fuse=True, verbose=False,
                                      end2end=False)
        self._model.eval()
        if getattr(self._model, "end2end", False):
            raise ConfigError(
                f"{weights}: end-to-end head (YOLOv10/YOLO26) outputs only the top class per box; "
                "use a YOLOv8, YOLOv5u or YOLO11 model for per-class scores"
            )
        self.fp16 = fp16
        self.stride = int(self._model.stride)
        self.imgsz = tuple(check_imgsz(int(imgsz), stride=self.stride, min_dim=2))
        self.batch, self.conf, self.iou, self.max_det = int(batch), float(conf), float(iou), int(max_det)
        self.workers = int(workers)
        names = self._model.names
        self._names = tuple(str(names[i]) for i in sorted(names)) if isinstance(names, dict) else tuple(map(str, names))
        self._feat = None
        self._hook = None
        if features:
            layer = self._feature_layer(self._model.model)
            if layer is not None:
                self._hook = layer.register_forward_hook(self._store_feature)
            else:
                log.warning("%s: no backbone layer found in the model yaml; predictions carry no feature", weights)

    @staticmethod
    def _feature_layer(net):
        """Last backbone layer (SPPF on YOLOv8/v5u/11), from the model yaml; None if it cannot be found."""
        layers = getattr(net, "model", None)
        backbone = (getattr(net, "yaml", None) or {}).get("backbone")
        if layers is None or not backbone or len(backbone) > len(layers):
            return None
        return layers[len(backbone) - 1]

    def _store_feature(self, module, inputs, output):
        out = output[0] if isinstance(output, (list, tuple)) else output
        self._feat = out.float().mean(dim=(2, 3))

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def nc(self) -> int:
        return len(self._names)

    def _load(self, paths: list[Path]) -> _Batch:
        """Decode and letterbox one batch (runs in a worker thread; cv2 releases the GIL)."""
        from ultralytics.data.augment import LetterBox
        from ultralytics.utils.patches import imread

        ims, shapes, errors = [], [], []
        for p in paths:
            im, err = None, None
            try:
                im = imread(p)  # None for a missing, empty or undecodable file
            except Exception as exc:  # noqa: BLE001 - cv2.error, PIL errors...: one bad file must not stop the run
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                err = f"cannot decode image ({type(exc).__name__}: {first})"
            if im is None and err is None:
                err = "cannot decode image (corrupt, empty or unsupported file)"
            if im is not None and (im.ndim != 3 or im.shape[0] < 1 or im.shape[1] < 1):
                im, err = None, f"unexpected image shape {getattr(im, 'shape', None)}"
            if im is not None and im.shape[2] != 3:
                im = im[..., :3] if im.shape[2] > 3 else np.repeat(im[..., :1], 3, axis=2)
            ims.append(im)
            errors.append(err)
            shapes.append(None if im is None else im.shape[:2])
        ok = [im for im in ims if im is not None]
        if not ok:
            return _Batch(paths, shapes, errors, None)
        # Ultralytics' predictor rule: minimum-rectangle letterbox only when the batch shares one shape.
        same = len({im.shape for im in ok}) == 1
        lb = LetterBox(self.imgsz, auto=same, stride=self.stride)
        arr = np.stack([lb(image=im) for im in ok])  # (k, H, W, 3) BGR
        # RGB, kept NHWC: permuted to NCHW on the device it is channels_last, the layout AutoBackend gives the
        # model on x86 CPUs, so the first conv needs no reorder; values are those of the predictor's tensor.
        return _Batch(paths, shapes, errors, np.ascontiguousarray(arr[..., ::-1]))

    def _infer(self, b: _Batch) -> list[Prediction]:
        torch = self._torch
        from ultralytics.utils import ops

        try:
            from ultralytics.utils.nms import non_max_suppression
        except ImportError:  # ultralytics < 8.3.1xx kept NMS in ops
            from ultralytics.utils.ops import non_max_suppression

        out: list[Prediction] = []
        if b.tensor is None:
            dets = keeps = cls = feats = None
        else:
            with torch.inference_mode():
                x = torch.from_numpy(b.tensor).to(self.device).permute(0, 3, 1, 2)
                x = (x.half() if self.fp16 else x.float()).div_(255)
                self._feat = None
                raw = self._model(x)
                raw = raw[0] if isinstance(raw, (list, tuple)) else raw
                nc = raw.shape[1] - 4
                cls = raw[:, 4 : 4 + nc].clone()  # NMS may rewrite the prediction tensor in place
                dets, keeps = non_max_suppression(
                    raw, self.conf, self.iou, None, False, max_det=self.max_det, nc=0, return_idxs=True
                )
                feats = self._feat.cpu().numpy().astype(np.float32) if self._feat is not None else None
                in_hw = x.shape[2:]
        k = 0
        for path, shape, err in zip(b.paths, b.shapes, b.errors):
            if err is not None:
                log.warning("%s: %s; skipped", path, err)
                out.append(_empty(path, self.nc, err))
                continue
            h, w = shape
            det, keep = dets[k].float(), keeps[k]  # float: fp16 boxes are off by ~0.5 px beyond 1000 px
            if det.shape[0]:
                probs = cls[k][:, keep.long().view(-1)].T.float()
                boxes = ops.scale_boxes(in_hw, det[:, :4].clone(), (h, w))
                pred = Prediction(
                    path=path, width=w, height=h, boxes=boxes.float().cpu().numpy(),
                    conf=det[:, 4].float().cpu().numpy(), cls=det[:, 5].long().cpu().numpy(),
                    probs=probs.cpu().numpy(), feature=None,
                )
            else:
                pred = _empty(path, self.nc, None, w, h)
            if feats is not None:
                pred.feature = feats[k]
            out.append(pred)
            k += 1
        return out

    def iter_predictions(self, images: Iterable[Path | str]) -> Iterator[Prediction]:
        """Predictions in input order; decoding of the next batches overlaps inference of the current one.

        Memory is bounded: at most workers + 1 decoded batches wait at any time, whatever the input length.
        """
        it = iter(images)
        chunks = iter(lambda: [Path(p) for p in itertools.islice(it, self.batch)], [])
        if self.workers == 0:
            for chunk in chunks:
                yield from self._infer(self._load(chunk))
            return
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="detal-decode")
        pending: deque = deque()
        try:
            for chunk in itertools.islice(chunks, self.workers + 1):
                pending.append(pool.submit(self._load, chunk))
            while pending:
                b = pending.popleft().result()
                nxt = next(chunks, None)
                if nxt:
                    pending.append(pool.submit(self._load, nxt))
                yield from self._infer(b)
        finally:
            for f in pending:
                f.cancel()
            pool.shutdown(wait=True)

    def predict(self, images: Iterable[Path | str]) -> list[Prediction]:
        return list(self.iter_predictions(images))

    def close(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
