"""The report's numbers, as pure functions of the metrics table (pandas in, numbers out; no I/O, no plotting).

A benchmark can import these directly. Every function takes the tidy metrics table of ONE experiment
(columns of `detal.types.METRIC_COLUMNS`, one row per strategy, seed and round) and compares arms on
the same seed: every arm of a seed starts from the same seed set and is evaluated on the same val split,
so the per-seed difference removes the seed's luck from the comparison.

Intervals over seeds are percentile bootstraps with a fixed-seed `numpy.random.Generator`, so the same
table always gives the same report. With 2-5 seeds a bootstrap interval is too narrow (3 seeds that
agree always exclude zero), so `t_interval` is kept beside it and `significant` asks both to agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

ARM = ["strategy", "seed"]
N_BOOT = 10_000
BOOT_SEED = 0
LEVEL = 0.95

# two-sided 95% Student-t quantiles by degrees of freedom; between keys the smaller df is used (wider,
# so never over-claiming). scipy is not a dependency.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


@dataclass(frozen=True)
class Interval:
    """A point estimate over `n` seeds with its interval; low/high are NaN when n < 2 (no interval possible)."""

    estimate: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.n >= 2 and (self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class LabelsSaved:
    """Labels a strategy saved to reach the baseline's final metric (x = labelled images or boxes).

    `needed`/`baseline_needed` are the x at which the mean curves first reach the target (NaN: not
    reached); `saved = baseline_needed - needed` and `fraction = saved / baseline_needed`. The interval
    is on the fraction, from bootstrap resamples of the seeds' curves; -inf at its low end means "not
    reached" on enough resamples. `per_seed`: each seed's fraction from its own two curves.
    """

    target: float
    needed: float
    baseline_needed: float
    saved: float
    fraction: float
    interval: Interval
    at_first_point: bool = False  # reached at the first evaluated point: it may have needed even fewer
    per_seed: dict = field(default_factory=dict)

    @property
    def reached(self) -> bool:
        return not math.isnan(self.needed)


def _t95(df: int) -> float:
    keys = [k for k in _T95 if k <= df]
    return _T95[max(keys)] if keys else math.inf


def _one_experiment(df: pd.DataFrame) -> None:
    if "experiment" in df and df["experiment"].nunique() > 1:
        raise ValueError(f"the table holds {df['experiment'].nunique()} experiments; filter it to one first")


def _quantiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    # inverted_cdf returns sample values: -inf ("not reached") survives instead of becoming NaN
    a = (1 - level) / 2
    lo, hi = np.quantile(samples, [a, 1 - a], method="inverted_cdf")
    return float(lo), float(hi)


def _sample(diffs, keep) -> tuple[np.ndarray, Interval | None]:
    """The kept differences, and the interval to return at once when there are too few for one."""
    d = np.asarray(diffs, dtype=float)[keep]
    if d.size == 0:
        return d, Interval(math.nan, math.nan, math.nan, 0)
    if d.size < 2:
        return d, Interval(float(d.mean()), math.nan, math.nan, 1)
    return d, None


def paired_bootstrap(diffs, n_boot: int = N_BOOT, level: float = LEVEL, seed: int = BOOT_SEED) -> Interval:
    """Mean of per-seed paired differences with a percentile bootstrap interval (resampling seeds).

    -inf entries (a seed that never reached a target) are allowed: they pull the low end to -inf.
    """
    d, short = _sample(diffs, keep=~np.isnan(np.asarray(diffs, dtype=float)))
    if short is not None:
        return short
    n, est = d.size, float(d.mean())
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    return Interval(est, *_quantiles(means, level), n)


def t_interval(diffs) -> Interval:
    """Mean of paired differences with a 95% Student-t interval (wide with few seeds, as it should be)."""
    d, short = _sample(diffs, keep=np.isfinite(np.asarray(diffs, dtype=float)))
    if short is not None:
        return short
    n, est = d.size, float(d.mean())
    half = _t95(n - 1) * float(d.std(ddof=1)) / math.sqrt(n)
    return Interval(est, est - half, est + half, n)


def significant(boot: Interval, t: Interval) -> int:
    """+1 / -1 when both the bootstrap and the t interval exclude zero on the same side, else 0."""
    if boot.excludes_zero and t.excludes_zero and (boot.low > 0) == (t.low > 0):
        return 1 if boot.low > 0 else -1
    return 0


def auc_normalised(x, y) -> float:
    """Trapezoidal area under y(x) divided by the x range: the curve's mean over the labelled range.

    In the metric's own units (mAP), so arms with the same range compare directly; NaN with fewer
    than two distinct x.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if x.size < 2 or x[-1] == x[0]:
        return math.nan
    area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))
    return area / float(x[-1] - x[0])


def _reach(x: np.ndarray, y: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Row-wise `first_reach` on (B, R) curves and (B,) targets."""
    hit = y >= target[:, None]
    rows, i = np.arange(y.shape[0]), hit.argmax(axis=1)
    i0 = np.maximum(i - 1, 0)
    x0, x1, y0, y1 = x[rows, i0], x[rows, i], y[rows, i0], y[rows, i]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(i == 0, 1.0, (target - y0) / (y1 - y0))  # i == 0: x0 == x1, nothing to interpolate
    return np.where(hit.any(axis=1), x0 + t * (x1 - x0), np.nan)


def first_reach(x, y, target: float) -> float:
    """The x at which the curve (points in round order) first reaches `target`, linearly interpolated
    between the two evaluated points around the crossing; NaN when it never does.
    """
    x, y = np.asarray(x, dtype=float)[None], np.asarray(y, dtype=float)[None]
    return float(_reach(x, y, np.array([float(target)]))[0])


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The last round of every arm (strategy, seed)."""
    return df.loc[df.groupby(ARM)["round"].idxmax()]


def paired_arms(df: pd.DataFrame, strategy: str, baseline: str = "random") -> pd.DataFrame:
    """Rows of `strategy` and `baseline` on the seeds both ran, up to the last round every such arm finished.

    Comparing at one common round keeps an unfinished arm from being read as a final result.
    """
    _one_experiment(df)
    both = df[df["strategy"].isin([strategy, baseline])]
    seeds = set(both.loc[both["strategy"] == strategy, "seed"]) & set(both.loc[both["strategy"] == baseline, "seed"])
    both = both[both["seed"].isin(seeds)]
    if both.empty:
        return both
    last = int(both.groupby(ARM)["round"].max().min())
    return both[both["round"] <= last].sort_values(["strategy", "seed", "round"])


def _wide(pairs: pd.DataFrame, column: str) -> pd.DataFrame:
    return pairs.pivot_table(index=["seed", "round"], columns="strategy", values=column, aggfunc="last")


def paired_diffs(df: pd.DataFrame, strategy: str, baseline: str = "random", metric: str = "map50_95") -> pd.Series:
    """Per seed: strategy minus baseline at the last round both finished (index: seed)."""
    pairs = paired_arms(df, strategy, baseline)
    if pairs.empty:
        return pd.Series(dtype=float)
    last = pairs["round"].max()
    w = _wide(pairs[pairs["round"] == last], metric).droplevel("round")
    return (w[strategy] - w[baseline]).dropna()


def paired_per_round(df: pd.DataFrame, strategy: str, baseline: str = "random", metric: str = "map50_95",
                     x: str = "labeled_images", n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> pd.DataFrame:
    """Per round: mean paired difference (strategy - baseline, same seed) with its bootstrap interval.

    Columns: round, x (mean over seeds of the strategy's `x`), diff, low, high, seeds.
    """
    pairs = paired_arms(df, strategy, baseline)
    rows = []
    if pairs.empty:
        return pd.DataFrame(rows, columns=["round", "x", "diff", "low", "high", "seeds"])
    w = _wide(pairs, metric)
    xs = pairs[pairs["strategy"] == strategy].groupby("round")[x].mean()
    for r, g in (w[strategy] - w[baseline]).dropna().groupby(level="round"):
        iv = paired_bootstrap(g.to_numpy(), n_boot=n_boot, seed=seed)
        rows.append({"round": int(r), "x": float(xs[r]), "diff": iv.estimate, "low": iv.low, "high": iv.high,
                     "seeds": iv.n})
    return pd.DataFrame(rows, columns=["round", "x", "diff", "low", "high", "seeds"])


def mean_curve(df: pd.DataFrame, strategy: str, metric: str = "map50_95", x: str = "labeled_images") -> pd.DataFrame:
    """Per round of one strategy: mean x, mean/min/max of the metric over seeds, and the seed count."""
    g = df[df["strategy"] == strategy].groupby("round")
    out = g.agg(x=(x, "mean"), y=(metric, "mean"), lo=(metric, "min"), hi=(metric, "max"), seeds=("seed", "nunique"))
    return out.reset_index()


def auc_per_arm(df: pd.DataFrame, metric: str = "map50_95", x: str = "labeled_images") -> pd.Series:
    """Normalised area under each arm's learning curve (index: strategy, seed)."""
    vals = {k: auc_normalised(g[x], g[metric]) for k, g in df.sort_values("round").groupby(ARM)}
    index = pd.MultiIndex.from_tuples(list(vals), names=ARM)
    return pd.Series(list(vals.values()), index=index, dtype=float)


def paired_auc(df: pd.DataFrame, strategy: str, baseline: str = "random", metric: str = "map50_95",
               x: str = "labeled_images", n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> Interval:
    """Paired difference of the normalised AUC over the common rounds, with its bootstrap interval."""
    pairs = paired_arms(df, strategy, baseline)
    if pairs.empty:
        return paired_bootstrap([])
    a = auc_per_arm(pairs, metric, x).unstack("strategy")
    return paired_bootstrap((a[strategy] - a[baseline]).to_numpy(), n_boot=n_boot, seed=seed)


def _saving(xs, ys, xb, yb) -> tuple[np.ndarray, np.ndarray]:
    """(baseline x, strategy x) at which (B, R) curves first reach the baseline curve's last value."""
    target = yb[:, -1]
    return _reach(xb, yb, target), _reach(xs, ys, target)


def labels_saved(df: pd.DataFrame, strategy: str, baseline: str = "random", metric: str = "map50_95",
                 x: str = "labeled_images", n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                 baseline_x: str | None = None) -> LabelsSaved:
    """How many fewer labels (`x`: labelled images or boxes) `strategy` needed to reach `baseline`'s final
    `metric`, on the seeds both ran, up to the last round both finished.

    Point estimate: on the mean curves (mean x and mean metric per round over seeds), the x where each
    first reaches the baseline's mean final metric, linearly interpolated between rounds. The baseline
    is measured the same way, so a baseline that peaked before its last round is not flattered.
    Interval: the same estimate on bootstrap resamples of the seeds' curves, as a fraction of the
    baseline's x; a resample whose strategy curve never reaches the target counts as -inf ("not
    reached"). `per_seed` holds each seed's own fraction (its two curves alone).
    `baseline_x`: the baseline's cost read on another column (default `x`): annotation seconds against the
    baseline's from-scratch seconds (`scratch_seconds`) for what pre-labels and selection save together.
    """
    nan = math.nan
    pairs = paired_arms(df, strategy, baseline)
    if pairs.empty:
        return LabelsSaved(nan, nan, nan, nan, nan, paired_bootstrap([]))
    bx = baseline_x or x
    if not {x, bx} <= set(pairs.columns):
        return LabelsSaved(nan, nan, nan, nan, nan, paired_bootstrap([]))
    grids = {(s, c): pairs[pairs["strategy"] == s].pivot_table(index="seed", columns="round", values=c, aggfunc="last",
                                                               dropna=False)
             for s, c in ((strategy, x), (strategy, metric), (baseline, bx), (baseline, metric))}
    seeds = sorted(set.intersection(*(set(g.index) for g in grids.values())))
    rounds = sorted(set.intersection(*(set(g.dropna(axis=1).columns) for g in grids.values())))
    if not seeds or not rounds:  # nothing measured on this axis (a run from before detal counted seconds)
        return LabelsSaved(nan, nan, nan, nan, nan, paired_bootstrap([]))
    xs, ys, xb, yb = (grids[k].loc[seeds, rounds].to_numpy(float) for k in
                      ((strategy, x), (strategy, metric), (baseline, bx), (baseline, metric)))
    if not (xb > 0).all():  # a cost axis with nothing on it cannot give a fraction
        return LabelsSaved(nan, nan, nan, nan, nan, paired_bootstrap([]))
    n = len(seeds)

    def fraction(base: np.ndarray, need: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(need), -np.inf, (base - need) / base)

    base, need = _saving(*(a.mean(axis=0, keepdims=True) for a in (xs, ys, xb, yb)))
    per_seed = dict(zip(map(int, seeds), fraction(*_saving(xs, ys, xb, yb)).tolist()))
    point = float(fraction(base, need)[0])
    low = high = nan
    if n >= 2:
        idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
        low, high = _quantiles(fraction(*_saving(*(a[idx].mean(axis=1) for a in (xs, ys, xb, yb)))), LEVEL)
    needed = float(need[0])
    return LabelsSaved(target=float(yb.mean(axis=0)[-1]), needed=needed, baseline_needed=float(base[0]),
                       saved=float(base[0] - needed), fraction=point if np.isfinite(point) else nan,
                       interval=Interval(point, low, high, n),
                       at_first_point=bool(not math.isnan(needed) and needed == xs.mean(axis=0)[0]), per_seed=per_seed)


@dataclass(frozen=True)
class Ratio:
    """Labels needed relative to the baseline (1 - LabelsSaved.fraction), with its bootstrap interval.

    +inf: not reached (on the mean curve, or on enough resamples for an interval end). The study tools
    print it as "never" in their tables and keep `inf` on their machine-readable lines.
    """

    value: float
    low: float
    high: float
    seeds: int
    at_first_point: bool = False

    @classmethod
    def of(cls, ls: LabelsSaved) -> "Ratio":
        def r(f: float) -> float:
            return math.nan if math.isnan(f) else 1.0 - f  # fraction -inf ("not reached") -> ratio +inf

        value = math.inf if (not ls.reached and not math.isnan(ls.target)) else r(ls.fraction)
        return cls(value, r(ls.interval.high), r(ls.interval.low), ls.interval.n, ls.at_first_point)

    def text(self) -> str:
        """'0.905 [0.875, 0.930]', '<=0.500' (reached at the first point), 'never [0.967, never]' or 'n/a'."""
        if math.isnan(self.value):
            return "n/a"

        def num(x: float) -> str:
            return "never" if x == math.inf else format(x, ".3f")

        head = f"{'<=' if self.at_first_point else ''}{num(self.value)}"
        return head if math.isnan(self.low) else f"{head} [{num(self.low)}, {num(self.high)}]"


@dataclass(frozen=True)
class Comparison:
    """Everything the report says about one strategy against the baseline (paired by seed)."""

    strategy: str
    baseline: str
    seeds: int
    round: int  # the common round the final numbers are taken at
    diff: Interval  # final mAP50-95, bootstrap
    diff_t: Interval  # final mAP50-95, Student t
    diff50: Interval  # final mAP50, bootstrap
    auc: Interval  # normalised AUC of mAP50-95 over labelled images, bootstrap
    images: LabelsSaved
    boxes: LabelsSaved
    seconds: LabelsSaved  # annotation seconds, both arms shown pre-labels
    scratch: LabelsSaved  # annotation seconds against the baseline's from-scratch seconds: pre-labels + selection

    @property
    def sign(self) -> int:
        return significant(self.diff, self.diff_t)


def compare(df: pd.DataFrame, strategy: str, baseline: str = "random", n_boot: int = N_BOOT,
            seed: int = BOOT_SEED) -> Comparison:
    """The paired comparison of `strategy` against `baseline` on mAP50-95 (and mAP50)."""
    d = paired_diffs(df, strategy, baseline, "map50_95")
    pairs = paired_arms(df, strategy, baseline)
    return Comparison(
        strategy=strategy, baseline=baseline, seeds=len(d), round=int(pairs["round"].max()) if len(pairs) else 0,
        diff=paired_bootstrap(d.to_numpy(), n_boot=n_boot, seed=seed), diff_t=t_interval(d.to_numpy()),
        diff50=paired_bootstrap(paired_diffs(df, strategy, baseline, "map50").to_numpy(), n_boot=n_boot, seed=seed),
        auc=paired_auc(df, strategy, baseline, n_boot=n_boot, seed=seed),
        images=labels_saved(df, strategy, baseline, x="labeled_images", n_boot=n_boot, seed=seed),
        boxes=labels_saved(df, strategy, baseline, x="labeled_boxes", n_boot=n_boot, seed=seed),
        seconds=labels_saved(df, strategy, baseline, x="annotation_seconds", n_boot=n_boot, seed=seed),
        scratch=labels_saved(df, strategy, baseline, x="annotation_seconds", baseline_x="scratch_seconds",
                             n_boot=n_boot, seed=seed))


def prelabel_saving(df: pd.DataFrame) -> pd.DataFrame:
    """Per strategy, at its last common round: hours spent with pre-labels, the hours the same images cost from
    scratch, and their ratio (mean over seeds, with the seeds' min and max). Empty where no seconds were counted."""
    cols = ("annotation_seconds", "scratch_seconds")
    if not set(cols) <= set(df.columns):
        return pd.DataFrame()
    fin = final_rows(df).dropna(subset=list(cols))
    fin = fin[fin["scratch_seconds"] > 0]
    if fin.empty:
        return pd.DataFrame()
    ratio = fin["annotation_seconds"] / fin["scratch_seconds"]
    g = fin.assign(ratio=ratio).groupby("strategy")
    return pd.DataFrame({"seeds": g["seed"].nunique(), "hours": g["annotation_seconds"].mean() / 3600,
                         "scratch_hours": g["scratch_seconds"].mean() / 3600, "ratio": g["ratio"].mean(),
                         "ratio_min": g["ratio"].min(), "ratio_max": g["ratio"].max()})


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: seeds, last round, final labelled images/boxes, final mAP (mean, sd, min, max), AUC."""
    _one_experiment(df)
    fin = final_rows(df)
    g = fin.groupby("strategy")
    auc = auc_per_arm(df).groupby(level="strategy")
    out = pd.DataFrame({
        "seeds": g["seed"].nunique(),
        "rounds_min": g["round"].min(),
        "rounds": g["round"].max(),
        "labeled_images": g["labeled_images"].mean().round(0).astype(int),
        "labeled_boxes": g["labeled_boxes"].mean().round(0).astype(int),
        "final_map50_95": g["map50_95"].mean(),
        "final_map50_95_sd": g["map50_95"].std(ddof=1),
        "final_map50_95_min": g["map50_95"].min(),
        "final_map50_95_max": g["map50_95"].max(),
        "final_map50": g["map50"].mean(),
        "final_map50_sd": g["map50"].std(ddof=1),
        "auc_map50_95": auc.mean(),
        "auc_map50_95_sd": auc.std(ddof=1),
    })
    return out
