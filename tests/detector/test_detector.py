"""Real (tiny) tests of detal.detector: one yolov8n trained for 2 epochs at 64 px is shared by the module."""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pytest

from detal.config import ScoringConfig
from detal.detector import EvalResult, TrainResult, check_train_overrides, evaluate, resolve_device
from detal.detector import Scorer as _Scorer
from detal.detector import train as _train

_SC = ScoringConfig()


def Scorer(weights, **kw):  # noqa: N802 - the detector's Scorer with the config's values for what a test leaves out
    args = dict(imgsz=IMGSZ, device="cpu", batch=_SC.batch, conf=_SC.conf, iou=_SC.iou, workers=_SC.workers,
                features=True)
    return _Scorer(weights, **{**args, **kw})


def train(model, data_yaml, epochs, out_dir, **kw):
    return _train(model, data_yaml, epochs, out_dir, **{"imgsz": IMGSZ, "batch": 8, "device": "cpu", "seed": 0, **kw})
from detal.errors import ConfigError
from tests._tiny import tiny_trained

os.environ.setdefault("YOLO_OFFLINE", "1")
IMGSZ = 64


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return tiny_trained(tmp_path_factory.mktemp("tiny_detector"), epochs=2, imgsz=IMGSZ)


def _sorted(boxes, conf, cls):
    rows = np.column_stack([boxes, conf, cls]).astype(np.float64)
    return rows[np.lexsort(rows.T[::-1])]


# --- devices and config -------------------------------------------------------------------------------------

def test_resolve_device():
    import torch

    assert resolve_device("auto") == ("0" if torch.cuda.is_available() else "cpu")
    assert resolve_device("CPU") == "cpu"
    for bad in ("gpu", "cuda:x", "0;1", ""):
        with pytest.raises(ConfigError, match="device"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            resolve_device("0")


def test_train_overrides_validated():
    assert check_train_overrides({"lr0": 0.02, "mosaic": 0.0}) == {"lr0": 0.02, "mosaic": 0.0}
    with pytest.raises(ConfigError, match=r"model\.train_args\.lr_0: .*did you mean 'lr0'"):
        check_train_overrides({"lr_0": 0.02})
    with pytest.raises(ConfigError, match=r"model\.train_args\.epochs: set by detal"):
        check_train_overrides({"epochs": 3})
    with pytest.raises(ConfigError, match="mosaic"):
        check_train_overrides({"mosaic": "lots"})
    msg = None
    try:
        check_train_overrides({"warmup_epoch": 1})
    except ConfigError as exc:
        msg = str(exc)
    assert msg is not None and "\n" not in msg and "warmup_epochs" in msg


def test_train_rejects_unknown_extra_before_training(tmp_path):
    with pytest.raises(ConfigError, match="lr_0"):
        train("yolov8n.yaml", tmp_path / "missing.yaml", 1, tmp_path / "run", extra={"lr_0": 0.1})
    assert not (tmp_path / "run").exists()


def test_missing_weights_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        Scorer(tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="not found"):
        train(tmp_path / "nope.pt", tmp_path / "data.yaml", 1, tmp_path / "run")


# --- training and evaluation ---------------------------------------------------------------------------------

def test_train_and_evaluate(tiny):
    assert tiny.weights.is_file() and tiny.weights.name == "last.pt"
    assert not (tiny.weights.parent / "best.pt").exists()
    ev = evaluate(tiny.weights, tiny.data.data_yaml, imgsz=IMGSZ, batch=8, device="cpu")
    assert isinstance(ev, EvalResult)
    for v in (ev.map50_95, ev.map50):
        assert math.isfinite(v) and 0.0 <= v <= 1.0
    assert ev.map50_95 <= ev.map50 + 1e-9
    # one row per class: instances as in the val labels, AP where the class is present
    from detal.data import label_path, read_labels

    truth = np.concatenate([read_labels(label_path(p), 3) for p in tiny.data.val])
    assert [c for c, *_ in ev.per_class] == [0, 1, 2]
    assert [n for _, n, _, _ in ev.per_class] == np.bincount(truth[:, 0].astype(int), minlength=3).tolist()
    for _, n, ap, ap50 in ev.per_class:
        assert (math.isnan(ap) and n == 0) or (0.0 <= ap <= ap50 + 1e-9 <= 1.0 + 1e-9)


def test_warm_start_is_deterministic_and_reports_epochs(tiny, tmp_path):
    """Two 1-epoch warm starts from the same .pt with the same seed give bit-identical weights (CPU)."""
    import torch

    seen = []
    runs = []
    for k in range(2):
        res = train(tiny.weights, tiny.data.data_yaml, 1, tmp_path / f"run{k}", imgsz=IMGSZ, batch=8, seed=3,
                    on_epoch=(lambda e, n, s: seen.append((e, n, s))) if k == 0 else None)
        assert isinstance(res, TrainResult) and res.epochs == 1 and res.seconds > 0
        assert res.weights == (tmp_path / f"run{k}" / "weights" / "last.pt").resolve()
        runs.append(torch.load(res.weights, map_location="cpu", weights_only=False)["model"].float().state_dict())
    assert [(e, n) for e, n, _ in seen] == [(1, 1)]
    assert math.isfinite(seen[0][2]["loss"]) and {"box_loss", "cls_loss"} <= set(seen[0][2])
    assert runs[0].keys() == runs[1].keys()
    diff = [k for k in runs[0] if not torch.equal(runs[0][k], runs[1][k])]
    assert diff == []


def test_checkpoints_are_thinned_without_changing_the_training(tiny, tmp_path, monkeypatch):
    """last.pt after the first epoch, every SAVE_EVERY-th and the final one only; weights bit-identical to saving
    after every epoch (stock Ultralytics)."""
    import importlib

    import torch

    train_mod = importlib.import_module("detal.detector.train")  # the module: `detal.detector.train` is also a function

    def run(name, save_every):
        monkeypatch.setattr(train_mod, "SAVE_EVERY", save_every)
        last = tmp_path / name / "weights" / "last.pt"
        seen = []  # at each epoch's end (before that epoch's save): the epoch of the checkpoint on disk

        def on_epoch(e, n, stats):
            seen.append(torch.load(last, map_location="cpu", weights_only=False)["epoch"] if last.exists() else None)

        res = train(tiny.weights, tiny.data.data_yaml, 7, tmp_path / name, imgsz=IMGSZ, batch=8, seed=1,
                    on_epoch=on_epoch)
        return seen, torch.load(res.weights, map_location="cpu", weights_only=False)["model"].float().state_dict()

    thinned, a = run("thinned", 3)
    stock, b = run("stock", 1)
    assert thinned == [None, 0, 0, 2, 2, 2, 5]  # saved after epochs 1, 3, 6 (and 7, the final one)
    assert stock == [None, 0, 1, 2, 3, 4, 5]
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


# --- the scorer -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [4, 32])
def test_scorer_matches_ultralytics_predict(tiny, batch):
    from ultralytics import YOLO

    images = list(tiny.data.train[:12])
    conf, iou = 1e-4, 0.7  # the 2-epoch model scores below 0.005; NMS still has work
    scorer = Scorer(tiny.weights, imgsz=IMGSZ, conf=conf, iou=iou, batch=batch)
    preds = scorer.predict(images)
    results = YOLO(str(tiny.weights)).predict([str(p) for p in images], imgsz=IMGSZ, conf=conf, iou=iou,
                                              batch=batch, verbose=False)
    total = 0
    for p, r in zip(preds, results, strict=True):
        assert p.ok and str(p.path) == r.path
        assert (p.height, p.width) == r.orig_shape
        ref = _sorted(r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy())
        got = _sorted(p.boxes, p.conf, p.cls)
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-3, rtol=0)
        total += len(got)
    assert total > 0, "no boxes at conf=1e-4: the comparison would be vacuous"


def test_scorer_probs_are_full_class_vectors(tiny):
    scorer = Scorer(tiny.weights, imgsz=IMGSZ, conf=1e-4, batch=8)
    preds = scorer.predict(tiny.data.val)
    nc = len(tiny.data.names)
    assert scorer.names == tiny.data.names and scorer.nc == nc
    n_boxes = 0
    for p in preds:
        n = len(p.conf)
        assert p.boxes.shape == (n, 4) and p.cls.shape == (n,) and p.probs.shape == (n, nc)
        assert p.boxes.dtype == np.float32 and p.probs.dtype == np.float32 and p.cls.dtype == np.int64
        if n:
            np.testing.assert_allclose(p.probs.max(1), p.conf, rtol=0, atol=1e-6)
            np.testing.assert_array_equal(p.probs.argmax(1), p.cls)
            assert ((p.probs > 0) & (p.probs < 1)).all()  # sigmoids of every class, not a one-hot top class
            assert (p.boxes[:, [0, 2]] >= 0).all() and (p.boxes[:, [0, 2]] <= p.width).all()
        n_boxes += n
    assert n_boxes > 0


def test_scorer_features_match_ultralytics_embed(tiny):
    """feature = global-average-pooled SPPF output (layer 9 of yolov8n), as YOLO.embed(embed=[9]) computes it."""
    from ultralytics import YOLO

    images = list(tiny.data.val[:5])
    preds = Scorer(tiny.weights, imgsz=IMGSZ, batch=2).predict(images)
    ref = YOLO(str(tiny.weights)).embed([str(p) for p in images], imgsz=IMGSZ, batch=2, embed=[9], verbose=False)
    for p, e in zip(preds, ref, strict=True):
        assert p.feature is not None and p.feature.dtype == np.float32 and p.feature.shape == (256,)
        np.testing.assert_allclose(p.feature, e.float().numpy(), rtol=1e-4, atol=1e-6)
    assert not np.array_equal(preds[0].feature, preds[1].feature)
    without = Scorer(tiny.weights, imgsz=IMGSZ, features=False).predict(images)
    assert all(p.feature is None for p in without)


def test_scorer_flip_is_the_prediction_on_the_mirrored_file(tiny, tmp_path):
    """flip=True: each box's flip inconsistency against what the scorer predicts on a mirrored copy of the file."""
    import cv2

    from detal.acquisition.uncertainty import flip_inconsistency

    images = list(tiny.data.val[:8])
    mirrored = []
    for p in images:
        out = tmp_path / p.name
        cv2.imwrite(str(out), cv2.flip(cv2.imread(str(p)), 1))
        mirrored.append(out)
    kw = dict(imgsz=IMGSZ, conf=1e-3, batch=4, features=False)
    with_flip = Scorer(tiny.weights, flip=True, **kw).predict(images)
    plain = Scorer(tiny.weights, **kw).predict(images)
    other = Scorer(tiny.weights, **kw).predict(mirrored)
    n = 0
    for f, p, m in zip(with_flip, plain, other, strict=True):
        np.testing.assert_array_equal(f.boxes, p.boxes)  # the flipped pass leaves the image's own boxes alone
        assert p.flip is None and f.flip.shape == (len(f.cls),)
        back = m.boxes.copy()
        back[:, [0, 2]] = m.width - m.boxes[:, [2, 0]]
        expect = flip_inconsistency(f.boxes, f.probs, back, m.probs)
        # PNG round trip is lossless and the letterbox is symmetric here: same numbers up to float noise
        np.testing.assert_allclose(f.flip, expect, atol=1e-3)
        assert ((f.flip >= 0) & (f.flip <= 1)).all()
        n += len(f.cls)
    assert n > 0


def test_scorer_corrupt_images_and_order(tiny, tmp_path, caplog):
    bad = tmp_path / "garbage.jpg"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    missing = tmp_path / "missing.png"
    good = list(tiny.data.train[:7])
    images = good[:2] + [bad] + good[2:5] + [empty, missing] + good[5:]
    reference = {p.path: p for p in Scorer(tiny.weights, imgsz=IMGSZ, conf=1e-4, batch=7).predict(good)}

    caplog.set_level(logging.WARNING, logger="detal")
    for workers in (0, 2):
        caplog.clear()
        scorer = Scorer(tiny.weights, imgsz=IMGSZ, conf=1e-4, batch=3, workers=workers)
        preds = list(scorer.iter_predictions(str(p) for p in images))  # a generator of str works too
        assert [p.path for p in preds] == images
        errors = {p.path for p in preds if not p.ok}
        assert errors == {bad, empty, missing}
        for p in preds:
            if p.ok:
                ref = reference[p.path]
                assert (p.width, p.height) == (ref.width, ref.height)
                assert len(p.conf) == len(ref.conf)  # batch composition may shift floats, not detections here
            else:
                assert p.boxes.shape == (0, 4) and p.probs.shape == (0, 3) and p.conf.shape == (0,)
                assert p.feature is None and p.error
        lines = [r.getMessage() for r in caplog.records if r.name == "detal"]
        assert len(lines) == 3 and all("\n" not in m for m in lines)
        assert any(str(bad) in m for m in lines)


def test_scorer_all_unreadable_batch(tiny, tmp_path):
    bad = [tmp_path / f"b{i}.jpg" for i in range(3)]
    for p in bad:
        p.write_bytes(b"not an image")
    preds = Scorer(tiny.weights, imgsz=IMGSZ, batch=2).predict(bad + [tiny.data.val[0]])
    assert [p.ok for p in preds] == [False, False, False, True]


def test_scorer_rejects_bad_settings(tiny):
    for kwargs in ({"conf": 1.5}, {"iou": -0.1}, {"batch": 0}, {"workers": -1}):
        with pytest.raises(ConfigError):
            Scorer(tiny.weights, **kwargs)


def test_warm_start_to_a_dataset_with_other_classes(tiny, tmp_path):
    """A .pt trained on 3 classes fine-tunes on a 2-class copy of the data; the scorer then gives 2-class vectors."""
    import shutil

    from detal.data import label_path, write_split_yaml

    root, splits = tmp_path / "copy", {}
    for split, items in (("train", tiny.data.train[:8]), ("val", tiny.data.val[:4])):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for p in items:
            dst = root / "images" / split / p.name
            shutil.copy(p, dst)
            lines = [ln for ln in label_path(p).read_text().splitlines() if ln.split()[0] in {"0", "1"}]
            label_path(dst).write_text("".join(f"{ln}\n" for ln in lines))
            splits.setdefault(split, []).append(dst)
    data2 = write_split_yaml(tmp_path / "two.yaml", splits["train"], splits["val"], ("a", "b"))
    res = train(tiny.weights, data2, 1, tmp_path / "run2", imgsz=IMGSZ, batch=8)
    scorer = Scorer(res.weights, imgsz=IMGSZ, conf=1e-4)
    assert scorer.names == ("a", "b")
    preds = scorer.predict(splits["val"])
    assert all(p.probs.shape[1] == 2 for p in preds) and sum(len(p.conf) for p in preds) > 0


@pytest.mark.parametrize("arch", ["yolo11n.yaml", "yolo26n.yaml"])
def test_scorer_other_heads_match_predict(tiny, tmp_path, arch):
    """YOLO11 and YOLO26 (NMS-free head, run with NMS as the predictor does by default) give class vectors too."""
    from ultralytics import YOLO

    weights = tmp_path / "random.pt"
    YOLO(arch).save(str(weights))  # random init: scores near the bias prior, so a very low conf
    images = [str(p) for p in tiny.data.val[:4]]
    preds = Scorer(weights, imgsz=IMGSZ, conf=1e-5, batch=4).predict(images)
    results = YOLO(str(weights)).predict(images, imgsz=IMGSZ, conf=1e-5, batch=4, verbose=False)
    for p, r in zip(preds, results, strict=True):
        assert len(p.conf) > 0 and p.probs.shape == (len(p.conf), 80)
        np.testing.assert_allclose(_sorted(p.boxes, p.conf, p.cls),
                                   _sorted(r.boxes.xyxy.numpy(), r.boxes.conf.numpy(), r.boxes.cls.numpy()), atol=1e-3)
        assert p.feature is not None and p.feature.shape[0] > 0


def test_damaged_weights_are_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    for call in (lambda: Scorer(bad), lambda: train(bad, tmp_path / "data.yaml", 1, tmp_path / "run")):
        with pytest.raises(ConfigError, match="not a PyTorch weights file") as e:
            call()
        assert "\n" not in str(e.value) and "bad.pt" in str(e.value)
