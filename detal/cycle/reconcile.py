"""What people did in Label Studio since the last run, brought into the state before anything is collected.

- a task on the server for an image the state has in the pool: pushed by a run that died before saving;
  it is adopted (pending), never pushed twice;
- a task detal pushed that is gone (an admin deleted it): an open train task is pushed again; an open val
  task leaves the val set (the image goes back to the pool), unless that would leave no val image at all,
  then it is pushed again too; a labelled one keeps its label of record. Never waited on;
- a skipped task annotated after all: back to pending, so the collect that follows labels it;
- an annotation edited (or replaced by a newer one) after it was collected: the label of record follows
  the newest annotation, for the train pool and the val set alike; the edit's box actions (previous
  label of record -> new one) are counted as effort, and their seconds (detal.cost: reopening the image,
  each change; boxes kept cost nothing more) are added to what the image cost.

Label files are rewritten before the state records anything (as `round.collect` does); a run killed in
between finds the file already equal to the annotation and only repairs the box counts.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detal.annotate import Request
from detal.cost import ACTIONS, from_scratch, seconds
from detal.cost import actions as actions_of
from detal.cycle.project import Project, move_to_pool
from detal.data import format_labels, read_labels
from detal.errors import DetalError
from detal.labelstudio.format import effort_counts
from detal.types import BOX_EFFORT_KEYS

log = logging.getLogger("detal")


@dataclass
class Deleted:
    repushed: list[str] = field(default_factory=list)  # open train tasks (and val tasks the val set needs)
    val_dropped: list[str] = field(default_factory=list)  # open val tasks: the image is back in the pool
    kept: list[str] = field(default_factory=list)  # labelled or skipped: the label of record stays

    @property
    def total(self) -> int:
        return len(self.repushed) + len(self.val_dropped) + len(self.kept)

    def line(self) -> str:
        every = sorted([*self.repushed, *self.val_dropped, *self.kept])
        parts = [f"{len(self.repushed)} pushed again"]
        if self.val_dropped:
            parts.append(f"{len(self.val_dropped)} val images dropped from the val set (back in the pool)")
        if self.kept:
            parts.append(f"{len(self.kept)} already labelled or skipped kept as they are")
        return (f"{self.total} tasks detal pushed were deleted in Label Studio (e.g. {every[0]}): "
                + ", ".join(parts))


@dataclass
class Edits:
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    effort: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BOX_EFFORT_KEYS, 0))
    actions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACTIONS, 0))  # detal.cost, summed


def server_tasks(p: Project) -> dict[str, tuple[str, int]] | None:
    """The project's tasks for the images present now: image key -> ("train" | "val", task id).
    None: the annotator has no server to ask."""
    tasks = getattr(p.arm.annotator, "task_keys", None)
    if tasks is None:
        return None
    by_key = tasks()  # task key (relative to the server's document root) -> id
    root = p.arm.annotator.document_root
    out = {}
    for side, arm in (("train", p.arm), ("val", p.val_arm)):
        for k, img in zip(arm.keys, arm.images):
            with contextlib.suppress(ValueError):
                if (tid := by_key.get(Path(img).resolve().relative_to(root).as_posix())) is not None:
                    out[k] = (side, tid)
    return out


def adopt_orphans(p: Project, on_server: dict[str, tuple[str, int]]) -> dict[str, int]:
    """Tasks on the server for images the state still has in the pool were pushed by a run that died
    before saving: they become pending (nothing is lost, nothing is pushed twice). Returns key -> task id."""
    ids, adopted = {}, 0
    taken = {"train": p.train.taken(), "val": p.val.taken()}
    for k, (side, tid) in on_server.items():
        ids[k] = tid
        if k not in taken[side]:
            state = p.train if side == "train" else p.val
            state.pending[k] = state.round_done + 1 if side == "train" else 1
            taken[side].add(k)
            adopted += 1
    if adopted:
        log.warning("adopted %d tasks pushed by an interrupted run; they are now waiting for annotation", adopted)
    return ids


def deleted_tasks(p: Project, on_server: dict[str, tuple[str, int]],
                  reported: set[str] = frozenset()) -> tuple[Deleted, dict[str, int]]:
    """Tasks detal pushed that the server no longer has. Returns what happened and key -> new task id.

    `reported`: labelled or skipped images whose deleted task an earlier run already reported."""
    out = Deleted()
    gone_train = [k for k in p.arm.keys if k in p.train.pending and k not in on_server]
    gone_val = [k for k in p.val_arm.keys if k in p.val.pending and k not in on_server]
    out.kept = [k for arm, st in ((p.arm, p.train), (p.val_arm, p.val)) for k in arm.keys
                if (k in st.labelled or k in st.skipped) and k not in on_server and k not in reported
                and p.sources.get(k) != "imported"]  # imported labels never had a task
    left = (set(p.val.labelled) | set(p.val.pending)) & set(p.val_arm.keys) - set(gone_val)
    if left:  # else it is pushed again: a val set of none could never train
        out.val_dropped = gone_val
    ids = {}
    ids.update(_push_again(p, p.arm, p.train, gone_train))
    ids.update(_push_again(p, p.val_arm, p.val, [k for k in gone_val if k not in out.val_dropped]))
    out.repushed = [k for k in (*gone_train, *gone_val) if k not in out.val_dropped]
    if out.val_dropped:
        for k in out.val_dropped:
            del p.val.pending[k]
            p.sources[k] = "val-deleted"
        move_to_pool(p, out.val_dropped)
    if out.total:
        log.warning("%s", out.line())
    return out, ids


def _push_again(p: Project, arm, state, keys: list[str]) -> dict[str, int]:
    """The same task again (same round and source column); the next round's refresh adds pre-labels."""
    by_round: dict[int, list[str]] = {}
    for k in keys:
        by_round.setdefault(state.pending[k], []).append(k)
    ids = {}
    for r, ks in sorted(by_round.items()):
        images = tuple(arm.path_of(k) for k in ks)
        res = arm.annotator.request(Request(r, images, model_version="",
                                            sources={img: p.sources.get(k, "") for img, k in zip(images, ks)}))
        by_path = {Path(img).resolve(): k for img, k in zip(images, ks)}
        for path, tid in (getattr(res, "task_ids", None) or {}).items():
            if Path(path).resolve() in by_path:
                ids[by_path[Path(path).resolve()]] = int(tid)
    return ids


def _latest(arm, keys: list[str]) -> dict[str, np.ndarray]:
    """The newest annotation of each image among `keys` that has one (the annotator's own pull)."""
    latest = getattr(arm.annotator, "latest", None)
    if latest is None or not keys:
        return {}
    by_path = {arm.path_of(k): k for k in keys}
    return {by_path[path]: labels for path, labels in latest(list(by_path)).items() if path in by_path}


def unskip(p: Project) -> int:
    """Skipped tasks that were annotated after all go back to pending: the collect that follows labels them."""
    keys = [k for k in p.arm.keys if k in p.train.skipped]
    back = list(_latest(p.arm, keys))
    for k in back:
        p.train.pending[k] = p.train.skipped.pop(k)
    return len(back)


def follow_edits(p: Project, skip: set[str] = frozenset()) -> Edits:
    """Labels of record that differ from the newest annotation of their task are rewritten from it.

    `skip`: keys collected in this run (written from the same pull: nothing to compare)."""
    out = Edits()
    nc = len(p.arm.names)
    sides = [("train", p.arm, p.train)] + ([("val", p.val_arm, p.val)] if p.val_source == "reserved" else [])
    for side, arm, state in sides:
        keys = [k for k in arm.keys if k in state.labelled and k not in skip]
        for k, labels in _latest(arm, keys).items():
            new = np.asarray(labels, float).reshape(-1, 5)
            counts = [int(c) for c in np.bincount(new[:, 0].astype(np.int64), minlength=nc)]
            file = p.labels.label_file(k)
            old = _record_of(file, nc)
            if old is not None and old[0] == format_labels(new):
                state.boxes[k] = counts  # a run killed after rewriting the file left the counts behind
                continue
            if old is not None and old[1] is not None:  # else restored or repaired: no edit to count
                (out.train if side == "train" else out.val).append(k)
                if side == "train":  # val annotation effort is not counted, first pass or edit
                    _count(p, k, old[1], new, out)
            p.labels.put(k, arm.path_of(k), new)
            state.boxes[k] = counts
    return out


def _record_of(file: Path, nc: int) -> tuple[str, np.ndarray | None] | None:
    """The label file of record (text, labels); None when missing. A file damaged by hand (labels None) is
    rewritten from the annotation all the same, as a repair: there is no "before" to count an edit from."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        log.warning("%s: unreadable label of record; rewritten from the newest annotation", file)
        return "", None
    try:
        return text, read_labels(file, nc)
    except DetalError as exc:
        log.warning("%s; rewritten from the newest annotation", exc)
        return text, None


def _count(p: Project, key: str, old: np.ndarray, new: np.ndarray, out: Edits) -> None:
    """The edit's effort and actions (boxes kept as they were were counted when first collected), and its
    seconds added to what the image cost; an image whose first pass was not measured stays unmeasured."""
    diff = effort_counts(old, new)
    for e in BOX_EFFORT_KEYS:
        out.effort[e] += diff[e] if e != "accepted" else 0
    act = {**actions_of(old, new), "accepted": 0}
    for a in ACTIONS:
        out.actions[a] += act[a]
    if key in p.train.seconds:
        cost = p.cfg.cost
        spent = seconds(act, cost.per_action, cost.per_image)
        p.train.seconds[key] = [round(p.train.seconds[key][0] + spent, 3),
                                round(seconds(from_scratch(new), cost.per_action, cost.per_image), 3)]
