"""The verdict in plain words, generated from the numbers, and the number formats the report shows.

The rule: claim nothing the numbers do not support. A difference is called a gain or a loss only when
both the bootstrap and the Student-t 95% intervals of the paired difference exclude zero (with few
seeds the bootstrap alone is too narrow); one seed supports no claim at all. Labels saved are claimed
under the same rule, on the per-seed fractions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from detal.report.stats import Comparison, Interval, LabelsSaved, significant, t_interval

MORE_SEEDS = "run more seeds (`--set seeds=[0,1,2]`)"
NOTHING_LEARNED = 0.01  # the baseline's final mAP50-95 below this: the arms compared are untrained models


@dataclass(frozen=True)
class Verdict:
    kind: str  # gain | loss | none | one-seed | no-pairs | no-baseline | only-baseline | nothing-learned
    text: str


def signed(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:+.{digits}f}"


def number(v: float, digits: int = 3) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.{digits}f}"


def pct(v: float) -> str:
    if math.isnan(v):
        return "n/a"
    return "not reached" if math.isinf(v) else f"{100 * v:.0f}%"


def interval(iv: Interval, fmt=signed) -> str:
    """'low to high', or '' when there is no interval (fewer than two seeds)."""
    if iv.n < 2 or math.isnan(iv.low):
        return ""
    return f"{fmt(iv.low)} to {fmt(iv.high)}"


def bracket(iv: Interval, fmt=signed) -> str:
    """'[low, high]' for tables, or '' when there is no interval."""
    return f"[{fmt(iv.low)}, {fmt(iv.high)}]" if interval(iv) else ""


def labels_claim(ls: LabelsSaved) -> int:
    """+1: a saving the numbers support (bootstrap and t intervals of the fraction both above zero); -1: a
    significant extra cost; 0: neither."""
    per_seed = list(ls.per_seed.values())
    if not ls.reached or not all(math.isfinite(v) for v in per_seed):
        return 0
    return significant(ls.interval, t_interval(per_seed))


def _labels_sentence(ls: LabelsSaved, unit: str, baseline: str, n: int) -> str:
    target = f"{baseline}'s final mAP50-95 ({ls.target:.3f})"
    if not ls.reached:
        return f"On the mean curve it did not reach {target} within its labelled range."
    ci = interval(ls.interval, pct)
    least = "at least " if ls.at_first_point else ""
    claim = labels_claim(ls)
    hours = unit == "annotation seconds"  # read in hours; the fraction is the same
    noun = "annotation hours" if hours else f"labelled {unit}"

    def amount(v: float) -> str:
        return f"{v / 3600:.2f} h" if hours else f"{v:.0f}"

    if claim > 0:
        return (f"It reached {target} with {least}{pct(ls.fraction)} fewer {noun} "
                f"({amount(ls.saved)} of {amount(ls.baseline_needed)}; 95% CI {ci}).")
    what = (f"{pct(ls.fraction)} fewer {noun}" if ls.saved > 0 else
            f"{pct(-ls.fraction)} more {noun}" if ls.saved < 0 else f"as many {noun}")
    why = (f"(95% CI {ci} includes zero)" if not ls.interval.excludes_zero else
           f"(bootstrap 95% CI {ci}, but the t-interval includes zero)")
    if claim < 0:
        return f"It needed {what} than {baseline} to reach {target} (95% CI {ci})."
    return f"On the mean curve it reached {target} with {what}; over {n} seeds that is not significant {why}."


# report.cost_axis -> (the Comparison's LabelsSaved, the unit its sentence names)
COST_AXES = {"seconds": ("seconds", "annotation seconds"), "images": ("images", "images"), "boxes": ("boxes", "boxes")}


def judged_on(c: Comparison, axis: str) -> tuple[LabelsSaved, str, str]:
    """(labels saved, unit, axis actually used): seconds fall back to images where a run counted no seconds."""
    if axis == "seconds" and math.isnan(c.seconds.target):
        axis = "images"
    field, unit = COST_AXES[axis]
    return getattr(c, field), unit, axis


def compare_verdict(c: Comparison, axis: str = "seconds") -> Verdict:
    """One strategy against the baseline, from its paired comparison; labels saved judged on `axis`."""
    s, b, n = c.strategy, c.baseline, c.seeds
    diff, ci = signed(c.diff.estimate), interval(c.diff)
    seeds = f"{n} seed{'s' if n != 1 else ''}"
    if n == 0:
        return Verdict("no-pairs", f"{s} and {b} share no seed: no paired comparison is possible; run both on the "
                                   "same seeds.")
    if n == 1:
        return Verdict("one-seed", f"{s} vs {b}: one seed only (final mAP50-95 {diff} at round {c.round}), so no "
                                   f"claim is possible either way; {MORE_SEEDS}.")
    sign = c.sign
    ls, unit, used = judged_on(c, axis)
    labels = ("" if used == axis else f"(No annotation seconds in this run: judged on images.) ") + _labels_sentence(
        ls, unit, b, n)
    if sign > 0:
        return Verdict("gain", f"{s} beat {b} over {seeds}: final mAP50-95 {diff} (95% CI {ci}) at round {c.round}. "
                               + labels)
    if sign < 0:
        return Verdict("loss", f"{s} did worse than {b} over {seeds}: final mAP50-95 {diff} (95% CI {ci}) at round "
                               f"{c.round}. " + labels)
    text = f"No significant difference between {s} and {b} over {seeds} (final mAP50-95 diff {diff}, 95% CI {ci})."
    if c.diff.excludes_zero:
        text += (f" The bootstrap interval alone excludes zero, but the t-interval ({interval(c.diff_t)}) does not: "
                 f"too few seeds to tell; {MORE_SEEDS}.")
    return Verdict("none", text + " " + labels)


def verdicts(strategies, comparisons: list[Comparison], baseline: str = "random",
             axis: str = "seconds") -> list[Verdict]:
    """Every strategy's verdict, or one line saying accurately why there is no comparison."""
    strategies = sorted(set(strategies))
    if baseline not in strategies:
        return [Verdict("no-baseline", f"No `{baseline}` arm in this run (strategies: {', '.join(strategies)}), so "
                                       f"nothing is compared against {baseline}; in a simulation, add `{baseline}` to "
                                       "`strategies:` to measure the gain.")]
    if strategies == [baseline]:
        return [Verdict("only-baseline", f"Only the `{baseline}` arm was run: its learning curve is shown, but there "
                                         f"is no other strategy to compare it with; add one to `strategies:` "
                                         f"(e.g. `[{baseline}, mix]`).")]
    out = [compare_verdict(c, axis) for c in comparisons]
    # every comparison's target is the baseline's final mAP50-95 (NaN where no seed is shared)
    final = next((c.images.target for c in comparisons if not math.isnan(c.images.target)), math.nan)
    if final < NOTHING_LEARNED:
        out.insert(0, nothing_learned(baseline, final))
    return out


def nothing_learned(baseline: str, final: float) -> Verdict:
    """Said first when the baseline ended near zero: every difference then compares untrained models."""
    return Verdict("nothing-learned", f"{baseline}'s final mAP50-95 is {final:.3f}: the models learned next to "
                                      "nothing, so the comparisons below say nothing about selection; train longer "
                                      "(schedule.epochs_per_round, schedule.min_steps_per_round) or check the data.")
