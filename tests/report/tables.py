"""Synthetic run-folder tables with known differences, for the report tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from detal.types import SECONDS_COLUMNS, METRIC_COLUMNS, PER_CLASS_COLUMNS, POOL_CLASS_COLUMNS, SELECTED_CLASS_COLUMNS

IMAGES = [10, 20, 30, 40]
RANDOM = [0.1, 0.2, 0.3, 0.4]  # random's curve on every seed (plus the seed's offset)
NAMES = ["circle", "square", "triangle"]


def metrics(curves: dict, experiment: str = "e", boxes_per_image: dict | None = None, **extra) -> pd.DataFrame:
    """{(strategy, seed): [map50_95 per round]} -> metrics table; images 10, 20, 30, ...; mAP50 = 1.5 x mAP50-95."""
    rows = []
    for (strategy, seed), ys in curves.items():
        for r, y in enumerate(ys, start=1):
            row = dict.fromkeys(METRIC_COLUMNS, 0) | dict.fromkeys(SECONDS_COLUMNS, float("nan"))  # as before seconds
            images = 10 * r
            row.update(experiment=experiment, strategy=strategy, seed=seed, round=r, labeled_images=images,
                       labeled_boxes=images * (boxes_per_image or {}).get(strategy, 3), map50_95=y, map50=1.5 * y,
                       selected_images=10 if r < len(ys) else 0)
            for k, v in extra.items():
                row[k] = v(strategy, seed, r) if callable(v) else v
            rows.append(row)
    return pd.DataFrame(rows)


def gain_curves(diffs, mix_curve=(0.1, 0.25, 0.4, 0.45)) -> dict:
    """random: RANDOM + 0.02 x seed; mix: `mix_curve` + the same offset, its final round shifted so that
    mix - random at the final round is exactly diffs[seed]."""
    curves = {}
    for seed, d in enumerate(diffs):
        off = 0.02 * seed
        curves["random", seed] = [y + off for y in RANDOM]
        mix = [y + off for y in mix_curve]
        mix[-1] = RANDOM[-1] + off + d
        curves["mix", seed] = mix
    return curves


def write_run(folder: Path, df: pd.DataFrame, per_class: bool = True, classes: bool = True) -> Path:
    """A run folder: metrics.csv, and (optionally) per_class.csv, selected_classes.csv, pool_classes.csv."""
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / "metrics.csv", index=False)
    arms = df[["experiment", "strategy", "seed", "round"]].itertuples(index=False)
    pc, sc = [], []
    for exp, strategy, seed, r in arms:
        for k, name in enumerate(NAMES):
            pc.append(dict(zip(PER_CLASS_COLUMNS, (exp, strategy, seed, r, k, name, 20 + 10 * k,
                                                   0.2 + 0.1 * k + (0.05 if strategy != "random" else 0),
                                                   0.5))))
            rounds = ([0] if r == 1 else []) + ([r] if r < df["round"].max() else [])
            for rr in rounds:
                boxes = 30 if (strategy == "random" or k < 2) else 60  # non-random arms chase the last class
                sc.append(dict(zip(SELECTED_CLASS_COLUMNS, (exp, strategy, seed, rr, k, name, boxes, 10))))
    if per_class:
        pd.DataFrame(pc).to_csv(folder / "per_class.csv", index=False)
    if classes:
        pd.DataFrame(sc).to_csv(folder / "selected_classes.csv", index=False)
        exp = df["experiment"].iloc[0]
        pool = [dict(zip(POOL_CLASS_COLUMNS, (exp, k, n, 300, 100))) for k, n in enumerate(NAMES)]
        pd.DataFrame(pool).to_csv(folder / "pool_classes.csv", index=False)
    return folder


def exact_bootstrap_quantiles(d, level=0.95):
    """Quantiles of the exact bootstrap distribution of the mean (every one of the n^n resamples)."""
    d = np.asarray(d, float)
    n = d.size
    idx = np.indices((n,) * n).reshape(n, -1).T
    means = np.sort(d[idx].mean(axis=1))
    a = (1 - level) / 2
    return np.quantile(means, [a, 1 - a], method="inverted_cdf")
