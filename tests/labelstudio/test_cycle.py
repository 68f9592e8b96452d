"""The scheduled job against a real Label Studio server (fake detector): init, cycles, kills, a second run, a dead server.

A bot stands in for people: between cycles it annotates part of the open tasks with the ground truth,
skips some and leaves the rest open. After every run the invariants hold: no task twice, the labelled set
is exactly the annotated tasks, every open task with pre-labels carries the project's current model version.
"""

from __future__ import annotations

import fcntl
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml

from detal import cost
from detal.config import parse_config
from detal.cycle import format_status, init_project, project_status, run_cycle
from detal.data import format_labels, image_size, label_path, read_labels
from detal.errors import DetalError
from detal.labelstudio import client as ls
from detal.labelstudio import format as fmt
from detal.labelstudio.annotator import LabelStudioAnnotator
from detal.synthetic import generate
from tests import fake_backend
from tests.labelstudio.helpers import assert_no_secret

pytestmark = pytest.mark.labelstudio


def _project(ls_server, tmp_path, name: str, n: int = 70, **cycle):
    """A dataset with NO labelled val split (detal reserves one) and a config for it."""
    root = ls_server.document_root / name
    generate(root, n, seed=7, imgsz=64, val_fraction=0.1)
    (root / "train.yaml").write_text(yaml.safe_dump({"path": str(root), "train": "images/train",
                                                     "names": yaml.safe_load((root / "data.yaml").read_text())["names"]}))
    for p in (root / "labels" / "train").glob("*.txt"):  # the user has no labels yet: the ground truth hides
        p.rename(p.with_suffix(".truth"))
    raw = {"experiment": name, "data": str(root / "train.yaml"), "output_dir": str(tmp_path / "runs"),
           "schedule": {"seed_fraction": 0.1, "select_fraction": 0.1, "epochs_per_round": 1, "total_epochs": 3},
           "labelstudio": {"url": ls_server.url, "api_key_env": "DETAL_TEST_TOKEN", "project": "cyc",
                           "document_root": str(ls_server.document_root), "batch_size": 3},
           "cycle": {"strategy": "mix", "min_new_labels": 1, "val_fraction": 0.15, "val_max": 8, **cycle}}
    return parse_config(raw), root


def _run(fn, cfg, **kw):
    return fn(cfg, backend=fake_backend, quiet=True, **kw)


class Bot:
    """Annotates open tasks as a person would: ground truth for most, a skip now and then, some left open."""

    def __init__(self, conn, cfg, root, seed=0):
        self.conn, self.root, self.rng = conn, root, np.random.default_rng(seed)
        self.pid = ls.find_project(conn, ls.project_title(cfg))
        self.names = yaml.safe_load((root / "train.yaml").read_text())["names"]

    def tasks(self):
        return list(self.conn.client.tasks.list(project=self.pid, fields="all"))

    def work(self, do: float = 0.7, skip: float = 0.1, val_all: bool = True) -> dict:
        done = {"labelled": 0, "skipped": 0, "open": 0}
        spec = ls.project_spec(self.conn, self.pid, self.names)
        for t in self.tasks():
            if t.annotations:
                continue
            path = (self.conn_root / t.data["path"]).resolve()
            u = self.rng.random()
            if (t.data.get("split") == "val" and val_all) or u < do:
                truth = read_labels(label_path(path).with_suffix(".truth"), len(self.names)) \
                    if label_path(path).with_suffix(".truth").exists() else read_labels(label_path(path), len(self.names))
                w, h = image_size(path)
                ls.submit_annotation(self.conn, t.id, fmt.label_regions(truth, w, h, self.names, spec))
                done["labelled"] += 1
            elif u < do + skip:
                ls.submit_annotation(self.conn, t.id, [], cancelled=True)
                done["skipped"] += 1
            else:
                done["open"] += 1
        return done


def _invariants(cfg, bot: Bot) -> dict:
    tasks = bot.tasks()
    keys = [t.data["path"] for t in tasks]
    assert len(keys) == len(set(keys)), "a task was pushed twice"
    db = sqlite3.connect(cfg.run_dir / "project.sqlite")
    status = dict(db.execute("SELECT key, status FROM images"))
    prefix = Path(cfg.data).parent.relative_to(bot.conn_root).as_posix() + "/"
    annotated = {t.data["path"][len(prefix):] for t in tasks
                 if any(not a["was_cancelled"] for a in t.annotations) and t.data.get("split") != "val"}
    labelled = {k for k, s in status.items() if s == "labelled"}
    assert labelled == annotated, "the labelled set must be exactly the annotated tasks"
    skipped = {t.data["path"][len(prefix):] for t in tasks if t.annotations and all(a["was_cancelled"] for a in t.annotations)}
    assert {k for k, s in status.items() if s == "skipped"} == skipped - {k for k, s in status.items() if s.startswith("val")}
    project_version = bot.conn.client.projects.get(id=bot.pid).model_version
    for t in tasks:
        if not t.annotations and t.predictions:
            versions = {p.model_version for p in t.predictions}
            assert versions == {project_version}, f"open task {t.id} holds {versions}, project {project_version}"
    for key, s in status.items():  # a labelled image has its label file of record; a pool image has none
        lab = cfg.run_dir / "labels" / key.replace("images/", "labels/", 1)
        assert lab.with_suffix(".txt").exists() == (s in ("labelled", "val")), key
    # the label of record is the NEWEST annotation of its task, however long ago it was first collected
    pulled = ls.pull(bot.conn, bot.pid, bot.names, document_root=bot.conn_root)
    root = Path(cfg.data).parent.resolve()
    for key, s in status.items():
        path = (root / key).resolve()
        if s in ("labelled", "val") and path in pulled.labels:
            lab = (cfg.run_dir / "labels" / key.replace("images/", "labels/", 1)).with_suffix(".txt")
            assert lab.read_text() == format_labels(pulled.labels[path]), f"{key}: label of record is not the newest"
    return status


@pytest.fixture
def token(ls_server, monkeypatch):
    monkeypatch.setenv("DETAL_TEST_TOKEN", ls_server.token)
    return ls_server.token


def test_init_and_three_cycles(ls_server, conn, tmp_path, token, capsys):
    cfg, root = _project(ls_server, tmp_path, "cycle-e2e")
    msg = _run(init_project, cfg)
    assert "8 images reserved" in msg and "random seed set" in msg
    assert "already initialised" in _run(init_project, cfg)  # idempotent
    bot = Bot(conn, cfg, root)
    bot.conn_root = ls_server.document_root.resolve()
    views = list(conn.client.views.list(project=bot.pid))
    assert [v.data["ordering"] for v in views if v.data.get("title", "").startswith("detal")] == [["-tasks:data.uncertainty"]]
    assert sum(t.data.get("split") == "val" for t in bot.tasks()) == 8

    out = _run(run_cycle, cfg)  # nobody has annotated yet
    assert not out.trained and "val set is not fully annotated" in out.message
    _invariants(cfg, bot)

    trained = []
    for i in range(3):
        work = bot.work(do=0.6, skip=0.15)
        out = _run(run_cycle, cfg)
        assert out.trained, out.message
        trained.append(out.metrics)
        status = _invariants(cfg, bot)
        open_train = [t for t in bot.tasks() if not t.annotations and t.data.get("split") != "val"]
        assert open_train and all(t.predictions for t in open_train), "every open task carries pre-labels"
        # uncertainty is a rounded number, sortable
        unc = [t.data["uncertainty"] for t in open_train if "uncertainty" in t.data]
        assert unc and all(isinstance(u, float) and round(u, 4) == u for u in unc)
    labelled = [m["labeled_images"] for m in trained]
    assert labelled == sorted(labelled) and labelled[0] < labelled[-1]
    st = project_status(cfg)
    assert [r["round"] for r in st["rounds"]] == [1, 2, 3]
    # the random share of earlier batches, once annotated, measured the pre-labels on unseen images
    est = [r for r in st["rounds"] if r["prelabel_images"]]
    assert est, "no random-share image was annotated between cycles"
    for r in est:
        assert 0 <= r["prelabel_precision"] <= 1 and 0 <= r["prelabel_recall"] <= 1 and 0 <= r["prelabel_map50"] <= 1
    assert all(r["map50_95"] is not None for r in st["rounds"])
    assert st["images"]["labelled"] == sum(1 for s in status.values() if s == "labelled")
    assert st["last_run"]["outcome"] == "trained"
    assert (cfg.run_dir / "report.html").exists()  # the project's rounds are reported like an experiment's
    text = format_status(st)
    assert "mAP50-95" in text and "last run: cycle" in text
    assert "pre-label columns empty" not in text  # the random share measured them
    json.dumps(st)  # --json
    out = capsys.readouterr()
    assert assert_no_secret(ls_server.token, cfg.run_dir, texts=(text, out.out, out.err)) > 20


def test_recommended_cycle_fits_its_temperature_on_the_annotators_labels(ls_server, conn, tmp_path, token, capsys):
    """The default live strategy carries a calibration: it is fitted on the labels of record, every cycle."""
    cfg, root = _project(ls_server, tmp_path, "cycle-rec", strategy="recommended")
    assert cfg.scoring.calibration == "none"  # the alias fills it in, the config does not name it
    _run(init_project, cfg)
    bot = Bot(conn, cfg, root)
    bot.conn_root = ls_server.document_root.resolve()
    fits = []
    for _ in range(2):
        bot.work(do=0.8, skip=0.0)
        out = run_cycle(cfg, backend=fake_backend, quiet=False)
        assert out.trained, out.message
        err = capsys.readouterr().err
        fitted = re.findall(r"temperature on the labelled set: ([0-9.]+) \(fitted on (\d+) predicted boxes\)", err)
        assert len(fitted) == 1, err  # once per cycle, before it selects
        fits.append((float(fitted[0][0]), int(fitted[0][1])))
    # the fake predicts 0-3 boxes per image (none on this seed set's 3 images: T = 1, no evidence); once
    # the first batch is annotated there are boxes to fit on, and its uniform scores are far from calibrated
    assert all((n == 0 and t == 1.0) or (n > 0 and 0.05 <= t <= 20) for t, n in fits), fits
    assert fits[-1][1] > 0 and abs(np.log(fits[-1][0])) > 0.05, fits
    _invariants(cfg, bot)
    open_train = [t for t in bot.tasks() if not t.annotations and t.data.get("split") != "val"]
    assert open_train and all(t.predictions for t in open_train)


def test_status_says_why_the_prelabel_columns_are_empty():
    nan = float("nan")
    row = {"round": 1, "labeled_images": 40, "labeled_boxes": 200, "map50_95": 0.2, "map50": 0.3, "selected_images": 20,
           "prelabel_images": 0, "prelabel_precision": nan, "prelabel_recall": nan, "prelabel_map50": nan,
           "edits_per_image": nan}
    st = {"project": "p", "state": "s", "val_source": "val split", "strategy": "entropy_wide", "gone": 0,
          "images": dict.fromkeys(("labelled", "pushed", "pool", "skipped", "val", "val_pushed"), 1),
          "rounds": [row], "last_run": None}
    text = format_status(st)
    assert "pre-label columns empty" in text and "'entropy_wide'" in text
    row.update(prelabel_images=12, prelabel_precision=0.8, prelabel_recall=0.7, prelabel_map50=0.5, edits_per_image=1.5)
    text = format_status(st)
    assert "pre-label columns empty" not in text and "0.800" in text


@pytest.mark.parametrize("stage", ["after_pull", "training", "after_selection", "mid_push"])
def test_killed_cycle_resumes_without_loss(ls_server, conn, tmp_path, token, monkeypatch, stage):
    cfg, root = _project(ls_server, tmp_path, f"cycle-kill-{stage.replace('_', '')}")
    _run(init_project, cfg)
    bot = Bot(conn, cfg, root, seed=1)
    bot.conn_root = ls_server.document_root.resolve()
    bot.work(do=1.0, skip=0.0)
    assert _run(run_cycle, cfg).trained  # round 1: a model exists
    bot.work(do=0.5, skip=0.2)
    before = sqlite3.connect(cfg.run_dir / "project.sqlite").execute("SELECT meta.value FROM meta WHERE key='round_done'").fetchone()

    class Killed(BaseException):
        pass

    def die(*a, **k):
        raise Killed(stage)

    import detal.cycle.cycle as cycle_mod
    from detal.labelstudio import client as client_mod

    with monkeypatch.context() as m:
        if stage == "after_pull":
            m.setattr(cycle_mod, "run_round", die)
        elif stage == "training":
            m.setattr(fake_backend, "train", die)
        elif stage == "after_selection":
            m.setattr(LabelStudioAnnotator, "request", die)
        else:
            real = client_mod._import_tasks
            calls = {"n": 0}

            def half(*a, **k):
                calls["n"] += 1
                if calls["n"] == 2:  # the first chunk reached the server, then the process died
                    raise Killed(stage)
                return real(*a, **k)

            m.setattr(client_mod, "_import_tasks", half)
        with pytest.raises(Killed):
            _run(run_cycle, cfg)
    db = sqlite3.connect(cfg.run_dir / "project.sqlite")
    assert db.execute("SELECT value FROM meta WHERE key='round_done'").fetchone() == before  # nothing recorded
    assert db.execute("SELECT outcome FROM runs ORDER BY id DESC LIMIT 1").fetchone() == ("failed",)
    out = _run(run_cycle, cfg)  # the next scheduled run redoes the work
    assert out.trained and out.round == 2, out.message
    _invariants(cfg, bot)


def test_second_run_and_dead_server(ls_server, conn, tmp_path, token, monkeypatch):
    cfg, root = _project(ls_server, tmp_path, "cycle-guard")
    _run(init_project, cfg)
    with open(cfg.run_dir / ".cycle.lock", "a+") as fh:  # a run in progress holds the lock
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DetalError, match="another detal init/cycle is running"):
            _run(run_cycle, cfg)
    from detal.labelstudio import server

    dead = cfg.model_copy(update={"labelstudio": cfg.labelstudio.model_copy(
        update={"url": f"http://127.0.0.1:{server.free_port()}"})})
    with pytest.raises(DetalError, match="cannot reach Label Studio") as e:
        _run(run_cycle, dead)
    assert "\n" not in str(e.value)
    st = project_status(cfg)
    assert st["last_run"]["outcome"] == "failed" and st["rounds"] == []


def test_dataset_outside_the_document_root_is_one_line_before_anything_exists(ls_server, conn, tmp_path, token):
    cfg, root = _project(ls_server, tmp_path, "cycle-outside")
    other = tmp_path / "elsewhere"
    other.mkdir()
    bad = cfg.model_copy(update={"labelstudio": cfg.labelstudio.model_copy(update={"document_root": other})})
    with pytest.raises(DetalError, match="must lie strictly inside the Label Studio document root") as e:
        _run(init_project, bad)
    assert "\n" not in str(e.value)
    assert ls.find_project(conn, ls.project_title(bad)) is None  # no empty project left behind


def test_cycle_refuses_a_calibration_the_recommended_rule_does_not_carry(tmp_path):
    """No server needed: the clash is refused in one line before project state or any request exists."""
    from detal.errors import ConfigError

    raw = {"experiment": "clash", "data": str(tmp_path / "data.yaml"), "output_dir": str(tmp_path / "runs"),
           "scoring": {"calibration": "difficulty"}, "cycle": {"strategy": "recommended"}}
    cfg = parse_config(raw)  # a study config may hold this; the live project may not
    for fn in (init_project, run_cycle):
        with pytest.raises(ConfigError, match=r"^config: scoring\.calibration / cycle\.strategy: strategy recommended "
                                              r"is entropy_wide with calibration temperature") as e:
            _run(fn, cfg)
        assert "\n" not in str(e.value)
    assert not (tmp_path / "runs" / "clash" / "project.sqlite").exists()


# ---------------------------------------------------------------- what people do after detal has looked

def _label_file(cfg, key: str) -> Path:
    return (cfg.run_dir / "labels" / key.replace("images/", "labels/", 1)).with_suffix(".txt")


def _annotated(bot: Bot, val: bool):
    return sorted((t for t in bot.tasks() if (t.data.get("split") == "val") == val
                   and any(not a["was_cancelled"] for a in t.annotations)), key=lambda t: t.id)


def _edit(bot: Bot, task, *, new_annotation: bool = False) -> np.ndarray:
    """Reopen a finished task and change it as an annotator would: drop the first box, add one, relabel one.
    Updates the annotation in place (updated_at moves), or submits a second, newer one. Returns the labels."""
    spec = ls.project_spec(bot.conn, bot.pid, bot.names)
    path = (bot.conn_root / task.data["path"]).resolve()
    ann = max((a for a in task.annotations if not a["was_cancelled"]), key=lambda a: a["id"])
    old = fmt.regions_to_yolo(ann["result"], spec, "test")
    new = np.vstack([old[1:], [[2, 0.5, 0.5, 0.25, 0.25]]])
    new[0, 0] = (new[0, 0] + 1) % len(bot.names)
    w, h = image_size(path)
    regions = fmt.label_regions(new, w, h, bot.names, spec)
    if new_annotation:
        ls.submit_annotation(bot.conn, task.id, regions)
    else:
        bot.conn.client.annotations.update(id=ann["id"], result=regions)
    return fmt.regions_to_yolo(regions, spec, "test")


def test_an_edit_after_collection_becomes_the_label_of_record_and_is_counted(ls_server, conn, tmp_path, token,
                                                                            monkeypatch, caplog):
    cfg, root = _project(ls_server, tmp_path, "cycle-edit")
    _run(init_project, cfg)
    bot = Bot(conn, cfg, root, seed=3)
    bot.conn_root = ls_server.document_root.resolve()
    bot.work(do=1.0, skip=0.0)
    assert _run(run_cycle, cfg).trained  # round 1: the seed set and the val set collected
    prefix = Path(cfg.data).parent.relative_to(bot.conn_root).as_posix() + "/"
    train_task, val_task = _annotated(bot, val=False)[0], _annotated(bot, val=True)[0]
    tkey, vkey = train_task.data["path"][len(prefix):], val_task.data["path"][len(prefix):]
    before = read_labels(_label_file(cfg, tkey), len(bot.names))
    edited = _edit(bot, train_task)
    edited_val = _edit(bot, val_task)
    # what training reads: the label file beside each link in the round's train list, at training time
    seen = {}
    real_train = fake_backend.train

    def spy(model, data_yaml, epochs, out_dir, **kw):
        doc = yaml.safe_load(Path(data_yaml).read_text())
        for line in Path(doc["train"]).read_text().split():
            seen[Path(line).name] = label_path(Path(line)).read_text()
        return real_train(model, data_yaml, epochs, out_dir, **kw)

    monkeypatch.setattr(fake_backend, "train", spy)
    out = _run(run_cycle, cfg)  # nobody annotated anything new: the edit alone is new information
    assert out.trained and out.round == 2, out.message
    assert _label_file(cfg, tkey).read_text() == format_labels(edited)
    assert _label_file(cfg, vkey).read_text() == format_labels(edited_val)
    assert seen[Path(tkey).name] == format_labels(edited), "training read the first version"
    db = sqlite3.connect(cfg.run_dir / "project.sqlite")
    boxes = json.loads(db.execute("SELECT boxes FROM images WHERE key = ?", (tkey,)).fetchone()[0])
    assert boxes == np.bincount(edited[:, 0].astype(int), minlength=len(bot.names)).tolist()
    # the edit's actions (previous label of record -> edited one) are the round's effort, nothing else came in
    want = fmt.effort_counts(before, edited)
    row = project_status(cfg)["rounds"][-1]
    assert row["edited_images"] == 1
    metrics = json.loads(db.execute("SELECT metrics FROM rounds WHERE round = 2").fetchone()[0])
    changed = ("corrected", "deleted", "added")  # boxes the edit kept were counted in round 1
    assert {k: metrics[k] for k in changed} == {k: want[k] for k in changed}
    # and its cost: the actions in the round's columns, its seconds added to what the labelled set cost
    act = {**cost.actions(before, edited), "accepted": 0}
    assert {k: metrics[k] for k in ("moved", "relabelled", "drawn")} == {k: act[k] for k in ("moved", "relabelled", "drawn")}
    first = json.loads(db.execute("SELECT metrics FROM rounds WHERE round = 1").fetchone()[0])
    per_action, per_image = cfg.cost.per_action, cfg.cost.per_image
    assert metrics["labeled_images"] == first["labeled_images"]  # the same images: only the edit changed
    assert metrics["annotation_seconds"] == pytest.approx(
        first["annotation_seconds"] + cost.seconds(act, per_action, per_image), abs=0.2)
    assert metrics["scratch_seconds"] == pytest.approx(
        first["scratch_seconds"] + cost.seconds(cost.from_scratch(edited), per_action, per_image)
        - cost.seconds(cost.from_scratch(before), per_action, per_image), abs=0.2)
    assert want["deleted"] + want["added"] + want["corrected"] >= 2
    text = format_status(project_status(cfg))
    assert "annotations edited after collection" in text and "1 train and 1 val" in text
    _invariants(cfg, bot)

    # later: a second, newer annotation on the same task wins; a skipped task annotated after all is labelled
    open_task = next(t for t in bot.tasks() if not t.annotations and t.data.get("split") != "val")
    ls.submit_annotation(conn, open_task.id, [], cancelled=True)
    assert not _run(run_cycle, cfg).trained  # one skip: nothing new to train on
    skey = open_task.data["path"][len(prefix):]
    assert db.execute("SELECT status FROM images WHERE key = ?", (skey,)).fetchone() == ("skipped",)
    newer = _edit(bot, conn.client.tasks.get(id=train_task.id), new_annotation=True)
    truth = read_labels(label_path((bot.conn_root / open_task.data["path"])).with_suffix(".truth"), len(bot.names))
    w, h = image_size(bot.conn_root / open_task.data["path"])
    ls.submit_annotation(conn, open_task.id, fmt.label_regions(truth, w, h, bot.names,
                                                               ls.project_spec(conn, bot.pid, bot.names)))
    damaged = _label_file(cfg, _annotated(bot, val=False)[1].data["path"][len(prefix):])
    damaged.write_text("0 0.5 nan 0.1 0.1\n")  # someone edited a label of record by hand
    with caplog.at_level("WARNING", logger="detal"):
        out = _run(run_cycle, cfg)
    assert out.trained and out.round == 3, out.message
    said = [r.getMessage() for r in caplog.records if str(damaged) in r.getMessage()]
    assert len(said) == 1 and said[0].endswith("rewritten from the newest annotation"), said
    assert _label_file(cfg, tkey).read_text() == format_labels(newer)
    assert db.execute("SELECT status FROM images WHERE key = ?", (skey,)).fetchone() == ("labelled",)
    metrics = json.loads(db.execute("SELECT metrics FROM rounds WHERE round = 3").fetchone()[0])
    assert metrics["skipped"] == 1 and metrics["edited_images"] == 1  # the waiting run's skip is not lost
    _invariants(cfg, bot)


def test_deleted_tasks_never_stall_the_project(ls_server, conn, tmp_path, token, caplog):
    cfg, root = _project(ls_server, tmp_path, "cycle-delete")
    _run(init_project, cfg)
    bot = Bot(conn, cfg, root, seed=4)
    bot.conn_root = ls_server.document_root.resolve()
    prefix = Path(cfg.data).parent.relative_to(bot.conn_root).as_posix() + "/"
    db = sqlite3.connect(cfg.run_dir / "project.sqlite")
    status = lambda key: db.execute("SELECT status FROM images WHERE key = ?", (key,)).fetchone()[0]  # noqa: E731
    val_tasks = [t for t in bot.tasks() if t.data.get("split") == "val"]
    assert len(val_tasks) == 8

    # an admin deletes EVERY val task: dropping them all would leave nothing to evaluate on, so they come back
    for t in val_tasks:
        conn.client.tasks.delete(id=str(t.id))
    with caplog.at_level("WARNING", logger="detal"):
        out = _run(run_cycle, cfg)
    lines = [r.getMessage() for r in caplog.records if "deleted in Label Studio" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("8 tasks detal pushed were deleted in Label Studio") \
        and "8 pushed again" in lines[0], lines
    assert not out.trained and "8 val tasks open" in out.message
    assert sorted(t.data["path"] for t in bot.tasks() if t.data.get("split") == "val") == \
        sorted(t.data["path"] for t in val_tasks)

    # one val task deleted: it leaves the val set (back to the pool); the rest annotated: the project trains
    val_tasks = [t for t in bot.tasks() if t.data.get("split") == "val"]
    dropped = val_tasks[0].data["path"][len(prefix):]
    conn.client.tasks.delete(id=str(val_tasks[0].id))
    bot.work(do=1.0, skip=0.0)
    caplog.clear()
    with caplog.at_level("WARNING", logger="detal"):
        out = _run(run_cycle, cfg)
    assert out.trained and out.round == 1, out.message
    lines = [r.getMessage() for r in caplog.records if "deleted in Label Studio" in r.getMessage()]
    assert lines == [f"1 tasks detal pushed were deleted in Label Studio (e.g. {dropped}): 0 pushed again, "
                     "1 val images dropped from the val set (back in the pool)"]
    assert status(dropped) == "pool"
    st = project_status(cfg)
    assert st["images"]["val"] == 7 and st["images"]["val_pushed"] == 0
    assert st["deleted_tasks"]["val_dropped"] == 1 and st["deleted_tasks"]["repushed"] == 8
    _invariants(cfg, bot)

    # an open train task and a labelled one deleted: the open one is pushed again, the label is kept
    open_task = next(t for t in bot.tasks() if not t.annotations and t.data.get("split") != "val")
    done_task = _annotated(bot, val=False)[0]
    okey, dkey = open_task.data["path"][len(prefix):], done_task.data["path"][len(prefix):]
    label_before = _label_file(cfg, dkey).read_text()
    for t in (open_task, done_task):
        conn.client.tasks.delete(id=str(t.id))
    bot.work(do=0.5, skip=0.0)  # some new labels, so the next cycle trains
    out = _run(run_cycle, cfg)
    assert out.trained and out.round == 2, out.message
    again = [t for t in bot.tasks() if t.data["path"] == open_task.data["path"]]
    assert len(again) == 1 and again[0].id != open_task.id and again[0].predictions, "pushed again, with pre-labels"
    assert status(okey) == "pushed" and status(dkey) == "labelled"
    assert _label_file(cfg, dkey).read_text() == label_before
    text = format_status(project_status(cfg))
    line = [x for x in text.splitlines() if x.startswith("tasks deleted in Label Studio")]
    assert len(line) == 1 and "9 pushed again, 1 val images dropped from the val set, 1 labelled or skipped kept" \
        in line[0], text
    open_keys = {t.data["path"] for t in bot.tasks() if not t.annotations}
    pending = {prefix + k for k, s in db.execute("SELECT key, status FROM images") if s in ("pushed", "val_pushed")}
    assert pending <= open_keys, "the state waits on a task the server does not have"
    caplog.clear()
    with caplog.at_level("WARNING", logger="detal"):
        _run(run_cycle, cfg)  # the labelled image's task stays deleted: said once, not every night
    assert not [r for r in caplog.records if "deleted in Label Studio" in r.getMessage()]
    assert project_status(cfg)["deleted_tasks"]["kept"] == 1


def test_a_state_from_before_seconds_were_counted_opens_and_keeps_them_unmeasured(tmp_path):
    """No server needed: the images table gains its seconds column; earlier labels stay 'not measured'."""
    from detal.cycle import Store
    from detal.state import ArmState

    path = tmp_path / "project.sqlite"
    old = sqlite3.connect(path)
    old.executescript("CREATE TABLE images (key TEXT PRIMARY KEY, status TEXT NOT NULL, round INTEGER, source TEXT, "
                      "task_id INTEGER, boxes TEXT, present INTEGER NOT NULL DEFAULT 1);"
                      "INSERT INTO images (key, status, round, boxes) VALUES ('a.png', 'labelled', 1, '[1, 0]');")
    old.close()
    store = Store(path)
    train, _, _ = store.load()
    assert train.labelled == {"a.png": 1} and train.seconds == {}
    assert store.leads() == {}  # the lead_times table is created; the next cycle fills it from the server
    assert np.isnan(train.labelled_seconds(["a.png"])[0])
    train.pending["b.png"] = 2
    train.label("b.png", np.array([0, 2]))
    train.seconds["b.png"] = [12.5, 30.0]
    with store.transaction() as db:
        Store.save(db, train, ArmState(), [], {})
    again, _, _ = Store(path).load()
    assert again.seconds == {"b.png": [12.5, 30.0]} and again.boxes["b.png"] == [0, 2]


def test_status_shows_real_seconds_and_says_when_the_unbiased_sample_is_empty():
    """No server needed: the lead_time summary from hand-made task records, and the empty-sample line."""
    from detal.cycle import leads

    def rec(key, rnd, lead, source, boxes, prelabels, side="train", **act):
        return {"key": key, "side": side, "lead_time": lead, **{a: act.get(a, 0) for a in cost.ACTIONS},
                "boxes": boxes, "prelabels": prelabels, "single": 1, "status": "labelled" if side == "train" else "val",
                "round": rnd, "source": source}

    cfg = parse_config({"experiment": "s", "data": "d.yaml"})
    known = {"a": rec("a", 1, 10.0, "seed", 2, None, drawn=2), "b": rec("b", 1, 20.0, "seed", 3, None, drawn=3),
             "c": rec("c", 2, 6.0, "uncertainty", 2, 2, accepted=2), "d": rec("d", 2, None, "uncertainty", 1, 1),
             "v": rec("v", 1, 30.0, "val", 4, None, side="val", drawn=4)}
    lt = leads.summary(known, cfg.cost)
    r1, r2 = lt["rounds"]
    assert (r1["tasks"], r1["median"], r1["mean"], r1["per_box"]) == (2, 15.0, 15.0, 6.0)
    assert r1["model_mean"] == pytest.approx(cfg.cost.per_image + 2.5 * cfg.cost.drawn)
    assert (r2["tasks"], r2["median"], r2["per_box"]) == (1, 6.0, 3.0)  # the untimed task is left out
    assert lt["val"]["tasks"] == 1 and lt["all"]["tasks"] == 3 and lt["sample"]["images"] == 0
    st = {"project": "p", "state": "s", "val_source": "reserved", "strategy": "recommended", "audit_share": 0.1,
          "gone": 0, "images": dict.fromkeys(("labelled", "pushed", "pool", "skipped", "val", "val_pushed"), 1),
          "rounds": [], "last_run": None, "lead_times": lt, "cost_fit": {"missing": "3 annotated tasks ... at least 8"}}
    text = format_status(st)
    assert "  1      2          15.0        15.0    6.00" in text and "  val      1          30.0" in text
    assert ("unbiased sample (random picks): empty; they are measured on annotated images a batch took at random "
            "(cycle.audit_share 0.1 of each batch); none annotated yet") in text
    assert "seconds per action: no fit yet (3 annotated tasks ... at least 8)" in text
    st["audit_share"] = 0.0
    assert "strategy 'recommended' takes none" in format_status(st) and "set cycle.audit_share" in format_status(st)
    known["c"]["source"] = "random"  # one random pick, shown 2 pre-labels, both accepted: precision and recall 1
    s = leads.summary(known, cfg.cost)["sample"]
    assert (s["images"], s["precision"], s["recall"], s["seconds_median"]) == (1, 1.0, 1.0, 6.0)
