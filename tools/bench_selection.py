"""Benchmark of the pure scoring/selection layer (numpy only, no model): is it negligible next to inference?

Measures side by side in one run, on generated data shaped like a real pool:
1. `image_scores` (one vectorised measure call over all boxes + per-image reduction) against the naive
   per-image loop `reduce(box_scores(p))`, on N images with ~8 boxes each;
2. `k_center_greedy` (mat-vec squared distances) against the straightforward `norm(x - x[j])` version;
3. every strategy end to end on a pool of N with a precomputed scorer (what selection adds per round).

Usage: .venv/bin/python tools/bench_selection.py [--images 20000] [--classes 80] [--dim 256] [--seed 0]
Last line: image_scores_vs_naive=<x> kcenter_vs_naive=<x> (speed-up ratios, > 1 = faster).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from detal.acquisition.selection import STRATEGIES, Scored, k_center_greedy, select
from detal.config import SelectionConfig
from detal.acquisition.uncertainty import REDUCTIONS, box_scores, image_scores


def best_of(fn, repeat=3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def naive_k_center(x: np.ndarray, k: int) -> np.ndarray:
    chosen = [0]
    dist = np.linalg.norm(x - x[0], axis=1)
    for _ in range(k - 1):
        dist[chosen[-1]] = -1.0
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
    return np.asarray(chosen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--classes", type=int, default=80)
    ap.add_argument("--dim", type=int, default=256, help="pooled feature size (YOLOv8n SPPF: 256)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)

    probs = [rng.random((int(n), a.classes)) ** 4 for n in rng.poisson(8, a.images)]
    n_boxes = sum(len(p) for p in probs)
    t_vec = best_of(lambda: image_scores(probs, "entropy", "sum", score_conf=0.05))
    red = REDUCTIONS["sum"]
    t_naive = best_of(
        lambda: [red(s[p.max(axis=1) >= 0.05], 3) if len(p) else 0.0 for p, s in ((p, box_scores(p)) for p in probs)]
    )
    print(f"image_scores: {a.images} images, {n_boxes} boxes x {a.classes} classes: "
          f"vectorised {t_vec * 1e3:.0f} ms ({a.images / t_vec:,.0f} img/s), "
          f"per-image loop {t_naive * 1e3:.0f} ms ({a.images / t_naive:,.0f} img/s)")

    # reference protocol at this pool size: budget 10%, subset 20%, candidates = subset (3 x budget capped)
    n_cand, k = a.images // 5, a.images // 10
    x = rng.normal(size=(n_cand, a.dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    k_small = min(k, 300)  # the naive version is slow; compare both on the same k
    t_kc = best_of(lambda: k_center_greedy(x, k_small), repeat=2)
    t_kc_naive = best_of(lambda: naive_k_center(x, k_small), repeat=2)
    assert (k_center_greedy(x, k_small) == naive_k_center(x, k_small)).all()
    t_kc_full = best_of(lambda: k_center_greedy(x, k), repeat=1)
    print(f"k_center_greedy: {n_cand} candidates x {a.dim} dims, k={k_small}: mat-vec {t_kc * 1e3:.0f} ms, "
          f"naive {t_kc_naive * 1e3:.0f} ms; full k={k}: {t_kc_full:.2f} s")

    scores, feats = rng.random(a.images), rng.normal(size=(a.images, a.dim))
    classes = [rng.integers(0, a.classes, size=2) for _ in range(a.images)]

    def score_fn(ids: np.ndarray) -> Scored:
        return Scored(scores[ids], feats[ids], [classes[i] for i in ids])

    pool = np.arange(a.images)
    counts = rng.integers(0, 1000, a.classes)
    for cb in (0.0, 1.0):
        params = SelectionConfig(class_balance=cb)
        for name in STRATEGIES:
            t = best_of(lambda: select(name, pool, k, np.random.default_rng(a.seed), score_fn, params, counts), repeat=1)
            print(f"select {name:8s} pool {a.images} budget {k} class_balance {cb}: {t * 1e3:8.1f} ms")
    print(f"image_scores_vs_naive={t_naive / t_vec:.2f} kcenter_vs_naive={t_kc_naive / t_kc:.2f}")


if __name__ == "__main__":
    main()
