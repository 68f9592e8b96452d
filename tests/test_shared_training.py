"""Trainings from scratch shared between the arms of a seed: one training, the same model, never a wrong reuse."""

from pathlib import Path

import pandas as pd
import pytest

from detal.config import parse_config
from detal.shared_training import train_shared, training_key
from detal.simulate import run_experiment
from detal.synthetic import generate
from tests import fake_backend


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("shapes"), 60, seed=6, imgsz=64, val_fraction=0.25)


@pytest.fixture(autouse=True)
def no_reports(monkeypatch):
    import detal.report

    monkeypatch.setattr(detal.report, "write_report", lambda *a, **k: tmp_report)


tmp_report = Path("report.html")


def _cfg(data_yaml, out, **over):
    raw = {"experiment": "sh", "data": str(data_yaml), "output_dir": str(out), "seeds": [0, 1],
           "strategies": ["random", "mix", "entropy"],
           "schedule": {"seed_fraction": 0.1, "select_fraction": 0.1, "epochs_per_round": 1, "total_epochs": 3}}
    raw.update(over)
    return parse_config(raw)


def test_every_arm_of_a_seed_reuses_the_first_round(data_yaml, tmp_path, capsys):
    before = fake_backend.calls["train"]
    run_dir = run_experiment(_cfg(data_yaml, tmp_path), quiet=False, backend=fake_backend)
    # 2 seeds x (one shared first round + 3 arms x 2 warm-started rounds)
    assert fake_backend.calls["train"] - before == 2 * (1 + 3 * 2)
    m = pd.read_csv(run_dir / "metrics.csv")
    first = m[m["round"] == 1]
    assert (first.groupby("seed")["map50_95"].nunique() == 1).all()
    assert (first.groupby("seed")["train_seconds"].apply(lambda s: (s == 0).sum()) == 2).all()  # the two reusers
    for seed in (0, 1):
        weights = {s: (run_dir / f"seed{seed}" / s / "round1" / "weights" / "last.pt").read_bytes()
                   for s in ("random", "mix", "entropy")}
        assert len(set(weights.values())) == 1
    assert capsys.readouterr().err.count("reusing the model another arm of seed") == 4
    assert len([p for p in (run_dir / "shared").iterdir() if not p.name.startswith(".")]) == 2  # one per seed


def test_the_key_changes_with_what_training_reads_and_not_with_where_it_runs(data_yaml, tmp_path):
    cfg = _cfg(data_yaml, tmp_path)
    labels = [("a.png", b"0 0.5 0.5 0.1 0.1\n"), ("b.png", b"")]
    base = dict(source=cfg.model.arch, labelled=labels, val=[Path("v.png")], names=("x",), epochs=3, seed=0)

    def key(c=cfg, **kw):
        return training_key(c, **{**base, **kw})

    assert key() == key(labelled=list(reversed(labels)))  # order of the labelled set does not matter
    for other in (key(labelled=[labels[0], ("b.png", b"1 0.5 0.5 0.1 0.1\n")]), key(labelled=labels[:1]),
                  key(epochs=4), key(seed=1), key(val=[Path("w.png")]), key(source="other.yaml"),
                  key(c=_cfg(data_yaml, tmp_path, model={"imgsz": 96})),
                  key(c=_cfg(data_yaml, tmp_path, model={"train_args": {"lr0": 0.02}}))):
        assert other != key()
    for same in (_cfg(data_yaml, tmp_path, model={"threads": 1, "device": "cpu", "workers": 2}),
                 _cfg(data_yaml, tmp_path, model={"warm_start": False}, strategies=["random"])):
        assert key(c=same) == key()


def test_a_failed_training_leaves_nothing_to_reuse(tmp_path):
    calls = []

    def train(round_dir, fail=False):
        def run():
            calls.append(round_dir)
            if fail:
                raise RuntimeError("killed")
            (round_dir / "weights").mkdir(parents=True)
            (round_dir / "weights" / "last.pt").write_text("model")
            (round_dir / "data.yaml").write_text("the arm's own")
            return fake_backend.TrainResult(round_dir / "weights" / "last.pt", 3, 1.5)
        return run

    a, b, c = (tmp_path / n / "round1" for n in "abc")
    with pytest.raises(RuntimeError, match="killed"):
        train_shared(tmp_path / "shared", "k", a, train(a, fail=True))
    tr, reused = train_shared(tmp_path / "shared", "k", b, train(b))
    assert not reused and calls == [a, b]
    c.mkdir(parents=True)
    (c / "data.yaml").write_text("c's own")
    tr, reused = train_shared(tmp_path / "shared", "k", c, train(c))
    assert reused and calls == [a, b] and (tr.weights, tr.epochs, tr.seconds) == (c / "weights" / "last.pt", 3, 0.0)
    assert tr.weights.read_text() == "model" and (c / "data.yaml").read_text() == "c's own"
