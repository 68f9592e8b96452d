"""`simulate` with `annotator: labelstudio` (fake detector, real server) labels exactly what the in-memory oracle labels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from detal.config import parse_config
from detal.data import load_dataset
from detal.simulate import run_experiment
from detal.labelstudio.annotator import BotAnnotator
from detal.synthetic import generate
from tests import fake_backend
from tests.labelstudio.helpers import assert_no_secret

pytestmark = pytest.mark.labelstudio


def test_simulate_through_label_studio_matches_oracle(ls_server, tmp_path, capfd):
    data_yaml = generate(ls_server.document_root / "loopds", 60, seed=5, imgsz=160, val_fraction=0.25)
    ds = load_dataset(data_yaml)
    raw = {"experiment": "ls", "data": str(data_yaml), "seeds": [0], "strategies": ["random", "entropy"],
           "schedule": {"seed_fraction": 0.1, "select_fraction": 0.1, "epochs_per_round": 1, "total_epochs": 3}}
    plain = run_experiment(parse_config({**raw, "output_dir": str(tmp_path / "plain")}), quiet=True,
                           backend=fake_backend)
    # as simulate builds it (from_config): the bot accepts within cost.accept_iou, as the oracle does
    oracle = BotAnnotator(url=ls_server.url, api_key=ls_server.token, project_title="test-loop",
                          names=ds.names, document_root=ls_server.document_root, image_root=ds.root,
                          timeout=60, batch_size=100, accept_iou=parse_config(raw).cost.accept_iou)
    via_ls = run_experiment(parse_config({**raw, "annotator": "labelstudio", "output_dir": str(tmp_path / "ls")}),
                            quiet=False, backend=fake_backend, annotator=oracle)
    pd.testing.assert_frame_equal(pd.read_csv(plain / "selections.csv"), pd.read_csv(via_ls / "selections.csv"))
    a, b = pd.read_csv(plain / "metrics.csv"), pd.read_csv(via_ls / "metrics.csv")
    cols = ["strategy", "round", "labeled_images", "labeled_boxes", "selected_images"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    # the bot's ground truth is counted as the oracle's: the same actions on the same pre-labels (through Label
    # Studio's percent coordinates), so the same seconds up to rounding
    acts = ["accepted", "corrected", "deleted", "added", "moved", "relabelled", "drawn"]
    pd.testing.assert_frame_equal(a[acts], b[acts])
    np.testing.assert_allclose(b["annotation_seconds"], a["annotation_seconds"], atol=0.2)
    # the Label Studio run measured annotator effort against the fake model's pre-labels
    selected = b[b.selected_images > 0]
    assert len(selected) == 4
    assert (selected[["accepted", "corrected", "deleted", "added"]].sum(axis=1) > 0).all()
    assert (b["skipped"] == 0).all()
    # the token is in no file the run wrote, nor in anything it printed
    out = capfd.readouterr()
    assert assert_no_secret(ls_server.token, via_ls, texts=(out.out, out.err)) > 10
