"""Selection strategies: one contract for every registered strategy, then each strategy's own promise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detal.acquisition.selection import (
    STRATEGIES,
    Scored,
    Selection,
    class_balance_weights,
    k_center_greedy,
    select,
    with_random_share,
)
from detal.config import SelectionConfig, parse_config
from detal.errors import ConfigError

UNIVERSE = 300  # image ids 0..299; whatever is not in the pool plays the labelled + val images


class FakeScorer:
    """Scores, features and predicted classes fixed per id (so order of scoring cannot matter); logs calls."""

    def __init__(self, seed=0, d=6, nc=4, ties=False, features=True):
        rng = np.random.default_rng(seed)
        self.scores = rng.integers(0, 4, UNIVERSE).astype(float) if ties else rng.random(UNIVERSE)
        self.features = rng.normal(size=(UNIVERSE, d)) if features else None
        self.classes = [rng.integers(0, nc, size=rng.integers(0, 4)) for _ in range(UNIVERSE)]
        self.seconds = 3.0 + 7.0 * rng.random(UNIVERSE)  # expected annotation seconds per image
        self.calls: list[np.ndarray] = []

    def __call__(self, ids: np.ndarray) -> Scored:
        assert ids.dtype.kind == "i"
        self.calls.append(np.array(ids, copy=True))
        feats = None if self.features is None else self.features[ids]
        return Scored(self.scores[ids], feats, [self.classes[i] for i in ids], self.seconds[ids])

    @property
    def seen(self) -> np.ndarray:
        return np.concatenate(self.calls) if self.calls else np.zeros(0, np.int64)


def run(strategy, pool, budget, seed, params=SelectionConfig(), scorer=None, counts=None) -> tuple[Selection, FakeScorer]:
    scorer = scorer or FakeScorer()
    return select(strategy, pool, budget, np.random.default_rng(seed), scorer, params, counts), scorer


@st.composite
def problems(draw):
    in_pool = draw(st.lists(st.booleans(), min_size=UNIVERSE, max_size=UNIVERSE))
    pool = np.flatnonzero(in_pool)
    budget = draw(st.integers(0, len(pool) + 10))
    cb = draw(st.sampled_from([0.0, 0.5, 2.0]))
    params = SelectionConfig(
        subset_fraction=draw(st.floats(0.01, 1.0)),
        mix_ratio=draw(st.floats(0.0, 1.0)),
        candidate_factor=draw(st.floats(1.0, 5.0)),
        class_balance=cb,
    )
    return pool, budget, draw(st.integers(0, 2**32 - 1)), params, (np.array([50, 10, 1, 0]) if cb else None)


# ---------------------------------------------------------------- the contract, every strategy


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@settings(max_examples=40, deadline=None)
@given(problem=problems(), ties=st.booleans())
def test_contract_every_strategy(strategy, problem, ties):
    pool, budget, seed, params, counts = problem
    sel, scorer = run(strategy, pool, budget, seed, params, FakeScorer(ties=ties), counts)
    n = min(budget, len(pool))

    assert isinstance(sel, Selection)
    assert sel.ids.dtype == np.int64 and sel.ids.shape == (n,)
    assert len(np.unique(sel.ids)) == n  # unique
    assert np.isin(sel.ids, pool).all()  # never a labelled or val image
    assert sel.scores.shape == (n,) and len(sel.sources) == n
    # the scorer only ever sees pool ids, at most once per strategy, and n_scored counts them
    assert len(scorer.calls) <= 1
    assert sel.n_scored == len(scorer.seen)
    assert np.isin(scorer.seen, pool).all() and len(np.unique(scorer.seen)) == len(scorer.seen)
    scored = np.array([s != "random" for s in sel.sources], dtype=bool)
    assert np.isfinite(sel.scores[scored]).all()
    assert np.isin(sel.ids[scored], scorer.seen).all()  # uncertainty picks come from scored images

    # same seed -> same selection; the order of the pool does not matter either
    shuffled = np.random.default_rng(seed).permutation(pool)
    again, _ = run(strategy, shuffled, budget, seed, params, FakeScorer(ties=ties), counts)
    np.testing.assert_array_equal(again.ids, sel.ids)
    np.testing.assert_array_equal(again.scores, sel.scores)
    assert again.sources == sel.sources and again.n_scored == sel.n_scored


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_pool_smaller_than_budget_returns_whole_pool(strategy):
    pool = np.array([7, 3, 11, 42])
    sel, _ = run(strategy, pool, 10, 0, SelectionConfig(subset_fraction=0.2))
    assert sorted(sel.ids.tolist()) == [3, 7, 11, 42]


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_empty_pool_and_zero_budget_score_nothing(strategy):
    for pool, budget in [(np.zeros(0, np.int64), 5), (np.arange(20), 0)]:
        sel, scorer = run(strategy, pool, budget, 0)
        assert sel.ids.shape == (0,) and sel.n_scored == 0 and scorer.calls == []


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_different_seeds_give_different_selections(strategy):
    pool = np.arange(UNIVERSE)
    picks = {tuple(run(strategy, pool, 10, seed)[0].ids.tolist()) for seed in range(5)}
    assert len(picks) > 1


# ---------------------------------------------------------------- random


def test_random_never_scores_and_is_roughly_uniform():
    pool = np.arange(100)
    hits = np.zeros(UNIVERSE)
    for seed in range(400):
        sel, scorer = run("random", pool, 10, seed)
        assert scorer.calls == [] and sel.n_scored == 0 and np.isnan(sel.scores).all()
        hits[sel.ids] += 1
    # each id is picked with probability 0.1: 40 expected of 400, binomial sd 6
    assert hits[:100].min() > 15 and hits[:100].max() < 70


# ---------------------------------------------------------------- the random subset rule


@pytest.mark.parametrize("strategy", ["entropy", "mix", "diverse"])
@pytest.mark.parametrize(
    "frac,n_pool,budget,expect",
    [(0.2, 250, 10, 50), (0.2, 101, 5, 21), (0.2, 100, 30, 30), (0.2, 100, 50, 50), (1.0, 80, 5, 80)],
)
def test_only_a_random_subset_is_scored(strategy, frac, n_pool, budget, expect):
    # ceil(frac * pool) images, but at least as many as the strategy must rank (mix: its uncertain share)
    if strategy == "mix":
        expect = max(math.ceil(frac * n_pool), math.floor(0.5 * budget + 0.5))
    pool = np.arange(UNIVERSE - n_pool, UNIVERSE)
    params = SelectionConfig(subset_fraction=frac)
    seen = []
    for seed in range(3):
        sel, scorer = run(strategy, pool, budget, seed, params)
        assert len(scorer.calls) == 1 and sel.n_scored == expect == len(scorer.seen)
        seen.append(set(scorer.seen.tolist()))
    if expect < n_pool:
        assert len(seen[0] | seen[1] | seen[2]) > expect  # a different random subset per seed


@settings(max_examples=50, deadline=None)
@given(problem=problems())
def test_entropy_is_top_k_of_the_scored_subset(problem):
    pool, budget, seed, params, counts = problem
    scorer = FakeScorer(ties=True)
    sel, _ = run("entropy", pool, budget, seed, params, scorer, counts)
    seen = scorer.seen
    w = np.ones(len(seen))
    if params.class_balance:
        w = class_balance_weights([scorer.classes[i] for i in seen], counts, params.class_balance)
    ranked = sorted(zip(seen.tolist(), (scorer.scores[seen] * w).tolist()), key=lambda t: (-t[1], t[0]))
    want = [i for i, _ in ranked[: min(budget, len(pool))]]
    assert sel.ids.tolist() == want
    assert sel.sources == ("uncertainty",) * len(want)


# ---------------------------------------------------------------- mix


@pytest.mark.parametrize(
    "budget,ratio,n_unc", [(10, 0.5, 5), (5, 0.5, 3), (10, 0.3, 3), (7, 0.3, 2), (1, 0.3, 0), (4, 1.0, 4), (3, 0.5, 2), (6, 0.0, 0)]
)
def test_mix_ratio_rounds_half_up(budget, ratio, n_unc):
    sel, scorer = run("mix", np.arange(200), budget, 1, SelectionConfig(mix_ratio=ratio))
    assert sel.sources.count("uncertainty") == n_unc
    assert sel.sources.count("random") == budget - n_unc
    assert sel.sources[:n_unc] == ("uncertainty",) * n_unc  # uncertainty picks first
    if n_unc == 0:
        assert scorer.calls == [] and sel.n_scored == 0


def test_mix_uncertain_half_is_entropy_top_and_random_half_reaches_unscored_images():
    pool = np.arange(UNIVERSE)
    outside = 0
    for seed in range(20):
        scorer = FakeScorer()
        sel, _ = run("mix", pool, 20, seed, SelectionConfig(subset_fraction=0.2, mix_ratio=0.5), scorer)
        seen = scorer.seen
        top = seen[np.lexsort((seen, -scorer.scores[seen]))[:10]]
        np.testing.assert_array_equal(sel.ids[:10], top)
        rand = sel.ids[10:]
        outside += int((~np.isin(rand, seen)).sum())
        # random picks that were scored keep their score, the others carry NaN
        np.testing.assert_array_equal(np.isnan(sel.scores[10:]), ~np.isin(rand, seen))
    # random half drawn from the whole remaining pool: ~80% of picks were never scored
    assert 0.65 < outside / 200 < 0.95


# ---------------------------------------------------------------- diverse


def clustered_scorer(n_clusters=5, per=40, d=8, seed=0):
    """Tight clusters along distinct directions; cluster 0 is the most uncertain by far."""
    rng = np.random.default_rng(seed)
    centers = np.eye(d)[:n_clusters] * 3.0
    cluster = np.repeat(np.arange(n_clusters), per)
    scorer = FakeScorer(seed=seed, d=d)
    n = n_clusters * per
    scorer.features[:n] = centers[cluster] + rng.normal(scale=0.05, size=(n, d))
    scorer.scores[:n] = rng.random(n) * 0.5 + np.where(cluster == 0, 0.5, 0.0)
    return scorer, np.arange(n), cluster


def test_diverse_covers_every_cluster_where_entropy_piles_into_one():
    scorer, pool, cluster = clustered_scorer()
    params = SelectionConfig(subset_fraction=1.0, candidate_factor=40.0)
    sel, _ = run("diverse", pool, 5, 0, params, scorer)
    assert sorted(cluster[sel.ids].tolist()) == [0, 1, 2, 3, 4]
    assert sel.ids[0] == pool[np.argmax(scorer.scores[pool])]  # starts from the most uncertain
    assert sel.sources == ("diversity",) * 5
    ent, _ = run("entropy", pool, 5, 0, params, clustered_scorer()[0])
    assert set(cluster[ent.ids].tolist()) == {0}


def test_diverse_with_candidate_factor_one_is_entropy():
    pool = np.arange(UNIVERSE)
    params = SelectionConfig(candidate_factor=1.0)
    div, _ = run("diverse", pool, 12, 3, params)
    ent, _ = run("entropy", pool, 12, 3, params)
    assert sorted(div.ids.tolist()) == sorted(ent.ids.tolist())


def test_diverse_ignores_feature_scale():
    # features are L2-normalised: 100 x e1 is the same direction as e1, e2 is the new information
    scorer = FakeScorer(d=3)
    scorer.features[:3] = [[1.0, 0.0, 0.0], [100.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    scorer.scores[:3] = [0.9, 0.8, 0.1]
    sel, _ = run("diverse", np.arange(3), 2, 0, SelectionConfig(subset_fraction=1.0, candidate_factor=5.0), scorer)
    assert sel.ids.tolist() == [0, 2]
    # and on the clusters, arbitrary per-image scales do not break the one-per-cluster cover
    scorer, pool, cluster = clustered_scorer()
    scorer.features[pool] *= np.random.default_rng(1).uniform(0.1, 10.0, size=(len(pool), 1))
    sel, _ = run("diverse", pool, 5, 0, SelectionConfig(subset_fraction=1.0, candidate_factor=40.0), scorer)
    assert sorted(cluster[sel.ids].tolist()) == [0, 1, 2, 3, 4]


def test_diverse_without_features_is_a_clear_error():
    with pytest.raises(ValueError, match="needs image features.*features=None"):
        run("diverse", np.arange(50), 5, 0, scorer=FakeScorer(features=False))


# ---------------------------------------------------------------- coreset


def test_coreset_covers_every_cluster_and_ignores_uncertainty():
    scorer, pool, cluster = clustered_scorer()  # cluster 0 is by far the most uncertain
    params = SelectionConfig(subset_fraction=1.0)
    starts = set()
    for seed in range(6):
        sel, _ = run("coreset", pool, 5, seed, params, scorer)
        assert sorted(cluster[sel.ids].tolist()) == [0, 1, 2, 3, 4]  # one per cluster, whatever the scores
        assert sel.sources == ("diversity",) * 5
        np.testing.assert_array_equal(sel.scores, scorer.scores[sel.ids])  # reported, not used to rank
        starts.add(int(cluster[sel.ids[0]]))
    assert len(starts) > 1  # the first centre is a random image, not the most uncertain one


def test_coreset_scores_a_wide_random_subset():
    pool = np.arange(UNIVERSE)
    sel, scorer = run("coreset", pool, 10, 0, SelectionConfig(subset_fraction=0.05, min_subset_factor=6.0))
    assert sel.n_scored == 60 == len(scorer.seen)  # max(6 x 10, 5% of 300 = 15)
    assert np.isin(sel.ids, scorer.seen).all()


def test_coreset_without_features_is_a_clear_error():
    with pytest.raises(ValueError, match="needs image features.*features=None"):
        run("coreset", np.arange(50), 5, 0, scorer=FakeScorer(features=False))


def naive_k_center(x, k):
    chosen = [0]
    while len(chosen) < min(k, len(x)):
        d = np.array([min(np.linalg.norm(x[i] - x[j]) for j in chosen) for i in range(len(x))])
        d[chosen] = -1
        chosen.append(int(np.argmax(d)))
    return chosen


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), d=st.integers(1, 6), k=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_k_center_greedy_matches_naive_farthest_first(n, d, k, seed):
    x = np.random.default_rng(seed).normal(size=(n, d))
    got = k_center_greedy(x, k)
    assert got.tolist() == naive_k_center(x, k)
    # covering radius: every row lies within the distance of the last pick to its nearest earlier pick
    if len(got) < n and len(got) > 1:
        radius = min(np.linalg.norm(x[got[-1]] - x[j]) for j in got[:-1])
        cover = np.linalg.norm(x[:, None, :] - x[got[:-1]][None], axis=2).min(axis=1)
        assert cover.max() <= radius + 1e-9


def test_k_center_greedy_on_a_line():
    x = np.arange(11.0)[:, None]
    assert k_center_greedy(x, 3).tolist() == [0, 10, 5]
    assert k_center_greedy(np.zeros((4, 2)), 3).tolist() == [0, 1, 2]  # duplicates: earlier rows first
    assert k_center_greedy(x, 0).tolist() == []


# ---------------------------------------------------------------- class balance


def test_class_balance_weights_formula_and_direction():
    counts = np.array([96.0, 0.0, 0.0, 0.0])  # sum 96, nc 4: rarity = 100 / (4 (n_c + 1))
    rarity = 100 / (4 * (counts + 1))
    classes = [np.array([0]), np.array([1]), np.array([0, 2]), np.array([], np.int64)]
    w = class_balance_weights(classes, counts, 1.0)
    np.testing.assert_allclose(w, [rarity[0], rarity[1], rarity[2], 1.0])
    assert w[1] > 1 > w[0]
    np.testing.assert_allclose(class_balance_weights(classes, counts, 0.5), np.sqrt(w))
    np.testing.assert_allclose(class_balance_weights(classes, counts, 0.0), 1.0)
    # uniform labelled counts: every class at its share, weight 1
    np.testing.assert_allclose(class_balance_weights(classes, np.full(4, 25.0), 2.0), 1.0)
    with pytest.raises(ValueError, match="outside the 4 classes"):
        class_balance_weights([np.array([4])], counts, 1.0)


@pytest.mark.parametrize("strategy", ["entropy", "mix", "diverse"])
def test_class_balance_favours_images_of_rare_classes(strategy):
    pool = np.arange(100)
    scorer = FakeScorer()
    scorer.scores[:] = 0.5
    scorer.scores[:90] = 0.6  # common-class images are a bit more uncertain...
    for i in range(100):
        scorer.classes[i] = np.array([0 if i < 90 else 3])  # ...but class 3 is rare in the labelled set
    counts = np.array([500, 200, 100, 2])
    base = dict(subset_fraction=1.0, mix_ratio=1.0, candidate_factor=1.0)
    off, _ = run(strategy, pool, 5, 0, SelectionConfig(**base), scorer, counts)
    on, _ = run(strategy, pool, 5, 0, SelectionConfig(class_balance=1.0, **base), scorer, counts)
    assert (off.ids < 90).all()
    assert (on.ids >= 90).all()


def test_class_balance_needs_classes_from_the_scorer():
    def no_classes(ids):
        return Scored(np.ones(len(ids)))

    params = SelectionConfig(class_balance=1.0)
    with pytest.raises(ValueError, match="Scored.classes"):
        select("entropy", np.arange(10), 2, np.random.default_rng(0), no_classes, params, np.ones(3))


# ---------------------------------------------------------------- validation


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)


def test_unknown_strategy_lists_valid_names_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown selection strategy 'entrop'; valid: coreset, diverse, entropy, entropy_per_second, entropy_wide, mix, mix_wide, random, recommended\. Did you mean 'entropy'\?") as e:
        run("entrop", np.arange(10), 2, 0)
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(subset_fraction=0.0), "selection.subset_fraction: Input should be greater than 0"),
        (dict(subset_fraction=1.5), "selection.subset_fraction: Input should be less than or equal to 1"),
        (dict(mix_ratio=-0.1), r"selection.mix_ratio: Input should be greater than or equal to 0"),
        (dict(mix_ratio=1.01), "selection.mix_ratio"),
        (dict(mix_ratio=float("nan")), "selection.mix_ratio"),
        (dict(candidate_factor=0.5), "selection.candidate_factor"),
        (dict(class_balance=-1.0), "selection.class_balance"),
    ],
)
def test_bad_params_are_one_line_config_errors(kwargs, match):
    # validated once, where the config is loaded; the strategies trust SelectionConfig
    with pytest.raises(ConfigError, match=match) as e:
        parse_config({"data": "d.yaml", "selection": kwargs})
    _one_line(e)


@pytest.mark.parametrize("counts,match", [(None, "needs labelled_class_counts"), (np.array([1, -2]), "non-negative")])
def test_bad_class_counts(counts, match):
    with pytest.raises(ValueError, match=match) as e:
        run("entropy", np.arange(10), 2, 0, SelectionConfig(class_balance=1.0), counts=counts)
    _one_line(e)


@pytest.mark.parametrize(
    "pool,budget,match",
    [
        (np.arange(10), -1, "budget"),
        (np.arange(10), 2.5, "budget"),
        (np.array([1, 2, 2]), 1, "unique"),
        (np.array([1.0, 2.0]), 1, "integers"),
        (np.arange(6).reshape(2, 3), 1, "1-D"),
    ],
)
def test_bad_pool_or_budget(pool, budget, match):
    with pytest.raises(ValueError, match=match) as e:
        run("random", pool, budget, 0)
    _one_line(e)


def test_rng_must_be_a_generator():
    with pytest.raises(TypeError, match="Generator"):
        select("random", np.arange(5), 2, 0, FakeScorer())


def test_bad_scorer_answers_are_caught():
    with pytest.raises(ValueError, match="shape"):
        select("entropy", np.arange(20), 2, np.random.default_rng(0), lambda ids: Scored(np.ones(3)))
    with pytest.raises(ValueError, match="NaN or inf"):
        select("entropy", np.arange(20), 2, np.random.default_rng(0), lambda ids: Scored(np.full(len(ids), np.nan)))
    with pytest.raises(TypeError, match="Scored"):
        select("entropy", np.arange(20), 2, np.random.default_rng(0), lambda ids: np.ones(len(ids)))


# ---------------------------------------------------------------- minimum subset size (entropy_wide, mix_wide)


@pytest.mark.parametrize(
    "strategy,n_pool,budget,factor,expect",
    [
        # the degenerate case: subset 20% of the pool (40) is barely more than the budget (30)
        ("entropy_wide", 200, 30, 5.0, 150),  # 5 x 30 ranked
        ("mix_wide", 200, 30, 5.0, 75),  # 5 x 15 ranked (the uncertain share)
        ("entropy_wide", 200, 30, 10.0, 200),  # capped by the pool
        ("entropy_wide", 290, 5, 2.0, 58),  # the fraction wins when it is larger: ceil(0.2 * 290)
        ("mix_wide", 200, 1, 5.0, 40),  # uncertain share 1 (half of 1 rounds up): fraction wins
    ],
)
def test_wide_strategies_score_at_least_factor_times_what_they_rank(strategy, n_pool, budget, factor, expect):
    pool = np.arange(UNIVERSE - n_pool, UNIVERSE)
    sel, scorer = run(strategy, pool, budget, 3, SelectionConfig(subset_fraction=0.2, min_subset_factor=factor))
    assert sel.n_scored == expect == len(scorer.seen)


@pytest.mark.parametrize("wide,plain", [("entropy_wide", "entropy"), ("mix_wide", "mix")])
def test_wide_strategy_is_its_reference_rule_on_a_wider_subset(wide, plain):
    # same rng stream: with a factor that does not widen the subset, the wide rule picks exactly what the
    # reference picks (so the only change is the subset size); with a wide subset it ranks more images
    pool = np.arange(UNIVERSE)
    for seed in range(5):
        narrow, _ = run(wide, pool, 10, seed, SelectionConfig(subset_fraction=0.5, min_subset_factor=1.0))
        ref, _ = run(plain, pool, 10, seed, SelectionConfig(subset_fraction=0.5))
        np.testing.assert_array_equal(narrow.ids, ref.ids)
    sc = FakeScorer()
    sel, _ = run(wide, pool, 20, 0, SelectionConfig(subset_fraction=0.1, min_subset_factor=10.0), sc)
    n_unc = sel.sources.count("uncertainty")
    seen = sc.seen
    assert len(seen) == min(UNIVERSE, 10 * n_unc)
    np.testing.assert_array_equal(sel.ids[:n_unc], seen[np.lexsort((seen, -sc.scores[seen]))[:n_unc]])


def test_reference_rules_ignore_min_subset_factor():
    # entropy and mix are the reference: the factor must not change what they score or pick
    pool = np.arange(UNIVERSE)
    for strategy in ("entropy", "mix", "diverse"):
        a, sa = run(strategy, pool, 30, 1, SelectionConfig(min_subset_factor=1.0))
        b, sb = run(strategy, pool, 30, 1, SelectionConfig(min_subset_factor=8.0))
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(sa.seen, sb.seen)


def test_recommended_is_an_alias_of_a_registered_rule():
    from detal.acquisition.selection import RECOMMENDED, RECOMMENDED_CALIBRATION, resolve
    from detal.round import selection_rng

    assert RECOMMENDED in STRATEGIES and RECOMMENDED != "recommended"
    assert resolve("recommended") == RECOMMENDED and resolve("mix") == "mix"
    alias, rule = STRATEGIES["recommended"], STRATEGIES[RECOMMENDED]
    # the same rule, plus the calibration the study measured it with (detal.config.scoring_calibration)
    assert alias.run is rule.run and (alias.scores, alias.features, alias.random_share) == (
        rule.scores, rule.features, rule.random_share)
    assert alias.calibration == RECOMMENDED_CALIBRATION and rule.calibration is None
    assert all(st.calibration is None for n, st in STRATEGIES.items() if n != "recommended")
    # same seed: an arm named `recommended` draws exactly what the rule's own arm draws
    for seed in range(3):
        a = select("recommended", np.arange(UNIVERSE), 25, selection_rng(seed, "recommended"), FakeScorer())
        b = select(RECOMMENDED, np.arange(UNIVERSE), 25, selection_rng(seed, RECOMMENDED), FakeScorer())
        np.testing.assert_array_equal(a.ids, b.ids)
    cfg = parse_config({"data": "d/data.yaml", "strategies": ["random", "recommended"]})
    assert cfg.strategies == ("random", "recommended")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_random_share_is_declared_by_the_strategies_that_draw_one(name):
    """`detal status` names these when its pre-label columns are empty: the flag must match what a batch holds."""
    sel, _ = run(name, np.arange(200), 20, seed=1)
    declared = name in with_random_share() or (name == "recommended" and STRATEGIES[name].random_share)
    assert ("random" in sel.sources) == declared
    assert "recommended" not in with_random_share()


def test_entropy_per_second_ranks_by_score_per_expected_second():
    scorer = FakeScorer(seed=4)
    pool = np.arange(200)
    per_sec = select("entropy_per_second", pool, 10, np.random.default_rng(7), scorer)
    plain = select("entropy_wide", pool, 10, np.random.default_rng(7), FakeScorer(seed=4))
    sub = scorer.calls[0]
    ratio = scorer.scores[sub] / scorer.seconds[sub]
    expected = sub[np.lexsort((sub, -ratio))][:10]
    assert np.array_equal(per_sec.ids, expected)
    assert np.allclose(per_sec.scores, scorer.scores[expected] / scorer.seconds[expected])
    assert not np.array_equal(np.sort(per_sec.ids), np.sort(plain.ids))  # dividing by seconds changed the pick
    # a cheaper image with the same score ranks first
    twin = FakeScorer(seed=4)
    twin.scores[:] = 1.0
    cheap = select("entropy_per_second", pool, 1, np.random.default_rng(7), twin)
    assert twin.seconds[cheap.ids[0]] == twin.seconds[twin.calls[0]].min()


def test_entropy_per_second_needs_positive_seconds():
    for bad in (None, np.zeros(0), -1.0):
        def fn(ids, bad=bad):
            secs = None if bad is None else (np.full(len(ids), bad) if np.ndim(bad) == 0 else bad)
            return Scored(np.ones(len(ids)), seconds=secs)

        with pytest.raises(ValueError, match="Scored.seconds"):
            select("entropy_per_second", np.arange(50), 3, np.random.default_rng(0), fn)
