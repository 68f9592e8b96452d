"""Arm state: keyed by image, one serialisation, damaged files are one clear line."""

import json

import numpy as np
import pytest

from detal.errors import DataError
from detal.state import ArmState


def test_request_label_skip_and_derived_sets(tmp_path):
    keys = [f"images/{i}.png" for i in range(6)]
    s = ArmState()
    s.request(keys[1:3], 1)
    assert s.pool(keys) == [keys[0], *keys[3:]]
    s.label(keys[1], np.array([2, 0, 1]))
    s.skip(keys[2])
    assert s.labelled == {keys[1]: 1} and s.skipped == {keys[2]: 1} and not s.pending
    assert s.class_counts([keys[1]], 3).tolist() == [2, 0, 1]
    with pytest.raises(ValueError, match="not in the pool"):
        s.request([keys[1]], 2)
    with pytest.raises(ValueError, match="twice"):
        s.request([keys[4], keys[4]], 2)
    s.rng_state = np.random.default_rng(3).bit_generator.state
    s.save(tmp_path / "s.json")
    t = ArmState.load(tmp_path / "s.json")
    assert t == s
    rng = np.random.default_rng()
    rng.bit_generator.state = t.rng_state
    assert rng.integers(1 << 30) == np.random.default_rng(3).integers(1 << 30)


@pytest.mark.parametrize("text,match", [
    ("{not json", "unreadable labelling state"),
    ('{"labelled_map": [0, 1]}', "another detal version"),
    (json.dumps({"version": 2, "labelled": {"a": 1}, "boxes": {}}), "missing key 'epochs_trained'"),
    (json.dumps({**ArmState(labelled={"a": 1}).to_json(), "boxes": {}}), "damaged labelling state"),
    (json.dumps({**ArmState().to_json(), "labelled": {"a": "x"}, "boxes": {"a": [1]}}), "damaged labelling state"),
    ("[]", "not a JSON object"),
])
def test_damaged_state_is_one_line(tmp_path, text, match):
    (tmp_path / "s.json").write_text(text)
    with pytest.raises(DataError, match=match) as e:
        ArmState.load(tmp_path / "s.json")
    assert "\n" not in str(e.value) and "s.json" in str(e.value)
