"""The report's numbers against hand-computed values: paired difference, bootstrap, t, AUC, labels saved."""

import math

import numpy as np
import pandas as pd
import pytest

from detal.report import stats
from tests.report.tables import RANDOM, exact_bootstrap_quantiles, gain_curves, metrics


def test_paired_difference_is_per_seed_at_the_final_round():
    df = metrics(gain_curves([0.05, 0.06, 0.04]))
    d = stats.paired_diffs(df, "mix")
    assert d.to_dict() == pytest.approx({0: 0.05, 1: 0.06, 2: 0.04})
    c = stats.compare(df, "mix")
    assert (c.seeds, c.round) == (3, 4)
    assert c.diff.estimate == pytest.approx(0.05)
    assert c.diff50.estimate == pytest.approx(1.5 * 0.05)  # mAP50 = 1.5 x mAP50-95 in the synthetic table


def test_bootstrap_interval_matches_the_exact_bootstrap_distribution():
    # 3 seeds: each extreme resample (all the same seed) has probability 1/27 > 2.5%, so the 95% interval
    # is exactly [min, max] of the diffs
    iv = stats.paired_bootstrap([0.01, 0.02, 0.03])
    assert (iv.estimate, iv.low, iv.high, iv.n) == pytest.approx((0.02, 0.01, 0.03, 3))
    # 6 seeds: the 10,000 resamples land on the quantiles of all 6^6 resamples
    d = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    lo, hi = exact_bootstrap_quantiles(d)
    iv = stats.paired_bootstrap(d)
    assert iv.low == pytest.approx(lo, abs=0.017) and iv.high == pytest.approx(hi, abs=0.017)


def test_bootstrap_is_reproducible_and_seeded():
    d = np.linspace(-0.02, 0.05, 7)
    assert stats.paired_bootstrap(d) == stats.paired_bootstrap(d, seed=stats.BOOT_SEED)
    other = [stats.paired_bootstrap(d, n_boot=200, seed=s) for s in range(5)]
    assert len({(o.low, o.high) for o in other}) > 1  # the seed really drives the resampling


def test_bootstrap_edge_cases():
    one = stats.paired_bootstrap([0.05])
    assert one.estimate == 0.05 and math.isnan(one.low) and not one.excludes_zero
    assert stats.paired_bootstrap([]).n == 0
    same = stats.paired_bootstrap([0.03, 0.03, 0.03])
    assert (same.low, same.high) == pytest.approx((0.03, 0.03))


def test_t_interval_by_hand():
    iv = stats.t_interval([0.05, 0.06, 0.04])  # mean 0.05, sd 0.01, t(2) = 4.303
    half = 4.303 * 0.01 / math.sqrt(3)
    assert (iv.low, iv.high) == pytest.approx((0.05 - half, 0.05 + half))
    # df between table keys: the smaller df (wider interval) is used
    assert stats._t95(22) == stats._T95[20]


def test_significance_needs_both_intervals():
    # three seeds that agree: the bootstrap excludes zero, the t interval does not
    d = [0.05, 0.01, 0.02]
    boot, t = stats.paired_bootstrap(d), stats.t_interval(d)
    assert boot.excludes_zero and not t.excludes_zero
    assert stats.significant(boot, t) == 0
    d = [0.05, 0.06, 0.04]
    assert stats.significant(stats.paired_bootstrap(d), stats.t_interval(d)) == 1
    assert stats.significant(stats.paired_bootstrap(-np.array(d)), stats.t_interval(-np.array(d))) == -1


def test_auc_normalised_by_hand():
    # trapezoids: 10 * (0.1 + 0.3) / 2 + 20 * (0.3 + 0.4) / 2 = 9, over a range of 30
    assert stats.auc_normalised([10, 20, 40], [0.1, 0.3, 0.4]) == pytest.approx(0.3)
    assert stats.auc_normalised([40, 10, 20], [0.4, 0.1, 0.3]) == pytest.approx(0.3)  # order does not matter
    assert math.isnan(stats.auc_normalised([10], [0.3]))
    df = metrics(gain_curves([0.05, 0.05]))
    auc = stats.auc_per_arm(df)
    assert auc["random", 0] == pytest.approx(np.mean([0.15, 0.25, 0.35]))  # linear: the mean of the midpoints
    c = stats.compare(df, "mix")
    mix0 = stats.auc_normalised([10, 20, 30, 40], [0.1, 0.25, 0.4, 0.45])
    assert c.auc.estimate == pytest.approx(mix0 - 0.25)


def test_first_reach_interpolates():
    assert stats.first_reach([10, 20, 30], [0.1, 0.3, 0.5], 0.4) == pytest.approx(25)
    assert stats.first_reach([10, 20, 30], [0.1, 0.3, 0.5], 0.05) == 10  # already there at the first point
    assert stats.first_reach([10, 20, 30], [0.1, 0.5, 0.3], 0.4) == pytest.approx(17.5)  # the FIRST crossing
    assert math.isnan(stats.first_reach([10, 20, 30], [0.1, 0.3, 0.5], 0.6))


def _three_seeds():
    # random: RANDOM + 0.02 seed. mix crosses random's final (0.4 + offset) at 30, 25 and 35 images
    c = {("random", s): [y + 0.02 * s for y in RANDOM] for s in range(3)}
    c["mix", 0] = [0.1, 0.25, 0.4, 0.45]
    c["mix", 1] = [y + 0.02 for y in (0.1, 0.3, 0.5, 0.55)]
    c["mix", 2] = [y + 0.04 for y in (0.1, 0.2, 0.35, 0.45)]
    return metrics(c, boxes_per_image={"random": 3, "mix": 4})


def test_labels_saved_by_hand():
    ls = stats.labels_saved(_three_seeds(), "mix")
    # mean curves: random ends at 0.42 (40 images); mix 0.27, 0.4367 at 20, 30 images: crosses 0.42 at 29
    assert ls.target == pytest.approx(0.42)
    assert ls.needed == pytest.approx(29) and ls.baseline_needed == pytest.approx(40)
    assert ls.saved == pytest.approx(11) and ls.fraction == pytest.approx(11 / 40)
    assert ls.per_seed == pytest.approx({0: 10 / 40, 1: 15 / 40, 2: 5 / 40})
    # each seed's curves alone give the extremes; each has probability 1/27 > 2.5% of a resample
    assert (ls.interval.low, ls.interval.high) == pytest.approx((5 / 40, 15 / 40))
    assert ls.reached and not ls.at_first_point


def test_labels_saved_in_boxes():
    # mix labels 4 boxes per image, random 3: 29 images x 4 = 116 boxes against random's 40 x 3 = 120
    ls = stats.labels_saved(_three_seeds(), "mix", x="labeled_boxes")
    assert ls.needed == pytest.approx(116) and ls.saved == pytest.approx(4)
    assert ls.per_seed == pytest.approx({0: 0.0, 1: 20 / 120, 2: -20 / 120})


def test_labels_saved_not_reached():
    c = {("random", s): RANDOM for s in range(3)}
    c.update({("mix", s): [y - 0.05 for y in RANDOM] for s in range(3)})
    ls = stats.labels_saved(metrics(c), "mix")
    assert not ls.reached and math.isnan(ls.saved) and math.isnan(ls.fraction)
    assert ls.interval.low == -math.inf  # not reached on the resamples either


def test_labels_saved_not_reached_on_one_seed_bounds_the_interval_below():
    df = _three_seeds()
    df.loc[(df.strategy == "mix") & (df.seed == 2), "map50_95"] -= 0.2  # seed 2 never gets there
    ls = stats.labels_saved(df, "mix")
    assert ls.reached and ls.per_seed[2] == -math.inf
    assert ls.interval.low == -math.inf and math.isfinite(ls.interval.high)


def test_ratio_of_labels_saved_and_how_it_reads():
    iv = stats.Interval(0.25, -math.inf, 0.5, 3)
    ls = stats.LabelsSaved(target=0.5, needed=75.0, baseline_needed=100.0, saved=25.0, fraction=0.25, interval=iv)
    r = stats.Ratio.of(ls)
    assert (r.value, r.low, r.high) == (0.75, 0.5, math.inf)
    assert r.text() == "0.750 [0.500, never]"  # some resamples never reached the target
    never = stats.LabelsSaved(0.5, math.nan, 100.0, math.nan, math.nan, stats.Interval(-math.inf, -math.inf, -math.inf, 3))
    assert stats.Ratio.of(never).value == math.inf and stats.Ratio.of(never).text() == "never [never, never]"
    first = stats.LabelsSaved(0.5, 10.0, 100.0, 90.0, 0.9, stats.Interval(0.9, math.nan, math.nan, 1), at_first_point=True)
    assert stats.Ratio.of(first).text() == "<=0.100"  # one seed: no interval
    empty = stats.LabelsSaved(math.nan, math.nan, math.nan, math.nan, math.nan, stats.Interval(math.nan, math.nan, math.nan, 0))
    assert stats.Ratio.of(empty).text() == "n/a"


def test_baseline_that_peaked_early_is_measured_the_same_way():
    c = {("random", 0): [0.1, 0.4, 0.3, 0.4], ("mix", 0): [0.1, 0.2, 0.4, 0.45]}
    ls = stats.labels_saved(metrics(c), "mix")
    # random first reached its own final 0.4 at 20 images, mix at 30: it saved nothing
    assert ls.baseline_needed == pytest.approx(20) and ls.saved == pytest.approx(-10)


def test_unfinished_arm_is_compared_at_the_common_round():
    df = metrics(gain_curves([0.05, 0.05]))
    df = df[~((df.strategy == "random") & (df.seed == 1) & (df["round"] == 4))]  # random seed 1 still running
    c = stats.compare(df, "mix")
    assert c.round == 3
    assert c.diff.estimate == pytest.approx(0.1)  # mix 0.4 vs random 0.3 at round 3 (offsets cancel)


def test_one_experiment_at_a_time():
    df = pd.concat([metrics(gain_curves([0.05])), metrics(gain_curves([0.05]), experiment="other")])
    with pytest.raises(ValueError, match="filter it to one"):
        stats.labels_saved(df, "mix")


def test_summary_table():
    df = metrics(gain_curves([0.02, 0.03]))
    s = stats.summary_table(df)
    assert s.loc["random", "final_map50_95"] == pytest.approx((0.4 + 0.42) / 2)
    assert s.loc["mix", "final_map50_95_sd"] == pytest.approx(np.std([0.42, 0.45], ddof=1))
    assert s.loc["mix", "labeled_boxes"] == 120 and s.loc["mix", "rounds"] == 4
