"""The plain-words verdict matches the numbers: clear gain, clear loss, inconclusive, one seed, no comparison."""

import pytest

from detal.report import stats
from detal.report.document import saved_cell
from detal.report.verdict import interval, verdicts
from tests.report.tables import RANDOM, gain_curves, metrics


def _say(df):
    strategies = sorted(set(df.strategy))
    comps = [stats.compare(df, s) for s in strategies if s != "random"] if "random" in strategies else []
    return verdicts(strategies, comps), comps


def test_clear_gain_with_labels_saved():
    # every seed: +0.05 at the end, and random's final reached at 30 images instead of 40
    (v,), (c,) = _say(metrics(gain_curves([0.05, 0.06, 0.04, 0.055, 0.045])))
    assert v.kind == "gain"
    assert v.text.startswith(f"mix beat random over 5 seeds: final mAP50-95 +0.050 (95% CI {interval(c.diff)}) "
                             "at round 4.")
    assert c.diff.low > 0 and c.diff_t.low > 0
    assert "with 25% fewer labelled images (10 of 40; 95% CI 25% to 25%)" in v.text


def test_clear_loss():
    curves = gain_curves([-0.05, -0.06, -0.04], mix_curve=(0.1, 0.15, 0.2, 0.3))
    (v,), (c,) = _say(metrics(curves))
    assert v.kind == "loss"
    assert v.text.startswith("mix did worse than random over 3 seeds: final mAP50-95 -0.050 (95% CI ")
    assert c.diff.high < 0 and c.diff_t.high < 0
    assert "did not reach random's final mAP50-95" in v.text
    assert saved_cell(c.images) == "not reached" and not c.boxes.reached


def test_inconclusive():
    (v,), (c,) = _say(metrics(gain_curves([0.05, -0.06, 0.01], mix_curve=RANDOM)))
    assert v.kind == "none"
    assert v.text.startswith("No significant difference between mix and random over 3 seeds (final mAP50-95 diff "
                             f"+0.000, 95% CI {c.diff.low:+.3f} to {c.diff.high:+.3f}).")
    assert c.diff.low < 0 < c.diff.high
    assert "beat" not in v.text and "fewer labelled images (" not in v.text


def test_bootstrap_alone_is_not_enough():
    (v,), (c,) = _say(metrics(gain_curves([0.05, 0.01, 0.02], mix_curve=RANDOM)))
    assert c.diff.excludes_zero and not c.diff_t.excludes_zero
    assert v.kind == "none"
    assert "bootstrap interval alone excludes zero, but the t-interval" in v.text


def test_labels_saving_on_the_mean_curve_is_not_claimed_when_seeds_disagree():
    curves = gain_curves([0.05, 0.06, 0.04])
    curves["mix", 2] = [y + 0.04 for y in (0.1, 0.2, 0.3, 0.44)]  # seed 2 only gets there at its last round
    (v,), (c,) = _say(metrics(curves))
    assert c.images.saved > 0
    assert "; over 3 seeds that is not significant (" in v.text


def test_one_seed_makes_no_claim():
    (v,), (c,) = _say(metrics(gain_curves([0.2])))  # even a large difference
    assert v.kind == "one-seed"
    assert v.text == ("mix vs random: one seed only (final mAP50-95 +0.200 at round 4), so no claim is possible "
                      "either way; run more seeds (`--set seeds=[0,1,2]`).")


def test_only_random_is_said_accurately():
    df = metrics({("random", s): RANDOM for s in range(2)})
    (v,), _ = _say(df)
    assert v.kind == "only-baseline"
    assert v.text.startswith("Only the `random` arm was run")
    assert "No `random` arm" not in v.text


def test_no_random_arm():
    df = metrics({("mix", 0): RANDOM, ("entropy", 0): RANDOM})
    (v,), _ = _say(df)
    assert v.kind == "no-baseline" and v.text.startswith("No `random` arm in this run (strategies: entropy, mix)")


def test_no_shared_seed():
    df = metrics({("random", 0): RANDOM, ("mix", 1): RANDOM})
    (v,), _ = _say(df)
    assert v.kind == "no-pairs"


def test_untrained_models_are_said_first_and_plainly():
    flat = {(s, seed): [0.0, 0.0, 0.0, 0.003 * (s == "mix")] for s in ("random", "mix") for seed in range(3)}
    said, _ = _say(metrics(flat))
    # +0.003 in every seed is "significant": exactly why the untrained case must be said first
    assert [v.kind for v in said] == ["nothing-learned", "gain"]
    assert said[0].text.startswith("random's final mAP50-95 is 0.000: the models learned next to nothing")
    learned, _ = _say(metrics(gain_curves([0.05, -0.06, 0.01], mix_curve=RANDOM)))
    assert [v.kind for v in learned] == ["none"]


@pytest.mark.parametrize("diffs", [[0.05, 0.06, 0.04], [-0.05, -0.06, -0.04], [0.05, -0.06, 0.01]])
def test_verdict_numbers_are_the_table_numbers(diffs):
    (v,), (c,) = _say(metrics(gain_curves(diffs)))
    assert f"{c.diff.estimate:+.3f}" in v.text and interval(c.diff) in v.text
