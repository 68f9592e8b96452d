"""`detal cycle`: one idempotent scheduled step. Reconcile with the server, collect finished annotations,
and once enough new labels arrived and the val set is annotated, run THE round (train, evaluate, score +
select, push pre-labels, refresh open tasks), then save everything in one transaction."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

from detal.annotate import Annotator
from detal.config import Config
from detal.cycle import leads, reconcile
from detal.cycle.project import Project, eval_images, open_project, save
from detal.cycle.store import CYCLE_METRIC_COLUMNS, Store, now, project_lock
from detal.errors import DetalError
from detal.labels import image_key
from detal.progress import Progress
from detal.round import Arm, Collected, class_rows, collect, run_round
from detal.types import (
    ACTION_COLUMNS,
    BOX_EFFORT_KEYS,
    PER_CLASS_COLUMNS,
    SELECTED_CLASS_COLUMNS,
    SELECTION_COLUMNS,
)

log = logging.getLogger("detal")


@dataclass
class CycleOutcome:
    trained: bool
    message: str
    round: int | None = None
    metrics: dict | None = None


def run_cycle(cfg: Config, *, backend=None, annotator: Annotator | None = None, quiet: bool = False) -> CycleOutcome:
    progress = Progress(quiet)
    with project_lock(cfg):
        p = open_project(cfg, backend=backend, annotator=annotator, progress=progress, must_exist=True)
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
    on_server = reconcile.server_tasks(p)
    task_ids, deleted = {}, reconcile.Deleted()
    if on_server is not None:
        task_ids = reconcile.adopt_orphans(p, on_server)
        deleted, pushed_again = reconcile.deleted_tasks(p, on_server, set(p.store.meta("deleted_kept") or ()))
        task_ids.update(pushed_again)
    unskipped = reconcile.unskip(p)
    val_got = collect(p.val_arm, p.val)
    early = collect(p.arm, p.train)
    edits = reconcile.follow_edits(p, skip={k for ks in (*early.joined.values(), *val_got.joined.values()) for k in ks})
    new = sum(len(v) for v in early.joined.values())
    skipped = len(early.annotations.skipped)
    val_open = len(p.val.pending)
    p.progress.line(f"collected {new} new labels ({skipped} skipped"
                    + (f"; {unskipped} on tasks skipped before" if unskipped else "")
                    + f"), {len(val_got.annotations.labels)} val labels; "
                    + (f"followed {len(edits.train) + len(edits.val)} annotations edited after collection "
                       f"({len(edits.val)} val); " if edits.train or edits.val else "")
                    + f"{len(p.train.pending)} tasks still open, {val_open} val tasks open")
    carry = _carry(p, early, edits)
    history = _history(p, deleted, edits)
    labelled_total = len(p.train.labelled_keys(p.arm.keys))
    first = p.train.weights is None
    reason = None
    fresh = new + len(edits.train)  # an edited label is new information for the model too
    if val_open:
        reason = f"the val set is not fully annotated yet ({val_open} val tasks open)"
    elif not eval_images(p):
        reason = "no annotated val image to evaluate on"
    elif labelled_total == 0:
        reason = "no labelled image yet"
    elif fresh < cfg.cycle.min_new_labels and not (first and labelled_total):
        reason = (f"{new} new labels" + (f" + {len(edits.train)} edited" if edits.train else "")
                  + f" < cycle.min_new_labels ({cfg.cycle.min_new_labels})")
    if reason:
        save(p, task_ids, leads=leads.refresh(p)[0], effort_carry=carry, **history)
        return CycleOutcome(False, f"no retraining: {reason}")
    r = p.train.round_done + 1
    arm = _rearm_val(p)
    p.train.finished = False
    res = run_round(arm, p.train, r, last=False)  # a live project has no last round
    row = res.metrics
    for k in (*BOX_EFFORT_KEYS, *ACTION_COLUMNS, "skipped"):  # this run's collect and edits, and the waiting runs'
        row[k] += int(carry[k])
    row["edited_images"] = carry["edited_images"]  # the rounds table (status) only: metrics.csv keeps its columns
    est = _estimates(p, [early])
    row.update(est)
    timed, known = leads.refresh(p)  # after the round: its own collect is in the annotator's newest pull
    row.update(leads.round_totals(known, p.train, r))
    joined = Collected(early.annotations, {int(r): ks for r, ks in carry["joined"].items()})
    res.selected_classes += class_rows(arm, p.train, joined)
    for s in res.selections:
        p.sources[image_key(Path(s["image"]), p.ds.root)] = s["source"]
    _record(p, r, res, task_ids, history, timed)
    msg = (f"round {r}: trained on {row['labeled_images']} images, val mAP50-95 {row['map50_95']:.3f}, "
           f"pushed {row['selected_images']} images")
    _report(p)
    return CycleOutcome(True, msg, r, row)


def _carry(p: Project, early: Collected, edits: reconcile.Edits) -> dict:
    """Effort and boxes per class collected since the last round: a run that does not train keeps them in
    the state (meta `effort_carry`) for the round that trains on those labels, so none goes uncounted."""
    carry = {**dict.fromkeys((*BOX_EFFORT_KEYS, *ACTION_COLUMNS, "skipped", "edited_images"), 0), "joined": {},
             **(p.store.meta("effort_carry") or {})}
    for k in BOX_EFFORT_KEYS:
        carry[k] += int(early.annotations.effort.get(k, 0)) + edits.effort[k]
    for k in ACTION_COLUMNS:
        carry[k] += int(early.actions[k]) + edits.actions[k]
    carry["skipped"] += len(early.annotations.skipped)
    carry["edited_images"] += len(edits.train)
    for r, keys in early.joined.items():
        carry["joined"].setdefault(str(r), []).extend(keys)
    return carry


def _history(p: Project, deleted: reconcile.Deleted, edits: reconcile.Edits) -> dict:
    """Running totals `status` shows: tasks deleted in Label Studio and edits followed, with when it last happened."""
    out = {}
    if deleted.total:
        d = p.store.meta("deleted_tasks") or {"repushed": 0, "val_dropped": 0, "kept": 0}
        out["deleted_tasks"] = {"repushed": d["repushed"] + len(deleted.repushed),
                                "val_dropped": d["val_dropped"] + len(deleted.val_dropped),
                                "kept": d["kept"] + len(deleted.kept), "last": now(), "line": deleted.line()}
        if deleted.kept:  # reported once: a labelled image's task stays deleted
            out["deleted_kept"] = sorted({*(p.store.meta("deleted_kept") or ()), *deleted.kept})
    if edits.train or edits.val:
        e = p.store.meta("edits") or {"train": 0, "val": 0}
        out["edits"] = {"train": e["train"] + len(edits.train), "val": e["val"] + len(edits.val), "last": now(),
                        "example": sorted([*edits.train, *edits.val])[0]}
    return out


def _report(p: Project) -> None:
    """The project's rounds reported as an experiment's are; a report problem never fails the cycle."""
    from detal.report import write_report

    try:
        write_report(p.cfg.run_dir)
    except DetalError as exc:
        log.warning("the round is saved, but the report was not rewritten: %s", exc)


def _rearm_val(p: Project) -> Arm:
    return replace(p.arm, val=eval_images(p))


def _record(p: Project, r: int, res, task_ids: dict[str, int] | None = None, history: dict | None = None,
            timed: list[dict] = ()) -> None:
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
        Store.save_leads(db, list(timed))
        Store.set_meta(db, effort_carry=None, **(history or {}))  # counted in this round's row
        db.execute("INSERT OR REPLACE INTO rounds (round, finished_at, weights, metrics) VALUES (?, ?, ?, ?)",
                   (r, now(), str(p.train.weights), json.dumps(res.metrics, default=float)))
