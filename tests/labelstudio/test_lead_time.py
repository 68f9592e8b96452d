"""Live seconds against a real Label Studio server (fake detector): the lead_time people spend on each task is
recorded beside its actions, `detal status` shows it per round and on the unbiased sample, and `detal cost fit`
gives back the seconds per action a scripted annotator worked at.

The scripted annotator turns each task's pre-labels into its annotation by random actions (accept, move, relabel,
delete, draw) and submits it with lead_time = the true seconds of those actions + N(0, 0.5 s) noise; three tasks
also hold a 400 s pause (a person away from the desk).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml

from detal import cost
from detal.cli import main
from detal.config import load_config
from detal.cycle import format_status, init_project, project_status, run_cycle
from detal.data import image_size
from detal.labelstudio import client as ls
from detal.labelstudio import format as fmt
from tests import fake_backend

pytestmark = pytest.mark.labelstudio

TRUE = {"per_image": 4.0, "accepted": 1.0, "moved": 3.0, "relabelled": 2.0, "deleted": 1.5, "drawn": 6.0}
NOISE = 0.5  # seconds, sd
PAUSE = 400.0


def _config(ls_server, tmp_path) -> Path:
    root = ls_server.document_root / "lead"
    from detal.synthetic import generate

    generate(root, 100, seed=7, imgsz=64, val_fraction=0.1)
    names = yaml.safe_load((root / "data.yaml").read_text())["names"]
    (root / "train.yaml").write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "names": names}))
    for p in (root / "labels" / "train").glob("*.txt"):  # nothing labelled yet: the annotator writes every label
        p.unlink()
    raw = {"experiment": "lead", "data": str(root / "train.yaml"), "output_dir": str(tmp_path / "runs"),
           "schedule": {"seed_fraction": 0.1, "select_fraction": 0.5, "epochs_per_round": 1, "total_epochs": 3},
           # the fake predicts up to 3 boxes of different classes in one place: keep them all, more actions per task
           "prelabel": {"agnostic": False},
           "labelstudio": {"url": ls_server.url, "api_key_env": "DETAL_TEST_TOKEN", "project": "lead",
                           "document_root": str(ls_server.document_root), "batch_size": 50},
           "cycle": {"strategy": "entropy", "audit_share": 0.2, "min_new_labels": 1, "val_fraction": 0.15,
                     "val_max": 8}}
    path = tmp_path / "project.yaml"
    text = yaml.safe_dump(raw, sort_keys=False)
    # a user's file: comments and a cost section of their own, which --write must keep but for its values
    path.write_text("# my project\n" + text + "cost:          # my cost section\n  drawn: 7.0   # my guess\n"
                    "  accept_iou: 0.85\n")
    return path


class Scripted:
    """Annotates every open task: random actions on its pre-labels, lead_time from TRUE seconds of those actions."""

    def __init__(self, conn, cfg, rng):
        self.conn, self.rng = conn, rng
        self.pid = ls.find_project(conn, ls.project_title(cfg))
        self.names = yaml.safe_load(Path(cfg.data).read_text())["names"]
        self.spec = ls.project_spec(conn, self.pid, self.names)
        self.root = Path(cfg.labelstudio.document_root).resolve()
        self.prefix = Path(cfg.data).parent.resolve().relative_to(self.root).as_posix() + "/"
        self.done: dict[str, dict] = {}  # image key -> lead_time, counts, boxes, pre-labels shown
        self.pauses = 0

    def work(self) -> int:
        n = 0
        for t in self.conn.client.tasks.list(project=self.pid, fields="all"):
            if t.annotations:
                continue
            preds = [p if isinstance(p, dict) else p.model_dump() for p in (t.predictions or [])]
            pre = (fmt.regions_to_yolo(max(preds, key=lambda p: p["id"])["result"], self.spec, "test") if preds
                   else np.zeros((0, 5)))
            final = []
            for row in pre:
                act = self.rng.choice(["accepted", "moved", "relabelled", "deleted"])
                if act == "moved":  # a tenth of the box to the right: the same object (IoU ~0.8), moved
                    row = row.copy()
                    row[1] = min(row[1] + row[3] / 10, 1 - row[3] / 2)
                elif act == "relabelled":
                    row = row.copy()
                    row[0] = (row[0] + 1) % len(self.names)
                if act != "deleted":
                    final.append(row)
            for _ in range(int(self.rng.integers(0, 3) if len(pre) else self.rng.integers(1, 4))):
                w, h = self.rng.uniform(0.1, 0.2, 2)
                final.append([int(self.rng.integers(0, len(self.names))), self.rng.uniform(0.5, 0.85),
                              self.rng.uniform(0.5, 0.85), w, h])  # away from the fake's boxes (top left)
            final = np.asarray(final, float).reshape(-1, 5)
            path = self.root / t.data["path"]
            regions = fmt.label_regions(final, *image_size(path), self.names, self.spec)
            # what the annotator did, counted as detal counts it (people: accept_iou None), and what it took
            counts = cost.actions(pre, fmt.regions_to_yolo(regions, self.spec, "test"))
            lead = cost.seconds(counts, {a: TRUE[a] for a in cost.ACTIONS}, TRUE["per_image"])
            lead += float(self.rng.normal(0, NOISE))
            if self.pauses < 3 and self.rng.random() < 0.1:
                lead += PAUSE
                self.pauses += 1
            ls.submit_annotation(self.conn, t.id, regions, lead_time=round(lead, 3))
            self.done[t.data["path"][len(self.prefix):]] = {"lead": round(lead, 3), "counts": counts,
                                                            "boxes": len(final), "shown": len(pre) if preds else None}
            n += 1
        return n


def _cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_lead_time_is_recorded_shown_and_fitted(ls_server, conn, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DETAL_TEST_TOKEN", ls_server.token)
    path = _config(ls_server, tmp_path)
    cfg = load_config(path)
    run = lambda fn: fn(cfg, backend=fake_backend, quiet=True)  # noqa: E731
    run(init_project)
    # nothing annotated: too few tasks is one line naming how many are needed, exit 2
    rc, out, err = _cli(capsys, "cost", "fit", "-c", str(path))
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert "0 annotated tasks with a Label Studio lead_time, a fit of seconds per action needs at least 8" in err

    bot = Scripted(conn, cfg, np.random.default_rng(5))
    for r in (1, 2):
        assert bot.work() > 0
        out = run(run_cycle)
        assert out.trained and out.round == r, out.message

    # the state holds every annotated task's lead_time beside the counts the annotator made
    db = sqlite3.connect(cfg.run_dir / "project.sqlite")
    cols = ["key", "lead_time", *cost.ACTIONS, "boxes", "prelabels", "single"]
    rows = {r[0]: dict(zip(cols, r)) for r in db.execute(f"SELECT {', '.join(cols)} FROM lead_times")}
    assert set(rows) == set(bot.done) and len(rows) >= 50
    for key, d in bot.done.items():
        assert rows[key]["lead_time"] == pytest.approx(d["lead"], abs=1e-3), key
        assert {a: rows[key][a] for a in cost.ACTIONS} == d["counts"], key
        assert (rows[key]["boxes"], rows[key]["prelabels"], rows[key]["single"]) == (d["boxes"], d["shown"], 1)
    seen = {a: sum(d["counts"][a] > 0 for d in bot.done.values()) for a in cost.ACTIONS}
    assert min(seen.values()) >= 8, seen  # every action often enough to be fitted

    # status: real seconds per image and per box, per round the labels joined, and the unbiased sample
    st = project_status(cfg)
    lt = st["lead_times"]
    status = dict(db.execute("SELECT key, status FROM images"))
    joined = dict(db.execute("SELECT key, round FROM images"))
    sources = dict(db.execute("SELECT key, source FROM images"))
    for r in lt["rounds"]:
        mine = [d for k, d in bot.done.items() if status[k] == "labelled" and joined[k] == r["round"]]
        lead = [d["lead"] for d in mine]
        assert r["tasks"] == len(mine) > 0
        assert r["median"] == pytest.approx(np.median(lead), abs=1e-3)
        assert r["mean"] == pytest.approx(np.mean(lead), abs=1e-3)
        assert r["per_box"] == pytest.approx(sum(lead) / sum(d["boxes"] for d in mine), abs=1e-3)
    assert [r["round"] for r in lt["rounds"]] == [1, 2] and lt["val"]["tasks"] == 8
    sample = [d for k, d in bot.done.items() if sources[k] == "random" and d["shown"] is not None]
    assert lt["sample"]["images"] == len(sample) > 0  # cycle.audit_share gave `entropy` random picks
    shown, boxes = sum(d["shown"] for d in sample), sum(d["boxes"] for d in sample)
    assert lt["sample"]["precision"] == pytest.approx((shown - sum(d["counts"]["deleted"] for d in sample)) / shown)
    assert lt["sample"]["recall"] == pytest.approx((boxes - sum(d["counts"]["drawn"] for d in sample)) / boxes)
    assert lt["sample"]["seconds_median"] == pytest.approx(np.median([d["lead"] for d in sample]), abs=1e-3)
    text = format_status(st)
    assert "annotators' seconds (Label Studio lead_time)" in text and "unbiased sample (random picks, " in text
    assert "seconds per action fitted on" in text
    json.dumps(st)  # --json
    # metrics.csv: the timed images of the labelled set each round trained on, and their seconds
    import pandas as pd

    m = pd.read_csv(cfg.run_dir / "metrics.csv")
    train_keys = [k for k in bot.done if status[k] == "labelled"]
    assert m["lead_images"].tolist() == [sum(joined[k] <= r for k in train_keys) for r in (1, 2)]
    assert m["lead_seconds"].iloc[-1] == pytest.approx(sum(bot.done[k]["lead"] for k in train_keys), abs=0.1)
    report = (cfg.run_dir / "report.md").read_text()  # the report rewritten after the round says them too
    assert f"round 2: {m['lead_seconds'].iloc[-1] / m['lead_images'].iloc[-1]:.1f} s per image" in report

    # the fit gives back the annotator's seconds: 5-fold held-out error near the noise, pauses left out
    rc, out, err = _cli(capsys, "cost", "fit", "-c", str(path))
    assert rc == 0, err
    fitted = {line.split()[0]: float(line.split()[1]) for line in out.splitlines()[2:8]}
    with capsys.disabled():  # shown with -s: how close the fit came
        print("\nfitted vs true:", {k: (round(fitted[k], 2), v) for k, v in TRUE.items()})
    # 0.5 s = 1/8 of the smallest gap between two true constants, and > 4 standard errors of each coefficient
    # (noise 0.5 s over >= 8 tasks per action: SE <= 0.5 / sqrt(8) ~ 0.18 s)
    for k, v in TRUE.items():
        assert fitted[k] == pytest.approx(v, abs=0.5), (k, fitted)
    assert "3 pauses above" in out and "held-out error (5-fold): median" in out
    heldout = float(out.split("held-out error (5-fold): median ")[1].split()[0])
    baseline = float(out.split("by the median: ")[1].split()[0])
    assert heldout < 2 * NOISE and baseline > 3 * heldout

    # --write: only the cost values of the config change; comments and every other line stay
    before = path.read_text()
    rc, out, err = _cli(capsys, "cost", "fit", "-c", str(path), "--write")
    assert rc == 0 and "wrote the fitted seconds into" in out, err
    after = path.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    added = after.splitlines()[len(before.splitlines()):]
    assert len(changed) == 1 and changed[0][0] == "  drawn: 7.0   # my guess"  # the one fitted key it had
    assert changed[0][1].startswith("  drawn: ") and changed[0][1].endswith("# my guess")
    assert changed[0][1].index("#") == changed[0][0].index("#")  # the comment stays in its column
    assert after.splitlines()[len(before.splitlines()) - 1] == "  accept_iou: 0.85"  # the section's keys kept
    assert sorted(line.split(":")[0].strip() for line in added) == sorted(set(TRUE) - {"drawn"})  # added to it
    again = load_config(path)
    assert again.cost.accept_iou == 0.85 and again.labelstudio == cfg.labelstudio and again.cycle == cfg.cycle
    for k, v in TRUE.items():
        assert getattr(again.cost, k) == pytest.approx(v, abs=0.5)

    # an annotation updated in the editor replaces the task's seconds (the editor sums its sessions); a second
    # annotation adds its own; both tasks are no longer one pass: left out of the fit, still in status's seconds
    tasks = {t.data["path"][len(bot.prefix):]: t for t in conn.client.tasks.list(project=bot.pid, fields="all")
             if t.annotations}
    k1, k2 = sorted(k for k in tasks if status[k] == "labelled")[:2]
    ann = tasks[k1].annotations[0]
    conn.client.annotations.update(id=ann["id"], result=ann["result"][1:], lead_time=bot.done[k1]["lead"] + 30)
    ls.submit_annotation(conn, tasks[k2].id, tasks[k2].annotations[0]["result"], lead_time=12.0)
    run(run_cycle)
    row = lambda k: db.execute("SELECT lead_time, single FROM lead_times WHERE key = ?", (k,)).fetchone()  # noqa: E731
    assert row(k1) == (pytest.approx(bot.done[k1]["lead"] + 30), 0)
    assert row(k2) == (pytest.approx(bot.done[k2]["lead"] + 12.0), 0)
    rc, out, err = _cli(capsys, "cost", "fit", "-c", str(path))
    assert rc == 0 and "2 edited tasks left out" in out
