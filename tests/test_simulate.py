"""The experiment driver against a fake detector: tables, shared seed sets, determinism, resume, a changed pool."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detal.config import parse_config
from detal.errors import DetalError
from detal.round import seed_set
from detal.simulate import run_experiment
from detal.state import ArmState
from detal.types import METRIC_COLUMNS
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
    for name, rows in (("per_class.csv", 2 * 4 * 3 * 6), ("pool_classes.csv", 6)):
        assert len(pd.read_csv(run_dir / name)) == rows, name
    made = pd.read_csv(run_dir / "selected_classes.csv")
    # seed set (round 0) and the selections after rounds 1 and 2, 6 classes each
    assert sorted(made["round"].unique()) == [0, 1, 2] and len(made) == 2 * 4 * 3 * 6
    assert (run_dir / "report.md").exists() and (run_dir / "report.html").exists()


def test_same_config_same_selections(data_yaml, tmp_path):
    a = run_experiment(_cfg(data_yaml, tmp_path / "a"), quiet=True, backend=fake_backend)
    b = run_experiment(_cfg(data_yaml, tmp_path / "b"), quiet=True, backend=fake_backend)
    sa, sb = pd.read_csv(a / "selections.csv"), pd.read_csv(b / "selections.csv")
    pd.testing.assert_frame_equal(sa, sb)
    c = run_experiment(_cfg(data_yaml, tmp_path / "c", seeds=[5, 1]), quiet=True, backend=fake_backend)
    sc = pd.read_csv(c / "selections.csv")
    assert set(sc[sc.seed == 5]["image"]) != set(sa[sa.seed == 0]["image"])


def test_flip_measure_selects_by_the_scorers_flip_values(data_yaml, tmp_path):
    # measure flip: the scorer is built with flip=True and the selection scores are reductions of Prediction.flip
    cfg = _cfg(data_yaml, tmp_path, seeds=[0], strategies=["random", "entropy"],
               scoring={"measure": "flip", "reduction": "max", "audit": True})
    run_dir = run_experiment(cfg, quiet=True, backend=fake_backend)
    s = pd.read_csv(run_dir / "selections.csv")
    picked = s[(s.strategy == "entropy") & (s.source != "random")]
    assert len(picked) and picked["score"].between(0, 1).all()
    audit = list(run_dir.rglob("*boxes*.csv"))
    assert audit and "flip" in pd.read_csv(audit[0]).columns


def test_seed_set_shared_by_every_arm(data_yaml, tmp_path):
    run_dir = run_experiment(_cfg(data_yaml, tmp_path), quiet=True, backend=fake_backend)
    train = sorted((data_yaml.parent / "images" / "train").iterdir())
    for seed in (0, 1):
        states = [ArmState.load(run_dir / f"seed{seed}" / s / "state.json") for s in ("random", "entropy", "mix", "diverse")]
        first = [sorted(k for k, r in st.labelled.items() if r == 1) for st in states]
        assert all(f == first[0] for f in first)
        assert first[0] == [f"images/train/{train[i].name}" for i in seed_set(90, 0.1, seed)]


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


def test_a_setting_added_since_at_its_default_resumes(data_yaml, tmp_path):
    """A run saved before detal gained a setting resumes when the setting is at its default (the old behaviour)."""
    import yaml

    cfg = _cfg(data_yaml, tmp_path, seeds=[0], strategies=["random"])
    run_dir = run_experiment(cfg, quiet=True, backend=fake_backend)
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    saved["config"]["schedule"].pop("min_steps_per_round")  # as written before the setting existed
    saved["config"]["selection"].pop("min_subset_factor")
    from detal.simulate import _fingerprint

    saved["fingerprint"] = _fingerprint(saved["config"])
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    trained = fake_backend.calls["train"]
    run_experiment(cfg, quiet=True, backend=fake_backend)  # finished, same experiment: nothing retrained
    assert fake_backend.calls["train"] == trained
    assert "min_steps_per_round" in (run_dir / "config.yaml").read_text()  # re-saved in today's form
    run_experiment(cfg, quiet=True, backend=fake_backend)  # and it still matches after the re-save
    # the live job's section is not the experiment: changing it does not orphan a finished run
    run_experiment(_cfg(data_yaml, tmp_path, seeds=[0], strategies=["random"], cycle={"strategy": "entropy"}),
                   quiet=True, backend=fake_backend)
    assert fake_backend.calls["train"] == trained
    # a new setting away from its default is a different experiment
    (run_dir / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(DetalError, match="--overwrite"):
        run_experiment(_cfg(data_yaml, tmp_path, seeds=[0], strategies=["random"],
                            schedule={"seed_fraction": 0.1, "select_fraction": 0.1, "epochs_per_round": 2,
                                      "total_epochs": 6, "min_steps_per_round": 50}),
                       quiet=True, backend=fake_backend)


def test_min_steps_per_round_raises_the_epochs_of_small_labelled_sets(data_yaml, tmp_path):
    cfg = _cfg(data_yaml, tmp_path, seeds=[0], strategies=["random"], model={"batch": 8},
               schedule={"seed_fraction": 0.1, "select_fraction": 0.1, "epochs_per_round": 2, "total_epochs": 6,
                         "min_steps_per_round": 5})
    m = pd.read_csv(run_experiment(cfg, quiet=True, backend=fake_backend) / "metrics.csv")
    # 9, 18, 27 labelled images at batch 8: 2, 3, 4 batches -> 3, 2 (epochs_per_round), 2 epochs
    assert m["labeled_images"].tolist() == [9, 18, 27]
    assert m["epochs_trained"].tolist() == [3, 5, 7]


def test_concurrent_run_refused(data_yaml, tmp_path):
    import fcntl

    cfg = _cfg(data_yaml, tmp_path, seeds=[0], strategies=["random"])
    tmp_path.mkdir(exist_ok=True)
    with open(tmp_path / ".t.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DetalError, match="another detal run"):
            run_experiment(cfg, quiet=True, backend=fake_backend)
    run_experiment(cfg, quiet=True, backend=fake_backend)  # released: runs


def test_changed_pool_keeps_labelled_images_in_place(tmp_path, monkeypatch):
    """Kill after round 1, add one image and delete one, resume: no labelled image swaps with an unlabelled one."""
    import shutil

    data = generate(tmp_path / "ds", 60, seed=9, imgsz=64, val_fraction=0.25)
    cfg = _cfg(data, tmp_path / "runs", seeds=[0], strategies=["mix"])
    real_eval, calls = fake_backend.evaluate, {"n": 0}

    def crash_in_round_2(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_eval(*a, **k)

    monkeypatch.setattr(fake_backend, "evaluate", crash_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, quiet=True, backend=fake_backend)
    monkeypatch.setattr(fake_backend, "evaluate", real_eval)
    state_path = cfg.run_dir / "seed0" / "mix" / "state.json"
    before = ArmState.load(state_path)
    images = data.parent / "images" / "train"
    labels = data.parent / "labels" / "train"
    first = sorted(images.iterdir())[0]  # a new image sorts first: every position shifts by one
    shutil.copy(first, images / "00000a.png")
    shutil.copy(labels / (first.stem + ".txt"), labels / "00000a.txt")
    gone = next(k for k in sorted(before.labelled) if before.labelled[k] == 1)
    (data.parent / gone).unlink()

    run_experiment(cfg, quiet=True, backend=fake_backend)
    after = ArmState.load(state_path)
    assert {k: r for k, r in after.labelled.items() if r <= 2} == {k: r for k, r in before.labelled.items()} | \
        {k: r for k, r in before.pending.items()}  # same images, same rounds: nothing swapped
    assert gone in after.labelled  # its label and history are kept...
    train_list = (cfg.run_dir / "seed0" / "mix" / "round3" / "data_train.txt").read_text()
    assert gone.split("/")[-1] not in train_list  # ...but it is not trained on
    m = pd.read_csv(cfg.run_dir / "metrics.csv")
    assert m["round"].tolist() == [1, 2, 3]


def test_a_run_that_never_finished_a_round_does_not_lock_its_config(data_yaml, tmp_path, monkeypatch):
    """Round 1 fails (say a bad device); the corrected config is accepted without --overwrite."""
    cfg = _cfg(data_yaml, tmp_path, seeds=[0], strategies=["random"])

    def broken(*a, **k):
        raise DetalError("model.device 'cuda:0' requested but this machine has 0 CUDA GPU(s)")

    monkeypatch.setattr(fake_backend, "train", broken)
    with pytest.raises(DetalError, match="CUDA"):
        run_experiment(cfg, quiet=True, backend=fake_backend)
    monkeypatch.undo()
    fixed = _cfg(data_yaml, tmp_path, seeds=[0], strategies=["random"], model={"device": "cpu"})
    run_dir = run_experiment(fixed, quiet=True, backend=fake_backend)
    assert pd.read_csv(run_dir / "metrics.csv")["round"].tolist() == [1, 2, 3]


def test_resume_on_another_device_is_the_same_experiment(data_yaml, tmp_path):
    from detal.simulate import config_fingerprint

    a = _cfg(data_yaml, tmp_path, model={"device": "cpu", "workers": 0})
    b = _cfg(data_yaml, tmp_path, model={"device": "0", "workers": 8, "threads": 4})
    c = _cfg(data_yaml, tmp_path, model={"device": "cpu", "batch": 4})
    assert config_fingerprint(a) == config_fingerprint(b) != config_fingerprint(c)


# ---------------------------------------------------------------- annotation seconds (detal.cost)

def test_oracle_is_shown_prelabels_and_the_round_counts_seconds(data_yaml, tmp_path):
    cfg = _cfg(data_yaml, tmp_path, strategies=["random", "mix"])
    m = pd.read_csv(run_experiment(cfg, quiet=True, backend=fake_backend) / "metrics.csv")
    c = cfg.cost
    for _, g in m.groupby(["strategy", "seed"]):
        first = g.iloc[0]
        collecting = g.iloc[:-1]  # the oracle answers at once: a round's row holds the labels it selected
        # the seed set had no model: every box of it drawn, and the round-1 model trained on exactly those seconds
        assert first["annotation_seconds"] == pytest.approx(first["scratch_seconds"])
        assert first["scratch_seconds"] == pytest.approx(first["labeled_images"] * c.per_image
                                                         + first["labeled_boxes"] * c.drawn, abs=0.5)
        # from scratch always costs images x per_image + boxes x drawn; with pre-labels shown, the fake model's
        # boxes are accepted, moved, relabelled or deleted: some action other than drawing happened
        assert (g["scratch_seconds"] == (g["labeled_images"] * c.per_image + g["labeled_boxes"] * c.drawn)
                .round(1)).all()
        assert (collecting[["accepted", "moved", "relabelled", "deleted"]].sum(axis=1) > 0).all()
        assert g.iloc[-1][["accepted", "moved", "relabelled", "deleted", "drawn"]].sum() == 0  # nothing after it
        assert (g["annotation_seconds"].diff().dropna() > 0).all()
    # every action of a round's labels, summed: the collected boxes are accepted + moved-only + relabelled + drawn
    assert set(METRIC_COLUMNS) >= {"moved", "relabelled", "drawn", "annotation_seconds", "scratch_seconds"}


class _BlindOracle(__import__("detal.annotate", fromlist=["x"]).GroundTruthOracle):
    needs_predictions = False  # the oracle as it was before it was shown pre-labels


def test_showing_prelabels_changes_no_selection(data_yaml, tmp_path):
    strategies = ["random", "entropy", "mix"]
    runs = []
    for name, annotator in (("shown", None), ("blind", _BlindOracle(6))):
        cfg = _cfg(data_yaml, tmp_path / name, strategies=strategies)
        runs.append(run_experiment(cfg, quiet=True, backend=fake_backend, annotator=annotator))
    shown, blind = (pd.read_csv(r / "selections.csv") for r in runs)
    pd.testing.assert_frame_equal(shown, blind)
    ms, mb = (pd.read_csv(r / "metrics.csv") for r in runs)
    assert (ms["map50_95"] == mb["map50_95"]).all()
    # blind: every image costs its drawing; shown: the same images cost what their pre-labels leave to do
    assert (mb["annotation_seconds"] == mb["scratch_seconds"]).all()
    assert (ms["scratch_seconds"] == mb["scratch_seconds"]).all()


def test_a_table_of_an_older_detal_gains_the_new_columns(tmp_path):
    from detal.simulate import append_rows

    path = tmp_path / "metrics.csv"
    path.write_text("strategy,seed,round,map50_95\nrandom,0,1,0.5\n")
    append_rows(path, [{"strategy": "random", "seed": 0, "round": 2, "map50_95": 0.6, "annotation_seconds": 12.5}],
                ("strategy", "seed", "round", "map50_95", "annotation_seconds"))
    t = pd.read_csv(path)
    assert list(t.columns) == ["strategy", "seed", "round", "map50_95", "annotation_seconds"]
    assert t["map50_95"].tolist() == [0.5, 0.6] and t["annotation_seconds"].isna().tolist() == [True, False]


def test_entropy_per_second_runs_on_the_rounds_expected_seconds(data_yaml, tmp_path):
    # the round builds the ScoringPass with the config, so Scored.seconds exists; the picks differ from
    # entropy_wide's on the same seed (same subset, other ranking)
    cfg = _cfg(data_yaml, tmp_path, seeds=[0], strategies=["entropy_wide", "entropy_per_second"])
    s = pd.read_csv(run_experiment(cfg, quiet=True, backend=fake_backend) / "selections.csv")
    wide, per_sec = (set(s[(s.strategy == n) & (s["round"] == 1)]["image"]) for n in ("entropy_wide",
                                                                                       "entropy_per_second"))
    assert len(per_sec) == len(wide) == 9 and per_sec != wide


def test_a_seed_fraction_under_one_image_and_a_budget_over_the_pool_are_warned(data_yaml, tmp_path, caplog):
    import logging

    from detal.round import _warn_once

    _warn_once.cache_clear()
    # 90 pool images: 0.001 of them is 0.09 images (rounded up to 1); 0.4 of 90 = 36 a round, 54 left after one
    cfg = _cfg(data_yaml, tmp_path, seeds=[0, 1], strategies=["random"],
               schedule={"seed_fraction": 0.001, "select_fraction": 0.4, "epochs_per_round": 1, "total_epochs": 4})
    with caplog.at_level(logging.WARNING, logger="detal"):
        run_experiment(cfg, quiet=True, backend=fake_backend)
    seed = [r.getMessage() for r in caplog.records if "schedule.seed_fraction" in r.getMessage()]
    assert seed == ["schedule.seed_fraction: 0.001 of 90 images is 0.09 images, rounded up to a seed set of 1; "
                    "set schedule.seed_fraction to at least 0.011 to choose it yourself"]  # once, not per seed
    over = [r.getMessage() for r in caplog.records if "schedule.select_fraction asks for" in r.getMessage()]
    # round 1: 1 labelled, 89 left >= 36; round 2: 53 left; round 3: 17 left < 36, once per seed
    assert len(over) == 2 and all("asks for 36 images, but only 17 are left in the pool" in m for m in over)
    m = pd.read_csv(cfg.run_dir / "metrics.csv")
    assert m.groupby("seed")["labeled_images"].apply(list).tolist() == [[1, 37, 73, 90]] * 2


def test_trusted_prelabels_cost_nothing_and_become_labels_as_predicted(data_yaml, tmp_path):
    # prelabel.trust: the same selections as full review, cheaper rounds, and labels of record that hold the
    # trusted boxes as the model predicted them (the fake model's boxes are offset from the truth)
    runs = {}
    for name, trust in (("review", None), ("trust", 0.3)):
        cfg = _cfg(data_yaml, tmp_path / name, strategies=["random"], prelabel={"trust": trust})
        runs[name] = run_experiment(cfg, quiet=True, backend=fake_backend)
    review, trust = (pd.read_csv(runs[n] / "metrics.csv") for n in ("review", "trust"))
    pd.testing.assert_frame_equal(*(pd.read_csv(runs[n] / "selections.csv") for n in ("review", "trust")))
    assert (trust["scratch_seconds"] == review["scratch_seconds"]).all()  # from scratch: all the true boxes
    for seed in (0, 1):
        t, r = trust[trust["seed"] == seed], review[review["seed"] == seed]
        assert t.iloc[0]["annotation_seconds"] == r.iloc[0]["annotation_seconds"]  # the seed set: no model
        assert (t["annotation_seconds"].values[1:] < r["annotation_seconds"].values[1:]).all()
    # the labels of record: with full review every file is the ground truth; trusted ones hold predicted boxes
    from detal.data import label_path, read_labels

    differ = {}
    for name in ("review", "trust"):
        links = [p for p in runs[name].rglob("labels/images/*/*.png") if p.is_symlink()]
        assert links
        differ[name] = sum(not np.array_equal(read_labels(label_path(p), 6), read_labels(label_path(p.resolve()), 6))
                           for p in links)
    assert differ["review"] == 0 and differ["trust"] > 0
