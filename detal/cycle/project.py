"""The live project as the round sees it: the dataset checked, the state loaded, two Arms (the train
pool and the val images) that `init` and `cycle` move forward. Shared by init, cycle and nothing else."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from detal.annotate import Annotator
from detal.config import Config, check_calibration
from detal.cycle.store import Store
from detal.data import Dataset
from detal.errors import DetalError
from detal.labels import LabelStore, image_key
from detal.progress import Progress
from detal.round import Arm
from detal.state import ArmState

log = logging.getLogger("detal")


@dataclass
class Project:
    cfg: Config
    ds: Dataset
    store: Store
    labels: LabelStore
    arm: Arm  # the train pool (val images excluded)
    val_arm: Arm  # the val images (collected like the pool; never trained on, never selected)
    train: ArmState
    val: ArmState
    sources: dict[str, str]
    val_source: str
    progress: Progress
    estimates: dict = field(default_factory=dict)


def default_annotator(cfg: Config, ds: Dataset) -> Annotator:
    from detal.labelstudio.annotator import LabelStudioAnnotator

    return LabelStudioAnnotator.from_config(cfg, ds)


def _dataset(cfg: Config, cache=None) -> Dataset:
    from detal.check import check_dataset, usable
    from detal.data import load_dataset

    ds = load_dataset(cfg.data, require_val=False)
    report = check_dataset(ds, unlabelled_pool=True, cache=cache)
    for line in report.lines(levels=("exclude", "warning")):
        log.warning("%s", line)
    return usable(ds, report)


def _verdicts(state_file: Path) -> dict:
    if not state_file.is_file():
        return {}
    store = Store(state_file)
    try:
        return store.verdicts()
    finally:
        store.close()


def open_project(cfg: Config, *, backend, annotator, progress: Progress, must_exist: bool) -> Project:
    # here, not at load: every config has a cycle section (its defaults), and a study config need not fit it
    check_calibration(cfg, [cfg.cycle.strategy], "config", key="cycle.strategy")
    from detal.check import VerdictCache

    state_file = cfg.run_dir / "project.sqlite"
    # images already checked by an earlier run keep their verdict while unchanged: a run's fixed cost stays flat
    cache = VerdictCache(_verdicts(state_file))
    ds = _dataset(cfg, cache)
    store = Store(state_file)
    store.save_verdicts(cache.new)
    if must_exist and not store.initialised:
        store.close()
        raise DetalError(f"{cfg.run_dir}: no detal project here yet; run `detal init -c CONFIG` first")
    labels = LabelStore(cfg.run_dir / "labels", ds.nc)
    if backend is None:
        from detal import detector as backend
    annotator = annotator or default_annotator(cfg, ds)
    device = backend.resolve_device(cfg.model.device)
    train, val, sources = store.load() if store.initialised else (ArmState(), ArmState(), {})
    val_source = store.meta("val_source", "")
    train_keys = {image_key(p, ds.root): p for p in ds.train}
    val_keys = {image_key(p, ds.root): p for p in ds.val}
    reserved = set(val.labelled) | set(val.pending) if val_source == "reserved" else set()
    pool = {k: p for k, p in train_keys.items() if k not in reserved}
    val_imgs = {k: train_keys[k] for k in sorted(reserved) if k in train_keys} if val_source == "reserved" else val_keys
    cs = cfg.cycle
    arm = Arm(cfg, cs.strategy, cs.seed, tuple(pool.values()), tuple(pool), (), ds.names, backend, annotator,
              device, labels, cfg.run_dir / "rounds", progress, cfg.experiment, live=True,
              audit_share=cs.audit_share)  # random picks for every strategy: status's unbiased sample
    val_arm = Arm(cfg, "val", cs.seed, tuple(val_imgs.values()), tuple(val_imgs), (), ds.names, backend, annotator,
                  device, labels, cfg.run_dir / "rounds", progress, cfg.experiment)
    return Project(cfg, ds, store, labels, arm, val_arm, train, val, sources, val_source, progress)


def eval_images(p: Project) -> tuple[Path, ...]:
    """The val images training is evaluated on: the user's labelled split, or the annotated reserved sample."""
    if p.val_source == "data.yaml":
        return p.ds.val
    return tuple(p.labels.image(k) for k in p.val_arm.keys if k in p.val.labelled)


def save(p: Project, task_ids: dict[str, int] | None = None, leads: list[dict] = (), **meta) -> None:
    """The state, the tasks' lead_time records (detal.cycle.leads) and `meta` values, in one transaction."""
    pool = p.train.pool(p.arm.keys)
    with p.store.transaction() as db:
        Store.save(db, p.train, p.val, pool, p.sources, task_ids, present=set(p.arm.keys) | set(p.val_arm.keys))
        Store.save_leads(db, list(leads))
        Store.set_meta(db, **meta)



def rearm(arm: Arm, images: tuple[Path, ...], keys: tuple[str, ...]) -> Arm:
    return replace(arm, images=images, keys=keys)


def move_to_pool(p: Project, keys) -> None:
    """Reserved val images that leave the val set join the pool, in the order `open_project` gives it."""
    keys = set(keys)
    back = [(k, img) for k, img in zip(p.val_arm.keys, p.val_arm.images) if k in keys]
    val = [(k, img) for k, img in zip(p.val_arm.keys, p.val_arm.images) if k not in keys]
    order = {image_key(img, p.ds.root): i for i, img in enumerate(p.ds.train)}
    pool = sorted([*zip(p.arm.keys, p.arm.images), *back], key=lambda kv: order.get(kv[0], len(order)))
    p.arm = rearm(p.arm, tuple(img for _, img in pool), tuple(k for k, _ in pool))
    p.val_arm = rearm(p.val_arm, tuple(img for _, img in val), tuple(k for k, _ in val))


def project_title_of(cfg: Config) -> str:
    from detal.labelstudio.client import project_title

    return project_title(cfg)
