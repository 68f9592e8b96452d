"""The comparison report: mAP against labelling cost (images and boxes), a final table, and the
paired difference of every strategy against `random` over the same seeds, with a 95% interval.

Random is a strong baseline: the verdict only speaks of a gain when the interval excludes zero.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

# two-sided 95% Student-t quantiles by degrees of freedom (scipy is not a dependency)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def _t95(df: int) -> float:
    keys = [k for k in _T95 if k <= df]
    return _T95[max(keys)] if keys else math.inf


def load_metrics(run_dir: Path) -> pd.DataFrame:
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no metrics yet; run `detal simulate` first")
    df = pd.read_csv(path)
    # a crash between writing metrics and state re-runs a round: keep its last row
    return df.drop_duplicates(["strategy", "seed", "round"], keep="last").sort_values(["strategy", "seed", "round"])


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    return df.loc[df.groupby(["strategy", "seed"])["round"].idxmax()]


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    fin = final_rows(df)
    mean_curve = df.groupby(["strategy", "seed"])["map50_95"].mean().groupby("strategy")
    g = fin.groupby("strategy")
    out = pd.DataFrame({
        "seeds": g["seed"].nunique(),
        "rounds": g["round"].max(),
        "labeled_images": g["labeled_images"].mean().round(0).astype(int),
        "labeled_boxes": g["labeled_boxes"].mean().round(0).astype(int),
        "final_map50_95": g["map50_95"].mean(),
        "final_map50_95_sd": g["map50_95"].std(ddof=1).fillna(0.0),
        "final_map50": g["map50"].mean(),
        "mean_map50_95_over_rounds": mean_curve.mean(),
        "scored_images": (df.groupby("strategy")["scored_images"].sum() / g["seed"].nunique()).round().astype(int),
        "train_seconds": (df.groupby("strategy")["train_seconds"].sum() / g["seed"].nunique()).round().astype(int),
    })
    return out


def paired_vs_random(df: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: mean paired difference of the final mAP50-95 against random (same seeds), with a 95% t interval."""
    fin = final_rows(df).pivot(index="seed", columns="strategy", values="map50_95")
    rows = []
    if "random" not in fin:
        return pd.DataFrame(rows)
    for s in fin.columns:
        if s == "random":
            continue
        d = (fin[s] - fin["random"]).dropna()
        n = len(d)
        mean = float(d.mean()) if n else float("nan")
        half = _t95(n - 1) * float(d.std(ddof=1)) / math.sqrt(n) if n >= 2 else math.inf
        if n < 2:
            verdict = "one seed: no claim possible"
        elif mean - half > 0:
            verdict = "better than random"
        elif mean + half < 0:
            verdict = "worse than random"
        else:
            verdict = "no significant difference"
        rows.append({"strategy": s, "seeds": n, "diff_map50_95": mean, "ci95_low": mean - half,
                     "ci95_high": mean + half, "verdict": verdict})
    return pd.DataFrame(rows)


def plot(df: pd.DataFrame, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, xcol, xlabel in ((axes[0], "labeled_images", "labelled images"), (axes[1], "labeled_boxes", "labelled boxes")):
        for strategy, g in df.groupby("strategy"):
            agg = g.groupby("round").agg(x=(xcol, "mean"), y=("map50_95", "mean"), lo=("map50_95", "min"),
                                         hi=("map50_95", "max"))
            line, = ax.plot(agg["x"], agg["y"], marker="o", label=strategy)
            if g["seed"].nunique() > 1:
                ax.fill_between(agg["x"], agg["lo"], agg["hi"], color=line.get_color(), alpha=0.15)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mAP50-95 on the fixed val split")
    seeds = df["seed"].nunique()
    axes[0].legend(title=f"mean of {seeds} seed(s)" + (", band = min..max" if seeds > 1 else ""))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _md(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.astype(object).itertuples(index=False):  # object dtype keeps ints as ints per cell
        cells = [format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v) for v in r]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    df = load_metrics(run_dir)
    fig = plot(df, run_dir / "map_vs_labeled.png")
    summary = summary_table(df).reset_index()
    paired = paired_vs_random(df)
    per_round = df.pivot_table(index=["round"], columns="strategy", values="map50_95", aggfunc="mean").reset_index()
    exp = df["experiment"].iloc[0]
    text = [f"# detal report: {exp}", "",
            f"{df['seed'].nunique()} seed(s): {sorted(df['seed'].unique().tolist())}; every arm of a seed starts from the "
            "same random seed set and is evaluated on the same val split.", "",
            f"![mAP50-95 against labelled images and boxes]({fig.name})", "",
            "## Final round", "", _md(summary), "",
            "## Against random (paired by seed, final mAP50-95)", ""]
    text += [_md(paired), ""] if len(paired) else ["No `random` arm in this experiment: nothing to compare against.", ""]
    text += ["Random is a strong baseline; a gain is claimed only when the 95% interval excludes zero.", "",
             "## mAP50-95 per round (mean over seeds)", "", _md(per_round), "",
             "Raw data: `metrics.csv` (one row per strategy, seed and round), `selections.csv` (what each arm picked).", ""]
    out = run_dir / "report.md"
    out.write_text("\n".join(text), encoding="utf-8")
    return out
