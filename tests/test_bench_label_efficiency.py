"""tools/bench_label_efficiency.py against the fake detector: runs, resumes, adds seeds, prints the last line."""

import importlib.util
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from detal.config import load_config, parse_config
from detal.errors import DetalError
from detal.report import stats
from detal.synthetic import generate
from tests import fake_backend

ROOT = Path(__file__).resolve().parents[1]
LAST = re.compile(r"^labels_saved_vs_random=(\S+) ci_low=(\S+) ci_high=(\S+) strategy=(\S+) dataset=(\S+) "
                  r"seconds_saved_vs_random=(\S+) seconds_vs_from_scratch=(\S+)$")


def _tool():
    spec = importlib.util.spec_from_file_location("bench_label_efficiency", ROOT / "tools" / "bench_label_efficiency.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


bench = _tool()


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("shapes") / "tiny-shapes", 80, seed=3, imgsz=64, val_fraction=0.25)


@pytest.fixture(autouse=True)
def no_arm_reports(monkeypatch):
    """run_experiment writes a report per arm folder (figures: seconds each); the study's own report is tested once."""
    import detal.report

    monkeypatch.setattr(detal.report, "write_report", lambda *a, **k: None)


@pytest.fixture(scope="module")
def study(data_yaml, tmp_path_factory):
    import detal.report

    mp = pytest.MonkeyPatch()
    mp.setattr(detal.report, "write_report", lambda *a, **k: None)
    cfg = _cfg(data_yaml, tmp_path_factory.mktemp("study"))
    try:
        return cfg, bench.run_study(cfg, backend=fake_backend, quiet=True, report=False)
    finally:
        mp.undo()


def _cfg(data_yaml, out, seeds=(0, 1), strategies=("random", "entropy", "mix")):
    return parse_config({"experiment": "le", "data": str(data_yaml), "output_dir": str(out), "seeds": list(seeds),
                         "strategies": list(strategies),
                         "schedule": {"seed_fraction": 0.1, "select_fraction": 0.1, "epochs_per_round": 1,
                                      "total_epochs": 3}})


def test_runs_every_arm_resumes_and_adds_seeds(data_yaml, tmp_path, monkeypatch):
    cfg = _cfg(data_yaml, tmp_path, strategies=("random", "mix"))
    df = bench.run_study(cfg, backend=fake_backend, quiet=True, report=False)
    assert len(df) == 2 * 2 * 3  # seeds x strategies x rounds
    assert set(df["experiment"]) == {"le"}
    # same seed set for every arm of a seed: the first round trains on the same labelled images
    first = df[df["round"] == 1].groupby("seed")["labeled_images"].nunique()
    assert (first == 1).all()
    trained = fake_backend.calls["train"]
    bench.run_study(cfg, backend=fake_backend, quiet=True, report=False)
    assert fake_backend.calls["train"] == trained  # everything finished: nothing retrained
    more = _cfg(data_yaml, tmp_path, seeds=(0, 1, 2), strategies=("random", "mix"))
    written = []
    monkeypatch.setattr(bench, "write_report", lambda dirs, out, labels: written.append((sorted(dirs), out)))
    df3 = bench.run_study(more, backend=fake_backend, quiet=True)
    # only the new seed's arms, whose first round is one training shared across arm folders
    assert fake_backend.calls["train"] == trained + 1 + 2 * 2
    assert sorted(df3["seed"].unique()) == [0, 1, 2]
    assert len(written[0][0]) == 6 and written[0][1] == tmp_path / "le" / "report"


def test_numbers_are_the_reports_and_the_last_line(study):
    cfg, df = study
    lines = bench.format_study(df, bench.dataset_name(cfg))
    m = LAST.match(lines[-1])
    assert m, lines[-1]
    assert m.group(4) == "mix" and m.group(5) == "tiny-shapes"
    ls = stats.labels_saved(df, "mix", "random")
    ratio = float(m.group(1))
    assert ratio == pytest.approx(1 - ls.fraction, abs=1e-3)
    assert float(m.group(2)) == pytest.approx(1 - ls.interval.high, abs=1e-3)
    assert float(m.group(3)) == pytest.approx(1 - ls.interval.low, abs=1e-3)
    # the seconds ratios are the report's labels_saved on annotation seconds (and against random from scratch)
    secs = stats.labels_saved(df, "mix", "random", x="annotation_seconds")
    scratch = stats.labels_saved(df, "mix", "random", x="annotation_seconds", baseline_x="scratch_seconds")
    assert float(m.group(6)) == pytest.approx(stats.Ratio.of(secs).value, abs=1e-3)
    assert float(m.group(7)) == pytest.approx(stats.Ratio.of(scratch).value, abs=1e-3)
    text = "\n".join(lines)
    for s in ("random", "entropy", "mix"):
        assert re.search(rf"^{s}\s+2\s+3\s", text, re.M), s
    assert LAST.match(bench.format_study(df, "d", headline="entropy")[-1]).group(4) == "entropy"
    with pytest.raises(DetalError, match="headline"):
        bench.format_study(df, "d", headline="random")


def test_an_arm_that_never_reaches_random_reads_never_in_the_table_and_inf_on_the_last_line():
    from tests.report.tables import RANDOM, metrics

    curves = {}
    for seed in (0, 1, 2):
        curves["random", seed] = [y + 0.01 * seed for y in RANDOM]
        curves["mix", seed] = [y + 0.01 * seed - 0.05 for y in RANDOM]  # below random in every round
    lines = bench.format_study(metrics(curves), "d")
    row = next(ln for ln in lines if ln.startswith("mix "))
    assert row.split()[-6:] == ["never", "[never,", "never]"] * 2 and "inf" not in row, row
    assert LAST.match(lines[-1]).groups()[:3] == ("inf", "inf", "inf")


def test_a_study_whose_models_learned_nothing_says_so_above_the_table():
    from tests.report.tables import metrics

    flat = {(s, seed): [0.0, 0.0, 0.004] for s in ("random", "mix") for seed in (0, 1)}
    lines = bench.format_study(metrics(flat), "d")
    warn = [ln for ln in lines if ln.startswith("warning:")]
    assert len(warn) == 1 and "0.004" in warn[0] and "train longer" in warn[0]
    assert lines.index(warn[0]) < next(i for i, ln in enumerate(lines) if ln.startswith("strategy "))
    assert LAST.match(lines[-1])  # the machine-readable line stays last
    learned = {(s, seed): [0.1, 0.2, 0.3] for s in ("random", "mix") for seed in (0, 1)}
    assert not [ln for ln in bench.format_study(metrics(learned), "d") if ln.startswith("warning:")]


def test_default_headline_is_the_recommended_rule_then_mix_never_the_best():
    from detal.acquisition.selection import RECOMMENDED

    assert bench.headline_strategy(["random", "entropy", "mix", RECOMMENDED]) == RECOMMENDED
    assert bench.headline_strategy(["random", RECOMMENDED, "recommended"]) == "recommended"
    assert bench.headline_strategy(["random", "entropy", "mix"]) == "mix"
    assert bench.headline_strategy(["random", "diverse", "entropy"]) == "diverse"
    assert bench.headline_strategy(["random"]) is None


def test_requires_random_and_empty_study(data_yaml, tmp_path):
    with pytest.raises(DetalError, match="random"):
        bench.run_study(_cfg(data_yaml, tmp_path, strategies=("mix",)), backend=fake_backend, quiet=True)
    cfg = _cfg(data_yaml, tmp_path / "none")
    assert bench.study_metrics(cfg).empty
    assert LAST.match(bench.format_study(bench.study_metrics(cfg), "d")[-1])


def test_cli_overrides():
    args = bench.build_parser().parse_args(["-c", "x.yaml", "--seeds", "0,1,2", "--strategies", "random,mix",
                                            "--device", "0", "--set", "schedule.total_epochs=40"])
    assert bench.overrides(args) == ["schedule.total_epochs=40", "seeds=[0,1,2]", "strategies=[random,mix]",
                                     "model.device=0"]
    assert load_config(ROOT / "configs" / "demo.yaml", bench.overrides(args)).model.device == "0"  # a GPU index
    assert bench.main(["-c", str(ROOT / "configs" / "nope.yaml")]) == 2
    for bad in ("0", "-3", "two"):
        with pytest.raises(SystemExit) as exc:
            bench.build_parser().parse_args(["-c", "x.yaml", "--jobs", bad])
        assert exc.value.code == 2


def test_combined_report_and_time_split(study):
    cfg, df = study
    dirs, labels = bench.arm_dirs(cfg)
    assert labels == {}
    html = bench.write_report(dirs, out=cfg.output_dir / "le" / "report", labels=labels)
    assert html.is_file() and "mix" in html.read_text()
    t = bench.time_split(df)
    assert list(t.columns) == ["train_seconds", "eval_seconds", "select_seconds", "reused"]
    assert isinstance(t, pd.DataFrame) and set(t.index) == {"random", "entropy", "mix"}
    # random runs first in each seed and trains the shared first round; the others reuse it (0 s recorded),
    # which counts as reused, not as a 0 s training pulling the mean down
    seeds = df["seed"].nunique()
    assert t["reused"].to_dict() == {"random": 0, "entropy": seeds, "mix": seeds}
    assert (df.query("strategy != 'random' and round == 1")["train_seconds"] == 0).all()
    hand = pd.DataFrame({"strategy": ["random", "random", "entropy", "entropy"], "train_seconds": [10.0, 30.0, 0.0, 30.0],
                         "eval_seconds": [1.0, 3.0, 1.0, 3.0], "select_seconds": [0.0, 0.0, 2.0, 4.0]})
    t = bench.time_split(hand)
    assert t.loc["random"].tolist() == [20.0, 2.0, 0.0, 0] and t.loc["entropy"].tolist() == [30.0, 2.0, 3.0, 1]
    text = "\n".join(bench.format_study(df.assign(train_seconds=30.0 * (df["train_seconds"] > 0)), "d"))
    assert re.search(rf"^\s+entropy\s+30\.0\s+\S+\s+\S+\s+\({seeds} first rounds reused\)$", text, re.M)
    assert re.search(r"^\s+random\s+30\.0\s+\S+\s+\S+$", text, re.M)


def test_parallel_order_starts_different_seeds_together(data_yaml, tmp_path):
    cfg = _cfg(data_yaml, tmp_path, seeds=(0, 1, 2), strategies=("random", "entropy", "mix"))
    named = bench.study_arms(cfg)
    order = [(n, a.seeds[0]) for n, a in bench.parallel_order(named)]
    assert order[:4] == [("random", 0), ("random", 1), ("random", 2), ("entropy", 0)]
    assert sorted(order) == sorted((n, a.seeds[0]) for n, a in named)  # the same arms, each once
    assert bench.parallel_order([]) == []


def test_parallel_arms_give_the_same_tables_as_one_at_a_time(data_yaml, tmp_path):
    # --jobs 2: arms in two spawned processes (backend passed by import name); same numbers as serial
    cfg = _cfg(data_yaml, tmp_path / "serial", seeds=(0, 1), strategies=("random", "entropy_wide"))
    serial = bench.run_study(cfg, backend=fake_backend, quiet=True, report=False)
    par_cfg = cfg.model_copy(update={"output_dir": tmp_path / "parallel"})
    parallel = bench.run_study(par_cfg, backend=fake_backend, quiet=True, report=False, jobs=2)
    cols = ["strategy", "seed", "round", "labeled_images", "labeled_boxes", "map50_95"]
    key = ["strategy", "seed", "round"]
    pd.testing.assert_frame_equal(serial[cols].sort_values(key).reset_index(drop=True),
                                  parallel[cols].sort_values(key).reset_index(drop=True))
    assert len(parallel) == 2 * 2 * 3
    assert bench.parallel_threads(par_cfg, 2).model.threads == max(1, (__import__("os").cpu_count() or 1) // 2)


def test_parallel_arm_failure_is_raised(data_yaml, tmp_path):
    cfg = _cfg(data_yaml, tmp_path, seeds=(0,), strategies=("random", "mix"))
    bad = cfg.model_copy(update={"model": cfg.model.model_copy(update={"arch": "missing-file.pt"})})
    with pytest.raises(DetalError):
        bench.run_study(bad, backend=None, quiet=True, report=False, jobs=2)


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_arm_another_run_holds_is_left_to_it_and_the_others_run(data_yaml, tmp_path, jobs):
    from detal.simulate import run_lock

    cfg = _cfg(data_yaml, tmp_path, seeds=(0,), strategies=("random", "mix"))
    held = bench.arm_config(cfg, "random", 0)
    with run_lock(held):  # a second invocation of the study is training seed 0's random arm
        df = bench.run_study(cfg, backend=fake_backend, quiet=True, report=False, jobs=jobs)
    assert set(df["strategy"]) == {"mix"} and len(df) == 3  # mix ran all its rounds
    assert not (held.run_dir / "metrics.csv").exists()  # the held arm was not touched
    assert len(df.attrs["busy"]) == 1 and "another detal run holds" in df.attrs["busy"][0]
    assert str(held.run_dir) in df.attrs["busy"][0]
    # once the other run is done, the same command runs what is left
    df = bench.run_study(cfg, backend=fake_backend, quiet=True, report=False, jobs=jobs)
    assert set(df["strategy"]) == {"random", "mix"} and df.attrs["busy"] == []


def test_main_says_which_arms_another_run_holds_and_exits_1(study, monkeypatch, capsys, tmp_path):
    cfg, df = study
    busy = df.copy()
    busy.attrs["busy"] = ["runs/le/arms/random-seed1/le: another detal run holds it (pid 7)"]
    monkeypatch.setattr(bench, "run_study", lambda c, quiet, jobs, variants: busy)
    assert bench.main(["-c", str(_study_yaml(cfg, tmp_path / "study.yaml")), "-q"]) == 1
    out = capsys.readouterr()
    assert "not run here: runs/le/arms/random-seed1/le: another detal run holds it (pid 7)" in out.err
    assert LAST.match(out.out.strip().splitlines()[-1])  # the numbers of what had finished are still printed


def test_main_prints_wall_clock_before_the_last_line(study, monkeypatch, capsys, tmp_path):
    cfg, df = study
    yaml_path = tmp_path / "study.yaml"
    yaml_path.write_text(f"experiment: le\ndata: {cfg.data}\noutput_dir: {cfg.output_dir}\nseeds: [0, 1]\n"
                         "strategies: [random, entropy, mix]\n")
    calls = {}

    def fake_run(c, quiet, jobs, variants):
        calls["jobs"] = jobs
        return df

    monkeypatch.setattr(bench, "run_study", fake_run)
    assert bench.main(["-c", str(yaml_path), "--jobs", "2", "-q"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert calls["jobs"] == 2
    assert re.match(r"^wall clock of this run: \d+\.\d min \(6 arms, --jobs 2\)$", lines[-2])
    assert LAST.match(lines[-1])


def _study_yaml(cfg, path: Path) -> Path:
    path.write_text(f"experiment: le\ndata: {cfg.data}\noutput_dir: {cfg.output_dir}\nseeds: [0, 1]\n"
                    "strategies: [random, entropy, mix]\nschedule: {seed_fraction: 0.1, select_fraction: 0.1, "
                    "epochs_per_round: 1, total_epochs: 3}\n")
    return path


def test_variant_arm_is_paired_with_the_studys_random_arms(study, tmp_path, capsys):
    cfg, df = study
    path = _study_yaml(cfg, tmp_path / "study.yaml")
    v = bench.parse_variant_arm("mean=entropy:scoring.reduction=mean,scoring.empty=max", path, [], cfg.strategies)
    assert (v.name, v.strategy, v.cfg.strategies) == ("mean", "entropy", ("entropy",))
    assert v.cfg.scoring.reduction == "mean" and v.cfg.scoring.empty == "max"
    trained = fake_backend.calls["train"]
    capsys.readouterr()
    both = bench.run_study(cfg, backend=fake_backend, quiet=False, report=False, variants=[v])
    err = capsys.readouterr().err
    assert "[seed 0 | mean] round 2/3: training" in err  # progress lines name the variant, not its strategy
    assert "[seed 0 | entropy] round" not in err and "[seed 0 | entropy] already finished" in err
    # the variant's arms only (random, entropy, mix are done); their first rounds are reused from those arms
    assert fake_backend.calls["train"] == trained + 2 * 2
    assert (cfg.output_dir / "le" / "arms" / "mean-seed0" / "le" / "metrics.csv").is_file()
    # its rows come under its own name, next to (not merged with) the entropy arm it varies
    assert set(both["strategy"]) == {"random", "entropy", "mix", "mean"}
    pd.testing.assert_frame_equal(both[both["strategy"] != "mean"].reset_index(drop=True), df.reset_index(drop=True))
    lines = bench.format_study(both, "d", headline="mean", strategies=bench.arm_names(cfg, [v]))
    assert LAST.match(lines[-1]).group(4) == "mean"
    assert re.search(r"^mean\s+2\s+3\s", "\n".join(lines), re.M)
    # the combined report names it too (bench holds the real write_report; only per-arm reports are stubbed)
    bench.write_study_report(cfg, [v])
    assert re.search(r"^\| mean \| 2 \| 3 \|", (cfg.output_dir / "le" / "report" / "report.md").read_text(), re.M)


@pytest.mark.parametrize("text, match", [
    ("mean", "NAME=STRATEGY"),
    ("mix=entropy", "already an arm"),
    ("x=entropy:seeds=[3]", "defines the study"),
    ("x=entropy:experiment=other", "defines the study"),
    ("x=entropy:scoring.reduction", "has no '='"),
    ("x=entropy:scoring.reduction=median", "scoring.reduction"),
    ("x=nope", "nope"),
])
def test_bad_variant_arm_is_one_clear_line(study, tmp_path, text, match):
    cfg, _ = study
    with pytest.raises(DetalError, match=match):
        bench.parse_variant_arm(text, _study_yaml(cfg, tmp_path / "s.yaml"), [], cfg.strategies)


def test_main_with_a_variant_arm(study, tmp_path, capsys):
    cfg, _ = study
    path = _study_yaml(cfg, tmp_path / "s.yaml")
    assert bench.main(["-c", str(path), "--arm", "m=entropy:scoring.reduction=mean", "--arm",
                       "m=mix:scoring.reduction=max", "--report-only"]) == 2
    assert "share a name" in capsys.readouterr().err
