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
    ({"data": "d.yaml", "selection": {"first_round": "corset"}},
     r"selection\.first_round: unknown strategy 'corset'.*Did you mean 'coreset'"),
    ({"data": "d.yaml", "scoring": {"calibration": "temp"}},
     r"scoring\.calibration: Input should be 'none', 'difficulty' or 'temperature'"),
    ({"data": "d.yaml", "scoring": {"calibration": "temperature", "measure": "flip"}},
     r"scoring: calibration temperature rescales class scores, and measure flip is not computed from them"),
    ({"data": "d.yaml", "strategies": ["random", "recommended"], "scoring": {"calibration": "difficulty"}},
     r"scoring\.calibration / strategies: strategy recommended is entropy_wide with calibration temperature "
     r"\(what the label-efficiency study backs\); set calibration none or temperature, or name entropy_wide"),
    ({"data": "d.yaml", "selection": {"first_round": "recommended"}, "scoring": {"calibration": "difficulty"}},
     r"scoring\.calibration / selection\.first_round: strategy recommended is entropy_wide with calibration"),
    ({"data": "d.yaml", "strategies": ["recommended"], "scoring": {"measure": "flip"}},
     r"scoring\.calibration / strategies: strategy recommended is entropy_wide with calibration temperature, "
     r"which rescales class scores, and measure flip is not computed from them; name entropy_wide"),
    ({"data": "d.yaml", "schedule": {"seed_fraction": 1.5}}, r"schedule\.seed_fraction: .*less than or equal to 1"),
    ({"data": "d.yaml", "schedule": {"epochs_per_round": 20, "total_epochs": 10}}, r"total_epochs \(10\) must be >= epochs_per_round"),
    ({"data": "d.yaml", "schedule": {"epochs_per_round": 10, "total_epochs": 45}},
     r"schedule: .*total_epochs \(45\) is not a multiple of epochs_per_round \(10\); use 40 or 50"),
    ({"data": "d.yaml", "model": {"train_args": {"lr00": 0.1}}}, r"model\.train_args\.lr00: not an Ultralytics train setting; did you mean 'lr0'\?"),
    ({"data": "d.yaml", "model": {"train_args": {"epochs": 3}}}, r"model\.train_args\.epochs: set by detal"),
    ({"data": "d.yaml", "model": {"train_args": {"mosaic": "lots"}}}, r"model\.train_args\.mosaic: "),
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


def test_valid_train_args_pass_at_load():
    cfg = parse_config({"data": "d.yaml", "model": {"train_args": {"lr0": 1, "warmup_epochs": 0, "optimizer": "AdamW"}}})
    assert cfg.model.train_args == {"lr0": 1, "warmup_epochs": 0, "optimizer": "AdamW"}


def test_non_utf8_config_is_one_line(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes("experiment: caf\xe9\ndata: d.yaml\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8 text \(byte 0xe9 at offset 15\); save the file as UTF-8"):
        load_config(p)
    p.write_bytes(b"\xef\xbb\xbfdata: d.yaml\n")  # a UTF-8 BOM is fine
    assert load_config(p).data == Path("d.yaml")


def test_defaults_live_in_the_config_only():
    """The synthetic generator and the CLI take their defaults from SynthConfig."""
    import inspect

    from detal.cli import build_parser
    from detal.config import SynthConfig
    from detal.synthetic import DEFAULT_KNOBS, generate

    sy = SynthConfig()
    sig = inspect.signature(generate).parameters
    assert (sig["n_images"].default, sig["imgsz"].default, sig["val_fraction"].default) == (sy.images, sy.imgsz, sy.val_fraction)
    assert DEFAULT_KNOBS.palette_prob == sy.palette
    args = build_parser().parse_args(["synth", "--out", "x"])
    assert (args.images, args.imgsz, args.palette, args.val_fraction) == (sy.images, sy.imgsz, sy.palette, sy.val_fraction)


def test_epochs_for_reaches_min_steps_on_small_labelled_sets():
    from detal.config import ScheduleConfig

    s = ScheduleConfig(epochs_per_round=10, total_epochs=50, min_steps_per_round=400)
    # 40 images at batch 16 = 3 batches: 134 epochs; 840 images = 53 batches: the 10 of epochs_per_round
    assert [s.epochs_for(n, 16) for n in (40, 240, 840)] == [134, 27, 10]
    assert ScheduleConfig().epochs_for(40, 16) == 20  # off by default: epochs_per_round as before


def test_recommended_carries_its_calibration_and_other_rules_read_the_config():
    from detal.config import ScoringConfig, scoring_calibration

    none, temp, diff = (ScoringConfig(calibration=c) for c in ("none", "temperature", "difficulty"))
    assert scoring_calibration("recommended", none) == "temperature"  # `none` is the default: the alias fills it
    assert scoring_calibration("recommended", temp) == "temperature"
    assert scoring_calibration("entropy_wide", none) == "none"  # the rule itself stays uncalibrated
    assert scoring_calibration("entropy", diff) == "difficulty" and scoring_calibration("random", temp) == "temperature"
    with pytest.raises(ValueError, match="name entropy_wide to choose your own"):
        scoring_calibration("recommended", diff)
    # a study config may combine the rules with flip or difficulty: its cycle section (defaults) is not checked
    cfg = parse_config({"data": "d.yaml", "strategies": ["random", "entropy_wide"], "scoring": {"measure": "flip"}})
    assert cfg.cycle.strategy == "recommended" and cfg.scoring.measure == "flip"


def test_a_gpu_index_is_a_device_name(tmp_path):
    # `device: 0` in YAML and `--set model.device=0` arrive as ints; the harness's `--device 0` too
    p = tmp_path / "c.yaml"
    p.write_text("data: d/data.yaml\nmodel: {device: 0}\n")
    assert load_config(p).model.device == "0"
    assert load_config(p, ["model.device=1"]).model.device == "1"
    assert load_config(p, ["model.device=0,1"]).model.device == "0,1"
    with pytest.raises(ConfigError, match="model.device"):
        load_config(p, ["model.device=true"])
    # any text key: a numeric experiment name or project title is its text
    cfg = load_config(p, ["experiment=2024", "labelstudio.project=7", "scoring.empty=1"])
    assert (cfg.experiment, cfg.labelstudio.project, cfg.scoring.empty) == ("2024", "7", 1.0)


@pytest.mark.parametrize("raw, words", [
    ({"annotator": "labelstudio", "prelabel": {"trust": 0.8}}, "simulation only"),
    ({"prelabel": {"trust": 0.2}}, "must be above prelabel.conf 0.25"),
])
def test_prelabel_trust_is_simulation_only_and_above_the_shown_threshold(raw, words):
    with pytest.raises(ConfigError, match=re.escape(words)):
        parse_config({"data": "d.yaml", **raw}, "c.yaml")
    assert parse_config({"data": "d.yaml", "prelabel": {"trust": 0.8}}).prelabel.trust == 0.8


def test_a_live_project_refuses_prelabel_trust_in_one_line(tmp_path, capsys):
    from detal.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": str(tmp_path / "d.yaml"), "prelabel": {"trust": 0.8}}))
    assert main(["cycle", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "prelabel.trust is simulation only" in err and str(cfg) in err
