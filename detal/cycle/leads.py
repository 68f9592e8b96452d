"""What people really spent: Label Studio's `lead_time` per annotated task, beside the actions it took.

Every cycle, each labelled task (train pool, and the reserved val set) whose annotations changed since the last
run gets its record rewritten from the annotator's pull (no extra request): the seconds (`lead_time`) and the
actions that turned the pre-labels shown into the newest annotation (detal.cost.actions, with the annotator's
accept_iou: None for people, so a box left as it was is accepted and any change is a move).

An edited task: the editor sums the sessions of one annotation into its lead_time, so an annotation updated after
detal saw it REPLACES the record's seconds (the new value already holds the old); a second annotation of the task
(or a skip before it) ADDS its own (client.pull sums them). Its actions are recounted from the pre-labels to the
newest annotation. Such a task is no longer one pass (`single` 0): it counts in the seconds `status` shows, not in
the fit of seconds per action (detal.cycle.costfit), whose rows must each be one pass over the pre-labels.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from detal.cost import ACTIONS, actions, seconds


def refresh(p) -> tuple[list[dict], dict[str, dict]]:
    """(records to write, every record as it will be) for the labelled tasks of project `p` (detal.cycle.project)."""
    known = p.store.leads()
    timings = getattr(p.arm.annotator, "timings", None)
    if timings is None:  # an annotator without a server: nothing is timed
        return [], known
    accept_iou = getattr(p.arm.annotator, "accept_iou", None)
    sides = [("train", p.arm, p.train)] + ([("val", p.val_arm, p.val)] if p.val_source == "reserved" else [])
    changed = []
    for side, arm, state in sides:
        keys = [k for k in arm.keys if k in state.labelled and p.sources.get(k) != "imported"]  # imported: no task
        by_path = {arm.path_of(k): k for k in keys}
        for path, (labels, shown, lead, (passes, updated)) in timings(list(by_path)).items():
            key = by_path[Path(path)]
            old = known.get(key)
            lead = None if lead is None or not math.isfinite(lead) else round(float(lead), 3)
            if old and (old["lead_time"], old["passes"], old["updated_at"], old["side"]) == (lead, passes, updated, side):
                continue
            final = np.asarray(labels, float).reshape(-1, 5)
            act = actions(np.zeros((0, 5)) if shown is None else shown, final, accept_iou)
            first = old["first_updated_at"] if old else updated
            row = {"key": key, "side": side, "lead_time": lead, **act,
                   "prelabels": None if shown is None else int(len(shown)), "boxes": int(len(final)),
                   "passes": int(passes), "updated_at": updated, "first_updated_at": first,
                   "single": int(passes == 1 and updated == first)}
            changed.append(row)
            known[key] = {**(old or {}), **row, "status": "labelled" if side == "train" else "val",
                          "round": state.labelled[key], "source": p.sources.get(key)}
    return changed, known


def round_totals(known: dict[str, dict], train, r: int) -> dict:
    """metrics.csv's lead columns: the timed images of the labelled set round r trained on, and their seconds."""
    timed = [v["lead_time"] for k, v in known.items()
             if v["side"] == "train" and v["lead_time"] is not None and train.labelled.get(k, r + 1) <= r]
    return {"lead_images": len(timed), "lead_seconds": round(float(sum(timed)), 1) if timed else float("nan")}


def _stats(rows: list[dict], cost=None) -> dict:
    """Seconds of timed tasks: how many, median and mean per image, per box (all seconds / all boxes), and what
    the config's `cost:` says the same tasks cost (mean per image), for comparison."""
    timed = [r for r in rows if r["lead_time"] is not None]
    lead = np.array([r["lead_time"] for r in timed], float)
    boxes = sum(int(r["boxes"]) for r in timed)
    out = {"tasks": len(timed), "median": float(np.median(lead)) if len(lead) else math.nan,
           "mean": float(lead.mean()) if len(lead) else math.nan,
           "per_box": float(lead.sum() / boxes) if boxes else math.nan}
    if cost is not None:
        model = [seconds({a: r[a] for a in ACTIONS}, cost.per_action, cost.per_image) for r in timed]
        out["model_mean"] = float(np.mean(model)) if model else math.nan
    return out


def summary(known: dict[str, dict], cost) -> dict:
    """What `detal status` shows: real seconds per image and per box by the round the labels joined (val apart),
    and the unbiased sample (the random picks: source "random"): pre-label precision and recall, seconds."""
    train = [v for v in known.values() if v["side"] == "train" and v.get("status") == "labelled"]
    by_round = {}
    for v in train:
        by_round.setdefault(int(v["round"]), []).append(v)
    rounds = [{"round": r, **_stats(rows, cost), "random": _stats([v for v in rows if v.get("source") == "random"])}
              for r, rows in sorted(by_round.items())]
    val = [v for v in known.values() if v["side"] == "val" and v.get("status") == "val"]
    sample = [v for v in train if v.get("source") == "random" and v["prelabels"] is not None]
    shown = sum(int(v["prelabels"]) for v in sample)
    boxes = sum(int(v["boxes"]) for v in sample)
    return {"rounds": rounds, "val": _stats(val, cost) if val else None, "all": _stats(train, cost),
            "sample": {"images": len(sample),
                       # matched pre-labels: every shown one not deleted (= every final box not drawn)
                       "precision": (shown - sum(v["deleted"] for v in sample)) / shown if shown else math.nan,
                       "recall": (boxes - sum(v["drawn"] for v in sample)) / boxes if boxes else math.nan,
                       **{f"seconds_{k}": v for k, v in _stats(sample).items() if k != "tasks"},
                       "timed": _stats(sample)["tasks"]}}


def fit_rows(known: dict[str, dict]) -> tuple[np.ndarray, np.ndarray, int]:
    """(action counts in ACTIONS order, lead_time) of the single-pass timed tasks, and how many timed tasks were
    left out for being edited."""
    timed = [v for v in known.values() if v["lead_time"] is not None and v.get("status") in ("labelled", "val")]
    one = [v for v in timed if v["single"]]
    return (np.array([[v[a] for a in ACTIONS] for v in one], float).reshape(-1, len(ACTIONS)),
            np.array([v["lead_time"] for v in one], float), len(timed) - len(one))
