"""The live project's state: one SQLite file (WAL) and the lock that keeps one scheduled run at a time.

Per image its status (pool, val, val_pushed, pushed, labelled, skipped), round, source, task id, boxes
per class and annotation seconds (detal.cost: with the pre-labels shown, from scratch); per annotated task its
Label Studio lead_time and action counts; per round its metrics; per run its outcome; per image file the dataset
check's verdict under its size and mtime (a cache: detal.check.VerdictCache). Every change of state is one transaction.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from detal.config import Config
from detal.errors import DetalError
from detal.lock import exclusive
from detal.state import ArmState
from detal.types import METRIC_COLUMNS

SCHEMA_VERSION = 1
# what the random share of a batch says about the pre-labels on unseen data, once annotated
ESTIMATE_COLUMNS = ("prelabel_images", "prelabel_precision", "prelabel_recall", "prelabel_map50", "edits_per_image")
# what people really spent (Label Studio lead_time) on the labelled set the round trained on: how many of its images
# were timed, and their seconds (beside annotation_seconds, the cost model's for the same set)
LEAD_METRIC_COLUMNS = ("lead_images", "lead_seconds")
CYCLE_METRIC_COLUMNS = (*METRIC_COLUMNS, *ESTIMATE_COLUMNS, *LEAD_METRIC_COLUMNS)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('pool', 'val', 'val_pushed', 'pushed', 'labelled', 'skipped')),
    round INTEGER, source TEXT, task_id INTEGER, boxes TEXT, present INTEGER NOT NULL DEFAULT 1, seconds TEXT);
CREATE TABLE IF NOT EXISTS rounds (round INTEGER PRIMARY KEY, finished_at TEXT NOT NULL, weights TEXT NOT NULL,
    metrics TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, command TEXT NOT NULL, started_at TEXT NOT NULL,
    finished_at TEXT, outcome TEXT, seconds REAL, message TEXT);
CREATE TABLE IF NOT EXISTS lead_times (key TEXT PRIMARY KEY, side TEXT NOT NULL, lead_time REAL,
    accepted INTEGER NOT NULL, moved INTEGER NOT NULL, relabelled INTEGER NOT NULL, deleted INTEGER NOT NULL,
    drawn INTEGER NOT NULL, prelabels INTEGER, boxes INTEGER NOT NULL, passes INTEGER NOT NULL, updated_at TEXT,
    first_updated_at TEXT, single INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS checked (path TEXT PRIMARY KEY, signature TEXT NOT NULL, verdict TEXT NOT NULL);
"""
# per annotated task (detal.cycle.leads): Label Studio's lead_time beside the actions that turned the pre-labels shown
# (prelabels: how many; NULL when none were shown) into the newest annotation (detal.cost.actions); `single`: one
# annotator's single pass (one annotation, not updated since first seen), the tasks `detal cost fit` fits on.
# A state file from before it gains the table when opened (CREATE IF NOT EXISTS); the next cycle fills it from the
# server for every labelled task, earlier ones included.
LEAD_COLUMNS = ("key", "side", "lead_time", "accepted", "moved", "relabelled", "deleted", "drawn", "prelabels", "boxes",
                "passes", "updated_at", "first_updated_at", "single")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Store:
    """The project's state in SQLite: ArmState (train pool), the val state, and the history."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # explicit transactions
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(_SCHEMA)
            if "seconds" not in {row[1] for row in self.db.execute("PRAGMA table_info(images)")}:
                # a project started before detal counted seconds: its earlier labels stay "not measured"
                self.db.execute("ALTER TABLE images ADD COLUMN seconds TEXT")
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
        for key, status, rnd, source, boxes, secs in self.db.execute(
                "SELECT key, status, round, source, boxes, seconds FROM images"):
            sources[key] = source
            if status == "labelled":
                train.labelled[key], train.boxes[key] = rnd, json.loads(boxes)
                if secs is not None:  # [with the pre-labels shown, from scratch] (detal.cost)
                    train.seconds[key] = json.loads(secs)
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
        secs = {k: json.dumps(v) for k, v in train.seconds.items() if k in train.labelled}
        db.executemany(
            "INSERT INTO images (key, status, round, boxes, source, seconds) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET status = excluded.status, round = excluded.round, boxes = excluded.boxes, "
            "source = COALESCE(excluded.source, images.source), seconds = excluded.seconds",
            [(k, s, r, b, sources.get(k), secs.get(k)) for k, s, r, b in rows])
        if task_ids:
            db.executemany("UPDATE images SET task_id = ? WHERE key = ?", [(t, k) for k, t in task_ids.items()])
        if present is not None:
            db.execute("UPDATE images SET present = 0")
            db.executemany("UPDATE images SET present = 1 WHERE key = ?", [(k,) for k in present])
        Store.set_meta(db, round_done=train.round_done, epochs_trained=train.epochs_trained, weights=train.weights,
                       rng_state=train.rng_state)

    # -- the dataset check's verdicts (detal.check.VerdictCache): a cache, rebuilt by any check that misses it
    def verdicts(self) -> dict[str, tuple[str, dict]]:
        return {p: (sig, json.loads(v)) for p, sig, v in self.db.execute("SELECT path, signature, verdict FROM checked")}

    def save_verdicts(self, rows: dict[str, tuple[str, dict]]) -> None:
        if rows:
            with self.transaction() as db:
                db.executemany("INSERT OR REPLACE INTO checked (path, signature, verdict) VALUES (?, ?, ?)",
                               [(p, sig, json.dumps(v)) for p, (sig, v) in rows.items()])

    # -- lead times
    def leads(self) -> dict[str, dict]:
        """key -> its lead_times row (LEAD_COLUMNS), joined with the image's status, round and source."""
        cols = ", ".join(f"l.{c}" for c in LEAD_COLUMNS)
        return {row[0]: dict(zip((*LEAD_COLUMNS, "status", "round", "source"), row)) for row in self.db.execute(
            f"SELECT {cols}, i.status, i.round, i.source FROM lead_times l LEFT JOIN images i ON i.key = l.key")}

    @staticmethod
    def save_leads(db, rows: list[dict]) -> None:
        db.executemany(f"INSERT OR REPLACE INTO lead_times ({', '.join(LEAD_COLUMNS)}) "
                       f"VALUES ({', '.join('?' * len(LEAD_COLUMNS))})", [[r[c] for c in LEAD_COLUMNS] for r in rows])

    # -- runs
    def begin_run(self, command: str) -> int:
        with self.transaction() as db:
            return db.execute("INSERT INTO runs (command, started_at) VALUES (?, ?)", (command, now())).lastrowid

    def end_run(self, run_id: int, outcome: str, seconds: float, message: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET finished_at = ?, outcome = ?, seconds = ?, message = ? WHERE id = ?",
                       (now(), outcome, round(seconds, 2), message, run_id))


def project_lock(cfg: Config):
    """One scheduled run per project at a time (cron can start the next before the last has finished)."""
    return exclusive(cfg.run_dir / ".cycle.lock", busy=f"{cfg.run_dir}: another detal init/cycle is running on "
                                                       "this project; this run exits without doing anything")
