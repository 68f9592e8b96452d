"""tools/bench_convergence.py against the fake detector: retrains the last round longer, resumes, prints the last line."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from detal.config import parse_config
from detal.errors import DetalError
from detal.synthetic import generate
from tests import fake_backend

ROOT = Path(__file__).resolve().parents[1]
LAST = re.compile(r"^convergence_gain=(\S+) ci_low=(\S+) ci_high=(\S+) arm=random factor=3 round=3 dataset=\S+$")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


conv, bench = _load("bench_convergence"), _load("bench_label_efficiency")


@pytest.fixture
def study(tmp_path, monkeypatch):
    import detal.report

    monkeypatch.setattr(detal.report, "write_report", lambda *a, **k: None)
    data_yaml = generate(tmp_path / "tiny-shapes", 60, seed=5, imgsz=64, val_fraction=0.25)
    cfg = parse_config({"experiment": "cv", "data": str(data_yaml), "output_dir": str(tmp_path / "runs"),
                        "seeds": [0, 1], "strategies": ["random", "entropy"],
                        "schedule": {"seed_fraction": 0.1, "select_fraction": 0.1, "epochs_per_round": 2,
                                     "total_epochs": 6}})
    return cfg


def test_retrains_the_last_round_longer_from_the_previous_weights_and_resumes(study, monkeypatch):
    cfg = study
    with pytest.raises(DetalError, match="no finished round of arm random, seed 0; run the study first"):
        conv.convergence_rows(cfg, "random", 3, backend=fake_backend, quiet=True)
    bench.run_study(cfg, backend=fake_backend, quiet=True, report=False)

    seen = []
    real_train = fake_backend.train

    def train(model, data_yaml, epochs, out, **kw):
        seen.append((Path(model), Path(data_yaml), epochs))
        return real_train(model, data_yaml, epochs, out, **kw)

    monkeypatch.setattr(fake_backend, "train", train)
    rows = conv.convergence_rows(cfg, "random", 3, backend=fake_backend, quiet=True)
    assert [r["seed"] for r in rows] == [0, 1]
    for (model, data_yaml, epochs), row in zip(seen, rows):
        arm = cfg.output_dir / "cv" / "arms" / f"random-seed{row['seed']}" / "cv" / f"seed{row['seed']}" / "random"
        assert model == arm / "round2" / "weights" / "last.pt" and data_yaml == arm / "round3" / "data.yaml"
        assert (row["round"], row["epochs"], row["longer_epochs"], epochs) == (3, 2, 6, 6)
        m = pd.read_csv(arm.parents[1] / "metrics.csv").set_index("round")
        assert row["map50_95"] == m.loc[3, "map50_95"]
        # the fake's mAP depends only on the labelled set: the same images give the same mAP, gain 0
        assert row["longer_map50_95"] == pytest.approx(row["map50_95"]) and row["gain"] == pytest.approx(0)
        saved = json.loads((cfg.output_dir / "cv" / "convergence" / f"random-seed{row['seed']}-x3" / "result.json").read_text())
        assert saved["epochs"] == 6

    seen.clear()
    again = conv.convergence_rows(cfg, "random", 3, backend=fake_backend, quiet=True)
    assert seen == [] and again == rows  # resumed: nothing trained twice
    lines = conv.format_rows(rows, "random", 3, "tiny-shapes")
    assert LAST.match(lines[-1]) and float(LAST.match(lines[-1]).group(1)) == pytest.approx(0)
    assert len(lines) == 1 + 2 + 2  # header, a row per seed, the mean, the last line


def test_bad_arm_and_factor_are_one_line_errors(study, capsys, tmp_path):
    with pytest.raises(DetalError, match=r"--arm mix: not an arm of cv \(its strategies: random, entropy\)"):
        conv.convergence_rows(study, "mix", 2, backend=fake_backend, quiet=True)
    assert conv.main(["-c", str(ROOT / "configs" / "demo.yaml"), "--factor", "1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --factor 1: give 2 or more (x the round's epochs)"
