"""Driver 2, the scheduled job: `detal init / cycle / status` move a live Label Studio project forward.

`init` creates the project (labelling config, local-files storage, an annotators' view sorted by
uncertainty), picks the evaluation set (the data.yaml's labelled val split, else a fixed random sample
of the pool pushed for annotation first, flagged `split: val`), and hands out the seed set: images that
already have a label file are imported as labelled, else a random `seed_fraction` is pushed without
pre-labels (there is no model yet).

`cycle` is one idempotent step, meant for cron: reconcile with the server (adopt tasks an interrupted
run pushed), collect finished annotations, and, once `cycle.min_new_labels` new labels arrived and the
val set is annotated, run THE round (detal.round.run_round: train, evaluate, score + select, push
pre-labels, refresh open tasks to the new model). Nothing happens to the project's state until the
round has finished: it is saved in one SQLite transaction at the end, so a run killed at any point
leaves the previous state, and the next run redoes the work (pushes are keyed by image: no duplicate).

State lives in `<output_dir>/<experiment>/project.sqlite` (WAL): per image its status (pool, val,
pushed, labelled, skipped), round, source, task id and boxes per class; per round its metrics; per run
its outcome. Labels of record live in `<output_dir>/<experiment>/labels/` (links + label files).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from detal.acquisition.selection import with_random_share
from detal.annotate import Annotator
from detal.config import Config, check_calibration
from detal.data import Dataset, label_path, read_labels
from detal.errors import DetalError
from detal.labels import LabelStore, image_key
from detal.lock import exclusive
from detal.progress import Progress
from detal.round import Arm, Collected, class_rows, collect, request, run_round, seed_set, selection_rng
from detal.state import ArmState
from detal.types import BOX_EFFORT_KEYS, METRIC_COLUMNS, PER_CLASS_COLUMNS, SELECTED_CLASS_COLUMNS, SELECTION_COLUMNS

log = logging.getLogger("detal")

SCHEMA_VERSION = 1
# what the random share of a batch says about the pre-labels on unseen data, once annotated
ESTIMATE_COLUMNS = ("prelabel_images", "prelabel_precision", "prelabel_recall", "prelabel_map50", "edits_per_image")
CYCLE_METRIC_COLUMNS = (*METRIC_COLUMNS, *ESTIMATE_COLUMNS)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('pool', 'val', 'val_pushed', 'pushed', 'labelled', 'skipped')),
    round INTEGER, source TEXT, task_id INTEGER, boxes TEXT, present INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS rounds (round INTEGER PRIMARY KEY, finished_at TEXT NOT NULL, weights TEXT NOT NULL,
    metrics TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, command TEXT NOT NULL, started_at TEXT NOT NULL,
    finished_at TEXT, outcome TEXT, seconds REAL, message TEXT);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- the state store

class Store:
    """The project's state in SQLite: ArmState (train pool), the val state, and the history."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # explicit transactions
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise DetalError(f"{self.path}: cannot open the project state ({exc}); check the folder is writable "
                             "and the file is a detal state database") from None

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    @staticmethod
    def set_meta(db, **values) -> None:
        db.executemany("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                       [(k, json.dumps(v)) for k, v in values.items()])

    @property
    def initialised(self) -> bool:
        return self.meta("schema") is not None

    # -- states
    def load(self) -> tuple[ArmState, ArmState, dict[str, str]]:
        """(train state, val state, source per key) from the images table and meta."""
        train, val = ArmState(), ArmState()
        sources = {}
        for key, status, rnd, source, boxes in self.db.execute("SELECT key, status, round, source, boxes FROM images"):
            sources[key] = source
            if status == "labelled":
                train.labelled[key], train.boxes[key] = rnd, json.loads(boxes)
            elif status == "pushed":
                train.pending[key] = rnd
            elif status == "skipped":
                train.skipped[key] = rnd
            elif status == "val":
                val.labelled[key], val.boxes[key] = rnd, json.loads(boxes)
            elif status == "val_pushed":
                val.pending[key] = rnd
        train.round_done = self.meta("round_done", 0)
        train.epochs_trained = self.meta("epochs_trained", 0)
        train.weights = self.meta("weights")
        train.rng_state = self.meta("rng_state")
        return train, val, sources

    @staticmethod
    def save(db, train: ArmState, val: ArmState, pool: list[str], sources: dict[str, str],
             task_ids: dict[str, int] | None = None, present: set[str] | None = None) -> None:
        rows = [(k, "labelled", r, json.dumps(train.boxes[k])) for k, r in train.labelled.items()]
        rows += [(k, "pushed", r, None) for k, r in train.pending.items()]
        rows += [(k, "skipped", r, None) for k, r in train.skipped.items()]
        rows += [(k, "val", r, json.dumps(val.boxes[k])) for k, r in val.labelled.items()]
        rows += [(k, "val_pushed", r, None) for k, r in val.pending.items()]
        rows += [(k, "pool", None, None) for k in pool]
        db.executemany(
            "INSERT INTO images (key, status, round, boxes, source) VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE "
            "SET status = excluded.status, round = excluded.round, boxes = excluded.boxes, "
            "source = COALESCE(excluded.source, images.source)",
            [(k, s, r, b, sources.get(k)) for k, s, r, b in rows])
        if task_ids:
            db.executemany("UPDATE images SET task_id = ? WHERE key = ?", [(t, k) for k, t in task_ids.items()])
        if present is not None:
            db.execute("UPDATE images SET present = 0")
            db.executemany("UPDATE images SET present = 1 WHERE key = ?", [(k,) for k in present])
        Store.set_meta(db, round_done=train.round_done, epochs_trained=train.epochs_trained, weights=train.weights,
                       rng_state=train.rng_state)

    # -- runs
    def begin_run(self, command: str) -> int:
        with self.transaction() as db:
            return db.execute("INSERT INTO runs (command, started_at) VALUES (?, ?)", (command, _now())).lastrowid

    def end_run(self, run_id: int, outcome: str, seconds: float, message: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET finished_at = ?, outcome = ?, seconds = ?, message = ? WHERE id = ?",
                       (_now(), outcome, round(seconds, 2), message, run_id))


def project_lock(cfg: Config):
    """One scheduled run per project at a time (cron can start the next before the last has finished)."""
    return exclusive(cfg.run_dir / ".cycle.lock", busy=f"{cfg.run_dir}: another detal init/cycle is running on "
                                                       "this project; this run exits without doing anything")


# ---------------------------------------------------------------- the project as an Arm

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


def _default_annotator(cfg: Config, ds: Dataset) -> Annotator:
    from detal.labelstudio.annotator import LabelStudioAnnotator

    return LabelStudioAnnotator.from_config(cfg, ds)


def _dataset(cfg: Config) -> Dataset:
    from detal.check import check_dataset, usable
    from detal.data import load_dataset

    ds = load_dataset(cfg.data, require_val=False)
    report = check_dataset(ds, unlabelled_pool=True)
    for line in report.lines(levels=("exclude", "warning")):
        log.warning("%s", line)
    return usable(ds, report)


def _open(cfg: Config, *, backend, annotator, progress: Progress, must_exist: bool) -> Project:
    # here, not at load: every config has a cycle section (its defaults), and a study config need not fit it
    check_calibration(cfg, [cfg.cycle.strategy], "config", key="cycle.strategy")
    ds = _dataset(cfg)
    store = Store(cfg.run_dir / "project.sqlite")
    if must_exist and not store.initialised:
        store.close()
        raise DetalError(f"{cfg.run_dir}: no detal project here yet; run `detal init -c CONFIG` first")
    labels = LabelStore(cfg.run_dir / "labels", ds.nc)
    if backend is None:
        from detal import detector as backend
    annotator = annotator or _default_annotator(cfg, ds)
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
              device, labels, cfg.run_dir / "rounds", progress, cfg.experiment, live=True)
    val_arm = Arm(cfg, "val", cs.seed, tuple(val_imgs.values()), tuple(val_imgs), (), ds.names, backend, annotator,
                  device, labels, cfg.run_dir / "rounds", progress, cfg.experiment)
    return Project(cfg, ds, store, labels, arm, val_arm, train, val, sources, val_source, progress)


def _eval_images(p: Project) -> tuple[Path, ...]:
    """The val images training is evaluated on: the user's labelled split, or the annotated reserved sample."""
    if p.val_source == "data.yaml":
        return p.ds.val
    return tuple(p.labels.image(k) for k in p.val_arm.keys if k in p.val.labelled)


def _save(p: Project, task_ids: dict[str, int] | None = None) -> None:
    pool = p.train.pool(p.arm.keys)
    with p.store.transaction() as db:
        Store.save(db, p.train, p.val, pool, p.sources, task_ids, present=set(p.arm.keys) | set(p.val_arm.keys))


# ---------------------------------------------------------------- init

def init_project(cfg: Config, *, backend=None, annotator: Annotator | None = None, quiet: bool = False) -> str:
    """Create state, project, view; pick the val set; hand out the seed set. Idempotent."""
    progress = Progress(quiet)
    with project_lock(cfg):
        p = _open(cfg, backend=backend, annotator=annotator, progress=progress, must_exist=False)
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
        p.val_arm = _rearm(p.val_arm, tuple(images), tuple(keys))
        p.arm = _rearm(p.arm, tuple(p.arm.images[i] for i in rest), tuple(p.arm.keys[i] for i in rest))
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
        Store.set_meta(db, schema=SCHEMA_VERSION, val_source=p.val_source, title=_title(p.cfg))
        Store.save(db, p.train, p.val, p.train.pool(p.arm.keys), p.sources)
    val_msg = (f"val: the data.yaml's labelled split ({len(ds.val)} images)" if p.val_source == "data.yaml" else
               f"val: {len(p.val_arm.keys)} images reserved from the pool and pushed for annotation first")
    return f"initialised {p.cfg.run_dir}: {val_msg}; {seed_msg}; pool {len(p.train.pool(p.arm.keys))} images"


def _rearm(arm: Arm, images: tuple[Path, ...], keys: tuple[str, ...]) -> Arm:
    from dataclasses import replace

    return replace(arm, images=images, keys=keys)


def _title(cfg: Config) -> str:
    from detal.labelstudio.client import project_title

    return project_title(cfg)


# ---------------------------------------------------------------- cycle

@dataclass
class CycleOutcome:
    trained: bool
    message: str
    round: int | None = None
    metrics: dict | None = None


def run_cycle(cfg: Config, *, backend=None, annotator: Annotator | None = None, quiet: bool = False) -> CycleOutcome:
    progress = Progress(quiet)
    with project_lock(cfg):
        p = _open(cfg, backend=backend, annotator=annotator, progress=progress, must_exist=True)
        run_id = p.store.begin_run("cycle")
        t0 = time.perf_counter()
        try:
            out = _cycle(p)
        except BaseException as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            p.store.end_run(run_id, "failed", time.perf_counter() - t0, msg[:500])
            p.store.close()
            raise
        p.store.end_run(run_id, "trained" if out.trained else "waiting", time.perf_counter() - t0, out.message)
        p.store.close()
        return out


def _adopt_orphans(p: Project) -> dict[str, int]:
    """Tasks on the server for images the state still has in the pool were pushed by a run that died
    before saving: they become pending (nothing is lost, nothing is pushed twice). Returns key -> task id."""
    tasks = getattr(p.arm.annotator, "task_keys", None)
    if tasks is None:
        return {}
    by_key = tasks()  # task key (relative to the document root) -> id
    to_key = {}
    root = p.arm.annotator.document_root
    for arm in (p.arm, p.val_arm):
        for k, img in zip(arm.keys, arm.images):
            rel = Path(img).resolve()
            with contextlib.suppress(ValueError):
                to_key[rel.relative_to(root).as_posix()] = (arm, k)
    ids, adopted = {}, 0
    taken = {id(p.train): p.train.taken(), id(p.val): p.val.taken()}
    for tkey, tid in by_key.items():
        if tkey not in to_key:
            continue
        arm, k = to_key[tkey]
        ids[k] = tid
        state = p.train if arm is p.arm else p.val
        if k not in taken[id(state)]:
            state.pending[k] = state.round_done + 1 if arm is p.arm else 1
            taken[id(state)].add(k)
            adopted += 1
    if adopted:
        log.warning("adopted %d tasks pushed by an interrupted run; they are now waiting for annotation", adopted)
    return ids


def _estimates(p: Project, got: list[Collected]) -> dict:
    """Pre-label quality on the random share (an unbiased sample of the pool, unseen by the model)."""
    from detal.labelstudio.format import map50

    tot = dict.fromkeys(BOX_EFFORT_KEYS, 0)
    n = 0
    pairs = []
    for c in got:
        for img, counts in c.annotations.effort_by_image.items():
            key = image_key(img, p.ds.root)
            if p.sources.get(key) == "random":
                n += 1
                for k in BOX_EFFORT_KEYS:
                    tot[k] += counts[k]
                if img in c.annotations.prelabels:
                    pairs.append((*c.annotations.prelabels[img], c.annotations.labels[img]))
    matched = tot["accepted"] + tot["corrected"]
    pre, final = matched + tot["deleted"], matched + tot["added"]
    return {"prelabel_images": n,
            "prelabel_precision": round(matched / pre, 4) if n and pre else float("nan"),
            "prelabel_recall": round(matched / final, 4) if n and final else float("nan"),
            # of the pre-labels as shown (boxes >= prelabel.conf): a lower bound of the model's mAP50 on the pool
            "prelabel_map50": round(map50(pairs, p.ds.nc), 4) if pairs else float("nan"),
            "edits_per_image": round((tot["corrected"] + tot["deleted"] + tot["added"]) / n, 3) if n else float("nan")}


def _cycle(p: Project) -> CycleOutcome:
    cfg = p.cfg
    present = set(p.arm.keys) | set(p.val_arm.keys)
    gone = [k for k in {*p.train.taken(), *p.val.taken()} if k not in present]
    if gone:
        p.progress.line(f"warning: {len(gone)} images of the project left the dataset (e.g. {sorted(gone)[0]}); "
                        "their labels and history are kept")
    task_ids = _adopt_orphans(p)
    val_got = collect(p.val_arm, p.val)
    early = collect(p.arm, p.train)
    new = sum(len(v) for v in early.joined.values())
    skipped = len(early.annotations.skipped)
    val_open = len(p.val.pending)
    p.progress.line(f"collected {new} new labels ({skipped} skipped), {len(val_got.annotations.labels)} val labels; "
                    f"{len(p.train.pending)} tasks still open, {val_open} val tasks open")
    labelled_total = len(p.train.labelled_keys(p.arm.keys))
    first = p.train.weights is None
    reason = None
    if val_open:
        reason = f"the val set is not fully annotated yet ({val_open} val tasks open)"
    elif not _eval_images(p):
        reason = "no annotated val image to evaluate on"
    elif labelled_total == 0:
        reason = "no labelled image yet"
    elif new < cfg.cycle.min_new_labels and not (first and labelled_total):
        reason = f"{new} new labels < cycle.min_new_labels ({cfg.cycle.min_new_labels})"
    if reason:
        _save(p, task_ids)
        return CycleOutcome(False, f"no retraining: {reason}")
    r = p.train.round_done + 1
    arm = _rearm_val(p)
    p.train.finished = False
    res = run_round(arm, p.train, r, last=False)  # a live project has no last round
    row = res.metrics
    for k in BOX_EFFORT_KEYS:
        row[k] += int(early.annotations.effort.get(k, 0))
    row["skipped"] += skipped
    est = _estimates(p, [early])
    row.update(est)
    res.selected_classes += class_rows(arm, p.train, early)
    for s in res.selections:
        p.sources[image_key(Path(s["image"]), p.ds.root)] = s["source"]
    _record(p, r, res, task_ids)
    msg = (f"round {r}: trained on {row['labeled_images']} images, val mAP50-95 {row['map50_95']:.3f}, "
           f"pushed {row['selected_images']} images")
    _report(p)
    return CycleOutcome(True, msg, r, row)


def _report(p: Project) -> None:
    """The project's rounds reported as an experiment's are; a report problem never fails the cycle."""
    from detal.report import write_report

    try:
        write_report(p.cfg.run_dir)
    except DetalError as exc:
        log.warning("the round is saved, but the report was not rewritten: %s", exc)


def _rearm_val(p: Project) -> Arm:
    from dataclasses import replace

    return replace(p.arm, val=_eval_images(p))


def _record(p: Project, r: int, res, task_ids: dict[str, int] | None = None) -> None:
    """Tables under the run folder (as `simulate` writes them), then the state and the round: one transaction."""
    from detal.simulate import append_rows

    run = p.cfg.run_dir
    append_rows(run / "metrics.csv", [res.metrics], CYCLE_METRIC_COLUMNS)
    append_rows(run / "selections.csv", res.selections, SELECTION_COLUMNS)
    append_rows(run / "per_class.csv", res.per_class, PER_CLASS_COLUMNS)
    append_rows(run / "selected_classes.csv", res.selected_classes, SELECTED_CLASS_COLUMNS)
    pool = p.train.pool(p.arm.keys)
    with p.store.transaction() as db:
        Store.save(db, p.train, p.val, pool, p.sources, task_ids, present=set(p.arm.keys) | set(p.val_arm.keys))
        db.execute("INSERT OR REPLACE INTO rounds (round, finished_at, weights, metrics) VALUES (?, ?, ?, ?)",
                   (r, _now(), str(p.train.weights), json.dumps(res.metrics, default=float)))


# ---------------------------------------------------------------- status

def project_status(cfg: Config) -> dict:
    """What `detal status` shows: counts, rounds (val mAP, random-share estimates), the last run."""
    path = cfg.run_dir / "project.sqlite"
    if not path.exists():
        raise DetalError(f"{cfg.run_dir}: no detal project here yet; run `detal init -c CONFIG` first")
    store = Store(path)
    try:
        counts = dict(store.db.execute("SELECT status, COUNT(*) FROM images WHERE present = 1 GROUP BY status"))
        gone = store.db.execute("SELECT COUNT(*) FROM images WHERE present = 0").fetchone()[0]
        rounds = []
        for rnd, finished, weights, metrics in store.db.execute(
                "SELECT round, finished_at, weights, metrics FROM rounds ORDER BY round"):
            m = json.loads(metrics)
            rounds.append({"round": rnd, "finished_at": finished, "weights": weights,
                           **{k: m.get(k) for k in ("labeled_images", "labeled_boxes", "map50_95", "map50",
                                                    "selected_images", *ESTIMATE_COLUMNS)}})
        last = store.db.execute("SELECT command, started_at, finished_at, outcome, seconds, message FROM runs "
                                "ORDER BY id DESC LIMIT 1").fetchone()
        return {"project": store.meta("title"), "state": str(path), "val_source": store.meta("val_source"),
                "strategy": cfg.cycle.strategy,
                "images": {s: counts.get(s, 0) for s in ("labelled", "pushed", "pool", "skipped", "val", "val_pushed")},
                "gone": gone, "rounds": rounds,
                "last_run": dict(zip(("command", "started_at", "finished_at", "outcome", "seconds", "message"), last))
                if last else None}
    finally:
        store.close()


def format_status(st: dict) -> str:
    im = st["images"]
    lines = [f"project {st['project']!r} (state {st['state']})",
             f"images: {im['labelled']} labelled, {im['pushed']} pushed and waiting, {im['pool']} in the pool, "
             f"{im['skipped']} skipped; val {im['val']} annotated + {im['val_pushed']} waiting ({st['val_source']})"
             + (f"; {st['gone']} no longer on disk" if st["gone"] else "")]
    if st["rounds"]:
        lines.append("")
        lines.append(f"{'round':>5}  {'labelled':>8}  {'boxes':>6}  {'mAP50-95':>8}  {'mAP50':>6}  {'pushed':>6}  "
                     f"{'pre-label P':>11}  {'R':>6}  {'mAP50':>6}  {'edits/img':>9}  "
                     "(val mAP; then the random share's pre-labels on unseen images)")
        for r in st["rounds"]:
            def f(v, fmt):
                return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)
            lines.append(f"{r['round']:>5}  {r['labeled_images']:>8}  {r['labeled_boxes']:>6}  {f(r['map50_95'], '.3f'):>8}  "
                         f"{f(r['map50'], '.3f'):>6}  {r['selected_images']:>6}  {f(r['prelabel_precision'], '.3f'):>11}  "
                         f"{f(r['prelabel_recall'], '.3f'):>6}  {f(r['prelabel_map50'], '.3f'):>6}  "
                         f"{f(r['edits_per_image'], '.2f'):>9}")
        if not any(r.get("prelabel_images") for r in st["rounds"]):
            # an empty column is not a verdict on the pre-labels: say where the numbers would come from
            lines.append(f"pre-label columns empty: they are measured on annotated images a batch took at random "
                         f"(strategies {', '.join(with_random_share())}), none so far with strategy "
                         f"{st.get('strategy', '?')!r}")
    else:
        lines.append("no round trained yet")
    last = st["last_run"]
    if last:
        lines.append("")
        lines.append(f"last run: {last['command']} started {last['started_at']}, "
                     f"{last['outcome'] or 'did not finish (killed?)'}"
                     + (f" after {last['seconds']:.0f} s" if last["seconds"] is not None else "")
                     + (f": {last['message']}" if last["message"] else ""))
    return "\n".join(lines)
