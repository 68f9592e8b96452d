"""Batch selection strategies: (pool ids, budget, rng, scoring callback, params) -> chosen ids.

Pure and YOLO-free. The parameters are the config's own `SelectionConfig` (validated once, at load).
A strategy never sees a model: it asks `score_fn` to score exactly the ids it
needs, so "random subset, then entropy" really scores only the subset (`Selection.n_scored` counts it).
All randomness comes from the `rng` argument: the same seed gives the same selection.

Strategies (`STRATEGIES`):
- `random`: a uniform draw without replacement; never scores anything.
- `entropy`: draw a random `subset_fraction` of the pool (ceil, at least the budget, at most the
  pool), score only those, keep the top `budget` by score. Ties go to the smaller id (stable order on
  (-score, id)), so the result does not depend on the order the scorer returns things in.
- `mix`: `round_half_up(mix_ratio * budget)` images from `entropy` as above (e.g. budget 5, ratio 0.5
  -> 3 uncertain + 2 random), the rest drawn uniformly from the pool minus those already chosen.
  Random picks that happened to be scored keep their score; the others carry NaN. When the uncertain
  share rounds to 0 (mix_ratio 0, or budget 1 at ratio 0.3) nothing is scored.
- `diverse`: score the random subset as `entropy` does, keep the `ceil(candidate_factor * budget)`
  most uncertain as candidates (capped by the subset size), then k-center greedy on the L2-normalised
  features (`Scored.features`): start from the most uncertain candidate, repeatedly add the candidate
  farthest from everything chosen (ties -> more uncertain). One batch then spans feature space
  instead of holding twenty near-identical frames. Scoring cost equals `entropy`'s.
- `coreset`: diversity without uncertainty (the issue's "diversity-only" cold start): k-center greedy
  on the L2-normalised features of a random subset of at least `min_subset_factor` x the budget,
  starting from a random image of it. Scores are computed (one pass gives features and scores) and
  reported, never used to rank. Meant for the first selection, when the model is weakest
  (`SelectionConfig.first_round: coreset`), but it runs in any round.
- `recommended`: an alias of the rule the label-efficiency study supports (`RECOMMENDED`, below), which
  carries its scoring calibration (`RECOMMENDED_CALIBRATION`: `entropy_wide` on temperature-scaled scores).
- `entropy_wide`, `mix_wide`: `entropy` and `mix` with a minimum subset size (issue 11's "subset
  degeneracy"): the scored random subset holds at least `ceil(min_subset_factor * k)` images, k the
  number ranked by uncertainty (the budget for `entropy_wide`, the uncertain share for `mix_wide`).
  With a subset of 20% of the pool and a budget of 10% of the starting pool, plain `entropy` keeps
  the top half of its subset in the first round and ~3/4 of it by round 4: close to random by
  construction. `entropy` and `mix` stay exactly as specified (they are the reference).
- `entropy_per_second`: `entropy_wide` (same subset and score) ranked by score per expected
  annotation second, `Scored.seconds` (return on investment: Settles et al. 2008, Haertel et al. 2008).
  The seconds come from the image's own predictions (detal.cost.expected_seconds): pre-labels to verify
  or delete, likely missed boxes to draw. Issue 23's candidate for saving seconds rather than images.

Class balance (`SelectionConfig.class_balance = b > 0`, every uncertainty-based strategy): with
`labelled_class_counts` n_c over nc classes, smoothed frequency f_c = (n_c + 1) / (sum(n) + nc) and
rarity r_c = 1 / (nc * f_c) (1 for a class at its uniform share, > 1 for rarer classes). Image i with
predicted classes K_i gets weight w_i = (max_{c in K_i} r_c) ** b (1 when K_i is empty) and is ranked
by score_i * w_i; `Selection.scores` reports that weighted score. Scores are assumed non-negative
(every measure in detal.acquisition.uncertainty is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable

import numpy as np

from detal.config import SelectionConfig
from detal.registry import InvalidOption, lookup


@dataclass(frozen=True)
class Scored:
    """What the scoring callback returns for the ids it was given, in the same order."""

    scores: np.ndarray  # (n,) float, higher = more worth labelling
    features: np.ndarray | None = None  # (n, d) pooled backbone features, if computed
    classes: list[np.ndarray] | None = None  # predicted class ids of kept boxes per image
    seconds: np.ndarray | None = None  # (n,) expected annotation seconds of each image's pre-labels (detal.cost)


ScoreFn = Callable[[np.ndarray], Scored]  # takes an int array of pool ids


@dataclass(frozen=True)
class Selection:
    ids: np.ndarray  # chosen pool ids (int64), unique, len == min(budget, len(pool))
    scores: np.ndarray  # score of each chosen id (nan where picked at random without scoring)
    sources: tuple[str, ...]  # per chosen id: "uncertainty", "random", "diversity", ...
    n_scored: int  # how many images the callback was asked to score (for the metrics)


@dataclass(frozen=True)
class _Params:
    """What a strategy reads: the config's options and the labelled set's boxes per class."""

    cfg: SelectionConfig
    class_counts: np.ndarray | None


def _checked_counts(counts, cfg: SelectionConfig) -> np.ndarray | None:
    if counts is None:
        if cfg.class_balance > 0:
            raise InvalidOption("class_balance > 0 needs labelled_class_counts (boxes per class in the labelled set)")
        return None
    arr = np.asarray(counts, dtype=np.float64)
    if arr.ndim != 1 or len(arr) == 0 or not np.isfinite(arr).all() or (arr < 0).any():
        raise InvalidOption("labelled_class_counts must be a non-empty 1-D array of non-negative box counts per class")
    return arr


def class_balance_weights(classes: list[np.ndarray], counts: np.ndarray, strength: float) -> np.ndarray:
    """Per-image weights (len(classes),) favouring images whose predicted classes are rare in `counts`.

    w_i = (max over predicted classes c of r_c) ** strength, r_c = 1 / (nc * (n_c + 1) / (sum n + nc));
    1 for an image without predictions or when strength == 0. See the module docstring.
    """
    counts = np.asarray(counts, dtype=np.float64)
    nc = len(counts)
    rarity = (counts.sum() + nc) / (nc * (counts + 1.0))
    w = np.ones(len(classes), dtype=np.float64)
    if strength == 0:
        return w
    for i, cls in enumerate(classes):
        c = np.asarray(cls).astype(np.int64, copy=False).ravel()
        if len(c) == 0:
            continue
        if c.min() < 0 or c.max() >= nc:
            raise InvalidOption(
                f"predicted class id {int(c.max() if c.max() >= nc else c.min())} is outside the "
                f"{nc} classes of labelled_class_counts; pass counts for every class of the dataset"
            )
        w[i] = rarity[c].max() ** strength
    return w


def _checked_pool(pool: np.ndarray) -> np.ndarray:
    arr = np.asarray(pool)
    if arr.ndim != 1:
        raise InvalidOption(f"pool must be a 1-D array of image ids, got shape {arr.shape}")
    if len(arr) and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidOption(f"pool ids must be integers, got dtype {arr.dtype}")
    arr = np.sort(arr.astype(np.int64))  # the selection depends on the set of ids, not their order
    if len(arr) > 1 and (np.diff(arr) == 0).any():
        raise InvalidOption("pool ids must be unique; the pool holds duplicates")
    return arr


def _score(score_fn: ScoreFn, ids: np.ndarray, params: _Params, need_features: bool = False,
           per_second: bool = False):
    """Call score_fn on ids; validate its answer; return (ranking scores, features or None).

    per_second: the ranking score is the score per expected annotation second (Scored.seconds): return on
    investment, the utility of a label over its cost (Settles et al., NIPS workshop 2008; Haertel et al., ACL 2008).
    """
    res = score_fn(ids)
    if not isinstance(res, Scored):
        raise TypeError(f"score_fn must return a detal.acquisition.selection.Scored, got {type(res).__name__}")
    scores = np.asarray(res.scores, dtype=np.float64)
    if scores.shape != (len(ids),):
        raise ValueError(f"score_fn returned scores of shape {scores.shape} for {len(ids)} ids")
    if not np.isfinite(scores).all():
        raise ValueError("score_fn returned NaN or inf scores; use a finite empty-image policy")
    feats = None
    if need_features:
        if res.features is None:
            raise ValueError(
                "this strategy needs image features: the scoring callback returned Scored.features=None "
                "(enable feature pooling in the scorer)"
            )
        feats = np.asarray(res.features, dtype=np.float64)
        if feats.ndim != 2 or len(feats) != len(ids) or not np.isfinite(feats).all():
            raise ValueError(f"score_fn returned features of shape {feats.shape}; expected ({len(ids)}, d), finite")
    if params.cfg.class_balance > 0:
        if res.classes is None or len(res.classes) != len(ids):
            raise ValueError("class_balance > 0 needs Scored.classes (predicted class ids per image) from score_fn")
        scores = scores * class_balance_weights(res.classes, params.class_counts, params.cfg.class_balance)
    if per_second:
        secs = None if res.seconds is None else np.asarray(res.seconds, dtype=np.float64)
        if secs is None or secs.shape != (len(ids),) or not np.isfinite(secs).all() or (secs <= 0).any():
            raise ValueError("this strategy ranks by score per expected second: score_fn must return Scored.seconds, "
                             f"{len(ids)} positive finite values (build the ScoringPass with the config)")
        scores = scores / secs
    return scores, feats


def _subset(pool: np.ndarray, need: int, rng: np.random.Generator, params: _Params, wide: bool = False) -> np.ndarray:
    """The random share of the pool that gets scored: ceil(fraction * pool), >= need, <= pool; sorted.

    wide: also >= ceil(min_subset_factor * need), so ranking keeps a selective top share.
    """
    floor = math.ceil(params.cfg.min_subset_factor * need - 1e-9) if wide else need
    m = min(len(pool), max(need, floor, math.ceil(params.cfg.subset_fraction * len(pool) - 1e-9)))
    return np.sort(rng.choice(pool, size=m, replace=False))


def _rank(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Indices of ids ordered by score descending, ties by smaller id."""
    return np.lexsort((ids, -scores))


def _empty(n_scored: int = 0) -> Selection:
    return Selection(np.zeros(0, np.int64), np.zeros(0), (), n_scored)


def select_random(pool, budget, rng, score_fn, params) -> Selection:
    ids = rng.choice(pool, size=budget, replace=False).astype(np.int64)
    return Selection(ids, np.full(budget, np.nan), ("random",) * budget, 0)


def select_entropy(pool, budget, rng, score_fn, params, wide: bool = False, per_second: bool = False) -> Selection:
    sub = _subset(pool, budget, rng, params, wide)
    scores, _ = _score(score_fn, sub, params, per_second=per_second)
    top = _rank(sub, scores)[:budget]
    return Selection(sub[top], scores[top], ("uncertainty",) * budget, len(sub))


def select_mix(pool, budget, rng, score_fn, params, wide: bool = False) -> Selection:
    n_unc = min(budget, math.floor(params.cfg.mix_ratio * budget + 0.5))
    if n_unc == 0:  # e.g. budget 1 at ratio 0.3: nothing to rank, so score nothing
        sub, scores = np.zeros(0, np.int64), np.zeros(0)
    else:
        sub = _subset(pool, n_unc, rng, params, wide)
        scores, _ = _score(score_fn, sub, params)
    top = _rank(sub, scores)[:n_unc]
    chosen = sub[top]
    rest = np.setdiff1d(pool, chosen, assume_unique=True)  # sorted, so the draw is order-independent
    rand = rng.choice(rest, size=budget - n_unc, replace=False).astype(np.int64)
    known = dict(zip(sub.tolist(), scores.tolist()))
    rand_scores = np.array([known.get(i, np.nan) for i in rand.tolist()], dtype=np.float64)
    return Selection(
        np.concatenate([chosen, rand]),
        np.concatenate([scores[top], rand_scores]),
        ("uncertainty",) * n_unc + ("random",) * (budget - n_unc),
        len(sub),
    )


def k_center_greedy(features: np.ndarray, k: int) -> np.ndarray:
    """Indices of k rows chosen greedily to cover `features` (rows already L2-normalised or not).

    Starts from row 0 (callers order rows by priority), then adds the row farthest (Euclidean) from
    its nearest chosen row; ties go to the earlier row. Squared distances come from one mat-vec per
    step (|a|^2 + |b|^2 - 2 a.b), O(k * n * d) time and O(n) extra memory. The mat-vec is einsum, not
    BLAS: on busy cores multi-threaded BLAS varied 10x in time (tools/bench_selection.py), and its
    thread-count-dependent summation order could flip near-ties between machines.
    """
    x = np.asarray(features, dtype=np.float64)
    k = min(k, len(x))
    if k <= 0:
        return np.zeros(0, np.int64)
    sq = np.einsum("ij,ij->i", x, x)

    def d2(j: int) -> np.ndarray:
        return np.maximum(sq + sq[j] - 2.0 * np.einsum("ij,j->i", x, x[j]), 0.0)

    chosen = [0]
    dist = d2(0)
    for _ in range(k - 1):
        dist[chosen[-1]] = -1.0  # chosen rows never win again (min with >= 0 keeps -1)
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        np.minimum(dist, d2(nxt), out=dist)
    return np.asarray(chosen, dtype=np.int64)


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def select_diverse(pool, budget, rng, score_fn, params) -> Selection:
    sub = _subset(pool, budget, rng, params)
    scores, feats = _score(score_fn, sub, params, need_features=True)
    n_cand = min(len(sub), max(budget, math.ceil(params.cfg.candidate_factor * budget - 1e-9)))
    cand = _rank(sub, scores)[:n_cand]
    pick = cand[k_center_greedy(_l2_normalise(feats[cand]), budget)]
    return Selection(sub[pick], scores[pick], ("diversity",) * budget, len(sub))


def select_coreset(pool, budget, rng, score_fn, params) -> Selection:
    sub = _subset(pool, budget, rng, params, wide=True)
    scores, feats = _score(score_fn, sub, params, need_features=True)
    order = np.roll(np.arange(len(sub)), -int(rng.integers(len(sub))))  # k-center starts at order[0]: random
    pick = order[k_center_greedy(_l2_normalise(feats[order]), budget)]
    return Selection(sub[pick], scores[pick], ("diversity",) * budget, len(sub))


@dataclass(frozen=True)
class Strategy:
    """A registered strategy and what it needs from the scoring callback, so the round never asks its name."""

    run: Callable[..., Selection]
    scores: bool = True  # calls score_fn at all
    features: bool = False  # needs Scored.features (pooled backbone features: a hook in the scorer)
    seconds: bool = False  # needs Scored.seconds (each scored image's expected annotation seconds)
    random_share: bool = False  # part of every batch is drawn uniformly: unbiased pre-label estimates (`detal status`)
    # the scoring.calibration the rule carries (`recommended`: the study backs a rule *and* a calibration);
    # None = the config's. Resolved, and checked against the config, by detal.config.scoring_calibration.
    calibration: str | None = None


STRATEGIES: dict[str, Strategy] = {
    "random": Strategy(select_random, scores=False, random_share=True),
    "entropy": Strategy(select_entropy),
    "mix": Strategy(select_mix, random_share=True),
    "diverse": Strategy(select_diverse, features=True),
    "entropy_wide": Strategy(partial(select_entropy, wide=True)),
    "mix_wide": Strategy(partial(select_mix, wide=True), random_share=True),
    "coreset": Strategy(select_coreset, features=True),
}


# `recommended` is an alias: the rule the label-efficiency study supports (docs/label-efficiency.md,
# issue 11), with the scoring calibration it was measured with. Configs that name it follow the evidence
# when it changes; an arm named `recommended` draws the same random numbers as the rule itself
# (detal.round.selection_rng resolves the alias), so it is the study's `wide_temperature` arm exactly.
RECOMMENDED = "entropy_wide"
RECOMMENDED_CALIBRATION = "temperature"
ALIASES = {"recommended": RECOMMENDED}
STRATEGIES["recommended"] = replace(STRATEGIES[RECOMMENDED], calibration=RECOMMENDED_CALIBRATION)
# entropy_wide ranked by uncertainty per expected annotation second (issue 23): the same subset and score, divided
# by what the image's own pre-labels are expected to cost (detal.cost.expected_seconds)
STRATEGIES["entropy_per_second"] = Strategy(partial(select_entropy, wide=True, per_second=True), seconds=True)


def resolve(name: str) -> str:
    """The registered rule a strategy name stands for (aliases resolved; other names unchanged)."""
    return ALIASES.get(name, name)


def with_random_share() -> list[str]:
    """Registered rules whose batches hold a uniformly drawn share (aliases left out)."""
    return [n for n, st in STRATEGIES.items() if st.random_share and n not in ALIASES]


def strategy(name: str) -> Strategy:
    return lookup(STRATEGIES, name, "selection strategy")


def select(
    name: str,
    pool: np.ndarray,
    budget: int,
    rng: np.random.Generator,
    score_fn: ScoreFn,
    params: SelectionConfig = SelectionConfig(),
    labelled_class_counts: np.ndarray | None = None,
) -> Selection:
    """Choose min(budget, len(pool)) unique ids from `pool` with the named strategy.

    `labelled_class_counts` (boxes per class in the labelled set) is needed when class_balance > 0.
    """
    fn = strategy(name).run
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
        raise InvalidOption(f"budget must be an integer >= 0, got {budget!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (np.random.default_rng(seed)); no global RNG")
    if not isinstance(params, SelectionConfig):
        raise TypeError(f"params must be a detal.config.SelectionConfig, got {type(params).__name__}")
    p = _Params(params, _checked_counts(labelled_class_counts, params))
    pool = _checked_pool(pool)
    n = min(int(budget), len(pool))
    if n == 0:
        return _empty()
    return fn(pool, n, rng, score_fn, p)
