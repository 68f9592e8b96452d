"""The embedded dataset generator: determinism, YOLO layout, exact labels, the intended difficulty."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from detal.data import label_path, load_dataset, read_labels
from detal.errors import DataError
from detal.synthetic import CLASS_NAMES, Knobs, generate, image_rng, render

NC = len(CLASS_NAMES)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _all_labels(data_yaml: Path) -> list[np.ndarray]:
    ds = load_dataset(data_yaml)
    return [read_labels(label_path(im), ds.nc) for im in ds.train + ds.val]


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """A few hundred images, enough for the frequency properties to show."""
    return generate(tmp_path_factory.mktemp("big") / "ds", 300, seed=7)


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    a = _files(generate(tmp_path / "a", 12, seed=3).parent)
    b = _files(generate(tmp_path / "b", 12, seed=3).parent)
    c = _files(generate(tmp_path / "c", 12, seed=4).parent)
    assert a == b
    assert len(a) == 12 * 2 + 1
    images = [k for k in a if k.endswith(".png")]
    assert sum(a[k] != c.get(k) for k in images) >= len(images) - 1


def test_an_image_does_not_depend_on_how_many_images_are_generated(tmp_path):
    small = generate(tmp_path / "small", 5, seed=11).parent
    large = generate(tmp_path / "large", 9, seed=11).parent
    by_stem = {p.stem: p.read_bytes() for p in large.glob("images/*/*.png")}
    for p in small.glob("images/*/*.png"):
        assert p.read_bytes() == by_stem[p.stem]


def test_layout_and_data_yaml_load(tmp_path):
    calls = []
    data_yaml = generate(tmp_path / "ds", 20, seed=0, imgsz=64, val_fraction=0.25,
                         progress=lambda done, total: calls.append((done, total)))
    doc = yaml.safe_load(data_yaml.read_text())
    assert doc == {"train": "images/train", "val": "images/val", "nc": NC, "names": list(CLASS_NAMES)}
    ds = load_dataset(data_yaml)
    assert ds.names == CLASS_NAMES
    assert (len(ds.train), len(ds.val)) == (15, 5)
    for im in ds.train + ds.val:
        assert im.suffix == ".png" and label_path(im).is_file()
    import cv2

    assert cv2.imread(str(ds.train[0])).shape == (64, 64, 3)
    assert calls == [(i, 20) for i in range(1, 21)]


def test_labels_are_valid_and_boxes_inside_the_image(big):
    labels = _all_labels(big)
    boxes = np.concatenate(labels)
    assert len(boxes) > 600
    _, cx, cy, w, h = boxes.T
    eps = 1e-6
    assert (cx - w / 2 >= -eps).all() and (cx + w / 2 <= 1 + eps).all()
    assert (cy - h / 2 >= -eps).all() and (cy + h / 2 <= 1 + eps).all()
    assert (np.minimum(w, h) * 160 >= Knobs().min_box_px - eps).all()


def test_long_tail_empty_and_crowded_images_and_occlusion(big):
    labels = _all_labels(big)
    counts = np.bincount(np.concatenate(labels)[:, 0].astype(int), minlength=NC)
    assert counts.argmax() == CLASS_NAMES.index("circle")
    assert counts.argmin() == CLASS_NAMES.index("diamond")
    assert 3 <= counts.max() / counts.min() <= 12
    per_image = np.array([len(lab) for lab in labels])
    assert 0.02 <= (per_image == 0).mean() <= 0.2
    assert per_image.max() >= 6
    overlapping = 0
    for lab in labels:
        x0, x1 = lab[:, 1] - lab[:, 3] / 2, lab[:, 1] + lab[:, 3] / 2
        y0, y1 = lab[:, 2] - lab[:, 4] / 2, lab[:, 2] + lab[:, 4] / 2
        iw = np.minimum(x1[:, None], x1) - np.maximum(x0[:, None], x0)
        ih = np.minimum(y1[:, None], y1) - np.maximum(y0[:, None], y0)
        overlapping += int(np.triu((iw > 0) & (ih > 0), 1).any())
    assert overlapping >= 10


def test_confusable_pairs_differ_in_box_aspect(big):
    boxes = np.concatenate(_all_labels(big))
    aspect = np.maximum(boxes[:, 3], boxes[:, 4]) / np.minimum(boxes[:, 3], boxes[:, 4])

    def median(name):
        return np.median(aspect[boxes[:, 0] == CLASS_NAMES.index(name)])

    assert median("circle") < 1.15 and median("square") < 1.25
    assert median("rectangle") > median("square") + 0.3


@pytest.mark.parametrize("seed", range(40))
def test_boxes_are_tight_around_visible_pixels_on_plain_images(seed):
    """No noise, blur or clutter: every non-background pixel lies in a box, each box edge touches one."""
    knobs = Knobs(background_probs=(1.0, 0.0, 0.0), over_lines_prob=0.0, noise_sigma_max=0.0, blur_prob=0.0)
    img, labels = render(image_rng(seed, 0), 96, knobs)
    colours, counts = np.unique(img.reshape(-1, 3), axis=0, return_counts=True)
    fg = (img != colours[counts.argmax()]).any(axis=2)
    covered = np.zeros_like(fg)
    for _, cx, cy, w, h in labels:
        x0, x1 = int(round((cx - w / 2) * 96)), int(round((cx + w / 2) * 96))
        y0, y1 = int(round((cy - h / 2) * 96)), int(round((cy + h / 2) * 96))
        assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 96
        inside = fg[y0:y1, x0:x1]
        assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        covered[y0:y1, x0:x1] = True
    assert not (fg & ~covered).any()


@pytest.mark.parametrize("kwargs", [dict(n_images=1), dict(n_images=10, val_fraction=0.0),
                                    dict(n_images=10, val_fraction=1.0), dict(n_images=10, imgsz=16),
                                    dict(n_images=10, seed=-1)])
def test_bad_arguments_raise_one_line_value_errors(tmp_path, kwargs):
    with pytest.raises(ValueError) as info:
        generate(tmp_path / "ds", **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "ds").exists()


def test_refuses_an_existing_dataset_unless_overwrite(tmp_path):
    first = generate(tmp_path / "ds", 6, seed=0)
    with pytest.raises(DataError, match="already holds a dataset"):
        generate(tmp_path / "ds", 4, seed=1)
    generate(tmp_path / "ds", 4, seed=1, overwrite=True)
    ds = load_dataset(first)
    assert len(ds.train) + len(ds.val) == 4  # no stale images from the first run
