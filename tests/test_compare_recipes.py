"""tools/compare_recipes.py: arms of two studies (fake detector), paired across them, and its clear errors."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from detal.config import parse_config
from detal.report import stats
from detal.synthetic import generate
from tests import fake_backend

ROOT = Path(__file__).resolve().parents[1]


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, mod)
    spec.loader.exec_module(mod)
    return mod


compare = _tool("compare_recipes")
bench = _tool("bench_label_efficiency")


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory):
    import detal.report

    data = generate(tmp_path_factory.mktemp("shapes") / "tiny", 80, seed=3, imgsz=64, val_fraction=0.25)
    out = tmp_path_factory.mktemp("runs")
    mp = pytest.MonkeyPatch()
    mp.setattr(detal.report, "write_report", lambda *a, **k: None)  # figures take seconds; not tested here
    try:
        for name, epochs in (("short", 1), ("long", 2)):
            cfg = parse_config({"experiment": name, "data": str(data), "output_dir": str(out), "seeds": [0, 1],
                                "strategies": ["random", "entropy"],
                                "schedule": {"seed_fraction": 0.1, "select_fraction": 0.1,
                                             "epochs_per_round": epochs, "total_epochs": 3 * epochs}})
            bench.run_study(cfg, backend=fake_backend, quiet=True, report=False)
    finally:
        mp.undo()
    return out


def test_pairs_every_arm_with_every_later_arm_across_studies(two_studies, capsys):
    arms = ["e2=long:entropy", "r2=long:random", "r1=short:random"]
    assert compare.main(["--seeds", "0,1", "--runs", str(two_studies), *arms]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[:3] for ln in lines[1:]] == [["e2", "r2", "2"], ["e2", "r1", "2"], ["r2", "r1", "2"]]
    df = compare.load_arms([compare.ArmRef.parse(a) for a in arms], [0, 1], two_studies)
    assert set(df["strategy"]) == {"e2", "r2", "r1"} and len(df) == 3 * 2 * 3
    # the numbers printed are the paired statistics of the report, on the two studies' own rows
    images = stats.Ratio.of(stats.labels_saved(df, "r2", "r1")).text()
    boxes = stats.Ratio.of(stats.labels_saved(df, "r2", "r1", x="labeled_boxes")).text()
    diffs = stats.paired_diffs(df, "r2", "r1")
    ci = stats.paired_bootstrap(diffs.to_numpy())
    assert re.fullmatch(rf"r2\s+r1\s+2\s+{re.escape(images)}\s+{re.escape(boxes)}\s+"
                        rf"{re.escape(f'{diffs.mean():+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]')}", lines[3]), lines[3]


def test_an_arm_may_gather_its_seeds_from_two_study_folders(two_studies, capsys):
    ref = compare.ArmRef.parse("r=nowhere+long:random")
    assert ref.run_dir(two_studies, 0) == two_studies / "long" / "arms" / "random-seed0" / "long"
    both = compare.ArmRef.parse("r=short+long:random")  # short has every seed: it wins
    assert both.run_dir(two_studies, 1) == two_studies / "short" / "arms" / "random-seed1" / "short"
    assert compare.main(["--seeds", "0,1", "--runs", str(two_studies), "r=nowhere+long:random", "s=short:random"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:3] == ["r", "s", "2"]


def test_clear_errors_for_a_missing_arm_a_bad_spec_and_a_shared_label(two_studies, capsys):
    assert compare.main(["--seeds", "0,7", "--runs", str(two_studies), "a=long:random", "b=short:random"]) == 2
    err = capsys.readouterr().err
    assert "random-seed7" in err and "no metrics.csv" in err and "drop seed 7 from --seeds" in err
    for bad in ("a=long", "a=long+:random", "=long:random"):
        assert compare.main(["--seeds", "0", bad, "b=short:random"]) == 2
        assert "give LABEL=EXPERIMENT:STRATEGY" in capsys.readouterr().err
    assert compare.main(["--seeds", "0", "--runs", str(two_studies), "a=long:random", "a=short:random"]) == 2
    assert "share a label" in capsys.readouterr().err
    assert compare.main(["--seeds", "x", "a=long:random", "b=short:random"]) == 2
    assert "--seeds 'x'" in capsys.readouterr().err
