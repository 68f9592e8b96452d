"""`detal cost fit --write`: only the values of the config's `cost:` section change, everything else stays."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from detal.config import load_config
from detal.cycle.costfit import rewrite_cost, write_cost
from detal.errors import DetalError

REPO = Path(__file__).resolve().parents[1]
FITTED = {"per_image": 2.345, "accepted": 0.91, "moved": 5.5, "relabelled": 3.0, "deleted": 1.25, "drawn": 9.876}


def _changed(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.splitlines(), after.splitlines()
    assert len(a) == len(b)
    return [(x, y) for x, y in zip(a, b) if x != y]


@pytest.mark.parametrize("name", ["project.yaml", "demo.yaml"])
def test_shipped_configs_change_only_their_cost_values(name):
    text = (REPO / "configs" / name).read_text()
    new = rewrite_cost(text, FITTED)
    changed = _changed(text, new)
    assert len(changed) == len(FITTED)
    for old, line in changed:
        key = old.split(":")[0].strip()
        # the key, its indentation and its comment (same column) are kept; only the number differs
        assert line.split(":")[0] == old.split(":")[0] and line.index("#") == old.index("#")
        assert line[line.index("#"):] == old[old.index("#"):]
        assert float(line.split(":", 1)[1].split("#")[0]) == round(FITTED[key], 2)
    doc, was = yaml.safe_load(new), yaml.safe_load(text)
    assert doc["cost"] == {**was["cost"], **{k: round(v, 2) for k, v in FITTED.items()}}
    assert {k: v for k, v in doc.items() if k != "cost"} == {k: v for k, v in was.items() if k != "cost"}


def test_missing_keys_are_added_to_the_section_and_a_missing_section_is_appended():
    text = "experiment: x  # mine\ncost:\n    drawn: 7.0   # a comment\n    accept_iou: 0.85\nreport:\n  cost_axis: seconds\n"
    new = rewrite_cost(text, FITTED)
    doc = yaml.safe_load(new)
    assert doc["cost"] == {"accept_iou": 0.85, **{k: round(v, 2) for k, v in FITTED.items()}}
    assert doc["report"] == {"cost_axis": "seconds"} and new.startswith("experiment: x  # mine\ncost:\n")
    assert "    drawn: 9.88  # a comment\n" in new and "    per_image: 2.35\n" in new  # the section's indentation
    bare = "experiment: x\n# cost: not this one\nseed: 1"  # no final newline; a comment is not the section
    doc = yaml.safe_load(rewrite_cost(bare, FITTED))
    assert doc["seed"] == 1 and doc["cost"] == {k: round(v, 2) for k, v in FITTED.items()}
    assert rewrite_cost(bare, FITTED).startswith(bare + "\n")


def test_a_long_value_pushes_the_comment_right_and_crlf_survives():
    text = "cost:\r\n  moved: 4 # short\r\n  deleted: 2.0\r\nseed: 3\r\n"
    new = rewrite_cost(text, {"moved": 123456.789, "deleted": 1.0})
    assert new == "cost:\r\n  moved: 123456.79 # short\r\n  deleted: 1.0\r\nseed: 3\r\n"


def test_an_inline_section_is_one_line_and_nothing_is_written(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("experiment: x\ncost: {drawn: 7}\n")
    with pytest.raises(DetalError, match=r"c\.yaml, line 2: `cost:` is written inline") as e:
        write_cost(path, FITTED)
    assert "\n" not in str(e.value) and path.read_text() == "experiment: x\ncost: {drawn: 7}\n"


def test_write_cost_gives_a_config_that_loads_with_the_fitted_values(tmp_path):
    path = tmp_path / "project.yaml"
    path.write_text((REPO / "configs" / "project.yaml").read_text())
    write_cost(path, FITTED)
    cfg = load_config(path)
    assert cfg.cost.per_image == 2.35 and cfg.cost.per_action == {
        "accepted": 0.91, "moved": 5.5, "relabelled": 3.0, "deleted": 1.25, "drawn": 9.88}
    assert cfg.cost.accept_iou == 0.85  # not a fitted value: untouched
