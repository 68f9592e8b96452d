"""`detal labelstudio push|pull` by hand: a folder of images in as tasks with pre-labels, annotations out as labels.

Push runs the model once: boxes above `scoring.conf` score the image, boxes above `prelabel.conf` are
the pre-labels. Pull writes the labels of record into a run-owned label tree (detal.labels.LabelStore),
or, asked explicitly, next to the images, keeping a different existing file as `<name>.txt.orig`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from detal.config import Config
from detal.data import Dataset, label_path, list_images, read_labels, write_labels
from detal.errors import DetalError
from detal.labels import LabelStore, image_key
from detal.labelstudio import client as ls


def model_version(weights: Path) -> str:
    """Stable per weights file: name plus a content hash, so a retrained model gets a new version."""
    h = hashlib.sha256()
    with open(weights, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return f"{weights.parent.parent.name or weights.stem}-{weights.stem}-{h.hexdigest()[:8]}"


def push_folder(cfg: Config, ds: Dataset, conn, pid: int, root: Path, *, weights: Path, images: Path,
                round_idx: int, version: str | None = None):
    from detal import detector
    from detal.scoring import image_scores_for, make_scorer, prelabels_for

    if not weights.is_file():
        raise DetalError(f"--weights {weights}: file not found; give a trained .pt")
    paths = list_images(images)
    if not paths:
        raise DetalError(f"--images {images}: no images found (a folder or a .txt list)")
    with make_scorer(cfg, weights, device=detector.resolve_device(cfg.model.device)) as scorer:
        preds = scorer.predict(paths)
    scores = image_scores_for(preds, cfg.scoring)
    preds = [prelabels_for(p, cfg) for p in preds]
    version = version or model_version(weights)
    res = ls.push(conn, pid, preds, names=list(ds.names), document_root=root, round_idx=round_idx,
                  model_version=version, scores=np.asarray(scores), batch_size=cfg.labelstudio.batch_size)
    return res, version


def pull_labels(cfg: Config, ds: Dataset, conn, pid: int, root: Path, *, out: Path, into_dataset: bool,
                dry_run: bool):
    """Pull finished annotations; write them into `out` (a label tree) or next to the images."""
    res = ls.pull(conn, pid, list(ds.names), document_root=root)
    if dry_run:
        return res, "dry run: nothing written"
    if into_dataset:
        for path, labels in res.labels.items():
            target = label_path(path)
            if target.exists() and not np.array_equal(read_labels(target, ds.nc), np.asarray(labels).reshape(-1, 5)):
                os.replace(target, target.with_name(target.name + ".orig"))  # the user's file is kept, not lost
            write_labels(target, labels)
        return res, "next to the images; changed files kept as .txt.orig"
    store = LabelStore(out, ds.nc)
    for path, labels in res.labels.items():
        store.put(image_key(path, ds.root), path, labels)
    return res, f"into {store.root}"
