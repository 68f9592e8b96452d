"""The simulated Label Studio annotator: pushes, a bot annotates with the ground truth, pulls it back unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from detal.annotate import Request
from detal.data import label_path, read_labels
from detal.labelstudio.annotator import BotAnnotator, LabelStudioAnnotator


from tests.labelstudio.helpers import NAMES, make_images, pred_of

pytestmark = pytest.mark.labelstudio


def annotate(annotator, round_idx, images, preds, scores, version):
    """request + collect, as the round does for an annotator that finishes at once."""
    annotator.request(Request(round_idx, tuple(images), {p.path: p for p in preds or []}, scores or {}, version))
    got = annotator.collect(images)
    return got.labels, {**got.effort, "skipped": len(got.skipped)}


def test_oracle_returns_ground_truth(ls_server):
    folder = ls_server.document_root / "oracle"
    data = make_images(folder, 6, seed=11, boxes_per_image=2)
    paths = [p.resolve() for p, _ in data]
    truth = {p: read_labels(label_path(p), len(NAMES)) for p in paths}
    oracle = BotAnnotator(url=ls_server.url, api_key=ls_server.token, project_title="test-oracle", names=NAMES,
                               document_root=ls_server.document_root, image_root=folder, timeout=60, batch_size=2)
    assert ls_server.token not in repr(oracle)

    # seed round: no model yet, no pre-labels -> every box is "added"
    labels, effort = annotate(oracle, 1, paths[:2], None, None, "seed")
    assert set(labels) == set(paths[:2])
    for p in paths[:2]:
        np.testing.assert_allclose(labels[p], truth[p], atol=1e-6)
    assert effort == {"accepted": 0, "corrected": 0, "deleted": 0, "added": 4, "skipped": 0}

    # a model round: image 2 predicted perfectly, image 3 misses a box and has one wrong class,
    # image 4 predicts an extra box; image 5 has no prediction (unreadable image)
    p2, p3, p4, p5 = paths[2:]
    wrong = truth[p3][:1].copy()
    wrong[0, 0] = (wrong[0, 0] + 1) % 3
    extra = np.vstack([truth[p4], [[0, 0.5, 0.5, 0.05, 0.05]]])
    preds = [pred_of(p2, truth[p2]), pred_of(p3, wrong), pred_of(p4, extra)]
    scores = {p2: 0.3, p3: 0.9, p4: 0.5}
    labels, effort = annotate(oracle, 2, [p2, p3, p4, p5], preds, scores, "model-r2")
    assert set(labels) == {p2, p3, p4, p5}
    for p in (p2, p3, p4, p5):
        np.testing.assert_allclose(labels[p], truth[p], atol=1e-6)
    assert effort == {"accepted": 4, "corrected": 1, "deleted": 1, "added": 3, "skipped": 0}

    # asking again for an already annotated image returns the same labels without a duplicate task
    labels, effort = annotate(oracle, 3, [p2], [pred_of(p2, truth[p2])], {p2: 0.1}, "model-r3")
    np.testing.assert_allclose(labels[p2], truth[p2], atol=1e-6)
    assert effort["accepted"] == 2 and effort["added"] == 0
    conn, pid = oracle._connect()
    assert len(list(conn.client.tasks.list(project=pid))) == 6


def test_bot_accepts_a_near_prediction_within_accept_iou_as_the_oracle_does(ls_server, monkeypatch):
    """The bot submits the ground truth, never pixel-equal to a pre-label: within cost.accept_iou it is accepted."""
    from types import SimpleNamespace

    from detal.config import parse_config

    folder = ls_server.document_root / "oracle-iou"
    data = make_images(folder, 2, seed=12, boxes_per_image=1)
    (near, t0), (far, t1) = [(p.resolve(), lab) for p, lab in data]
    shift = lambda lab, f: lab + np.array([[0, f * lab[0, 3], 0, 0, 0]])  # noqa: E731  (a share of the box width)
    monkeypatch.setenv("DETAL_TEST_TOKEN", ls_server.token)
    cfg = parse_config({"experiment": "iou", "data": str(folder / "data.yaml"),
                        "labelstudio": {"url": ls_server.url, "api_key_env": "DETAL_TEST_TOKEN", "project": "bot",
                                        "document_root": str(ls_server.document_root)},
                        "cost": {"accept_iou": 0.85}})
    bot = BotAnnotator.from_config(cfg, SimpleNamespace(names=NAMES, root=folder))
    assert bot.accept_iou == 0.85
    # IoU 0.95 / 1.05 = 0.90 (accepted as is) and 0.7 / 1.3 = 0.54 (still the same object: moved)
    preds = [pred_of(near, shift(t0, 0.05)), pred_of(far, shift(t1, 0.3))]
    bot.request(Request(2, (near, far), {p.path: p for p in preds}, {near: 0.1, far: 0.2}, "m2"))
    got = bot.collect([near, far])
    assert got.accept_iou == 0.85
    assert got.effort_by_image[near] == {"accepted": 1, "corrected": 0, "deleted": 0, "added": 0}
    assert got.effort_by_image[far] == {"accepted": 0, "corrected": 1, "deleted": 0, "added": 0}
    # people (the live annotator) keep exact-change semantics: the same near box is a move
    assert LabelStudioAnnotator.accept_iou is None
