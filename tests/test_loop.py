"""The experiment loop against a fake detector: shapes of outputs, shared seed sets, determinism, resume."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detal.config import parse_config
from detal.errors import DetalError
from detal.loop import METRIC_COLUMNS, run_experiment, seed_set
from detal.synthetic import generate
from tests import fake_backend


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("shapes"), 120, seed=3, imgsz=64, val_fraction=0.25)


def _cfg(data_yaml: Path, out: Path, **over):
    raw = {"experiment": "t", "data": str(data_yaml), "output_dir": str(out), "seeds": [0, 1],
           "strategies": ["random", "entropy", "mix", "diverse"],
           "schedule": {"seed_fraction": 0.1, "select_fraction": 0.1, "epochs_per_round": 2, "total_epochs": 6}}
    raw.update(over)
    return parse_config(raw)


def test_metrics_and_selections(data_yaml, tmp_path):
    cfg = _cfg(data_yaml, tmp_path)
    run_dir = run_experiment(cfg, quiet=True, backend=fake_backend)
    m = pd.read_csv(run_dir / "metrics.csv")
    assert list(m.columns) == list(METRIC_COLUMNS)
    assert len(m) == 2 * 4 * 3  # seeds x strategies x rounds
    pool = 90  # 120 images, 25% val
    for (strategy, seed), g in m.groupby(["strategy", "seed"]):
        assert g["round"].tolist() == [1, 2, 3]
        assert g["labeled_images"].tolist() == [9, 18, 27]
        assert g["epochs_trained"].tolist() == [2, 4, 6]
        assert (g["labeled_boxes"].diff().dropna() >= 0).all()
        # random never scores; entropy/mix/diverse score only the random 20% subset of the unlabelled pool
        expected = 0 if strategy == "random" else round(0.2 * (pool - 9))
        assert g["scored_images"].iloc[0] == pytest.approx(expected, abs=2)
        assert g["scored_images"].iloc[-1] == 0  # no selection after the last round
    s = pd.read_csv(run_dir / "selections.csv")
    val = {str(p) for p in __import__("detal.data", fromlist=["x"]).load_dataset(data_yaml).val}
    assert not set(s["image"]) & val
    for _, g in s.groupby(["strategy", "seed"]):
        assert g["image"].is_unique
    mix = s[(s.strategy == "mix") & (s["round"] == 1) & (s.seed == 0)]
    assert (mix["source"] == "random").sum() == 4 and (mix["source"] != "random").sum() == 5
    report = (run_dir / "report.md").read_text()
    assert "| mix |" in report and (run_dir / "map_vs_labeled.png").stat().st_size > 1000


def test_same_config_same_selections(data_yaml, tmp_path):
    a = run_experiment(_cfg(data_yaml, tmp_path / "a"), quiet=True, backend=fake_backend)
    b = run_experiment(_cfg(data_yaml, tmp_path / "b"), quiet=True, backend=fake_backend)
    sa, sb = pd.read_csv(a / "selections.csv"), pd.read_csv(b / "selections.csv")
    pd.testing.assert_frame_equal(sa, sb)
    c = run_experiment(_cfg(data_yaml, tmp_path / "c", seeds=[5, 1]), quiet=True, backend=fake_backend)
    sc = pd.read_csv(c / "selections.csv")
    assert set(sc[sc.seed == 5]["image"]) != set(sa[sa.seed == 0]["image"])


def test_seed_set_shared_by_every_arm(data_yaml, tmp_path):
    run_dir = run_experiment(_cfg(data_yaml, tmp_path), quiet=True, backend=fake_backend)
    import json

    for seed in (0, 1):
        maps = [np.array(json.loads((run_dir / f"seed{seed}" / s / "state.json").read_text())["labelled_map"])
                for s in ("random", "entropy", "mix", "diverse")]
        first = [np.flatnonzero(m == 1) for m in maps]
        assert all(np.array_equal(first[0], f) for f in first)
        assert np.array_equal(first[0], seed_set(90, 0.1, seed))


def test_resume_after_crash(data_yaml, tmp_path, monkeypatch):
    cfg = _cfg(data_yaml, tmp_path, seeds=[0], strategies=["mix"])
    full = run_experiment(_cfg(data_yaml, tmp_path / "ref", seeds=[0], strategies=["mix"]), quiet=True, backend=fake_backend)

    real_eval = fake_backend.evaluate
    state = {"n": 0}

    def crashing(*a, **k):
        state["n"] += 1
        if state["n"] == 2:
            raise KeyboardInterrupt
        return real_eval(*a, **k)

    monkeypatch.setattr(fake_backend, "evaluate", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, quiet=True, backend=fake_backend)
    assert len(pd.read_csv(cfg.run_dir / "metrics.csv")) == 1  # the finished round is kept
    monkeypatch.setattr(fake_backend, "evaluate", real_eval)
    run_experiment(cfg, quiet=True, backend=fake_backend)
    pd.testing.assert_frame_equal(pd.read_csv(cfg.run_dir / "selections.csv").drop(columns="experiment"),
                                  pd.read_csv(full / "selections.csv").drop(columns="experiment"))
    assert pd.read_csv(cfg.run_dir / "metrics.csv")["round"].tolist() == [1, 2, 3]


def test_changed_config_refuses_to_mix_results(data_yaml, tmp_path):
    run_experiment(_cfg(data_yaml, tmp_path, seeds=[0], strategies=["random"]), quiet=True, backend=fake_backend)
    with pytest.raises(DetalError, match="--overwrite"):
        run_experiment(_cfg(data_yaml, tmp_path, seeds=[0], strategies=["mix"]), quiet=True, backend=fake_backend)
    run_experiment(_cfg(data_yaml, tmp_path, seeds=[0], strategies=["mix"]), quiet=True, overwrite=True,
                   backend=fake_backend)


def test_concurrent_run_refused(data_yaml, tmp_path):
    import fcntl

    cfg = _cfg(data_yaml, tmp_path, seeds=[0], strategies=["random"])
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / ".t.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DetalError, match="another detal run"):
            run_experiment(cfg, quiet=True, backend=fake_backend)
    run_experiment(cfg, quiet=True, backend=fake_backend)  # released: runs
