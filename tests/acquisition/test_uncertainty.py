"""Per-box measures and per-image reductions: known values, directions, properties, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from detal.errors import ConfigError
from detal.registry import InvalidOption
from detal.acquisition.uncertainty import (
    MEASURES,
    REDUCTIONS,
    box_scores,
    check_scoring_options,
    class_difficulty,
    class_targets,
    difficulty_weights,
    fit_temperature,
    image_scores,
    measure_bound,
    temperature_scale,
)

ALL_MEASURES = sorted(MEASURES)  # class-vector measures; `flip` (a paired measure) is tested below
ALL_REDUCTIONS = sorted(REDUCTIONS)

probs_elems = st.floats(0.0, 1.0, allow_nan=False, width=32)


@st.composite
def box_arrays(draw, min_boxes=0, max_boxes=8):
    c = draw(st.integers(1, 6))
    n = draw(st.integers(min_boxes, max_boxes))
    return draw(arrays(np.float64, (n, c), elements=probs_elems))


@st.composite
def images(draw, max_images=6):
    c = draw(st.integers(1, 5))
    n_img = draw(st.integers(1, max_images))
    return [
        draw(arrays(np.float64, (draw(st.integers(0, 6)), c), elements=probs_elems)) for _ in range(n_img)
    ]


# ---------------------------------------------------------------- known values


@pytest.mark.parametrize("c", [2, 3, 10, 80])
def test_entropy_uniform_is_log_c_and_one_hot_is_zero(c):
    for level in (1.0 / c, 0.05, 0.7):  # normalisation makes the scale irrelevant
        assert box_scores(np.full((1, c), level), "entropy")[0] == pytest.approx(math.log(c))
    assert box_scores(np.eye(c), "entropy") == pytest.approx(np.zeros(c), abs=1e-12)


def test_entropy_bg_known_values():
    # sums to 1: no background column, plain entropy
    assert box_scores(np.full((1, 4), 0.25), "entropy_bg")[0] == pytest.approx(math.log(4))
    # 0.5 on one class, background 0.5 -> log 2
    assert box_scores(np.array([[0.5, 0.0, 0.0]]), "entropy_bg")[0] == pytest.approx(math.log(2))
    # sum > 1: renormalised, same as entropy
    p = np.array([[0.9, 0.8, 0.1]])
    assert box_scores(p, "entropy_bg")[0] == pytest.approx(box_scores(p, "entropy")[0])
    assert box_scores(np.array([[1.0, 0.0]]), "entropy_bg")[0] == pytest.approx(0.0, abs=1e-12)


def test_binary_entropy_margin_least_confidence_known_values():
    p = np.array([[0.5, 0.1, 0.0], [0.9, 0.6, 0.2], [1.0, 0.0, 0.0], [0.3, 0.3, 0.3]])
    t = np.array([0.5, 0.9, 1.0, 0.3])
    h = -(t * np.log(t) + np.where(t < 1, (1 - t) * np.log(np.where(t < 1, 1 - t, 1)), 0))
    assert box_scores(p, "binary_entropy") == pytest.approx(h)
    assert box_scores(p, "binary_entropy")[0] == pytest.approx(math.log(2))
    assert box_scores(p, "margin") == pytest.approx([1 - 0.4, 1 - 0.3, 0.0, 1.0])
    assert box_scores(p, "least_confidence") == pytest.approx([0.5, 0.1, 0.0, 0.7])
    # one class: the runner-up is 0
    assert box_scores(np.array([[0.8]]), "margin") == pytest.approx([0.2])


def test_logit_entropy_undoes_the_sigmoid():
    logits = np.array([[2.0, 0.5, -1.0]])
    p = 1 / (1 + np.exp(-logits))
    q = np.exp(logits) / np.exp(logits).sum()
    assert box_scores(p, "logit_entropy")[0] == pytest.approx(-(q * np.log(q)).sum())


@pytest.mark.parametrize("measure", ALL_MEASURES)
def test_zero_boxes_and_zero_vectors_are_safe(measure):
    assert box_scores(np.zeros((0, 5)), measure).shape == (0,)
    s = box_scores(np.zeros((3, 5)), measure)
    assert s.shape == (3,) and np.isfinite(s).all() and (s >= 0).all()


# ---------------------------------------------------------------- directions


@pytest.mark.parametrize("measure", ALL_MEASURES)
def test_more_disagreement_between_classes_scores_higher(measure):
    # a confident box drifting toward a tie between two classes, total mass kept at 1
    ts = np.linspace(0.0, 1.0, 11)
    p = np.array([[1 - t / 2, t / 2, 0.0, 0.0] for t in ts])
    s = box_scores(p, measure)
    assert (np.diff(s) >= -1e-12).all(), s
    assert s[-1] > s[0] + 0.1


@pytest.mark.parametrize("measure", ["entropy_bg", "binary_entropy", "margin", "least_confidence"])
def test_lower_confidence_scores_higher_for_confidence_aware_measures(measure):
    conf = np.linspace(0.95, 0.5, 10)
    p = np.stack([conf, np.zeros_like(conf), np.zeros_like(conf)], axis=1)
    s = box_scores(p, measure)
    assert (np.diff(s) > 0).all(), s


def test_entropy_is_blind_to_overall_confidence():
    # documented trade-off of the default: scale-invariant, so only between-class confusion counts
    p = np.array([[0.9, 0.3, 0.0], [0.3, 0.1, 0.0]])
    s = box_scores(p, "entropy")
    assert s[0] == pytest.approx(s[1])


# ---------------------------------------------------------------- box-level properties


@pytest.mark.parametrize("measure", ALL_MEASURES)
@settings(max_examples=60, deadline=None)
@given(p=box_arrays())
def test_box_scores_finite_nonnegative_bounded_and_row_independent(measure, p):
    s = box_scores(p, measure)
    assert s.shape == (len(p),)
    assert np.isfinite(s).all() and (s >= 0).all()
    assert (s <= measure_bound(measure, p.shape[1]) + 1e-9).all()
    perm = np.random.default_rng(0).permutation(len(p))
    np.testing.assert_allclose(box_scores(p[perm], measure), s[perm], atol=1e-12)


@pytest.mark.parametrize("measure", ALL_MEASURES)
@settings(max_examples=40, deadline=None)
@given(p=box_arrays(min_boxes=1))
def test_measures_do_not_depend_on_class_order(measure, p):
    perm = np.random.default_rng(1).permutation(p.shape[1])
    np.testing.assert_allclose(box_scores(p[:, perm], measure), box_scores(p, measure), atol=1e-9)


# ---------------------------------------------------------------- image-level properties


@pytest.mark.parametrize("reduction", ALL_REDUCTIONS)
@pytest.mark.parametrize("measure", ["entropy", "binary_entropy", "margin"])
@settings(max_examples=40, deadline=None)
@given(imgs=images(), seed=st.integers(0, 2**16))
def test_image_scores_finite_nonnegative_and_box_permutation_invariant(reduction, measure, imgs, seed):
    s = image_scores(imgs, measure=measure, reduction=reduction)
    assert s.shape == (len(imgs),) and s.dtype == np.float64
    assert np.isfinite(s).all() and (s >= 0).all()
    rng = np.random.default_rng(seed)
    shuffled = [a[rng.permutation(len(a))] for a in imgs]
    np.testing.assert_allclose(image_scores(shuffled, measure=measure, reduction=reduction), s, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(imgs=images(), k=st.integers(1, 4))
def test_reductions_match_brute_force(imgs, k):
    per_box = [box_scores(a, "entropy") for a in imgs]
    expect = {
        "sum": [b.sum() if len(b) else 0.0 for b in per_box],
        "mean": [b.mean() if len(b) else 0.0 for b in per_box],
        "max": [b.max() if len(b) else 0.0 for b in per_box],
        "topk_mean": [np.sort(b)[::-1][:k].mean() if len(b) else 0.0 for b in per_box],
    }
    for red, want in expect.items():
        np.testing.assert_allclose(image_scores(imgs, reduction=red, topk=k), want, atol=1e-12)


@pytest.mark.parametrize("reduction", ALL_REDUCTIONS)
@pytest.mark.parametrize("measure", ALL_MEASURES)
def test_empty_images_follow_the_policy(reduction, measure):
    c = 4
    busy = np.array([[0.4, 0.35, 0.2, 0.05], [0.9, 0.0, 0.1, 0.0]])
    imgs = [np.zeros((0, c)), busy, np.zeros((0, c))]
    zero = image_scores(imgs, measure, reduction, empty="zero")
    assert zero[0] == zero[2] == 0.0 and zero[1] > 0
    top = image_scores(imgs, measure, reduction, empty="max")
    assert top[0] == top[2] == pytest.approx(measure_bound(measure, c))
    if reduction != "sum":  # one maximally uncertain box ranks at least as high as any real image
        assert top[0] >= top[1]
    assert image_scores(imgs, measure, reduction, empty=0.123)[[0, 2]] == pytest.approx([0.123, 0.123])
    assert image_scores(imgs, measure, reduction, empty=0.123)[1] == pytest.approx(zero[1])


@settings(max_examples=60, deadline=None)
@given(imgs=images(), conf=st.floats(0.0, 1.0))
def test_score_conf_drops_boxes_below_threshold(imgs, conf):
    kept = [a[a.max(axis=1) >= conf] for a in imgs]
    got = image_scores(imgs, reduction="sum", score_conf=conf, empty=-1.0)
    np.testing.assert_allclose(got, image_scores(kept, reduction="sum", empty=-1.0), atol=1e-12)
    # an image whose every box is below the threshold is an empty image
    for g, k in zip(got, kept):
        if len(k) == 0:
            assert g == -1.0


def test_score_conf_changes_the_ranking():
    confident = np.array([[0.9, 0.05, 0.0]])
    faint_confused = np.array([[0.1, 0.1, 0.1]] * 3)
    s_all = image_scores([confident, faint_confused])
    s_conf = image_scores([confident, faint_confused], score_conf=0.25)
    assert s_all[1] > s_all[0]
    assert s_conf[1] == 0.0 and s_conf[0] > 0


def test_sum_favours_crowded_images_and_mean_does_not():
    box = np.array([[0.5, 0.4, 0.1]])
    crowded = np.repeat(box, 10, axis=0)
    assert image_scores([box, crowded], reduction="sum")[1] == pytest.approx(10 * image_scores([box])[0])
    mean = image_scores([box, crowded], reduction="mean")
    assert mean[0] == pytest.approx(mean[1])


# ---------------------------------------------------------------- validation


def test_unknown_names_list_valid_ones_and_suggest_the_near_miss():
    with pytest.raises(ValueError, match=r"unknown uncertainty measure 'entropi'.*valid: .*margin.*'entropy'\?"):
        box_scores(np.zeros((1, 2)), "entropi")
    with pytest.raises(ValueError, match=r"unknown reduction 'topk'.*Did you mean 'topk_mean'"):
        image_scores([np.zeros((1, 2))], reduction="topk")
    with pytest.raises(ConfigError, match="empty-image policy"):
        image_scores([np.zeros((1, 2))], empty="maximum")


@pytest.mark.parametrize(
    "kwargs",
    [dict(score_conf=1.5), dict(score_conf=-0.1), dict(empty=float("nan")), dict(topk=0), dict(topk=2.5)],
)
def test_bad_options_are_one_line_value_errors(kwargs):
    with pytest.raises(ValueError) as err:
        check_scoring_options(**kwargs)
    assert "\n" not in str(err.value)


def test_bad_arrays_are_rejected():
    with pytest.raises(ValueError, match="not logits"):
        box_scores(np.array([[2.5, -1.0]]))
    with pytest.raises(ValueError, match="NaN"):
        box_scores(np.array([[np.nan, 0.1]]))
    with pytest.raises(ValueError, match="2-D"):
        box_scores(np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="2-D"):
        image_scores([np.zeros((1, 2)), np.zeros(3)])
    with pytest.raises(ValueError, match="not logits"):
        image_scores([np.zeros((1, 2)), np.array([[0.5, 3.0]])])
    with pytest.raises(ValueError, match="same number of classes"):
        image_scores([np.zeros((1, 2)), np.zeros((1, 3))])
    with pytest.raises(ValueError, match=r"\(0, C\)"):
        image_scores([np.zeros((0, 0))], empty="max")


def test_float_rounding_outside_unit_interval_is_tolerated():
    p = np.array([[1.00001, -0.00001, 0.0]], dtype=np.float32)
    assert image_scores([p], "least_confidence", "sum", empty=-1.0)[0] == pytest.approx(0.0)
    noise = np.full((1, 3), -1e-6)  # a box of rounding noise is still a box at score_conf 0 (not "empty")
    assert image_scores([noise], "least_confidence", "sum", empty=-1.0)[0] == pytest.approx(1.0)


def test_no_images_gives_empty_scores():
    assert image_scores([]).shape == (0,)


# --- flip: a box against the prediction on the mirrored image ---------------------------------------------

def test_flip_inconsistency_known_values():
    from detal.acquisition.uncertainty import flip_inconsistency

    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    p = np.array([[0.9, 0.1], [0.5, 0.5]])
    # the same prediction again: consistent, 0
    np.testing.assert_allclose(flip_inconsistency(boxes, p, boxes, p), [0, 0], atol=1e-12)
    # half-overlapping box (IoU 1/3), same classes: 1 - 1/3
    shifted = np.array([[5, 0, 15, 10]], float)
    assert flip_inconsistency(boxes[:1], p[:1], shifted, p[:1])[0] == pytest.approx(2 / 3)
    # same box, opposite one-hot classes: JS = 1 bit, fully inconsistent
    assert flip_inconsistency(boxes[:1], [[1.0, 0.0]], boxes[:1], [[0.0, 1.0]])[0] == pytest.approx(1.0)
    # nothing seen on the flipped image: 1 for every box; no box: empty
    np.testing.assert_array_equal(flip_inconsistency(boxes, p, np.zeros((0, 4)), np.zeros((0, 2))), [1, 1])
    assert flip_inconsistency(np.zeros((0, 4)), np.zeros((0, 2)), boxes, p).shape == (0,)
    # each box is matched to the flipped box it overlaps most, whatever their order
    np.testing.assert_allclose(flip_inconsistency(boxes, p, boxes[::-1], p[::-1]), [0, 0], atol=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 6), st.integers(0, 6), st.integers(0, 10**6))
def test_flip_inconsistency_is_in_unit_interval(n, m, seed):
    from detal.acquisition.uncertainty import flip_inconsistency

    rng = np.random.default_rng(seed)

    def boxes(k):
        xy = rng.uniform(0, 50, (k, 2))
        return np.hstack([xy, xy + rng.uniform(0, 30, (k, 2))])

    s = flip_inconsistency(boxes(n), rng.random((n, 3)), boxes(m), rng.random((m, 3)))
    assert s.shape == (n,) and np.isfinite(s).all() and ((s >= 0) & (s <= 1 + 1e-12)).all()


def test_flip_scores_come_as_box_values():
    probs = [np.array([[0.9, 0.1], [0.2, 0.3]]), np.zeros((0, 2)), np.array([[0.5, 0.5]])]
    values = [np.array([0.2, 0.6]), np.zeros(0), np.array([0.05])]
    np.testing.assert_allclose(image_scores(probs, "flip", "sum", box_values=values), [0.8, 0.0, 0.05])
    np.testing.assert_allclose(image_scores(probs, "flip", "max", empty="max", box_values=values), [0.6, 1.0, 0.05])
    # score_conf still drops low boxes by their top class score (0.3 < 0.4)
    np.testing.assert_allclose(image_scores(probs, "flip", "sum", score_conf=0.4, box_values=values), [0.2, 0, 0.05])
    with pytest.raises(ValueError, match="second prediction"):
        image_scores(probs, "flip")  # the class scores alone cannot give it
    with pytest.raises(ValueError, match="one score per box"):
        image_scores(probs, "flip", box_values=values[:2])
    check_scoring_options("flip")  # a config may name it
    assert measure_bound("flip", 5) == 1.0


def test_class_difficulty_known_values():
    box = np.array([[0.0, 0.0, 10.0, 10.0]])
    half = np.array([[0.0, 0.0, 10.0, 5.0]])  # IoU 0.5 with box
    d = class_difficulty(
        gt_cls=[np.array([0]), np.array([1]), np.array([0, 2])],
        gt_boxes=[box, box, np.concatenate([box, box + 20])],
        pred_cls=[np.array([0]), np.array([2]), np.array([0, 2])],  # image 2: class 1 predicted as 2
        pred_conf=[np.array([0.8]), np.array([0.9]), np.array([0.6, 0.5])],
        pred_boxes=[box, box, np.concatenate([half, box + 20])],
        n_classes=4,
    )
    # class 0: mean(1 x 0.8, 0.5 x 0.6) = 0.55; class 1: wrong class, quality 0; class 2: 1 x 0.5; class 3: unseen
    np.testing.assert_allclose(d, [0.45, 1.0, 0.5, 1.0])


def test_class_difficulty_takes_the_best_same_class_match_and_handles_empty_images():
    box = np.array([[0.0, 0.0, 10.0, 10.0]])
    d = class_difficulty([np.array([1]), np.zeros(0)], [box, np.zeros((0, 4))],
                         [np.array([1, 1]), np.array([1])], [np.array([0.3, 0.9]), np.array([0.9])],
                         [np.concatenate([box, box]), box], n_classes=2)
    np.testing.assert_allclose(d, [1.0, 0.1])
    with pytest.raises(InvalidOption, match="outside the 2 classes"):
        class_difficulty([np.array([2])], [box], [np.zeros(0)], [np.zeros(0)], [np.zeros((0, 4))], n_classes=2)


def test_difficulty_weights_average_one_and_rank_like_difficulty():
    w = difficulty_weights(np.array([0.2, 0.4, 0.6]))
    np.testing.assert_allclose(w, [0.5, 1.0, 1.5])
    np.testing.assert_allclose(difficulty_weights(np.zeros(3)), np.ones(3))


def test_class_weights_multiply_each_box_by_its_top_class_weight():
    imgs = [np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]]), np.array([[0.1, 0.1, 0.8]]), np.zeros((0, 3))]
    w = np.array([2.0, 0.5, 1.0])
    plain = [box_scores(p) for p in imgs[:2]]
    got = image_scores(imgs, class_weights=w)
    np.testing.assert_allclose(got, [2.0 * plain[0][0] + 0.5 * plain[0][1], 1.0 * plain[1][0], 0.0])
    np.testing.assert_allclose(image_scores(imgs, class_weights=np.ones(3)), image_scores(imgs))
    with pytest.raises(InvalidOption, match="one per class"):
        image_scores(imgs, class_weights=np.ones(2))


def test_temperature_scale_softens_or_sharpens_and_keeps_each_box_class_order():
    p = np.array([[0.9, 0.3, 0.01], [0.5, 0.5, 0.2]])
    np.testing.assert_array_equal(temperature_scale(p, 1.0), p)
    soft, sharp = temperature_scale(p, 2.0), temperature_scale(p, 0.5)
    np.testing.assert_allclose(soft[0, 0], 3 / (3 + 1))  # sqrt(0.9 / 0.1) = 3: odds 9 -> 3
    np.testing.assert_allclose(sharp[0, 1], 0.3**2 / (0.3**2 + 0.7**2))  # odds squared
    assert (np.abs(soft - 0.5) <= np.abs(p - 0.5) + 1e-12).all() and (np.abs(sharp - 0.5) >= np.abs(p - 0.5) - 1e-12).all()
    for q in (soft, sharp):
        np.testing.assert_array_equal(np.argsort(q, axis=1, kind="stable"), np.argsort(p, axis=1, kind="stable"))
    assert temperature_scale(np.zeros((0, 3)), 2.0).shape == (0, 3)
    for bad in (0, -1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(InvalidOption, match="temperature must be a finite number > 0"):
            temperature_scale(p, bad)


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_fit_temperature_recovers_the_temperature_the_outcomes_were_drawn_at(true_t):
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 3.0, size=(20000, 3))
    reported = 1 / (1 + np.exp(-z))  # what an over- (true_t > 1) or under-confident model says
    y = (rng.random(z.shape) < 1 / (1 + np.exp(-z / true_t))).astype(float)  # how often it is right
    t = fit_temperature(reported, y)
    assert abs(t - true_t) < 0.08 * true_t
    assert abs(fit_temperature(temperature_scale(reported, true_t), y) - 1.0) < 0.08  # calibrated: T ~ 1


def test_fit_temperature_without_evidence_is_one_and_stays_in_range():
    assert fit_temperature(np.zeros((0, 4)), np.zeros((0, 4))) == 1.0
    assert fit_temperature(np.full((3, 2), 0.5), np.ones((3, 2))) == 1.0  # every logit 0: T changes nothing
    # always right at 0.9: sharpen as far as allowed; always wrong: soften as far as allowed
    assert fit_temperature(np.array([[0.9, 0.1]] * 5), np.array([[1.0, 0.0]] * 5)) == pytest.approx(0.05)
    assert fit_temperature(np.array([[0.9, 0.1]] * 5), np.array([[0.0, 1.0]] * 5)) == pytest.approx(20.0)
    with pytest.raises(InvalidOption, match=r"targets must have the class scores' shape \(2, 2\)"):
        fit_temperature(np.full((2, 2), 0.5), np.zeros((2, 3)))


def test_class_targets_one_hot_on_the_overlapped_label_else_background():
    gt_cls, gt_boxes = np.array([2, 0]), np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    preds = np.array([[0, 0, 10, 10],      # on label 0 (class 2)
                      [20, 20, 30, 25],    # IoU 0.5 with label 1 (class 0): counts
                      [20, 20, 30, 24],    # IoU 0.4: background
                      [50, 50, 60, 60]], float)  # nothing there
    np.testing.assert_array_equal(class_targets(gt_cls, gt_boxes, preds, 3),
                                  [[0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0]])
    assert class_targets(np.zeros(0), np.zeros((0, 4)), preds, 3).sum() == 0  # no label: all background
    assert class_targets(gt_cls, gt_boxes, np.zeros((0, 4)), 3).shape == (0, 3)
    with pytest.raises(InvalidOption, match="label class id 3 is outside the 3 classes"):
        class_targets(np.array([3]), gt_boxes[:1], preds, 3)


def test_image_scores_at_a_temperature_rescale_what_the_measure_sees_not_the_threshold():
    imgs = [np.array([[0.6, 0.3, 0.1], [0.15, 0.05, 0.02]]), np.array([[0.9, 0.8, 0.1]]), np.zeros((0, 3))]
    for measure in ALL_MEASURES:
        got = image_scores(imgs, measure, score_conf=0.1, temperature=0.5)
        by_hand = [box_scores(temperature_scale(imgs[0], 0.5), measure).sum(),
                   box_scores(temperature_scale(imgs[1], 0.5), measure).sum(), 0.0]
        # the 0.15 box is kept although it scores 0.03 at T = 0.5: the threshold reads the detector's scores
        np.testing.assert_allclose(got, by_hand, err_msg=measure)
    assert not np.allclose(image_scores(imgs, temperature=2.0), image_scores(imgs))
    np.testing.assert_allclose(image_scores(imgs, temperature=1.0), image_scores(imgs))
    with pytest.raises(InvalidOption, match="box_values"):
        image_scores(imgs[:1], "flip", box_values=[np.zeros(2)], temperature=2.0)
