"""`detal init`: create the project (labelling config, storage, the annotators' view), pick the val set,
hand out the seed set. Idempotent: a second run says so and changes nothing."""

from __future__ import annotations

import time

import numpy as np

from detal.annotate import Annotator
from detal.config import Config
from detal.cycle.project import Project, open_project, project_title_of, rearm
from detal.cycle.store import SCHEMA_VERSION, Store, project_lock
from detal.data import label_path, read_labels
from detal.errors import DetalError
from detal.progress import Progress
from detal.round import request, seed_set, selection_rng


def init_project(cfg: Config, *, backend=None, annotator: Annotator | None = None, quiet: bool = False) -> str:
    """Create state, project, view; pick the val set; hand out the seed set. Idempotent."""
    progress = Progress(quiet)
    with project_lock(cfg):
        p = open_project(cfg, backend=backend, annotator=annotator, progress=progress, must_exist=False)
        try:
            if p.store.initialised:
                return f"{cfg.run_dir}: already initialised; run `detal cycle -c CONFIG` (or `detal status`)"
            run_id = p.store.begin_run("init")
            t0 = time.perf_counter()
            ensure = getattr(p.arm.annotator, "prepare", None)
            if ensure is not None:
                ensure()  # project, storage and the annotators' view, before anything is pushed
            msg = _init(p)
            p.store.end_run(run_id, "ok", time.perf_counter() - t0, msg)
            return msg
        finally:
            p.store.close()


def _init(p: Project) -> str:
    cfg, ds, cs = p.cfg, p.ds, p.cfg.cycle
    rng = np.random.default_rng([cs.seed, 1])  # the val sample has its own stream: the seed set stays put
    val_labelled = [v for v in ds.val if label_path(v).exists()]
    if ds.val:
        p.val_source = "data.yaml"
        todo_val = [] if len(val_labelled) == len(ds.val) else [v for v in ds.val if v not in set(val_labelled)]
        if todo_val:
            raise DetalError(f"{ds.yaml_path}: {len(todo_val)} of {len(ds.val)} val images have no label file "
                             f"(e.g. {todo_val[0]}); label them, or remove `val:` so detal reserves and pushes a "
                             "val sample from the pool")
    else:
        p.val_source = "reserved"
        n_all = len(p.arm.keys)
        n_val = min(cs.val_max, max(1, round(cs.val_fraction * n_all)), n_all - 1)
        ids = np.sort(rng.choice(n_all, size=n_val, replace=False))
        keys = [p.arm.keys[i] for i in ids]
        images = [p.arm.images[i] for i in ids]
        # the val images leave the pool for good: rebuild both arms around them
        rest = [i for i in range(n_all) if i not in set(ids.tolist())]
        p.val_arm = rearm(p.val_arm, tuple(images), tuple(keys))
        p.arm = rearm(p.arm, tuple(p.arm.images[i] for i in rest), tuple(p.arm.keys[i] for i in rest))
    # the seed set: an existing labelled set is imported, else a random one is pushed without pre-labels
    have = [i for i, img in enumerate(p.arm.images) if label_path(img).exists()]
    p.train.rng_state = selection_rng(cs.seed, cs.strategy).bit_generator.state
    if p.val_source == "reserved":  # first, so annotators see them first: no honest mAP without them
        request(p.val_arm, p.val, np.arange(len(p.val_arm.keys)), 1, sources=("val",) * len(p.val_arm.keys))
    if have:
        for i in have:
            key, img = p.arm.keys[i], p.arm.images[i]
            labels = read_labels(label_path(img), ds.nc)
            p.labels.put(key, img, labels)
            p.train.pending[key] = 1
            p.train.label(key, np.bincount(labels[:, 0].astype(np.int64), minlength=ds.nc))
            p.sources[key] = "imported"
        seed_msg = f"imported {len(have)} labelled images"
    else:
        ids = seed_set(len(p.arm.keys), cfg.schedule.seed_fraction, cs.seed)
        request(p.arm, p.train, ids, 1, sources=("seed",) * len(ids))
        p.sources.update({p.arm.keys[i]: "seed" for i in ids})
        seed_msg = f"pushed a random seed set of {len(ids)} images (no pre-labels: no model yet)"
    p.sources.update({k: "val" for k in p.val_arm.keys})
    with p.store.transaction() as db:
        Store.set_meta(db, schema=SCHEMA_VERSION, val_source=p.val_source, title=project_title_of(p.cfg))
        Store.save(db, p.train, p.val, p.train.pool(p.arm.keys), p.sources)
    val_msg = (f"val: the data.yaml's labelled split ({len(ds.val)} images)" if p.val_source == "data.yaml" else
               f"val: {len(p.val_arm.keys)} images reserved from the pool and pushed for annotation first")
    return f"initialised {p.cfg.run_dir}: {val_msg}; {seed_msg}; pool {len(p.train.pool(p.arm.keys))} images"
