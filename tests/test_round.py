"""The round: what the annotator returns is what training reads and what the metrics count."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from detal.annotate import Annotations, Request
from detal.config import parse_config
from detal.data import label_path, load_dataset, read_labels
from detal.simulate import run_experiment
from detal.synthetic import generate
from tests import fake_backend


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("shapes"), 60, seed=4, imgsz=64, val_fraction=0.25)


class CorrectingAnnotator:
    """Answers with its own labels: one box of class 5 in the image centre, whatever the files say."""

    needs_predictions = True

    def __init__(self):
        self.requests: list[Request] = []

    def request(self, req: Request) -> None:
        self.requests.append(req)

    def collect(self, images):
        return Annotations(labels={Path(p): np.array([[5, 0.5, 0.5, 0.2, 0.2]]) for p in images})


def _cfg(data_yaml, out, **over):
    raw = {"experiment": "r", "data": str(data_yaml), "output_dir": str(out), "seeds": [0], "strategies": ["mix"],
           "schedule": {"seed_fraction": 0.1, "select_fraction": 0.1, "epochs_per_round": 1, "total_epochs": 3}}
    raw.update(over)
    return parse_config(raw)


def test_annotator_labels_are_the_labels_of_record(data_yaml, tmp_path):
    ds = load_dataset(data_yaml)
    before = {p: label_path(p).read_bytes() for p in ds.train}
    ann = CorrectingAnnotator()
    run_dir = run_experiment(_cfg(data_yaml, tmp_path), quiet=True, backend=fake_backend, annotator=ann)

    m = pd.read_csv(run_dir / "metrics.csv")
    assert (m["labeled_boxes"] == m["labeled_images"]).all()  # one box per image: the annotator's, not the files'
    train_list = (run_dir / "seed0" / "mix" / "round3" / "data_train.txt").read_text().split()
    assert len(train_list) == m["labeled_images"].iloc[-1]
    for line in train_list:
        img = Path(line)
        assert img.is_symlink() and img.resolve() in set(ds.train)  # a link to the user's image...
        np.testing.assert_allclose(read_labels(label_path(img), 6), [[5, 0.5, 0.5, 0.2, 0.2]])  # ...its labels ours
    assert {p: label_path(p).read_bytes() for p in ds.train} == before  # the user's label files never change
    made = pd.read_csv(run_dir / "selected_classes.csv")
    assert set(made.loc[made.boxes > 0, "class_id"]) == {5}

    # one model pass: the pre-labels handed over are predictions of the selected images, above prelabel.conf
    model_reqs = [r for r in ann.requests if r.model_version != "seed"]
    assert len(model_reqs) == 2 and all(set(r.predictions) == set(r.images) for r in model_reqs)
    assert all((p.conf >= 0.25).all() for r in model_reqs for p in r.predictions.values())


def test_pool_exhausted_trains_once_more_on_everything(data_yaml, tmp_path):
    # 45 pool images: 20% seed + 50% + 50% would exceed the pool: round 2 takes the rest, round 3 trains on all
    cfg = _cfg(data_yaml, tmp_path, strategies=["random"],
               schedule={"seed_fraction": 0.2, "select_fraction": 0.5, "epochs_per_round": 1, "total_epochs": 5})
    run_dir = run_experiment(cfg, quiet=True, backend=fake_backend)
    m = pd.read_csv(run_dir / "metrics.csv")
    assert m["labeled_images"].tolist() == [9, 31, 45]  # budget round(0.5 * 45) = 22 (half to even)  # the last batch was trained on, then it stopped
    assert m["selected_images"].tolist() == [22, 14, 0]


class OnTheFakeBoxAnnotator(CorrectingAnnotator):
    """Labels one class-5 box exactly where the fake detector puts its boxes ([10, 10, 50, 50] of 160 px)."""

    def collect(self, images):
        return Annotations(labels={Path(p): np.array([[5, 30 / 160, 30 / 160, 40 / 160, 40 / 160]]) for p in images})


def test_difficulty_calibration_weights_each_box_by_its_class_difficulty(data_yaml, tmp_path, capsys):
    from detal.acquisition.uncertainty import difficulty_weights, image_scores
    from detal.scoring import labelled_difficulty

    cfg = _cfg(data_yaml, tmp_path, strategies=["entropy"], scoring={"calibration": "difficulty"})
    run_dir = run_experiment(cfg, quiet=False, backend=fake_backend, annotator=OnTheFakeBoxAnnotator())
    round2 = run_dir / "seed0" / "entropy" / "round2"  # round 1's few seed images had no class-5 prediction
    scorer = fake_backend.Scorer(round2 / "weights" / "last.pt")
    labelled = (round2 / "data_train.txt").read_text().split()
    box = np.array([[5, 30 / 160, 30 / 160, 40 / 160, 40 / 160]])
    d = labelled_difficulty(scorer, labelled, [box] * len(labelled), fake_backend.NC, cfg.scoring.conf)
    assert (d[:5] == 1).all() and 0 < d[5] < 1  # only class 5 was labelled; its boxes sit on the predictions
    names = load_dataset(data_yaml).names
    line = "class difficulty on the labelled set: " + ", ".join(f"{n} {v:.2f}" for n, v in zip(names, d))
    assert line in capsys.readouterr().err

    sel = pd.read_csv(run_dir / "selections.csv").query("round == 2")
    preds = scorer.predict(sel["image"].tolist())
    probs = [p.probs for p in preds]
    kw = {"score_conf": cfg.scoring.conf}
    weighted = image_scores(probs, class_weights=difficulty_weights(d), **kw)
    np.testing.assert_allclose(sel["score"], weighted, rtol=1e-6)  # what ranked the pool is the weighted score
    assert not np.allclose(weighted, image_scores(probs, **kw))


@pytest.mark.parametrize("strategy, calibration", [("entropy", "temperature"), ("recommended", "none")])
def test_temperature_calibration_rescales_the_scores_that_rank_the_pool(data_yaml, tmp_path, capsys,
                                                                        strategy, calibration):
    """Configured, or carried by `recommended` (whose config says none: the alias fills it in)."""
    import re

    from detal.acquisition.uncertainty import image_scores
    from detal.scoring import labelled_temperature

    cfg = _cfg(data_yaml, tmp_path, strategies=[strategy], scoring={"calibration": calibration})
    run_dir = run_experiment(cfg, quiet=False, backend=fake_backend, annotator=OnTheFakeBoxAnnotator())
    round2 = run_dir / "seed0" / strategy / "round2"
    scorer = fake_backend.Scorer(round2 / "weights" / "last.pt")
    labelled = (round2 / "data_train.txt").read_text().split()
    box = np.array([[5, 30 / 160, 30 / 160, 40 / 160, 40 / 160]])
    t, n = labelled_temperature(scorer, labelled, [box] * len(labelled), fake_backend.NC, cfg.scoring.conf)
    err = capsys.readouterr().err
    assert f"temperature on the labelled set: {t:.3f} (fitted on {n} predicted boxes)" in err
    assert len(re.findall(r"temperature on the labelled set: ", err)) == 2  # rounds 1 and 2 select
    assert n > 0 and abs(np.log(t)) > 0.05  # the fake's uniform class scores are far from calibrated

    sel = pd.read_csv(run_dir / "selections.csv").query("round == 2")
    probs = [p.probs for p in scorer.predict(sel["image"].tolist())]
    kw = {"score_conf": cfg.scoring.conf}
    scaled = image_scores(probs, temperature=t, **kw)
    np.testing.assert_allclose(sel["score"], scaled, rtol=1e-6)  # what ranked the pool is the rescaled score
    assert not np.allclose(scaled, image_scores(probs, **kw))


def test_first_round_strategy_selects_only_after_round_one(data_yaml, tmp_path, capsys):
    sched = {"seed_fraction": 0.1, "select_fraction": 0.1, "epochs_per_round": 1, "total_epochs": 4}
    cfg = _cfg(data_yaml, tmp_path / "first", strategies=["entropy_wide"], selection={"first_round": "coreset"},
               schedule=sched)
    sel = pd.read_csv(run_experiment(cfg, quiet=False, backend=fake_backend) / "selections.csv")
    by_round = sel.groupby("round")["source"].agg(set).to_dict()
    assert by_round == {1: {"diversity"}, 2: {"uncertainty"}, 3: {"uncertainty"}}  # coreset once, then the arm's
    err = capsys.readouterr().err
    assert "round 1/4: selected 4 images by coreset (scored" in err and "round 2/4: selected 4 images (scored" in err
    plain = _cfg(data_yaml, tmp_path / "plain", strategies=["entropy_wide"], schedule=sched)
    base = pd.read_csv(run_experiment(plain, quiet=True, backend=fake_backend) / "selections.csv")
    assert set(sel.query("round == 1").image) != set(base.query("round == 1").image)


def test_audit_share_adds_random_picks_to_a_strategy_without_any(data_yaml, tmp_path):
    from detal.annotate import GroundTruthOracle
    from detal.labels import LabelStore, image_key
    from detal.round import Arm, choose
    from detal.state import ArmState

    ds = load_dataset(data_yaml)
    cfg = _cfg(data_yaml, tmp_path, schedule={"seed_fraction": 0.1, "select_fraction": 0.25, "epochs_per_round": 1,
                                              "total_epochs": 3})
    keys = tuple(image_key(p, ds.root) for p in ds.train)
    (tmp_path / "w.pt").write_text('{"n": 4}')  # the fake detector's weights

    def pick(strategy, share):
        arm = Arm(cfg, strategy, 0, ds.train, keys, ds.val, ds.names, fake_backend, GroundTruthOracle(ds.nc), "cpu",
                  LabelStore(tmp_path / "labels", ds.nc), tmp_path, audit_share=share)
        sel, scoring = choose(arm, ArmState(), tmp_path / "w.pt", np.random.default_rng(3), [], strategy)
        scoring.scorer.close()
        return sel

    budget = round(0.25 * len(ds.train))  # 11 of 45
    plain, audited = pick("entropy", 0.0), pick("entropy", 0.2)
    assert len(plain.ids) == len(audited.ids) == budget and len(set(audited.ids)) == budget
    assert set(plain.sources) == {"uncertainty"}
    assert audited.sources.count("random") == 2 and audited.sources.count("uncertainty") == budget - 2
    rand = audited.ids[np.array(audited.sources) == "random"]
    assert np.isnan(audited.scores[np.array(audited.sources) == "random"]).all()
    assert not set(rand) & set(audited.ids[np.array(audited.sources) == "uncertainty"])
    # a strategy with a random share of its own (mix) gets no extra audit
    assert pick("mix", 0.2).sources.count("random") == pick("mix", 0.0).sources.count("random")
