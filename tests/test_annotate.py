"""The ground-truth oracle: the label files on disk, validated, through request/collect."""

import numpy as np
import pytest

from detal.annotate import GroundTruthOracle, Request
from detal.data import write_labels
from detal.errors import DataError


def test_oracle_returns_the_files_and_forgets_collected(tmp_path):
    img = tmp_path / "images" / "a.png"
    img.parent.mkdir(parents=True)
    img.write_bytes(b"")
    write_labels(tmp_path / "labels" / "a.txt", np.array([[1, 0.5, 0.5, 0.2, 0.1]]))
    oracle = GroundTruthOracle(nc=2)
    oracle.request(Request(1, (img,)))
    got = oracle.collect([img])
    np.testing.assert_allclose(got.labels[img], [[1, 0.5, 0.5, 0.2, 0.1]])
    assert got.skipped == [] and oracle._ready == {}
    # a resumed run collects what an earlier process requested: the files are the same answer
    np.testing.assert_allclose(GroundTruthOracle(nc=2).collect([img]).labels[img], [[1, 0.5, 0.5, 0.2, 0.1]])


def test_oracle_names_a_bad_label_line(tmp_path):
    img = tmp_path / "images" / "b.png"
    img.parent.mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "b.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match=r"b.txt:1"):
        GroundTruthOracle(nc=2).request(Request(1, (img,)))
