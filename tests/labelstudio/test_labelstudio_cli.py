"""`detal labelstudio ...` against the session server: pull writes the labels of record, serve is idempotent."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from detal.labelstudio import client as ls
from detal.labelstudio import format as fmt
from detal.cli import main
from detal.data import label_path, read_labels, write_labels
from detal.labels import LabelStore, image_key


from tests.labelstudio.helpers import NAMES, make_images, pred_of

pytestmark = pytest.mark.labelstudio


def test_cli_pull_writes_labels(ls_server, conn, tmp_path, monkeypatch, capsys):
    ds_root = ls_server.document_root / "clids"
    train = make_images(ds_root / "train", 3, seed=21)
    make_images(ds_root / "val", 1, seed=22)
    (ds_root / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(ds_root), "train": "train/images", "val": "val/images", "names": NAMES}))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": str(ds_root / "data.yaml"), "experiment": "e1",
                                   "output_dir": str(tmp_path / "runs"), "labelstudio": {
        "url": ls_server.url, "api_key_env": "MY_LS_TOKEN", "project": "test-cli",
        "document_root": str(ls_server.document_root)}}))
    monkeypatch.setenv("MY_LS_TOKEN", ls_server.token)

    # the one title rule, shared with simulate: <project>-<experiment>
    pid = ls.ensure_project(conn, "test-cli-e1", NAMES, document_root=ls_server.document_root, image_root=ds_root)
    res = ls.push(conn, pid, [pred_of(p, lab) for p, lab in train], names=NAMES,
                  document_root=ls_server.document_root, round_idx=1, model_version="m1")
    corrected = {}
    for i, (p, lab) in enumerate(train[:2]):
        corrected[p] = lab[: i + 1]  # image 0 keeps one box, image 1 two
        ls.submit_annotation(conn, res.task_ids[p.resolve()], fmt.label_regions(corrected[p], 96, 64, NAMES))
        label_path(p).unlink()  # the annotations, not the old files, must produce the labels

    assert main(["labelstudio", "pull", "-c", str(cfg), "--dry-run"]) == 0
    assert "would write 2 label files" in capsys.readouterr().out
    assert not label_path(train[0][0]).exists() and not (tmp_path / "runs").exists()

    # default: the run-owned label tree, never the dataset's files
    assert main(["labelstudio", "pull", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "wrote 2 label files" in out and "accepted 3" in out and "deleted 1" in out
    store = LabelStore(tmp_path / "runs" / "e1" / "labels", 3)
    for p, lab in corrected.items():
        key = image_key(p, ds_root)
        np.testing.assert_allclose(store.get(key), lab, atol=1e-6)
        assert store.image(key).resolve() == p.resolve()
        assert not label_path(p).exists()
    assert ls_server.token not in out

    # --into-dataset: next to the images; a different existing file is kept as .orig
    p0, lab0 = train[0]  # corrected to its first box only
    write_labels(label_path(p0), lab0)  # the user's own file, different from the correction
    assert main(["labelstudio", "pull", "-c", str(cfg), "--into-dataset"]) == 0
    for p, lab in corrected.items():
        np.testing.assert_allclose(read_labels(label_path(p), 3), lab, atol=1e-6)
    np.testing.assert_allclose(read_labels(label_path(p0).with_name(label_path(p0).name + ".orig"), 3), lab0, atol=1e-6)

    monkeypatch.setenv("MY_LS_TOKEN", "not-the-token")
    assert main(["labelstudio", "pull", "-c", str(cfg)]) == 2
    assert "MY_LS_TOKEN" in capsys.readouterr().err


def test_cli_serve_reports_running_server(ls_server, capsys):
    home = ls_server.data_dir.parent  # the fixture's server lives in <home>/data
    assert main(["labelstudio", "serve", "--home", str(home)]) == 0
    assert f"already running at {ls_server.url}" in capsys.readouterr().out
