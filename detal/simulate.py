"""Driver 1, the experiment: every strategy (arm) for every seed, from the same seed set, on the same val split.

The round itself is detal.round; this module owns what is specific to an experiment: the run folder
(lock, config fingerprint, resume), the simulated annotator, and the tables of runs/<experiment>/.
State is saved after every round (seed<S>/<strategy>/state.json) and the tables are rewritten
atomically, so a killed run resumes where it stopped and loses at most the round in progress.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import yaml

from detal.annotate import Annotator, GroundTruthOracle
from detal.config import NOT_THE_EXPERIMENT, Config
from detal.data import Dataset, atomic_write_text, label_path, load_dataset, read_labels
from detal.errors import DetalError
from detal.labels import LabelStore, image_key
from detal.lock import exclusive
from detal.progress import Progress
from detal.round import Arm, run_round, seed_set, start
from detal.state import ArmState
from detal.types import (METRIC_COLUMNS, PER_CLASS_COLUMNS, POOL_CLASS_COLUMNS, SELECTED_CLASS_COLUMNS,
                         SELECTION_COLUMNS)

log = logging.getLogger("detal")


def append_rows(path: Path, rows: list[dict], columns: tuple[str, ...]) -> None:
    """Append rows to a CSV table by rewriting it atomically: a crash never leaves half a row."""
    if not rows:
        return
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if old and old.split("\n", 1)[0] != ",".join(columns):
        # a table written by an older detal (fewer columns): rewrite it under today's header, its rows kept and
        # the new columns empty, rather than append rows that do not line up with its header
        prev = pd.read_csv(path)
        merged = pd.concat([prev, pd.DataFrame(rows)], ignore_index=True)
        atomic_write_text(path, merged.reindex(columns=[*columns, *(c for c in prev if c not in columns)])
                          .to_csv(index=False))
        return
    new = pd.DataFrame(rows, columns=list(columns)).to_csv(index=False, header=not old)
    atomic_write_text(path, old + new)


# sections that do not change the experiment: only the other driver reads them (the scheduled job on a live
# project), or only the report does (how it judges what the tables hold)
_OTHER_DRIVER = ("cycle", "report")


def _fingerprint(doc: dict) -> str:
    doc = {k: dict(v) if isinstance(v, dict) else v for k, v in doc.items() if k not in _OTHER_DRIVER}
    for section, keys in NOT_THE_EXPERIMENT.items():
        for k in keys:
            doc.get(section, {}).pop(k, None)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def config_fingerprint(cfg: Config) -> str:
    return _fingerprint(cfg.model_dump(mode="json"))


def _without_new_defaults(doc: dict, old: dict) -> dict:
    """`doc` less the settings `old` (a run's saved config) does not have and that are at their default.

    A setting detal gained after a run started, left at its default, keeps the old behaviour: the run
    is the same experiment and resumes.
    """
    defaults = Config.model_validate({"data": doc["data"]}).model_dump(mode="json")
    out = {}
    for key, value in doc.items():
        if key not in old:
            if value != defaults.get(key):
                out[key] = value
        elif isinstance(value, dict) and isinstance(old[key], dict):
            out[key] = {k: v for k, v in value.items()
                        if k in old[key] or v != (defaults.get(key) or {}).get(k)}
        else:
            out[key] = value
    return out


def prepare_dataset(cfg: Config, progress: Progress) -> Dataset:
    """The dataset as training will see it: generated first when `synth:` is configured and data.yaml is missing,
    then checked like `detal check` (every label line, every image header). Bad label lines stop the run
    before any training time is spent; images Ultralytics would drop are left out with one warning each,
    so the metrics count what is really trained on."""
    if not cfg.data.exists() and cfg.synth is not None:
        from dataclasses import replace

        from detal.synthetic import DEFAULT_KNOBS, generate

        sy = cfg.synth
        progress.line(f"generating {sy.images} synthetic images into {cfg.data.parent} (seed {sy.seed})")
        out = generate(cfg.data.parent, sy.images, seed=sy.seed, imgsz=sy.imgsz, val_fraction=sy.val_fraction,
                       knobs=replace(DEFAULT_KNOBS, palette_prob=sy.palette))
        if out.resolve() != cfg.data.resolve():
            raise DetalError(f"data: generator wrote {out}, but the config names {cfg.data}; point data: at {out}")
    from detal.check import check_dataset, usable

    ds = load_dataset(cfg.data)
    report = check_dataset(ds)
    for line in report.lines(levels=("exclude", "warning")):
        log.warning("%s", line)
    return usable(ds, report)


def _oracle(cfg: Config, ds: Dataset) -> Annotator:
    return GroundTruthOracle(ds.nc, cfg.cost.accept_iou, cfg.prelabel.trust)


def _labelstudio(cfg: Config, ds: Dataset) -> Annotator:
    from detal.labelstudio.annotator import BotAnnotator

    return BotAnnotator.from_config(cfg, ds)


ANNOTATORS: dict[str, Callable[[Config, Dataset], Annotator]] = {"oracle": _oracle, "labelstudio": _labelstudio}


def _check_run_dir(cfg: Config, overwrite: bool) -> None:
    run_dir = cfg.run_dir
    saved = run_dir / "config.yaml"
    fp = config_fingerprint(cfg)
    if run_dir.exists() and overwrite:
        shutil.rmtree(run_dir)
    elif saved.exists():
        try:
            doc = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
            old, old_cfg = doc.get("fingerprint"), doc.get("config")
        except (yaml.YAMLError, UnicodeDecodeError, AttributeError):
            old = old_cfg = None  # damaged: treated as a different config
        # recomputed from the saved config under today's rules (the saved hash may predate them)
        same = old == fp or (isinstance(old_cfg, dict) and _fingerprint(old_cfg) == _fingerprint(
            _without_new_defaults(cfg.model_dump(mode="json"), old_cfg)))
        # a run that never finished a round has nothing to protect: a corrected config simply replaces it
        if not same and (run_dir / "metrics.csv").exists():
            raise DetalError(f"{run_dir}: holds results of a different config; pass --overwrite to start over "
                             f"or change `experiment:` to keep both")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, yaml.safe_dump({"fingerprint": fp, "config": cfg.model_dump(mode="json")},
                                                sort_keys=False))
    except OSError as exc:
        raise DetalError(f"{run_dir}: cannot write the run folder ({exc.strerror or exc}); "
                         "choose a writable output_dir") from None


def run_lock(cfg: Config):
    """One run per experiment at a time: a second concurrent run would interleave rounds and state."""
    path = cfg.output_dir / f".{cfg.experiment}.lock"
    return exclusive(path, busy=f"{cfg.run_dir}: another detal run holds {path}; wait for it to finish or use "
                                f"another `experiment:` name")


def _pool_classes(cfg: Config, ds: Dataset) -> list[dict]:
    """Ground-truth make-up of the pool, for the report's 'what did each strategy pick' figure."""
    boxes, images = np.zeros(ds.nc, np.int64), np.zeros(ds.nc, np.int64)
    for p in ds.train:
        c = np.bincount(read_labels(label_path(p), ds.nc)[:, 0].astype(np.int64), minlength=ds.nc)
        boxes += c
        images += c > 0
    return [{"experiment": cfg.experiment, "class_id": i, "class": n, "boxes": int(boxes[i]), "images": int(images[i])}
            for i, n in enumerate(ds.names)]


def run_arm(cfg: Config, ds: Dataset, keys: tuple[str, ...], seed: int, strategy: str, *, backend, annotator: Annotator,
            device: str, progress: Progress, shared_dir: Path | None = None, name: str = "") -> None:
    """All rounds of one (seed, strategy) arm, resuming from its saved state when there is one."""
    arm_dir = cfg.run_dir / f"seed{seed}" / strategy
    arm = Arm(cfg, strategy, seed, ds.train, keys, ds.val, ds.names, backend, annotator, device,
              LabelStore(arm_dir / "labels", ds.nc), arm_dir, progress, cfg.experiment, shared_dir=shared_dir,
              name=name)
    state_path = arm_dir / "state.json"
    if state_path.exists():
        state = ArmState.load(state_path)
        if state.finished or state.round_done >= cfg.schedule.rounds:
            progress.line(f"{arm.tag} already finished ({state.round_done} rounds); skipping")
            return
        present = set(keys)
        gone = sorted(k for k in state.taken() if k not in present)
        if gone:
            progress.line(f"{arm.tag} warning: {len(gone)} images of this arm left the dataset since the last run "
                          f"(e.g. {gone[0]}); their labels and history are kept, they are not trained on")
        progress.line(f"{arm.tag} resuming at round {state.round_done + 1}")
    else:
        state = start(arm, seed_set(len(ds.train), cfg.schedule.seed_fraction, seed))
    for r in range(state.round_done + 1, cfg.schedule.rounds + 1):
        res = run_round(arm, state, r, last=r == cfg.schedule.rounds)
        # tables first, then state: a crash between the two re-runs this round (the report keeps the last rows)
        append_rows(cfg.run_dir / "metrics.csv", [res.metrics], METRIC_COLUMNS)
        append_rows(cfg.run_dir / "selections.csv", res.selections, SELECTION_COLUMNS)
        append_rows(cfg.run_dir / "per_class.csv", res.per_class, PER_CLASS_COLUMNS)
        append_rows(cfg.run_dir / "selected_classes.csv", res.selected_classes, SELECTED_CLASS_COLUMNS)
        state.save(state_path)
        if state.finished:
            if r < cfg.schedule.rounds:
                progress.line(f"{arm.tag} pool exhausted: round {r} trained on every labelled image; stopping")
            break


def run_experiment(cfg: Config, *, quiet: bool = False, overwrite: bool = False, backend=None,
                   annotator: Annotator | None = None, shared_dir: Path | None = None, name: str = "") -> Path:
    """Run (or resume) every arm of every seed; returns the run folder holding the tables and the report.

    backend: the detector module (default `detal.detector`), or its import name (picklable, for a
    run in another process). shared_dir: where arms leave the trainings from scratch they share
    (detal.shared_training; default <run folder>/shared; a study passes one folder for all its arms).
    name: what progress lines call the arms (a study's variant arm runs its strategy under its own name).
    """
    with run_lock(cfg):
        return _run_experiment(cfg, quiet=quiet, overwrite=overwrite, backend=backend, annotator=annotator,
                               shared_dir=shared_dir, name=name)


def _run_experiment(cfg: Config, *, quiet: bool, overwrite: bool, backend, annotator: Annotator | None,
                    shared_dir: Path | None, name: str = "") -> Path:
    progress = Progress(quiet)
    ds = prepare_dataset(cfg, progress)
    if backend is None:
        from detal import detector as backend
    elif isinstance(backend, str):
        backend = importlib.import_module(backend)
    _check_run_dir(cfg, overwrite)
    annotator = annotator or ANNOTATORS[cfg.annotator](cfg, ds)
    device = backend.resolve_device(cfg.model.device)
    keys = tuple(image_key(p, ds.root) for p in ds.train)
    progress.line(f"experiment '{cfg.experiment}': pool {len(ds.train)} images, val {len(ds.val)}, "
                  f"{len(cfg.strategies)} strategies x {len(cfg.seeds)} seeds, {cfg.schedule.rounds} rounds, "
                  f"device {device}")
    pool_csv = cfg.run_dir / "pool_classes.csv"
    if not pool_csv.exists():
        pd.DataFrame(_pool_classes(cfg, ds), columns=list(POOL_CLASS_COLUMNS)).to_csv(pool_csv, index=False)
    t0 = time.perf_counter()
    for seed in cfg.seeds:
        for strategy in cfg.strategies:
            run_arm(cfg, ds, keys, seed, strategy, backend=backend, annotator=annotator, device=device,
                    progress=progress, shared_dir=shared_dir or cfg.run_dir / "shared", name=name)
    from detal.report import write_report

    report = write_report(cfg.run_dir)
    progress.line(f"done in {time.perf_counter() - t0:.0f} s; report: {report}")
    return cfg.run_dir
