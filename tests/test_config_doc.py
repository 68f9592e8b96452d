"""docs/configuration.md is generated from the config models and the example configs' comments."""

import importlib.util
from pathlib import Path

import pytest
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("config_doc", ROOT / "tools" / "config_doc.py")
config_doc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(config_doc)


def test_the_committed_doc_is_current(capsys):
    # fails when a key, default or comment changed without `python tools/config_doc.py`
    assert config_doc.main(["--check"]) == 0, capsys.readouterr().err


def test_every_key_is_documented_with_its_default():
    text = config_doc.render()
    from detal.config import Config

    for section in ("model", "schedule", "selection", "scoring", "prelabel", "labelstudio", "cycle", "synth"):
        sub = config_doc._section(Config.model_fields[section].annotation)
        for name in sub.model_fields:
            assert f"| `{section}.{name}` |" in text, f"{section}.{name} missing"
    assert "| `schedule.seed_fraction` | float | `0.02` |" in text  # the model's default, not demo.yaml's 0.15
    assert "| `data` | Path | (required) |" in text


def test_an_uncommented_key_is_an_error(tmp_path):
    class Extra(BaseModel):
        undocumented_key: int = 1

    with pytest.raises(SystemExit, match="undocumented_key: no comment"):
        config_doc.rows(Extra, {})


def test_comments_parse_nested_keys_and_the_block_above(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("a: 1  # (int) first\nsec:  # (section) a section\n  # long reason\n  b: x  # (str) see above\n")
    assert config_doc.comments(p) == {"a": "first", "sec": "a section", "sec.b": "long reason"}
