"""The report: tables from metrics, paired comparison against random, figure written."""

import numpy as np
import pandas as pd
import pytest

from detal.types import METRIC_COLUMNS
from detal.report import load_metrics, paired_vs_random, summary_table, write_report


def _metrics(tmp_path, diffs, rounds=3):
    rows = []
    for seed, d in enumerate(diffs):
        for strategy, bonus in (("random", 0.0), ("mix", d)):
            for r in range(1, rounds + 1):
                row = dict.fromkeys(METRIC_COLUMNS, 0)
                row.update(experiment="e", strategy=strategy, seed=seed, round=r, labeled_images=10 * r,
                           labeled_boxes=30 * r, map50_95=0.1 * r + 0.05 * seed + (bonus if r == rounds else 0),
                           map50=0.2 * r)
                rows.append(row)
    pd.DataFrame(rows).to_csv(tmp_path / "metrics.csv", index=False)


@pytest.mark.parametrize("diffs, verdict", [
    ([0.05, 0.06, 0.04], "better than random"),
    ([-0.05, -0.06, -0.04], "worse than random"),
    ([0.05, -0.06, 0.01], "no significant difference"),
    ([0.05], "one seed: no claim possible"),
])
def test_paired_verdict(tmp_path, diffs, verdict):
    _metrics(tmp_path, diffs)
    p = paired_vs_random(load_metrics(tmp_path))
    assert p.loc[0, "verdict"] == verdict
    assert p.loc[0, "diff_map50_95"] == pytest.approx(np.mean(diffs))


def test_summary_and_files(tmp_path):
    _metrics(tmp_path, [0.02, 0.03])
    s = summary_table(load_metrics(tmp_path))
    assert s.loc["random", "final_map50_95"] == pytest.approx((0.3 + 0.35) / 2)
    assert s.loc["mix", "labeled_boxes"] == 90
    out = write_report(tmp_path)
    text = out.read_text()
    assert "| mix |" in text and "map_vs_labeled.png" in text
    assert (tmp_path / "map_vs_labeled.png").stat().st_size > 5000


def test_duplicate_round_rows_keep_the_last(tmp_path):
    _metrics(tmp_path, [0.0])
    df = pd.read_csv(tmp_path / "metrics.csv")
    extra = df.iloc[[0]].copy()
    extra["map50_95"] = 0.99
    pd.concat([df, extra]).to_csv(tmp_path / "metrics.csv", index=False)
    m = load_metrics(tmp_path)
    assert len(m) == len(df)
    assert m[(m.strategy == "random") & (m.seed == 0) & (m["round"] == 1)]["map50_95"].item() == 0.99
