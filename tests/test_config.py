"""Config validation: one-line errors naming the key and the fix; shipped configs are valid and documented."""

import re
from pathlib import Path

import pytest
import yaml

from detal.config import load_config, parse_config
from detal.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.schedule.rounds >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_key_has_a_type_comment(path):
    for line in path.read_text().splitlines():
        if re.match(r"^\s*[A-Za-z_]+:", line):
            assert re.search(r"#\s*\([^)]+\)\s+\S", line), f"{path.name}: key without '# (type) meaning': {line.strip()}"


@pytest.mark.parametrize("raw, match", [
    ({"data": "d.yaml", "schedulee": {}}, r"schedulee: unknown key; did you mean 'schedule'\?"),
    ({"data": "d.yaml", "model": {"archh": "x"}}, r"model\.archh: unknown key; did you mean 'arch'\?"),
    ({"data": "d.yaml", "strategies": ["random", "mixx"]}, r"unknown strategy 'mixx'.*Did you mean 'mix'"),
    ({"data": "d.yaml", "scoring": {"reduction": "avg"}}, r"scoring\.reduction: unknown reduction 'avg'"),
    ({"data": "d.yaml", "schedule": {"seed_fraction": 1.5}}, r"schedule\.seed_fraction: .*less than or equal to 1"),
    ({"data": "d.yaml", "schedule": {"epochs_per_round": 20, "total_epochs": 10}}, r"total_epochs \(10\) must be >= epochs_per_round"),
    ({"data": "d.yaml", "model": {"arch": "yolov8n"}}, r"model\.arch: .*architecture \.yaml"),
    ({"data": "d.yaml", "seeds": [1, 1]}, r"seeds: .*distinct"),
    ({}, r"data: required key is missing"),
])
def test_bad_values_one_line(raw, match):
    with pytest.raises(ConfigError, match=match) as exc:
        parse_config(raw, "c.yaml")
    assert "\n" not in str(exc.value) and str(exc.value).startswith("c.yaml: ")


def test_frozen_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"data": "d.yaml"}))
    cfg = load_config(p, ["schedule.total_epochs=60", "seeds=[3,4]", "model.device=cpu"])
    assert cfg.schedule.total_epochs == 60 and cfg.seeds == (3, 4) and cfg.model.device == "cpu"
    with pytest.raises(Exception):
        cfg.seeds = (1,)  # frozen
    with pytest.raises(ConfigError, match="key=value"):
        load_config(p, ["seeds"])


def test_invalid_yaml_and_missing_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: invalid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
