"""What the report says, in order: the verdict first, then the numbers behind it, the figures, the details.

Builds the block list (see `render`) for all experiments of the loaded run folders, and the PNG of
every figure. No file is written here.
"""

from __future__ import annotations

import io
import math
import re

import pandas as pd

from detal.report import figures, stats
from detal.report.load import PRELABEL_COLUMNS, RunData
from detal.report.render import Bullets, Heading, Image, Para, Table
from detal.report.verdict import Verdict, bracket, number, pct, signed, verdicts

BASELINE = "random"

HOW_TO_READ = [
    "Every arm of a seed starts from the same random seed set, trains with the same recipe and is evaluated on "
    "the same fixed val split, so strategies are compared **paired by seed**: the difference on each seed, then "
    "its mean over seeds.",
    "Learning-curve band: **min-max over seeds** around the mean. Paired-difference band and every 95% CI "
    f"marked bootstrap: percentile bootstrap of the mean over seeds ({stats.N_BOOT:,} resamples, fixed seed "
    f"{stats.BOOT_SEED}: the same data always gives the same report).",
    "Verdict: a gain or a loss is claimed only when both the bootstrap and the Student-t 95% intervals of the "
    "paired final mAP50-95 difference exclude zero (with few seeds the bootstrap alone is too narrow); one seed "
    "supports no claim.",
    "AUC: area under the mAP50-95 vs labelled-images curve (trapezoid rule) divided by the labelled-images range, "
    "that is the curve's mean mAP50-95 over the labelled range; higher is better.",
    "Labels saved: how many fewer labelled images (boxes) a strategy needed to first reach random's final "
    "mAP50-95, interpolated linearly between rounds on the mean curves (random measured the same way). Its 95% CI: "
    "the same estimate on bootstrap resamples of the seeds' curves; \"not reached\": the curve never got there.",
    "Final numbers are taken at the last round both arms of a seed finished; mAP is on a 0-1 scale.",
]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "experiment"


def _of(table: pd.DataFrame | None, exp: str) -> pd.DataFrame | None:
    if table is None:
        return None
    t = table[table["experiment"] == exp]
    return t if len(t) else None


def _numbers_table(df: pd.DataFrame) -> Table:
    s = stats.summary_table(df)
    rows = []
    for name in figures.strategy_order(s.index):
        r = s.loc[name]
        lo, hi = int(r["rounds_min"]), int(r["rounds"])
        many = r["seeds"] > 1
        rows.append([name, str(int(r["seeds"])), f"{hi}" if lo == hi else f"{lo}-{hi}", f"{r['labeled_images']:.0f}",
                     f"{r['labeled_boxes']:.0f}",
                     number(r["final_map50_95"]), number(r["final_map50_95_sd"]) if many else "",
                     f"{number(r['final_map50_95_min'])}-{number(r['final_map50_95_max'])}" if many else "",
                     number(r["final_map50"]) + (f" ({number(r['final_map50_sd'])})" if many else ""),
                     number(r["auc_map50_95"])])
    return Table(["strategy", "seeds", "rounds", "labelled images", "labelled boxes", "final mAP50-95 (mean)",
                  "sd", "min-max", "final mAP50 (mean (sd))", "AUC mAP50-95"], rows)


def _with_ci(iv, fmt=signed) -> str:
    ci = bracket(iv, fmt)
    return f"{fmt(iv.estimate)} {ci}" if ci else fmt(iv.estimate)


def _paired_table(comparisons: list[stats.Comparison]) -> Table:
    rows = [[c.strategy, str(c.seeds), str(c.round), _with_ci(c.diff), bracket(c.diff_t) or "n/a",
             _with_ci(c.diff50), _with_ci(c.auc)] for c in comparisons]
    return Table(["strategy", "seeds", "at round", "diff final mAP50-95 [95% CI bootstrap]", "95% CI (t)",
                  "diff final mAP50 [95% CI]", "diff AUC mAP50-95 [95% CI]"], rows)


def saved_cell(ls: stats.LabelsSaved) -> str:
    """'58 (19%) [1%, 22%]', or 'not reached'."""
    if not ls.reached:
        return "not reached"
    least = ">= " if ls.at_first_point and ls.saved > 0 else ""
    ci = bracket(ls.interval, pct)
    return f"{least}{ls.saved:.0f} ({least}{pct(ls.fraction)})" + (f" {ci}" if ci else "")


def _labels_table(comparisons: list[stats.Comparison]) -> Table:
    def needed(ls: stats.LabelsSaved, scale: float = 1, fmt: str = ".0f") -> str:
        it = format(ls.needed / scale, fmt) if ls.reached else "not reached"
        return f"{it} / {format(ls.baseline_needed / scale, fmt)}"

    def hours_saved(ls: stats.LabelsSaved) -> str:
        if not ls.reached:
            return "not reached"
        ci = bracket(ls.interval, pct)
        return f"{ls.saved / 3600:.2f} h ({pct(ls.fraction)})" + (f" {ci}" if ci else "")

    cs = [c for c in comparisons if c.seeds]
    hours = any(not math.isnan(c.seconds.target) for c in cs)
    head = ["strategy", "seeds", f"target: {BASELINE}'s final mAP50-95"]
    if hours:  # what annotators pay first: hours with pre-labels, then against random drawn from scratch
        head += [f"annotation hours needed (it / {BASELINE})", "hours saved [95% CI]",
                 f"hours vs {BASELINE} from scratch (it / {BASELINE} without pre-labels)", "saved [95% CI]"]
    head += [f"images needed (it / {BASELINE})", "images saved [95% CI]", f"boxes needed (it / {BASELINE})",
             "boxes saved [95% CI]"]
    rows = []
    for c in cs:
        row = [c.strategy, str(c.seeds), number(c.images.target)]
        if hours:
            row += [needed(c.seconds, 3600, ".2f"), hours_saved(c.seconds), needed(c.scratch, 3600, ".2f"),
                    hours_saved(c.scratch)]
        rows.append(row + [needed(c.images), saved_cell(c.images), needed(c.boxes), saved_cell(c.boxes)])
    return Table(head, rows)


def prelabel_sentence(df: pd.DataFrame) -> str | None:
    """One sentence: what the labelled images cost with pre-labels against drawing every box (None: not counted)."""
    t = stats.prelabel_saving(df)
    if t.empty:
        return None
    parts = [f"{s} {r['hours']:.2f} h against {r['scratch_hours']:.2f} h ({pct(r['ratio'])} of it"
             + (f", {pct(r['ratio_min'])}-{pct(r['ratio_max'])} over {int(r['seeds'])} seeds" if r["seeds"] > 1 else "")
             + ")" for s, r in ((s, t.loc[s]) for s in figures.strategy_order(t.index))]
    worse = [s for s in t.index if t.loc[s, "ratio"] > 1]
    tail = (f" Pre-labels cost more than drawing from scratch for {', '.join(worse)}: the models' boxes needed more "
            "fixing than they saved." if worse else "")
    return ("Pre-labels: the images each strategy had labelled by its last round cost, in annotation time with the "
            "model's pre-labels shown, against the same images drawn from scratch: " + "; ".join(parts) + "." + tail)


def _per_round_table(df: pd.DataFrame) -> Table:
    strategies = figures.strategy_order(df["strategy"])
    mean = df.pivot_table(index="round", columns="strategy", values="map50_95", aggfunc="mean")
    images = df.groupby("round")["labeled_images"].mean()
    rows = [[str(r), f"{images[r]:.0f}", *[number(v) if pd.notna(v) else "" for v in mean.loc[r, strategies]]]
            for r in mean.index]
    return Table(["round", "labelled images", *strategies], rows, align_left=1)


def _notes(df: pd.DataFrame, exp_tables: dict) -> list[str]:
    notes = []
    last = df.groupby(stats.ARM)["round"].max()
    if last.nunique() > 1:
        notes.append(f"Arms stopped at different rounds ({last.min()} to {last.max()}; unfinished or pool exhausted): "
                     "paired numbers are taken at the last round both arms of a seed finished.")
    if BASELINE in set(df["strategy"]):
        base = set(df.loc[df["strategy"] == BASELINE, "seed"])
        for s, g in df.groupby("strategy"):
            lone = sorted(set(g["seed"]) - base)
            if s != BASELINE and lone:
                notes.append(f"{s}: seed(s) {', '.join(map(str, lone))} have no random arm and are left out of the "
                             "paired comparison.")
    if exp_tables["per_class"] is None:
        notes.append("No per_class.csv in this run (written by newer detal versions): per-class AP not shown.")
    if exp_tables["selected"] is None:
        notes.append("No selected_classes.csv in this run: the class make-up of the selections is not shown.")
    elif exp_tables["pool"] is None:
        notes.append("No pool_classes.csv (only simulations know the pool's ground truth): selections are shown "
                     "without the pool's make-up.")
    if not figures.has_effort(df):
        notes.append("No annotator effort recorded (the oracle annotator labels from the ground truth): no effort "
                     "figure.")
    return notes


def experiment(df: pd.DataFrame, tables: dict, prefix: str, level: int,
               axis: str = "seconds") -> tuple[list, list[Verdict], dict]:
    """Blocks, verdicts (labels saved judged on `axis`, report.cost_axis) and {file name: PNG} for one experiment."""
    strategies = sorted(set(df["strategy"]))
    styles = figures.strategy_styles(strategies)
    comparisons = ([stats.compare(df, s, BASELINE) for s in figures.strategy_order(strategies) if s != BASELINE]
                   if BASELINE in strategies else [])
    said = verdicts(strategies, comparisons, BASELINE, axis)
    saving = prelabel_sentence(df)
    if saving:
        said.append(Verdict("prelabels", saving))
    pngs: dict[str, bytes] = {}
    blocks: list = []

    def figure(name: str, fig, alt: str, caption: str = "") -> None:
        if fig is None:
            return
        pngs[prefix + name] = _png(fig)
        blocks.append(Image(prefix + name, pngs[prefix + name], alt, caption))

    h = level
    blocks += [Heading(h, "Numbers per strategy"), _numbers_table(df),
               Para("Last round of each arm; mean over seeds, sd and min-max across seeds. AUC: the learning curve's "
                    "mean mAP50-95 over the labelled-images range.", "small")]
    if comparisons:
        blocks += [Heading(h, f"Against {BASELINE}, paired by seed"), _paired_table(comparisons),
                   Heading(h, f"Labels saved to reach {BASELINE}'s final mAP50-95"), _labels_table(comparisons),
                   Para("Annotation hours (labelled images, boxes) each needed to first reach the target on its "
                        "mean curve, interpolated between rounds; the saving in % of what random needed. Hours: the "
                        "seconds per action of `cost:` applied to what annotators did to the pre-labels shown "
                        "(docs/annotation-cost.md); 'from scratch': random's images with every box drawn.", "small")]
    blocks.append(Heading(h, "Learning curves"))
    figure("map_vs_labeled.png", figures.learning_curves(df, styles), "mAP50-95 and mAP50 against labelled images "
           "and labelled boxes", "Same seed set and val split for every arm of a seed.")
    if comparisons:
        blocks.append(Heading(h, f"Difference to {BASELINE} per round"))
        figure("paired_diff.png", figures.paired_differences(df, styles, BASELINE),
               f"per-round paired difference to {BASELINE}",
               "Above the zero line the strategy is ahead of random on the same seed.")
    blocks.append(Heading(h, "Per class"))
    figure("per_class_ap.png", figures.per_class_ap(tables["per_class"], styles), "per-class AP50-95 at the last round")
    figure("class_makeup.png", figures.class_makeup(tables["selected"], tables["pool"], df, styles),
           "class make-up of the selections beside the pool",
           "Does a strategy chase rare classes (points right of the grey bar) or crowded images (more boxes per "
           "image than the seed set)?")
    if figures.has_effort(df) or any(c in df and df[c].notna().any() for c in PRELABEL_COLUMNS):
        blocks.append(Heading(h, "Annotators"))
        figure("effort.png", figures.effort(df, styles), "annotator effort per round")
        figure("prelabel_quality.png", figures.prelabel_quality(df, styles, PRELABEL_COLUMNS),
               "pre-label quality per round")
    if "lead_seconds" in df:  # a live project (detal cycle): what its annotators really spent, Label Studio lead_time
        n, s = (pd.to_numeric(df[c], errors="coerce") for c in ("lead_images", "lead_seconds"))
        timed = [f"round {r}: {t / k:.1f} s per image" + (f", {t / b:.2f} s per box" if k == li and b else "")
                 + f" ({k:.0f} timed)" for r, k, t, li, b in zip(df["round"], n, s, df["labeled_images"],
                                                                   df["labeled_boxes"]) if k > 0 and t == t]
        if timed:
            blocks.append(Para("Annotators' real seconds (Label Studio lead_time) on the labelled set each round "
                               "trained on: " + "; ".join(timed) + ".", "small"))
    blocks += [Heading(h, "mAP50-95 per round (mean over seeds)"), _per_round_table(df)]
    notes = _notes(df, tables)
    if notes:
        blocks += [Heading(h, "Notes"), Bullets([("", n) for n in notes], "notes")]
    return blocks, said, pngs


def build(data: RunData, folders: list[str], axis: str = "seconds") -> tuple[list, str, dict[str, bytes]]:
    """(blocks, title, {file name: PNG}) for every experiment in `data`, in the order the folders were given;
    `axis` (report.cost_axis) is the cost the verdicts' labels saved is measured in."""
    exps = data.experiments or list(dict.fromkeys(data.metrics["experiment"]))
    one = len(exps) == 1
    title = f"detal report: {exps[0]}" if one else f"detal report: {len(exps)} experiments"
    glance: list = []
    body: list = []
    pngs: dict[str, bytes] = {}
    prefixes: set[str] = set()
    for exp in exps:
        df = data.metrics[data.metrics["experiment"] == exp]
        tables = {"per_class": _of(data.per_class, exp), "selected": _of(data.selected_classes, exp),
                  "pool": _of(data.pool_classes, exp)}
        prefix = "" if one else slug(exp) + "_"
        while prefix in prefixes:  # "a b" and "a-b" must not overwrite each other's figures
            prefix = "_" + prefix
        prefixes.add(prefix)
        blocks, said, figs = experiment(df, tables, prefix, 2 if one else 3, axis)
        pngs.update(figs)
        seeds = sorted(df["seed"].unique().tolist())
        order = figures.strategy_order(df["strategy"])
        head = (f"{len(order)} strateg{'ies' if len(order) > 1 else 'y'} ({', '.join(order)}), "
                f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))}), "
                f"up to {df['round'].max()} rounds.")
        verdict_list = Bullets([(v.kind, v.text) for v in said], "verdicts")
        if one:
            glance += [Para(head), verdict_list]
            body += blocks
        else:
            glance += [Para(f"**{exp}**: {head}"), verdict_list]
            body += [Heading(2, f"Experiment {exp}"), Para(head), *blocks]
    top = [Heading(1, title), Para("Run folder(s): " + ", ".join(f"`{f}`" for f in folders) + ".", "small")]
    if data.notes:
        top.append(Bullets([("", n) for n in data.notes], "notes"))
    tail = [Heading(2, "How to read the numbers"), Bullets([("", t) for t in HOW_TO_READ])]
    return [*top, Heading(2, "At a glance"), *glance, *body, *tail], title, pngs
