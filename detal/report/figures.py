"""The report's figures (matplotlib, no pyplot: no global figure state, no display needed).

Each builder takes the tables of ONE experiment and returns a Figure, or None when it has nothing to
show. A strategy keeps its colour, line style and marker in every figure (`strategy_styles`); `random`
is always the grey dashed line, the baseline the others are read against.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from detal.report import stats

# fixed for the strategies detal ships, so a colour means the same thing in every report
KNOWN = {"random": ("#4d4d4d", "--", "o"), "entropy": ("#1f77b4", "-", "s"), "mix": ("#d95f02", "-", "^"),
         "diverse": ("#1b9e77", "-", "D")}
OTHERS = [("#7570b3", "-", "v"), ("#e7298a", "-", "P"), ("#66a61e", "-.", "X"), ("#a6761d", "-.", "*"),
          ("#17becf", ":", "h"), ("#e6ab02", ":", "<")]
EFFORT = ("accepted", "corrected", "deleted", "added", "skipped")
RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9, "axes.grid": True,
      "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100}
GREY = "#d9d9d9"
WIDTH = 11.0  # inches at 100 dpi: 1100 px, the HTML column's width, so text shows at its printed size


def strategy_styles(strategies) -> dict[str, dict]:
    """Strategy -> matplotlib kwargs (color, linestyle, marker); unknown names in sorted order."""
    out, i = {}, 0
    for s in sorted(set(strategies)):
        if s in KNOWN:
            c, ls, m = KNOWN[s]
        else:
            c, ls, m = OTHERS[i % len(OTHERS)]
            i += 1
        out[s] = {"color": c, "linestyle": ls, "marker": m}
    return out


def strategy_order(strategies) -> list[str]:
    # the baseline first, so legends read "random, then the challengers"
    return sorted(set(strategies), key=lambda s: (s != "random", s))


def _styled(builder):
    @functools.wraps(builder)
    def wrapper(*args, **kwargs):
        with rc_context(RC):
            return builder(*args, **kwargs)
    return wrapper


def _finish(fig: Figure, title: str, styles: dict, labels: dict[str, str], extra: list | None = None,
            lines: bool = True) -> Figure:
    """Title and one legend for the whole figure above the axes, at fixed distances in inches."""
    h = fig.get_figheight()
    handles = [Line2D([], [], label=labels.get(s, s), **{**styles[s], **({} if lines else {"linestyle": "none"})})
               for s in labels] + (extra or [])
    fig.suptitle(title, y=1 - 0.04 / h, va="top", fontsize=12)
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 6), frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.3 / h))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / h))
    return fig


@_styled
def has_hours(metrics: pd.DataFrame) -> bool:
    """Annotation seconds were counted (runs of detal before they were have NaN there)."""
    return "annotation_seconds" in metrics and bool(metrics["annotation_seconds"].gt(0).all())


def learning_curves(df: pd.DataFrame, styles: dict) -> Figure:
    """mAP50-95 and mAP50 against annotation hours (when counted), labelled images and boxes: mean over seeds,
    band = min-max over seeds. On the hours axis a dotted line is random read on its from-scratch hours: the
    same images and models, every box drawn."""
    hours = has_hours(df)
    xs = ((("hours", "annotation hours"),) if hours else ()) + (("labeled_images", "labelled images"),
                                                               ("labeled_boxes", "labelled boxes"))
    df = df.assign(hours=df["annotation_seconds"] / 3600) if hours else df
    fig = Figure(figsize=(WIDTH * (1.3 if hours else 1), 7.6))
    axes = fig.subplots(2, len(xs), sharey="row")
    strategies = strategy_order(df["strategy"])
    n_seeds = df.groupby("strategy")["seed"].nunique()
    scratch = "random" in strategies and hours
    for row, (metric, name) in enumerate((("map50_95", "mAP50-95"), ("map50", "mAP50"))):
        for col, (x, xname) in enumerate(xs):
            ax = axes[row, col]
            for s in strategies:
                c = stats.mean_curve(df, s, metric, x)
                ax.plot(c["x"], c["y"], markersize=5, linewidth=1.8, **styles[s])
                if n_seeds[s] > 1:
                    ax.fill_between(c["x"], c["lo"], c["hi"], color=styles[s]["color"], alpha=0.15, linewidth=0)
            if x == "hours" and scratch:
                c = stats.mean_curve(df.assign(hours=df["scratch_seconds"] / 3600), "random", metric, "hours")
                ax.plot(c["x"], c["y"], linestyle=":", linewidth=2.0, color=styles["random"]["color"],
                        label="random, no pre-labels")
            ax.set_xlabel(f"{xname} ({'h' if x == 'hours' else 'count'})")
            ax.set_ylabel(f"{name} on val (0-1)")
            if row == 0:
                ax.set_title(f"against {xname}")
    band = "band: min-max over seeds" if n_seeds.max() > 1 else "one seed per strategy: no band"
    labels = {s: f"{s} ({n_seeds[s]} seed{'s' if n_seeds[s] > 1 else ''})" for s in strategies}
    extra = [Line2D([], [], linestyle=":", linewidth=2.0, color=styles["random"]["color"],
                    label="random, no pre-labels (hours)")] if scratch else None
    return _finish(fig, f"Learning curves. Line: mean over seeds; {band}.", styles, labels, extra)


@_styled
def paired_differences(df: pd.DataFrame, styles: dict, baseline: str = "random") -> Figure | None:
    """Per round: strategy minus baseline on the same seed, mean with its bootstrap 95% band, zero line."""
    others = [s for s in strategy_order(df["strategy"]) if s != baseline]
    if baseline not in set(df["strategy"]) or not others:
        return None
    fig = Figure(figsize=(WIDTH, 4.4))
    axes = fig.subplots(1, 2)
    seeds = 0
    for ax, (metric, name) in zip(axes, (("map50_95", "mAP50-95"), ("map50", "mAP50"))):
        ax.axhline(0, color="black", linewidth=1)
        for s in others:
            p = stats.paired_per_round(df, s, baseline, metric)
            seeds = max(seeds, int(p["seeds"].max()) if len(p) else 0)
            ax.plot(p["x"], p["diff"], markersize=5, linewidth=1.8, **styles[s])
            if len(p) and p["seeds"].max() > 1:
                ax.fill_between(p["x"], p["low"], p["high"], color=styles[s]["color"], alpha=0.18, linewidth=0)
        ax.set_xlabel("labelled images (count)")
        ax.set_ylabel(f"{name} difference vs {baseline}")
        ax.set_title(f"{name}: above zero = better than {baseline}")
    band = "band: bootstrap 95% interval over seeds" if seeds > 1 else "one seed: no interval"
    return _finish(fig, f"Paired difference vs {baseline} on the same seed. Line: mean; {band}.", styles,
                   {s: s for s in others})


def _class_labels(table: pd.DataFrame) -> pd.Series:
    names = table.drop_duplicates("class_id").set_index("class_id")["class"]
    return names.sort_index()


@_styled
def per_class_ap(per_class: pd.DataFrame, styles: dict) -> Figure | None:
    """AP50-95 per class at each arm's last round: mean over seeds (marker), min-max (whiskers)."""
    if per_class is None or per_class.empty:
        return None
    last = per_class.groupby(["strategy", "seed"])["round"].transform("max")
    fin = per_class[per_class["round"] == last]
    names = _class_labels(fin)
    inst = fin.groupby("class_id")["instances"].max()
    strategies = strategy_order(fin["strategy"])
    fig = Figure(figsize=(WIDTH, max(3.2, 0.38 * len(names) + 1.9)))
    ax = fig.subplots()
    ys = np.arange(len(names))
    step = 0.7 / max(len(strategies), 1)
    for k, s in enumerate(strategies):
        g = fin[fin["strategy"] == s].groupby("class_id")["ap50_95"].agg(["mean", "min", "max"]).reindex(names.index)
        y = ys - 0.35 + step * (k + 0.5)
        st = styles[s]
        xerr = np.clip([g["mean"] - g["min"], g["max"] - g["mean"]], 0, None)  # rounding can dip below 0
        ax.errorbar(g["mean"], y, xerr=xerr, fmt=st["marker"],
                    color=st["color"], ecolor=st["color"], elinewidth=1, capsize=2, markersize=6)
    ax.set_yticks(ys, [f"{n} ({inst.get(i, 0)} val boxes)" for i, n in names.items()])
    ax.invert_yaxis()
    ax.set_xlabel("AP50-95 on val at the last round (0-1)")
    ax.set_xlim(left=0)
    return _finish(fig, "Per-class AP at the last round. Marker: mean over seeds; whiskers: min-max over seeds.",
                   styles, {s: s for s in strategies}, lines=False)


@_styled
def class_makeup(selected: pd.DataFrame, pool: pd.DataFrame | None, metrics: pd.DataFrame,
                 styles: dict) -> Figure | None:
    """Class shares of the boxes each strategy selected (rounds >= 1) beside the pool's, and boxes per image."""
    if selected is None or selected.empty:
        return None
    picked = selected[selected["round"] >= 1]
    if picked.empty:
        return None
    names = _class_labels(selected if pool is None else pd.concat([selected, pool]))
    strategies = strategy_order(picked["strategy"])
    fig = Figure(figsize=(WIDTH, max(3.4, 0.38 * len(names) + 2.1)))
    ax, ax2 = fig.subplots(1, 2, width_ratios=[3, 1.25])
    ys = np.arange(len(names))
    extra = []
    if pool is not None and not pool.empty:
        share = pool.groupby("class_id")["boxes"].sum().reindex(names.index, fill_value=0)
        ax.barh(ys, 100 * share / share.sum(), height=0.8, color=GREY)
        extra.append(Patch(color=GREY, label="pool (ground truth)"))
    step = 0.7 / len(strategies)
    for k, s in enumerate(strategies):
        b = picked[picked["strategy"] == s].groupby("class_id")["boxes"].sum().reindex(names.index, fill_value=0)
        st = styles[s]
        ax.plot(100 * b / max(b.sum(), 1), ys - 0.35 + step * (k + 0.5), linestyle="none", marker=st["marker"],
                color=st["color"], markersize=7)
    ax.set_yticks(ys, list(names))
    ax.invert_yaxis()
    ax.set_xlabel("share of the selected boxes (%)")
    ax.set_title("Class make-up (all rounds after the seed set, all seeds)")

    # crowded images? boxes per selected image, against the seed set (a random sample of the pool)
    bars, labels, colours = [], [], []
    seed_set = selected[selected["round"] == 0]
    first = metrics[metrics["round"] == 1]
    if len(seed_set) and len(first):
        per_arm = seed_set.groupby(["strategy", "seed"])["boxes"].sum()
        imgs = first.set_index(["strategy", "seed"])["labeled_images"].reindex(per_arm.index)
        if imgs.notna().all() and imgs.sum() > 0:
            bars.append(per_arm.sum() / imgs.sum())
            labels.append("seed set")
            colours.append(GREY)
    for s in strategies:
        boxes = picked[picked["strategy"] == s].groupby(["seed", "round"])["boxes"].sum()
        m = metrics[metrics["strategy"] == s].set_index(["seed", "round"])["selected_images"]
        imgs = m.reindex(boxes.index).fillna(0).sum()
        bars.append(boxes.sum() / imgs if imgs else np.nan)
        labels.append(s)
        colours.append(styles[s]["color"])
    ax2.bar(range(len(bars)), bars, color=colours)
    ax2.set_xticks(range(len(bars)), labels, rotation=30, ha="right")
    ax2.set_ylabel("boxes per selected image")
    ax2.set_title("Crowded images?")
    for i, v in enumerate(bars):
        if np.isfinite(v):
            ax2.annotate(f"{v:.1f}", (i, v), ha="center", va="bottom", fontsize=9)
    return _finish(fig, "What each strategy selected: rare classes? crowded images?", styles,
                   {s: s for s in strategies}, extra, lines=False)


def has_effort(metrics: pd.DataFrame) -> bool:
    """Oracle runs record zero effort everywhere: then there is nothing to plot."""
    cols = [c for c in EFFORT if c in metrics]
    return bool(cols) and bool((metrics[cols].fillna(0) != 0).any().any())


@_styled
def effort(metrics: pd.DataFrame, styles: dict) -> Figure | None:
    """Annotator effort per round (mean over seeds): boxes accepted, corrected, deleted, added; tasks skipped."""
    if not has_effort(metrics):
        return None
    kinds = [c for c in EFFORT if c in metrics and (c != "skipped" or metrics[c].fillna(0).any())]
    strategies = strategy_order(metrics["strategy"])
    fig = Figure(figsize=(WIDTH, 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(kinds), sharex=True))
    for ax, kind in zip(axes, kinds):
        for s in strategies:
            g = metrics[metrics["strategy"] == s].groupby("round")[kind].mean()
            ax.plot(g.index, g.to_numpy(), markersize=5, linewidth=1.6, **styles[s])
        ax.set_title(kind)
        ax.set_xlabel("round")
        ax.set_ylim(bottom=0)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_ylabel("tasks per round" if kinds[0] == "skipped" else "boxes per round")
    return _finish(fig, "Annotator effort per round: labels collected in that round (mean over seeds)", styles,
                   {s: s for s in strategies})


@_styled
def prelabel_quality(metrics: pd.DataFrame, styles: dict, columns: tuple[str, ...]) -> Figure | None:
    """Pre-label precision, recall and mAP50 estimated on the random share, per round (mean over seeds)."""
    cols = [c for c in columns if c in metrics and metrics[c].notna().any()]
    if not cols:
        return None
    strategies = strategy_order(metrics["strategy"])
    fig = Figure(figsize=(WIDTH, 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(cols), sharey=True))
    for ax, c in zip(axes, cols):
        for s in strategies:
            g = metrics[metrics["strategy"] == s].groupby("round")[c].mean().dropna()
            ax.plot(g.index, g.to_numpy(), markersize=5, linewidth=1.6, **styles[s])
        ax.set_title(c.removeprefix("prelabel_").replace("map50", "mAP50"))
        ax.set_xlabel("round")
        ax.set_ylim(0, 1.02)
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_ylabel("pre-label quality (0-1)")
    return _finish(fig, "Pre-label quality, estimated on the random share of each selection (mean over seeds)",
                   styles, {s: s for s in strategies})
