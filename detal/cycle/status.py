"""`detal status`: what a live project has done and is waiting for, read from its state alone (no server)."""

from __future__ import annotations

import json

import numpy as np

from detal.acquisition.selection import with_random_share
from detal.config import Config
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
        return {"project": store.meta("title"), "state": str(path), "val_source": store.meta("val_source"),
                "strategy": cfg.cycle.strategy,
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
