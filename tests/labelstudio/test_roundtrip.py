"""Push pre-labels to a real Label Studio server and pull annotations back (server from conftest)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from detal.labelstudio import client as ls
from detal.labelstudio import format as fmt
from detal.errors import LabelStudioError
from detal.types import Prediction


from tests.labelstudio.helpers import NAMES, make_images, pred_of

pytestmark = pytest.mark.labelstudio
def _setup(conn, ls_server, name: str, n: int, seed: int, boxes: int = 3):
    folder = ls_server.document_root / name
    data = make_images(folder, n, seed=seed, boxes_per_image=boxes)
    pid = ls.ensure_project(conn, f"test-{name}", NAMES, document_root=ls_server.document_root,
                            image_root=folder / "images")
    return pid, data


def _tasks(conn, pid):
    return list(conn.client.tasks.list(project=pid, fields="all"))


def test_project_creation_and_reuse(conn, ls_server):
    pid, _ = _setup(conn, ls_server, "create", 1, seed=1)
    again = ls.ensure_project(conn, "test-create", NAMES, document_root=ls_server.document_root,
                              image_root=ls_server.document_root / "create" / "images")
    assert again == pid
    proj = conn.client.projects.get(id=pid)
    spec = fmt.parse_label_config(proj.label_config, NAMES)
    assert spec.class_of == {"red": 0, "green": 1, "blue": 2}
    storages = list(conn.client.import_storage.local.list(project=pid))
    assert [Path(s.path) for s in storages] == [(ls_server.document_root / "create" / "images").resolve()]
    assert _tasks(conn, pid) == []  # storage attached but never synced
    with pytest.raises(LabelStudioError, match="classes"):
        ls.ensure_project(conn, "test-create", ["red", "green"], document_root=ls_server.document_root)


def test_push_predictions_visible_and_refreshed(conn, ls_server):
    pid, data = _setup(conn, ls_server, "push", 3, seed=2)
    preds = [pred_of(p, lab) for p, lab in data]
    scores = {p: 0.1 * (i + 1) for i, (p, _) in enumerate(data)}
    res = ls.push(conn, pid, preds, names=NAMES, document_root=ls_server.document_root, round_idx=2,
                  model_version="m-round2", scores=scores)
    assert res.created == 3 and set(res.task_ids) == {p.resolve() for p, _ in data}
    assert conn.client.projects.get(id=pid).model_version == "m-round2"  # pre-labels are visible
    by_id = {t.id: t for t in _tasks(conn, pid)}
    for path, lab in data:
        t = by_id[res.task_ids[path.resolve()]]
        assert t.data["path"] == f"push/images/{path.name}"
        assert t.data["image"] == f"/data/local-files/?d=push/images/{path.name}"
        assert t.data["round"] == 2 and t.data["uncertainty"] == pytest.approx(scores[path])
        assert len(t.predictions) == 1
        p = t.predictions[0]
        assert p.model_version == "m-round2" and p.score == pytest.approx(0.8)
        assert len(p.result) == len(lab)
        for r, row in zip(p.result, lab):
            assert r["original_width"] == 96 and r["original_height"] == 64 and r["score"] == pytest.approx(0.8)
            assert r["value"]["rectanglelabels"] == [NAMES[int(row[0])]]
            assert r["value"]["x"] == pytest.approx((row[1] - row[3] / 2) * 100, abs=1e-4)
    # the image itself is served to the annotator through the local-files storage
    import httpx

    img = httpx.get(ls_server.url + by_id[res.task_ids[data[0][0].resolve()]].data["image"],
                    headers={"Authorization": f"Token {ls_server.token}"})
    assert img.status_code == 200 and img.content[:4] == b"\x89PNG"

    # a later model refreshes the pre-labels of tasks nobody has annotated yet
    first = data[0][0].resolve()
    ls.submit_annotation(conn, res.task_ids[first], [])
    newer = [pred_of(p, lab[:1], conf=0.5) for p, lab in data]
    res2 = ls.push(conn, pid, newer, names=NAMES, document_root=ls_server.document_root, round_idx=3,
                   model_version="m-round3", scores={p: 9.0 for p, _ in data})
    assert (res2.created, res2.refreshed, res2.annotated) == (0, 2, [first])
    assert conn.client.projects.get(id=pid).model_version == "m-round3"
    tasks = _tasks(conn, pid)
    assert len(tasks) == 3
    for t in tasks:
        if t.id == res.task_ids[first]:
            assert [p.model_version for p in t.predictions] == ["m-round2"]  # annotated: untouched
        else:
            assert [(p.model_version, len(p.result)) for p in t.predictions] == [("m-round3", 1)]
            assert t.data["round"] == 3 and t.data["uncertainty"] == 9.0


def test_refresh_never_deletes_a_task_someone_annotated_meanwhile(conn, ls_server):
    # the refresh imports open tasks again and deletes the old ones; a task annotated between the listing and the
    # delete (here: handed to _refresh as if still open) keeps its task and annotation and is not imported twice
    pid, data = _setup(conn, ls_server, "refresh-race", 3, seed=5)
    preds = [pred_of(p, lab) for p, lab in data]
    res = ls.push(conn, pid, preds, names=NAMES, document_root=ls_server.document_root, round_idx=1,
                  model_version="m1", extra={p: {"source": "random"} for p, _ in data})
    paths = [p.resolve() for p, _ in data]
    ls.submit_annotation(conn, res.task_ids[paths[0]], [])
    existing = {t.id: t for t in _tasks(conn, pid)}
    newer = [pred_of(p, lab[:1], conf=0.5) for p, lab in data]
    refresh = [(path, res.task_ids[path], dict(existing[res.task_ids[path]].data),
                {"model_version": "m2", "score": 0.5, "result": fmt.prediction_regions(
                    q.boxes, q.cls, q.conf, q.width, q.height, NAMES, fmt.LabelSpec.default(NAMES))})
               for path, q in zip(paths, newer)]
    again = ls._refresh(conn, pid, refresh, batch_size=2)
    assert set(again) == set(paths[1:]) and not set(again.values()) & set(res.task_ids.values())
    tasks = _tasks(conn, pid)
    assert len(tasks) == 3
    by_path = {t.data["path"]: t for t in tasks}
    kept = by_path[f"refresh-race/images/{paths[0].name}"]
    assert kept.id == res.task_ids[paths[0]] and len(kept.annotations) == 1
    for path in paths[1:]:
        t = by_path[f"refresh-race/images/{path.name}"]
        assert t.id == again[path] and t.data["source"] == "random" and t.data["round"] == 1  # its data kept
        assert [p.model_version for p in t.predictions] == ["m2"]


def test_repush_creates_no_duplicates(conn, ls_server):
    pid, data = _setup(conn, ls_server, "repush", 4, seed=3)
    preds = [pred_of(p, lab) for p, lab in data]
    kw = dict(names=NAMES, document_root=ls_server.document_root, round_idx=1, model_version="m1")
    scores = np.array([0.5, np.nan, 1.0, 2.0])  # NaN: not scored (a random pick) -> no uncertainty column value
    first = ls.push(conn, pid, preds, **kw, scores=scores, batch_size=3)  # two import batches
    second = ls.push(conn, pid, preds, **kw, scores=scores)
    assert first.created == 4 and second.created == 0 and second.unchanged == 4
    assert second.task_ids == first.task_ids
    tasks = _tasks(conn, pid)
    assert len(tasks) == 4 and all(len(t.predictions) == 1 for t in tasks)
    unc = {t.data["path"]: t.data.get("uncertainty") for t in tasks}
    assert [unc[f"repush/images/{p.name}"] for p, _ in data] == [0.5, None, 1.0, 2.0]


def test_pull_effort_empty_skipped_unannotated(conn, ls_server, caplog):
    pid, data = _setup(conn, ls_server, "pull", 6, seed=4, boxes=3)
    preds = [pred_of(p, lab) for p, lab in data]
    res = ls.push(conn, pid, preds, names=NAMES, document_root=ls_server.document_root, round_idx=1,
                  model_version="m1")
    spec = ls.project_spec(conn, pid, NAMES)
    paths = [p.resolve() for p, _ in data]
    tid = [res.task_ids[p] for p in paths]
    regions = [fmt.label_regions(lab, 96, 64, NAMES, spec) for _, lab in data]

    # 0: pre-labels accepted as they are
    ls.submit_annotation(conn, tid[0], regions[0])
    # 1: one moved, one relabelled, one deleted, one added
    lab1 = data[1][1].copy()
    edited = lab1[:2].copy()
    edited[0, 1] += 0.02 if edited[0, 1] + edited[0, 3] / 2 <= 0.98 else -0.02  # moved a little (IoU >= 0.5)
    edited[1, 0] = (edited[1, 0] + 1) % 3  # relabelled
    added = np.array([[2, 0.5, 0.5, 0.1, 0.1]])
    final1 = np.vstack([edited, added])
    ls.submit_annotation(conn, tid[1], fmt.label_regions(final1, 96, 64, NAMES, spec))
    # 2: "nothing here" (every pre-label deleted): a valid empty label
    ls.submit_annotation(conn, tid[2], [])
    # 3: skipped
    ls.submit_annotation(conn, tid[3], [], cancelled=True)
    # 4: a first annotation replaced by a later one; plus a box poking out of the image and a zero-area box
    ls.submit_annotation(conn, tid[4], [])
    late = fmt.label_regions(data[4][1], 96, 64, NAMES, spec)
    out = fmt.label_regions(np.array([[1, 0.95, 0.5, 0.2, 0.2]]), 96, 64, NAMES, spec)[0] | {"id": "out"}
    flat = fmt.label_regions(np.array([[1, 0.5, 0.5, 0.2, 0.2]]), 96, 64, NAMES, spec)[0] | {"id": "flat"}
    flat["value"] = flat["value"] | {"height": 0.0}
    ls.submit_annotation(conn, tid[4], late + [out, flat])
    # 5: never annotated

    with caplog.at_level(logging.WARNING, logger="detal"):
        pulled = ls.pull(conn, pid, NAMES, document_root=ls_server.document_root)
    assert set(pulled.labels) == {paths[0], paths[1], paths[2], paths[4]}
    assert pulled.skipped == [paths[3]]
    np.testing.assert_allclose(pulled.labels[paths[0]], data[0][1], atol=1e-6)
    np.testing.assert_allclose(pulled.labels[paths[1]], final1, atol=1e-6)
    assert pulled.labels[paths[2]].shape == (0, 5)
    clipped = np.array([[1, 0.925, 0.5, 0.15, 0.2]])  # x 0.85..1.05 clamped to 0.85..1.0
    np.testing.assert_allclose(pulled.labels[paths[4]], np.vstack([data[4][1], clipped]), atol=1e-6)
    assert "zero-area" in caplog.text and "flat" in caplog.text
    assert pulled.effort[paths[0]] == {"accepted": 3, "corrected": 0, "deleted": 0, "added": 0}
    assert pulled.effort[paths[1]] == {"accepted": 0, "corrected": 2, "deleted": 1, "added": 1}
    assert pulled.effort[paths[2]] == {"accepted": 0, "corrected": 0, "deleted": 3, "added": 0}
    assert pulled.effort[paths[4]] == {"accepted": 3, "corrected": 0, "deleted": 0, "added": 1}
    assert pulled.effort_totals() == {"accepted": 6, "corrected": 2, "deleted": 4, "added": 2, "skipped": 1}


def test_unknown_label_is_an_error(conn, ls_server):
    pid, data = _setup(conn, ls_server, "unknown", 1, seed=5, boxes=1)
    res = ls.push(conn, pid, [pred_of(p, lab) for p, lab in data], names=NAMES,
                  document_root=ls_server.document_root, round_idx=1, model_version="m1")
    region = fmt.label_regions(data[0][1], 96, 64, NAMES)[0]
    region["value"]["rectanglelabels"] = ["zebra"]
    ls.submit_annotation(conn, res.task_ids[data[0][0].resolve()], [region])  # the server accepts it silently
    with pytest.raises(LabelStudioError, match="zebra"):
        ls.pull(conn, pid, NAMES, document_root=ls_server.document_root)


def test_bad_prediction_rejected_before_sending(conn, ls_server):
    pid, data = _setup(conn, ls_server, "badpred", 1, seed=6, boxes=1)
    bad = pred_of(data[0][0], data[0][1])
    bad.cls[:] = 7
    with pytest.raises(LabelStudioError, match="class id 7"):
        ls.push(conn, pid, [bad], names=NAMES, document_root=ls_server.document_root, round_idx=1, model_version="m")
    outside = pred_of(ls_server.document_root.parent / "elsewhere.png", data[0][1])
    with pytest.raises(LabelStudioError, match="document root"):
        ls.push(conn, pid, [outside], names=NAMES, document_root=ls_server.document_root, round_idx=1, model_version="m")
    assert _tasks(conn, pid) == []


def test_connect_errors_never_show_the_token(ls_server, caplog):
    wrong = "wrong-" + ls_server.token[::-1]
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(LabelStudioError, match="refused the API token") as exc:
            ls.connect(ls_server.url, wrong, api_key_name="MY_TOKEN_VAR")
    assert "MY_TOKEN_VAR" in str(exc.value) and wrong not in str(exc.value) and wrong not in caplog.text
    with pytest.raises(LabelStudioError, match="cannot reach"):
        ls.connect("http://127.0.0.1:9", ls_server.token, timeout=2)
    with pytest.raises(LabelStudioError, match="LABEL_STUDIO_API_KEY"):
        ls.connect(ls_server.url, "")


def test_token_not_in_logs(conn, ls_server, caplog):
    with caplog.at_level(logging.DEBUG):
        c = ls.connect(ls_server.url, ls_server.token)
        pid, data = _setup(c, ls_server, "tokenlog", 2, seed=7)
        ls.push(c, pid, [pred_of(p, lab) for p, lab in data], names=NAMES, document_root=ls_server.document_root,
                round_idx=1, model_version="m1")
        ls.pull(c, pid, NAMES, document_root=ls_server.document_root)
        logging.getLogger("detal").info("connection %r", c)
    assert "HTTP Request" in caplog.text or "pushed" in caplog.text  # something was logged
    assert ls_server.token not in caplog.text
    assert ls_server.token not in repr(c)
    assert ls_server.token not in ls_server.log_path.read_text(errors="replace")
