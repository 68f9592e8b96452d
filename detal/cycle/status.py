"""`detal status`: what a live project has done and is waiting for, read from its state alone (no server)."""

from __future__ import annotations

import json

import numpy as np

import math

from detal.acquisition.selection import strategy as strategy_spec
from detal.acquisition.selection import with_random_share
from detal.config import Config
from detal.cycle import costfit, leads
from detal.cycle.store import ESTIMATE_COLUMNS, Store
from detal.errors import DetalError


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
                                                    "selected_images", "edited_images", *ESTIMATE_COLUMNS)}})
        last = store.db.execute("SELECT command, started_at, finished_at, outcome, seconds, message FROM runs "
                                "ORDER BY id DESC LIMIT 1").fetchone()
        try:
            fit = costfit.fit_project(cfg, store)
            fitted = {"tasks": fit.fit.tasks, "clipped": fit.fit.clipped, "edited": fit.edited,
                      "seconds": fit.values, "config": fit.config, "heldout_mae": fit.fit.heldout_mae,
                      "baseline_mae": fit.fit.baseline_mae}
        except costfit.TooFewTasks as exc:
            fitted = {"missing": exc.reason}
        return {"project": store.meta("title"), "state": str(path), "val_source": store.meta("val_source"),
                "strategy": cfg.cycle.strategy, "audit_share": cfg.cycle.audit_share,
                # what people spent (Label Studio lead_time) and the seconds per action it fits (detal cost fit)
                "lead_times": leads.summary(store.leads(), cfg.cost), "cost_fit": fitted,
                "images": {s: counts.get(s, 0) for s in ("labelled", "pushed", "pool", "skipped", "val", "val_pushed")},
                "gone": gone, "rounds": rounds,
                # what people did in Label Studio after detal pushed or collected (running totals)
                "deleted_tasks": store.meta("deleted_tasks"), "edits": store.meta("edits"),
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
    if d := st.get("deleted_tasks"):
        lines.append(f"tasks deleted in Label Studio (last seen {d['last']}): {d['repushed']} pushed again, "
                     f"{d['val_dropped']} val images dropped from the val set, {d['kept']} labelled or skipped kept")
    if e := st.get("edits"):
        lines.append(f"annotations edited after collection (last seen {e['last']}, e.g. {e['example']}): "
                     f"{e['train']} train and {e['val']} val labels of record follow the edit")
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
            lines.append("pre-label columns empty: " + _no_sample(st))
    else:
        lines.append("no round trained yet")
    if lt := st.get("lead_times"):
        lines += _lead_lines(st, lt)
    last = st["last_run"]
    if last:
        lines.append("")
        lines.append(f"last run: {last['command']} started {last['started_at']}, "
                     f"{last['outcome'] or 'did not finish (killed?)'}"
                     + (f" after {last['seconds']:.0f} s" if last["seconds"] is not None else "")
                     + (f": {last['message']}" if last["message"] else ""))
    return "\n".join(lines)


def _f(v, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _no_sample(st: dict) -> str:
    """Why there is no unbiased sample yet, and what would give one."""
    strategy, share = st.get("strategy", "?"), st.get("audit_share") or 0
    try:
        own = strategy_spec(strategy).random_share
    except DetalError:
        own = False
    if share > 0 or own:
        return ("they are measured on annotated images a batch took at random (" + (f"cycle.audit_share {share:g} of "
                f"each batch" if not own else f"strategy {strategy!r}'s random share") + "); none annotated yet")
    return (f"they are measured on annotated images a batch took at random, and strategy {strategy!r} takes none "
            f"(strategies {', '.join(with_random_share())} do): set cycle.audit_share (e.g. 0.1)")


def _lead_lines(st: dict, lt: dict) -> list[str]:
    """Real seconds per round, the unbiased sample, and the fitted seconds per action."""
    out = [""]
    if not lt["all"]["tasks"] and not (lt["val"] or {}).get("tasks"):
        out.append("annotators' seconds: no annotated task with a Label Studio lead_time yet")
        return out
    out.append("annotators' seconds (Label Studio lead_time), by the round the labels joined; cost: = the config's "
               "seconds for the same tasks")
    out.append(f"{'round':>5}  {'tasks':>5}  {'median s/img':>12}  {'mean s/img':>10}  {'s/box':>6}  "
               f"{'cost: s/img':>11}  {'random: tasks':>13}  {'median s/img':>12}")
    for r in [*lt["rounds"], *([{"round": "val", **lt["val"], "random": None}] if lt["val"] else [])]:
        rnd = r["random"] or {"tasks": None, "median": None}
        out.append(f"{r['round']:>5}  {r['tasks']:>5}  {_f(r['median'], '.1f'):>12}  {_f(r['mean'], '.1f'):>10}  "
                   f"{_f(r['per_box'], '.2f'):>6}  {_f(r['model_mean'], '.1f'):>11}  {_f(rnd['tasks'], 'd'):>13}  "
                   f"{_f(rnd['median'], '.1f'):>12}")
    a = lt["all"]
    out.append(f"all rounds: {a['tasks']} tasks, median {_f(a['median'], '.1f')} s per image, mean "
               f"{_f(a['mean'], '.1f')}, {_f(a['per_box'], '.2f')} s per box (cost: {_f(a['model_mean'], '.1f')} s "
               "per image)")
    s = lt["sample"]
    if s["images"]:
        out.append(f"unbiased sample (random picks, {s['images']} annotated with pre-labels): pre-label precision "
                   f"{_f(s['precision'], '.3f')}, recall {_f(s['recall'], '.3f')}; seconds per image median "
                   f"{_f(s['seconds_median'], '.1f')}, mean {_f(s['seconds_mean'], '.1f')} ({s['timed']} timed)")
    else:
        out.append("unbiased sample (random picks): empty; " + _no_sample(st))
    f = st.get("cost_fit") or {}
    if "missing" in f:
        out.append(f"seconds per action: no fit yet ({f['missing']})")
    elif f:
        out.append(f"seconds per action fitted on {f['tasks']} tasks, the config's in brackets (`detal cost fit` for "
                   "the table, --write to use them): "
                   + ", ".join(f"{k} {v:.1f} ({f['config'][k]:g})" for k, v in f["seconds"].items())
                   + f"; held-out error {f['heldout_mae']:.1f} s per task (median baseline {f['baseline_mae']:.1f})")
    return out
