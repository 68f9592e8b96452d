"""Score images with the FULL class-score vector of every box kept by NMS (forward + NMS + class vectors).

Scoring threshold: the caller passes `conf` (config `scoring.conf`, 0.1 by default). Boxes whose top
class score lies between it and the usual pre-label threshold (0.25) are exactly the hesitant detections
uncertainty sampling is after, so scoring needs a threshold below 0.25. 0.001 (the mAP setting) instead
keeps up to max_det background boxes per image: their class vectors are all near zero, so once normalised
they look nearly uniform, i.e. maximally "uncertain", and would swamp `sum`/`mean` reductions (and cost
NMS time). One pass at min(scoring, pre-label) threshold serves both: pre-labels are its boxes above
`prelabel.conf` (see detal.scoring.prelabels).
Decoding and letterboxing live in detal.detector.batches (no torch).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from detal.detector.batches import Batch, load_batch, prefetched
from detal.detector.runtime import check_weights_file, offline, quiet, resolve_device
from detal.errors import ConfigError
from detal.types import Prediction

log = logging.getLogger("detal")


def _empty(path: Path, nc: int, error: str | None, width: int = 0, height: int = 0) -> Prediction:
    return Prediction(
        path=path, width=width, height=height, boxes=np.zeros((0, 4), np.float32), conf=np.zeros(0, np.float32),
        cls=np.zeros(0, np.int64), probs=np.zeros((0, nc), np.float32), feature=None, error=error,
    )


class Scorer:
    """Streams Predictions with the FULL class-score vector of every kept box (see detal/acquisition/uncertainty.py).

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
        imgsz: int,
        device: str,
        batch: int,
        conf: float,
        iou: float,
        workers: int,
        features: bool = False,
        max_det: int = 300,
        half: bool | None = None,
        flip: bool = False,
    ):
        for name, val, lo, hi in (("conf", conf, 0.0, 1.0), ("iou", iou, 0.0, 1.0)):
            if not lo <= float(val) <= hi:
                raise ConfigError(f"scorer {name}={val} must be in [{lo}, {hi}]")
        for name, val in (("batch", batch), ("imgsz", imgsz), ("max_det", max_det), ("workers", workers)):
            if int(val) < (0 if name == "workers" else 1):
                raise ConfigError(f"scorer {name}={val} must be a positive integer")
        check_weights_file(weights)
        offline()
        import torch
        import torchvision  # noqa: F401 - present in sys.modules, Ultralytics' NMS uses its C++ kernel (same boxes)
        from ultralytics.nn.autobackend import AutoBackend
        from ultralytics.utils.checks import check_imgsz
        from ultralytics.utils.torch_utils import select_device

        self._torch = torch
        self.device = select_device(resolve_device(device), verbose=False)
        fp16 = self.device.type == "cuda" if half is None else bool(half) and self.device.type == "cuda"
        with quiet(True):
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
        self.flip = bool(flip)  # also predict the mirrored image: Prediction.flip (measure `flip`)
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

    def _infer(self, b: Batch) -> list[Prediction]:
        torch = self._torch
        from ultralytics.utils import ops

        try:
            from ultralytics.utils.nms import non_max_suppression
        except ImportError:  # ultralytics < 8.3.1xx kept NMS in ops
            from ultralytics.utils.ops import non_max_suppression

        out: list[Prediction] = []
        if b.pixels is None:
            dets = keeps = cls = feats = fdets = fkeeps = fcls = None
        else:
            with torch.inference_mode():
                x = torch.from_numpy(b.pixels).to(self.device).permute(0, 3, 1, 2)
                x = (x.half() if self.fp16 else x.float()).div_(255)
                self._feat = None
                dets, keeps, cls = self._forward(x, non_max_suppression)
                feats = self._feat.cpu().numpy().astype(np.float32) if self._feat is not None else None
                # the letterbox pads left and right alike (within 1 px), so mirroring the network input is
                # mirroring the image; boxes are mirrored back in input coordinates, then scaled like the rest
                fdets, fkeeps, fcls = self._forward(x.flip(3), non_max_suppression) if self.flip else (None,) * 3
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
            if fdets is not None:
                pred.flip = self._flip_scores(pred, fdets[k].float(), fkeeps[k], fcls[k], in_hw, (h, w))
            if feats is not None:
                pred.feature = feats[k]
            out.append(pred)
            k += 1
        return out

    def _forward(self, x, nms):
        """Raw head output -> (per-image detections, kept anchor indices, class scores of every anchor)."""
        raw = self._model(x)
        raw = raw[0] if isinstance(raw, (list, tuple)) else raw
        nc = raw.shape[1] - 4
        cls = raw[:, 4 : 4 + nc].clone()  # NMS may rewrite the prediction tensor in place
        dets, keeps = nms(raw, self.conf, self.iou, None, False, max_det=self.max_det, nc=0, return_idxs=True)
        return dets, keeps, cls

    @staticmethod
    def _flip_scores(pred: Prediction, det, keep, cls, in_hw, hw) -> np.ndarray:
        from ultralytics.utils import ops

        from detal.acquisition.uncertainty import flip_inconsistency

        boxes = det[:, :4].clone()
        boxes[:, [0, 2]] = in_hw[1] - det[:, [2, 0]]  # mirror x back, in network-input pixels
        boxes = ops.scale_boxes(in_hw, boxes, hw).float().cpu().numpy()
        probs = cls[:, keep.long().view(-1)].T.float().cpu().numpy() if det.shape[0] else np.zeros((0, pred.probs.shape[1]))
        return flip_inconsistency(pred.boxes, pred.probs, boxes, probs)

    def iter_predictions(self, images: Iterable[Path | str]) -> Iterator[Prediction]:
        """Predictions in input order; decoding of the next batches overlaps inference of the current one."""
        load = partial(load_batch, imgsz=self.imgsz, stride=self.stride)
        for b in prefetched(images, self.batch, load, self.workers):
            yield from self._infer(b)

    def predict(self, images: Iterable[Path | str]) -> list[Prediction]:
        return list(self.iter_predictions(images))

    def close(self) -> None:
        """Remove the feature hook and drop the model (frees its memory before the next round trains)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._model = None

    def __enter__(self) -> "Scorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
