"""The cost model of correcting pre-labels, against hand-counted cases."""

import numpy as np
import pytest

from detal.cost import ACTIONS, actions, from_scratch, seconds
from detal.labelstudio.format import effort_counts

A = [0, 0.2, 0.2, 0.1, 0.1]   # class 0, top left
B = [1, 0.7, 0.7, 0.2, 0.2]   # class 1, bottom right
C = [0, 0.5, 0.2, 0.1, 0.1]   # class 0, top middle, far from A and B


def test_every_action_hand_counted():
    pre = np.array([A, B, C, [2, 0.9, 0.1, 0.05, 0.05]])
    final = np.array([
        A,                              # A accepted as is
        [1, 0.71, 0.7, 0.2, 0.2],       # B moved by 0.01, same class
        [1, 0.5, 0.2, 0.1, 0.1],        # C relabelled 0 -> 1, box unchanged
        [0, 0.2, 0.8, 0.1, 0.1],        # a missed box: drawn
    ])                                  # the fourth pre-label (class 2) matches nothing: deleted
    assert actions(pre, final) == {"accepted": 1, "moved": 1, "relabelled": 1, "deleted": 1, "drawn": 1}


def test_relabelled_and_moved_pays_both():
    assert actions([A], [[1, 0.205, 0.2, 0.1, 0.1]]) == {"accepted": 0, "moved": 1, "relabelled": 1,
                                                         "deleted": 0, "drawn": 0}


def test_too_far_is_a_delete_and_a_draw():
    # IoU of two 0.1-boxes 0.06 apart is 0.25 < 0.5: not the same object
    assert actions([A], [[0, 0.26, 0.2, 0.1, 0.1]]) == {"accepted": 0, "moved": 0, "relabelled": 0,
                                                        "deleted": 1, "drawn": 1}


def test_same_class_is_matched_first():
    # two pre-labels on one object: the one of the right class is kept, the other deleted
    assert actions([[1, 0.2, 0.2, 0.1, 0.1], A], [A]) == {"accepted": 1, "moved": 0, "relabelled": 0,
                                                          "deleted": 1, "drawn": 0}


def test_no_prelabels_is_from_scratch_and_empty_is_free():
    final = np.array([A, B, C])
    assert actions(np.zeros((0, 5)), final) == from_scratch(final) == dict.fromkeys(ACTIONS, 0) | {"drawn": 3}
    assert actions([], []) == dict.fromkeys(ACTIONS, 0)
    assert actions([A, B], []) == dict.fromkeys(ACTIONS, 0) | {"deleted": 2}


def test_seconds():
    per = {"accepted": 1.0, "moved": 4.0, "relabelled": 3.0, "deleted": 2.0, "drawn": 10.0}
    counts = {"accepted": 1, "moved": 1, "relabelled": 1, "deleted": 1, "drawn": 1}
    assert seconds(counts, per, per_image=5.0) == 25.0
    assert seconds({"drawn": 3}, per, per_image=5.0, images=2) == 40.0  # 2 x 5 + 3 x 10
    with pytest.raises(ValueError, match="unknown action"):
        seconds({"corrected": 1}, per, 5.0)


def test_effort_counts_derive_from_the_same_matching():
    pre = np.array([A, B, C, [2, 0.9, 0.1, 0.05, 0.05]])
    final = np.array([A, [1, 0.71, 0.7, 0.2, 0.2], [1, 0.505, 0.2, 0.1, 0.1], [0, 0.2, 0.8, 0.1, 0.1]])
    act = actions(pre, final)
    assert act == {"accepted": 1, "moved": 2, "relabelled": 1, "deleted": 1, "drawn": 1}
    assert effort_counts(pre, final) == {"accepted": 1, "corrected": 2, "deleted": 1, "added": 1}


def test_expected_seconds_hand_counted():
    from detal.cost import expected_seconds

    per = {"accepted": 1.0, "moved": 4.0, "relabelled": 3.0, "deleted": 2.0, "drawn": 10.0}
    # shown 0.9: 0.9 x 1 + 0.1 x 2 = 1.1; shown 0.5: 0.5 + 1.0 = 1.5; hidden 0.2: 0.2 x 10 = 2.0; per image 5
    assert expected_seconds([0.9, 0.5], [0.2], per, 5.0) == pytest.approx(5.0 + 1.1 + 1.5 + 2.0)
    assert expected_seconds([], [], per, 5.0) == 5.0  # nothing predicted: the image's own time only
    # a confident box is cheaper than an unsure one; a likely missed box costs most
    assert expected_seconds([0.95], [], per, 0) < expected_seconds([0.3], [], per, 0) < expected_seconds([], [0.5], per, 0)


def test_fit_recovers_known_seconds_despite_pauses():
    from detal.cost import FIT_TERMS, fit_seconds

    rng = np.random.default_rng(0)
    truth = {"per_image": 3.0, "accepted": 1.5, "moved": 4.0, "relabelled": 2.5, "deleted": 2.0, "drawn": 8.0}
    counts = rng.integers(0, 6, size=(200, len(ACTIONS)))
    lead = counts @ np.array([truth[a] for a in ACTIONS]) + truth["per_image"] + rng.normal(0, 0.5, 200)
    lead[:6] += 3600  # six tasks left open over lunch
    fit = fit_seconds(counts, lead)
    assert fit.clipped == 6 and fit.tasks == 194
    for t in FIT_TERMS:
        assert fit.seconds[t] == pytest.approx(truth[t], abs=0.3), t
    assert fit.heldout_mae < 1.0 < fit.baseline_mae and fit.heldout_r2 > 0.95
    assert fit_seconds(counts, lead) == fit  # seeded folds: same data, same numbers


def test_fit_is_non_negative_and_refuses_too_few_tasks():
    from detal.cost import fit_seconds

    counts = np.eye(len(ACTIONS), dtype=int).repeat(3, axis=0)
    lead = 5.0 - counts[:, 0] * 1.0  # accepting would "save" a second: clipped at zero, not negative
    assert min(fit_seconds(counts, lead).seconds.values()) >= 0
    with pytest.raises(ValueError, match="annotate more tasks"):
        fit_seconds(counts[:5], lead[:5])


def test_a_simulated_annotator_accepts_a_box_as_good_as_one_drawn():
    near = [0, 0.205, 0.2, 0.1, 0.1]  # IoU with A: 0.905
    far = [0, 0.22, 0.2, 0.1, 0.1]  # IoU with A: 0.67
    # people: any change is a move; a simulated annotator (ground-truth labels) leaves a box within accept_iou
    assert actions([A], [near])["moved"] == 1
    assert actions([A], [near], accept_iou=0.85) == dict.fromkeys(ACTIONS, 0) | {"accepted": 1}
    assert actions([A], [far], accept_iou=0.85) == dict.fromkeys(ACTIONS, 0) | {"moved": 1}
    relabel = [1, 0.205, 0.2, 0.1, 0.1]
    assert actions([A], [relabel], accept_iou=0.85) == dict.fromkeys(ACTIONS, 0) | {"relabelled": 1}


def test_trusted_boxes_become_labels_unreviewed_and_the_rest_is_reviewed():
    from detal.cost import image_cost, trusted

    wrong_class_a = [1, 0.2, 0.2, 0.1, 0.1]  # a confident mistake on A's object: kept as predicted, nobody checks it
    false_box = [2, 0.9, 0.9, 0.05, 0.05]    # a confident false box: kept too
    pre = np.array([wrong_class_a, false_box, B, [0, 0.5, 0.21, 0.1, 0.1]])
    conf = np.array([0.9, 0.85, 0.5, 0.3])   # trust 0.8: the first two are trusted
    truth = np.array([A, B, C, [0, 0.2, 0.8, 0.1, 0.1]])
    labels, rev_pre, rev_final = trusted(pre, conf, truth, 0.8)
    # A's object is covered by the trusted (wrong) box; B, C and the bottom-left box are reviewed
    assert labels.tolist() == [wrong_class_a, false_box, B, C, [0, 0.2, 0.8, 0.1, 0.1]]
    assert rev_pre.tolist() == pre[2:].tolist() and rev_final.tolist() == truth[1:].tolist()
    per = {"accepted": 1.0, "moved": 4.0, "relabelled": 2.5, "deleted": 2.0, "drawn": 7.0}
    act, sec, scratch = image_cost(rev_pre, rev_final, per, 3.0, accept_iou=0.85, truth=truth)
    # B accepted (1), C moved by 0.01 (IoU 0.82 < 0.85: 4), bottom-left drawn (7); the trusted two cost nothing
    assert act == {"accepted": 1, "moved": 1, "relabelled": 0, "deleted": 0, "drawn": 1}
    assert sec == 3.0 + 1 + 4 + 7 and scratch == 3.0 + 4 * 7.0  # from scratch: all four true boxes


def test_trust_above_every_confidence_is_full_review():
    from detal.cost import trusted

    pre, truth = np.array([A, B]), np.array([A, C])
    labels, rev_pre, rev_final = trusted(pre, np.array([0.5, 0.6]), truth, 0.99)
    assert labels.tolist() == truth.tolist() and rev_pre.tolist() == pre.tolist() and rev_final.tolist() == truth.tolist()
    labels, rev_pre, rev_final = trusted(pre, np.array([0.5, 0.6]), np.zeros((0, 5)), 0.4)  # nothing true: all kept
    assert labels.tolist() == pre.tolist() and len(rev_pre) == len(rev_final) == 0
