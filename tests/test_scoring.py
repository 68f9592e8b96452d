"""`detal score`: per-image scores and the per-box audit table, with real (tiny) weights."""

import pandas as pd
import pytest

from detal.cli import main
from tests._tiny import tiny_trained


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_trained(tmp_path_factory.mktemp("tiny_scoring"))


def test_score_command_writes_scores_and_audit(tiny, tmp_path, capsys):
    images = tiny.data.root / "images" / "val"
    (images / "broken.jpg").write_bytes(b"not an image")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {tiny.data.data_yaml}\nmodel: {{imgsz: 64, device: cpu}}\nscoring: {{conf: 0.001, reduction: max}}\n")
    out = tmp_path / "scores.csv"
    try:
        assert main(["score", "-c", str(cfg), "--weights", str(tiny.weights), "--images", str(images), "--out", str(out)]) == 0
    finally:
        (images / "broken.jpg").unlink()
    per_image = pd.read_csv(out)
    assert len(per_image) == len(tiny.data.val) + 1
    broken = per_image[per_image.image.str.endswith("broken.jpg")]
    assert broken["score"].item() == -1.0 and broken["error"].notna().item()
    assert per_image["score"].is_monotonic_decreasing
    boxes = pd.read_csv(tmp_path / "scores_boxes.csv")
    assert {"p_red", "p_green", "p_blue", "entropy", "confidence"} <= set(boxes.columns)
    # the image score is the max of its boxes' entropy (reduction: max)
    top = per_image.iloc[0]
    assert boxes[boxes.image == top.image]["entropy"].max() == pytest.approx(top.score, rel=1e-5)


def test_score_command_bad_weights(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: x.yaml\n")
    assert main(["score", "-c", str(cfg), "--weights", str(tmp_path / "no.pt"), "--images", str(tmp_path), "--out", str(tmp_path / "o.csv")]) == 2
    assert "--weights" in capsys.readouterr().err


def test_score_command_with_the_flip_measure(tiny, tmp_path):
    # measure flip: the scorer also predicts every mirrored image; the audit's `flip` column is per box
    images = tiny.data.root / "images" / "val"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {tiny.data.data_yaml}\nmodel: {{imgsz: 64, device: cpu}}\n"
                   "scoring: {conf: 0.001, measure: flip, reduction: max}\n")
    out = tmp_path / "scores.csv"
    assert main(["score", "-c", str(cfg), "--weights", str(tiny.weights), "--images", str(images), "--out", str(out)]) == 0
    per_image = pd.read_csv(out)
    boxes = pd.read_csv(tmp_path / "scores_boxes.csv")
    assert "flip" in boxes.columns and "entropy" not in boxes.columns and len(boxes) > 0
    assert boxes["flip"].between(0, 1).all()
    by_image = boxes.groupby("image")["flip"].max()
    scored = per_image.set_index("image").loc[by_image.index, "score"]
    assert scored.to_numpy() == pytest.approx(by_image.to_numpy(), rel=1e-5)


class _Stub:
    """Three labelled images of 200 x 100 px: a box on its label, one below score_conf, one unreadable."""

    def iter_predictions(self, images):
        from pathlib import Path

        import numpy as np

        from detal.types import Prediction

        box = np.array([[20.0, 10.0, 60.0, 30.0]], np.float32)
        yield Prediction(Path(images[0]), 200, 100, box, np.array([0.8], np.float32), np.array([1]),
                         np.array([[0.1, 0.8]], np.float32))
        yield Prediction(Path(images[1]), 200, 100, box, np.array([0.05], np.float32), np.array([1]),
                         np.array([[0.0, 0.05]], np.float32))  # below score_conf: ignored
        yield Prediction(Path(images[2]), 0, 0, np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                         np.zeros(0, np.int64), np.zeros((0, 2), np.float32), error="unreadable")


_LABEL = [[1, 0.2, 0.2, 0.2, 0.2]]  # centre (40, 20), 40 x 20 px: exactly the predicted box (not a square image)


def test_labelled_difficulty_puts_yolo_labels_in_the_predictions_pixels():
    """Normalised centre-size labels meet pixel xyxy predictions in the image's own pixels (not a square)."""
    import numpy as np

    from detal.scoring import labelled_difficulty

    label = np.array(_LABEL)
    d = labelled_difficulty(_Stub(), ["a.png", "b.png", "c.png"], [label, label, np.array([[0, .5, .5, .1, .1]])],
                            nc=2, score_conf=0.1)
    # class 1: mean(0.8, 0) -> difficulty 0.6; class 0 appears only on the unreadable image: unseen -> 1
    np.testing.assert_allclose(d, [1.0, 0.6], rtol=1e-6)


def test_labelled_temperature_fits_on_the_scored_boxes_against_their_labels():
    import numpy as np

    from detal.acquisition.uncertainty import fit_temperature
    from detal.scoring import labelled_temperature

    label = np.array(_LABEL)
    t, n = labelled_temperature(_Stub(), ["a.png", "b.png", "c.png"], [label, label, np.array([[0, .5, .5, .1, .1]])],
                                nc=2, score_conf=0.1)
    assert n == 1  # the box below score_conf and the unreadable image are left out
    # the box sits on its class-1 label: target [0, 1], and the model is right on both classes (sharpen)
    assert t == fit_temperature(np.array([[0.1, 0.8]]), np.array([[0.0, 1.0]])) < 1
    wrong = np.array([[0, 0.2, 0.2, 0.2, 0.2]])  # the same box labelled class 0: the model is wrong (soften)
    assert labelled_temperature(_Stub(), ["a.png", "b.png", "c.png"], [wrong, label, label], nc=2,
                                score_conf=0.1)[0] > 1
