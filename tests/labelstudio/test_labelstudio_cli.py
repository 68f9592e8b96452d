"""`detal labelstudio ...` against the session server: pull writes YOLO labels, serve is idempotent."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from detal import labelstudio as ls
from detal.cli import main
from detal.data import label_path, read_labels

from .conftest import make_images
from .test_roundtrip import NAMES, _pred

pytestmark = pytest.mark.labelstudio


def test_cli_pull_writes_labels(ls_server, conn, tmp_path, monkeypatch, capsys):
    ds_root = ls_server.document_root / "clids"
    train = make_images(ds_root / "train", 3, seed=21)
    make_images(ds_root / "val", 1, seed=22)
    (ds_root / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(ds_root), "train": "train/images", "val": "val/images", "names": NAMES}))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": str(ds_root / "data.yaml"), "labelstudio": {
        "url": ls_server.url, "api_key_env": "MY_LS_TOKEN", "project": "test-cli",
        "document_root": str(ls_server.document_root)}}))
    monkeypatch.setenv("MY_LS_TOKEN", ls_server.token)

    pid = ls.ensure_project(conn, "test-cli", NAMES, document_root=ls_server.document_root, image_root=ds_root)
    res = ls.push(conn, pid, [_pred(p, lab) for p, lab in train], names=NAMES,
                  document_root=ls_server.document_root, round_idx=1, model_version="m1")
    corrected = {}
    for i, (p, lab) in enumerate(train[:2]):
        corrected[p] = lab[: i + 1]  # image 0 keeps one box, image 1 two
        ls.submit_annotation(conn, res.task_ids[p.resolve()], ls.label_regions(corrected[p], 96, 64, NAMES))
        label_path(p).unlink()  # the annotations, not the old files, must produce the labels

    assert main(["labelstudio", "pull", "-c", str(cfg), "--dry-run"]) == 0
    assert "would write 2 label files" in capsys.readouterr().out
    assert not label_path(train[0][0]).exists()
    assert main(["labelstudio", "pull", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "wrote 2 label files" in out and "accepted 3" in out and "deleted 1" in out
    for p, lab in corrected.items():
        np.testing.assert_allclose(read_labels(label_path(p), 3), lab, atol=1e-6)
    assert ls_server.token not in out

    monkeypatch.setenv("MY_LS_TOKEN", "not-the-token")
    assert main(["labelstudio", "pull", "-c", str(cfg)]) == 2
    assert "MY_LS_TOKEN" in capsys.readouterr().err


def test_cli_serve_reports_running_server(ls_server, capsys):
    home = ls_server.data_dir.parent  # the fixture's server lives in <home>/data
    assert main(["labelstudio", "serve", "--home", str(home)]) == 0
    assert f"already running at {ls_server.url}" in capsys.readouterr().out
