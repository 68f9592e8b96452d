"""Labelling state: one integer per image, the round it was labelled in."""

import numpy as np
import pytest

from detal.errors import DataError
from detal.state import LabelState


def test_mark_and_derived_sets(tmp_path):
    s = LabelState(6)
    s.mark(np.array([1, 4]), 1)
    s.mark(np.array([0]), 2)
    assert s.labelled.tolist() == [0, 1, 4] and s.unlabelled.tolist() == [2, 3, 5]
    assert s.labelled_in(1).tolist() == [1, 4] and s.last_round == 2
    with pytest.raises(ValueError, match="already labelled"):
        s.mark(np.array([4]), 3)
    with pytest.raises(ValueError, match="twice"):
        s.mark(np.array([2, 2]), 3)
    s.save(tmp_path / "s.json", extra={"round_done": 2})
    t, doc = LabelState.load(tmp_path / "s.json")
    assert np.array_equal(t.map, s.map) and doc == {"round_done": 2}


def test_corrupt_state_file(tmp_path):
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(DataError, match="delete it to start over"):
        LabelState.load(tmp_path / "s.json")
