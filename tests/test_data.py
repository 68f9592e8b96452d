"""YOLO dataset I/O and label validation."""

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from detal.data import (format_labels, label_path, list_images, load_dataset, parse_labels, read_labels,
                        write_image_list, write_labels, write_split_yaml)
from detal.errors import DataError


def _make(tmp_path: Path, n_train=3, n_val=2, names=("a", "b"), path_key=None) -> Path:
    import cv2

    for split, n in (("train", n_train), ("val", n_val)):
        (tmp_path / "images" / split).mkdir(parents=True, exist_ok=True)
        (tmp_path / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(tmp_path / "images" / split / f"{i}.png"), np.zeros((20, 30, 3), np.uint8))
            (tmp_path / "labels" / split / f"{i}.txt").write_text("1 0.5 0.5 0.2 0.4\n")
    doc = {"train": "images/train", "val": "images/val", "names": list(names)}
    if path_key is not None:
        doc["path"] = path_key
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path / "data.yaml"


def test_load_dataset_resolves_relative_to_yaml(tmp_path, monkeypatch):
    y = _make(tmp_path, path_key=".")
    monkeypatch.chdir("/")
    ds = load_dataset(y)
    assert ds.names == ("a", "b") and ds.nc == 2
    assert len(ds.train) == 3 and len(ds.val) == 2
    assert all(p.is_absolute() and p.exists() for p in ds.train + ds.val)


def test_names_as_mapping(tmp_path):
    y = _make(tmp_path)
    doc = yaml.safe_load(y.read_text())
    doc["names"] = {0: "x", 1: "y"}
    y.write_text(yaml.safe_dump(doc))
    assert load_dataset(y).names == ("x", "y")


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.pop("val"), "missing key 'val'"),
    (lambda d: d.update(train="nope"), "train split 'nope' not found"),
    (lambda d: d.update(names=[]), "names"),
    (lambda d: d.update(val="images/train"), "both train and val"),
])
def test_bad_data_yaml(tmp_path, mutate, match):
    y = _make(tmp_path)
    doc = yaml.safe_load(y.read_text())
    mutate(doc)
    y.write_text(yaml.safe_dump(doc))
    with pytest.raises(DataError, match=match):
        load_dataset(y)


def test_missing_yaml_names_the_fix(tmp_path):
    with pytest.raises(DataError, match="detal synth"):
        load_dataset(tmp_path / "nope.yaml")


def test_label_path_follows_ultralytics_rule():
    assert label_path(Path("/d/images/train/x.jpg")) == Path("/d/labels/train/x.txt")
    assert label_path(Path("/images/a/images/b/x.png")) == Path("/images/a/labels/b/x.txt")


@pytest.mark.parametrize("line, match", [
    ("0 0.5 0.5 0.1", "expected 5 values"),
    ("a 0.5 0.5 0.1 0.1", "non-numeric"),
    ("7 0.5 0.5 0.1 0.1", "not an integer id in 0..2"),
    ("1.5 0.5 0.5 0.1 0.1", "not an integer id"),
    ("0 1.5 0.5 0.1 0.1", "outside"),
    ("0 0.5 0.5 0 0.1", "zero-area"),
])
def test_bad_label_line_names_file_and_line(tmp_path, line, match):
    f = tmp_path / "x.txt"
    f.write_text("0 0.5 0.5 0.2 0.2\n\n" + line + "\n")
    with pytest.raises(DataError, match=match) as exc:
        read_labels(f, nc=3)
    assert str(exc.value).startswith(f"{f}:3:")


def test_labels_round_trip_and_missing_file(tmp_path):
    labels = np.array([[0, 0.5, 0.25, 0.1, 0.2], [2, 0.1, 0.9, 0.05, 0.05]])
    write_labels(tmp_path / "l" / "a.txt", labels)
    np.testing.assert_allclose(read_labels(tmp_path / "l" / "a.txt", 3), labels, atol=1e-6)
    assert read_labels(tmp_path / "missing.txt", 3).shape == (0, 5)
    write_labels(tmp_path / "empty.txt", np.zeros((0, 5)))
    assert (tmp_path / "empty.txt").read_text() == "" and read_labels(tmp_path / "empty.txt", 3).shape == (0, 5)
    assert parse_labels(format_labels(labels), 3).shape == (2, 5)


def test_split_yaml_is_a_file_list(tmp_path):
    y = _make(tmp_path / "ds")
    ds = load_dataset(y)
    out = write_split_yaml(tmp_path / "round1" / "data.yaml", ds.train[:2], list(ds.val), ds.names)
    again = load_dataset(out)
    assert again.train == ds.train[:2] and again.val == ds.val and again.names == ds.names
    lst = write_image_list(tmp_path / "l.txt", ds.train)
    assert list_images(lst) == list(ds.train)


def test_split_yaml_from_a_relative_path(tmp_path, monkeypatch):
    ds = load_dataset(_make(tmp_path / "ds"))
    monkeypatch.chdir(tmp_path)
    out = write_split_yaml(Path("runs/r1/data.yaml"), ds.train, list(ds.val), ds.names)
    doc = yaml.safe_load(out.read_text())
    assert all(Path(doc[k]).is_absolute() for k in ("path", "train", "val"))


def test_dataset_keeps_its_split_sources(tmp_path):
    ds = load_dataset(_make(tmp_path))
    assert ds.train_spec == tmp_path.resolve() / "images" / "train" and ds.val_spec.name == "val"
    from detal.data import Dataset
    by_hand = Dataset(ds.yaml_path, ds.root, ds.names, ds.train, ds.val)  # the five-field form still works
    assert by_hand == ds and by_hand.train_spec is None


@pytest.mark.parametrize("text, n", [
    ("\ufeff0 0.5 0.5 0.2 0.2\n", 1),                       # UTF-8 BOM, as Ultralytics accepts
    ("0 0.5 0.5 0.2 0.2\r\n1 0.2 0.2 0.1 0.1\r\n", 2),      # CRLF
    ("0 0.5 0.5 0.2 0.2\n  \t \n1 0.2 0.2 0.1 0.1\n", 2),   # whitespace-only line
    ("0 1.005 0.5 0.2 0.2\n", 1),                          # within Ultralytics' 1% tolerance, kept as written
])
def test_label_text_ultralytics_accepts(tmp_path, text, n):
    f = tmp_path / "x.txt"
    f.write_bytes(text.encode("utf-8"))
    assert len(read_labels(f, 3)) == n


def test_non_utf8_label_is_a_data_error_naming_the_line(tmp_path):
    f = tmp_path / "x.txt"
    f.write_bytes(b"0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2 # \xff\n")
    with pytest.raises(DataError, match=re.escape(f"{f}:2: not UTF-8 text (byte 0xff); re-save the label file as UTF-8")):
        read_labels(f, 3)
