"""`detal check` over the project's own corpus of bad and unusual inputs (tests/corpus/make.py).

Each case asserts its documented behaviour (docs/bad-input.md): an error naming the file, line and fix;
or a warning and the image left out; or accepted. The images detal keeps must be exactly the images
Ultralytics keeps, with the same box counts, and checking must never write to the dataset.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from detal.check import KINDS, check_dataset, usable
from detal.data import label_path, list_images, load_dataset, read_labels, scan_label_file
from detal.errors import DataError
from tests.corpus import make

ROOT = Path(__file__).resolve().parents[1]

# every image case: the problem kind it gets (None: accepted silently) and whether it stays usable
IMAGE_EXPECT = {
    "zero_byte": ("image-unreadable", False),
    "not_an_image": ("image-unreadable", False),
    "truncated_jpeg": ("image-corrupt", False),
    "jpeg_missing_eoi": ("image-corrupt", False),
    "jpeg_trailing_bytes": ("image-restored", True),
    "truncated_png": ("image-corrupt", False),
    "tiny_8x8": ("image-small", False),
    "exif_rotated": ("image-exif-rotated", True),
    "exif_rotated_png": ("image-exif-rotated", True),
    "exif_rotated_webp": (None, True),  # OpenCV does not turn WebP: trained as stored, so no note
    "cmyk": (None, True),
    "png16": (None, True),
    "grayscale": (None, True),
    "alpha": (None, True),
    "palette": (None, True),
    "huge": (None, True),
    "decompression_bomb": ("image-too-large", False),
    "gif_named_jpg": ("image-format", False),
    "png_named_jpg": (None, True),
}

# every label case: (error kind or None, line of the error / boxes kept)
LABEL_EXPECT = {
    "crlf": (None, 2), "bom": (None, 1), "blank_lines": (None, 2), "empty": (None, 0),
    "class_float_integer": (None, 1), "slightly_over_one": (None, 1), "polygon": (None, 1),
    "duplicates": (None, 2), "near_duplicates": (None, 1),
    "non_utf8": ("label-unreadable", 2), "extra_column": ("label-columns", 2),
    "missing_column": ("label-columns", 2), "polygon_mixed": ("label-columns", 2),
    "nan_width": ("label-number", 1), "inf_centre": ("label-number", 1), "non_numeric": ("label-number", 1),
    "centre_outside": ("label-coords", 1), "size_outside": ("label-coords", 1), "negative": ("label-coords", 1),
    "zero_area": ("label-coords", 1), "class_out_of_range": ("label-class", 2),
    "class_negative": ("label-class", 1), "class_fraction": ("label-class", 1),
}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def _ultralytics(image: Path, label: Path, nc: int, tmp: Path):
    """Ultralytics' own verdict on a copy (it may re-save a JPEG in place): (kept?, boxes read, (h, w))."""
    from ultralytics.data.utils import verify_image_label

    copy = tmp / f"u{image.suffix}"
    shutil.copyfile(image, copy)
    r = verify_image_label((str(copy), str(label), "", False, nc, 0, 0, False))
    return r[0] is not None, (len(r[1]) if r[0] is not None else -1), r[2]


@pytest.fixture(scope="module")
def images_checked(tmp_path_factory):
    """One dataset holding every image case in train, with a valid label each; checked once."""
    root = tmp_path_factory.mktemp("images")
    y = make.dataset(root, n_train=2, n_val=2)
    made = {name: make.add_image(root, "train", name + make.IMAGE_SUFFIX.get(name, ".png"), fn)
            for name, fn in make.IMAGE_CASES.items()}
    before = _snapshot(root)
    ds = load_dataset(y)
    report = check_dataset(ds)
    return root, made, ds, report, before


@pytest.mark.parametrize("case", sorted(IMAGE_EXPECT))
def test_image_case(images_checked, case, tmp_path):
    root, made, ds, report, _ = images_checked
    image = made[case]
    kind, kept = IMAGE_EXPECT[case]
    mine = [p for p in report.problems if p.path == image]
    assert [p.kind for p in mine] == ([kind] if kind else [])
    for p in mine:  # one line that names the file
        assert "\n" not in p.message and p.message.startswith(str(image))
    assert (image in usable(ds, report).train) == kept
    assert (image in [p for p, _ in report.excluded_train]) == (not kept)
    # the set detal keeps is the set Ultralytics keeps
    ul_kept, _, ul_hw = _ultralytics(image, label_path(image), ds.nc, tmp_path)
    assert ul_kept == kept
    if kept:  # Ultralytics' loader makes it an 8-bit, 3-channel image, of the size detal reports
        from ultralytics.utils.patches import imread

        from detal.data import image_size

        im = imread(str(image))
        assert im is not None and im.ndim == 3 and im.shape[2] == 3 and im.dtype == np.uint8
        assert im.shape[:2] == tuple(ul_hw) == image_size(image)[::-1]


def test_image_report_as_a_whole(images_checked):
    root, made, ds, report, before = images_checked
    assert not report.fatal  # bad images are left out with a warning; they do not stop the run
    excluded = sum(not kept for _, kept in IMAGE_EXPECT.values())
    assert len(report.excluded_train) == excluded and report.excluded_val == ()
    c = report.counts["train"]
    assert c.images == len(ds.train) and c.usable == len(ds.train) - excluded == len(usable(ds, report).train)
    assert c.boxes == c.usable  # one box per usable image: boxes of left-out images are not counted
    assert _snapshot(root) == before  # checking never writes (not even Ultralytics' JPEG restore)
    lines = report.lines()
    assert len(lines) == sum(p.level != "note" for p in report.problems)
    assert any(line.startswith(f"exclude: {made['tiny_8x8']}: 8x8 px") for line in lines)


def test_exif_rotation_gives_the_displayed_size(images_checked):
    from detal.data import image_size

    _, made, *_ = images_checked
    assert image_size(made["exif_rotated"]) == (32, 48)  # stored 48x32, EXIF turns it a quarter
    assert image_size(made["huge"]) == (4000, 3000)


@pytest.fixture(scope="module")
def labels_checked(tmp_path_factory):
    """Every label case next to a valid 32x32 image in val; checked once."""
    root = tmp_path_factory.mktemp("labels")
    y = make.dataset(root, n_train=2, n_val=1)
    made = {name: make.add_image(root, "val", f"{name}.png", label=data) for name, data in make.LABEL_CASES.items()}
    ds = load_dataset(y)
    return made, ds, check_dataset(ds)


@pytest.mark.parametrize("case", sorted(LABEL_EXPECT))
def test_label_case(labels_checked, case, tmp_path):
    made, ds, report = labels_checked
    kind, n = LABEL_EXPECT[case]
    image = made[case]
    lab = label_path(image)
    errors = [p for p in report.problems if p.path == lab and p.level == "error"]
    ul_kept, ul_boxes, _ = _ultralytics(image, lab, ds.nc, tmp_path)
    if kind is None:
        assert errors == []
        assert len(read_labels(lab, ds.nc)) == n == ul_boxes  # the boxes counted are the boxes trained on
    else:
        assert [p.kind for p in errors] == [kind]
        msg = errors[0].message
        assert msg.startswith(f"{lab}:{n}: ") and "\n" not in msg and "; " in msg  # file:line, then the fix
        with pytest.raises(DataError) as exc:
            read_labels(lab, ds.nc)
        assert str(exc.value).startswith(f"{lab}:{n}: ")
        # Ultralytics would have dropped this image silently (zero-area boxes: detal is stricter, see docs)
        assert ul_kept == (case == "zero_area")


def test_label_messages_say_what_is_wrong(labels_checked):
    made, ds, report = labels_checked
    msg = {p.path.stem: p.message for p in report.problems if p.level == "error"}
    assert "width 'nan' is not a finite number" in msg["nan_width"]  # not "box centre outside [0, 1]"
    assert "x centre 'inf' is not a finite number" in msg["inf_centre"]
    assert "not UTF-8 text (byte 0xe9); re-save the label file as UTF-8" in msg["non_utf8"]
    assert "class 99 is not an integer id in 0..2" in msg["class_out_of_range"]
    assert "got 6" in msg["extra_column"] and "got 4" in msg["missing_column"]
    kinds = {p.path.stem: p.kind for p in report.problems if p.level != "error"}
    assert kinds["duplicates"] == "label-duplicates" and kinds["polygon"] == "label-polygon"
    assert report.fatal
    with pytest.raises(DataError, match=r"\(\d+ more error\(s\): run `detal check"):
        usable(ds, report)


def test_duplicates_removed_with_one_warning(tmp_path, caplog):
    f = tmp_path / "dup.txt"
    f.write_bytes(make.LABEL_CASES["duplicates"])
    with caplog.at_level(logging.WARNING, logger="detal"):
        first = read_labels(f, 3)
        again = read_labels(f, 3)
    np.testing.assert_allclose(first, [[0, 0.5, 0.5, 0.2, 0.2], [1, 0.3, 0.3, 0.1, 0.1]])
    np.testing.assert_array_equal(first, again)
    warnings = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert warnings == [f"{f}: removed 2 duplicate box(es), as Ultralytics does; "
                        "delete the repeated lines to silence this"]


def test_polygon_becomes_its_bounding_box(tmp_path):
    f = tmp_path / "poly.txt"
    f.write_bytes(make.LABEL_CASES["polygon"])  # points (0.1,0.1) (0.5,0.1) (0.5,0.4) (0.1,0.4)
    np.testing.assert_allclose(read_labels(f, 3), [[1, 0.3, 0.25, 0.4, 0.3]])
    assert scan_label_file(f, 3).polygons == 1


def test_val_label_with_class_99_stops_the_run(tmp_path):
    y = make.dataset(tmp_path)
    lab = tmp_path / "labels" / "val" / "val1.txt"
    lab.write_text(make.BOX + "99 0.5 0.5 0.1 0.1\n")
    ds = load_dataset(y)
    report = check_dataset(ds)
    assert report.fatal and [p.kind for p in report.errors] == ["label-class"]
    with pytest.raises(DataError, match=re.escape(f"{lab}:2: class 99 is not an integer id in 0..2")):
        usable(ds, report)
    assert "FAILED: 1 error(s)" in report.summary()


# --- data.yaml and split folders ------------------------------------------------------------------

def _edit_yaml(y: Path, **changes) -> Path:
    doc = yaml.safe_load(y.read_text())
    doc.update(changes)
    y.write_text(yaml.safe_dump(doc))
    return y


def test_nc_disagreeing_with_names_is_an_error(tmp_path):
    y = _edit_yaml(make.dataset(tmp_path, names=("a", "b", "c", "d", "e", "f")), nc=3)
    with pytest.raises(DataError) as exc:
        load_dataset(y)
    assert str(exc.value) == f"{y}: nc is 3 but names lists 6 classes; set nc: 6 or delete the nc line"
    assert load_dataset(_edit_yaml(y, nc=6)).nc == 6


def test_missing_split_names_the_key_and_the_path(tmp_path):
    y = _edit_yaml(make.dataset(tmp_path), val="images/validation")
    with pytest.raises(DataError) as exc:
        load_dataset(y)
    assert str(exc.value).startswith(f"{y}: val split 'images/validation' not found (looked for "
                                     f"{tmp_path / 'images' / 'validation'}); fix 'val'")


def test_split_with_no_images_says_what_it_holds(tmp_path):
    y = make.dataset(tmp_path)
    for p in (tmp_path / "images" / "val").iterdir():
        p.rename(p.with_suffix(".gif"))
    with pytest.raises(DataError, match=r"split 'val' .* holds no images; it holds 2 other files \(e.g. val0.gif\)"):
        load_dataset(y)


def test_latin1_data_yaml_is_one_line(tmp_path):
    y = make.dataset(tmp_path)
    y.write_bytes(y.read_bytes() + "# caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not UTF-8 text \(byte 0xe9\); re-save the data.yaml as UTF-8"):
        load_dataset(y)


def test_dangling_symlink_is_announced_not_silently_dropped(tmp_path, caplog):
    y = make.dataset(tmp_path)
    link = tmp_path / "images" / "train" / "gone.png"
    link.symlink_to(tmp_path / "elsewhere.png")
    with caplog.at_level(logging.WARNING, logger="detal"):
        ds = load_dataset(y)
    assert link not in ds.train and len(ds.train) == 3
    assert f"skipped 1 dangling symlink(s): {link}; fix or remove the links" in caplog.text
    report = check_dataset(ds)
    assert [(p.kind, p.path) for p in report.problems if p.level != "note"] == [("image-dangling", link)]
    assert not report.fatal


def test_orphan_labels_are_one_warning_line_naming_the_first_file(tmp_path):
    y = make.dataset(tmp_path)
    orphans = [tmp_path / "labels" / "train" / f"old{i}.txt" for i in range(5)]
    for o in orphans:
        o.write_text(make.BOX)
    (tmp_path / "labels" / "classes.txt").write_text("a\nb\nc\n")  # an export's class list is not an orphan
    ds = load_dataset(y)
    report = check_dataset(ds)
    found = [p for p in report.problems if p.kind == "label-orphan"]
    assert [p.path for p in found] == orphans and {p.split for p in found} == {"train"}
    assert {p.level for p in found} == {"warning"} and not report.fatal
    row = next(line for line in report.summary().splitlines() if "label-orphan" in line)
    assert row.startswith("warning") and " 5 " in row
    assert "labels/train/old0.txt, labels/train/old1.txt, labels/train/old2.txt, ..." in row
    # what simulate and cycle log: ONE line for the five, naming the first file, the split and the fix
    lines = [line for line in report.lines(levels=("exclude", "warning")) if "without an image" in line]
    assert lines == [f"warning: {orphans[0]} and 4 more: label file(s) without an image in split 'train', not used; "
                     "restore the image (same name, an image suffix) or delete the label file"]
    assert usable(ds, report).train == ds.train  # nothing else changes


def test_one_orphan_in_val_is_named_alone(tmp_path):
    y = make.dataset(tmp_path)
    orphan = tmp_path / "labels" / "val" / "gone.txt"
    orphan.write_text(make.BOX)
    lines = [line for line in check_dataset(load_dataset(y)).lines() if "without an image" in line]
    assert lines == [f"warning: {orphan}: label file(s) without an image in split 'val', not used; "
                     "restore the image (same name, an image suffix) or delete the label file"]


def test_unicode_and_spaces_in_names(tmp_path):
    root = tmp_path / "données d'été"
    y = make.dataset(root, names=("chat noir", "chien", "oiseau"))
    img = make.add_image(root, "train", "ünïcode name 猫.png", label="1 0.5 0.5 0.2 0.2\n")
    ds = load_dataset(y)
    assert img in ds.train and ds.names[0] == "chat noir"
    report = check_dataset(ds)
    assert not report.fatal and [p for p in report.problems if p.level != "note"] == []
    assert img in usable(ds, report).train and report.counts["train"].boxes_per_class[1] == 1


def test_file_list_split_missing_and_repeated_entries(tmp_path, caplog):
    y = make.dataset(tmp_path)
    good = sorted((tmp_path / "images" / "val").iterdir())
    lst = tmp_path / "val.txt"
    lst.write_text("".join(f"{p}\n" for p in good) + f"{good[0]}\nimages/val/lost.png\n")
    _edit_yaml(y, val="val.txt")
    with caplog.at_level(logging.WARNING, logger="detal"):
        ds = load_dataset(y)
    assert ds.val == tuple(good) and list_images(lst) == good
    assert "listed image(s) not found" in caplog.text and "listed twice" in caplog.text
    kinds = {p.kind: p.path for p in check_dataset(ds).problems}
    assert kinds["image-missing"] == tmp_path / "images" / "val" / "lost.png"
    assert kinds["image-repeated"] == good[0]


def test_hidden_files_and_other_suffixes_are_noted_not_used(tmp_path):
    y = make.dataset(tmp_path)
    shadow = tmp_path / "images" / "train" / "._train0.png"  # macOS resource fork, not an image
    shadow.write_bytes(b"\x00\x05\x16\x07")
    notes = tmp_path / "images" / "train" / "notes.gif"
    make.image(notes, fmt="GIF")
    ds = load_dataset(y)
    assert shadow not in ds.train and notes not in ds.train
    report = check_dataset(ds)
    assert {p.path for p in report.problems if p.kind == "image-ignored"} == {shadow, notes}
    assert not report.fatal


def test_two_images_sharing_one_label_file(tmp_path):
    y = make.dataset(tmp_path)
    make.image(tmp_path / "images" / "train" / "train0.jpg")  # train0.png exists: both map to train0.txt
    report = check_dataset(load_dataset(y))
    assert [p.kind for p in report.problems if p.level != "note"] == ["label-shared", "label-shared"]


def test_no_label_files_at_all_stops_the_run(tmp_path):
    y = make.dataset(tmp_path)
    shutil.rmtree(tmp_path / "labels" / "val")
    ds = load_dataset(y)
    report = check_dataset(ds)
    assert [p.kind for p in report.errors] == ["split-no-boxes"]
    assert "no box in split 'val' (2 of 2 images have no label file)" in report.errors[0].message
    assert sum(p.kind == "label-missing" for p in report.problems) == 2


def test_no_usable_image_stops_the_run(tmp_path):
    y = make.dataset(tmp_path, n_val=0)
    for i in range(2):
        make.add_image(tmp_path, "val", f"bad{i}.jpg", make.zero_byte)
    report = check_dataset(load_dataset(y))
    assert [p.kind for p in report.errors] == ["split-empty"]
    assert len(report.excluded_val) == 2


def test_counts_summary_and_usable(tmp_path):
    y = make.dataset(tmp_path, n_train=4, n_val=2, label="0 0.5 0.5 0.2 0.2\n2 0.3 0.3 0.1 0.1\n")
    make.add_image(tmp_path, "train", "small.png", make.tiny)
    make.add_image(tmp_path, "train", "dups.png", label=make.LABEL_CASES["duplicates"])
    ds = load_dataset(y)
    report = check_dataset(ds)
    c = report.counts["train"]
    assert (c.images, c.usable, c.boxes) == (6, 5, 4 * 2 + 2)  # the 8x8 image's box is not counted
    assert c.boxes_per_class == (5, 1, 4) and c.images_per_class == (5, 1, 4)
    assert report.counts["val"].boxes_per_class == (2, 0, 2)
    ds2 = usable(ds, report)
    assert len(ds2.train) == 5 and ds2.val == ds.val and ds2.names == ds.names
    text = report.summary()
    assert re.search(r"^train\s+6\s+5\s+10\s+0$", text, re.M)
    for needle in ("image-small", "label-duplicates", "class-absent",
                   "val: b", "images/train/small.png", "OK; 1 train and 0 val images left out"):
        assert needle in text, needle


def test_every_kind_is_documented():
    doc = (ROOT / "docs" / "bad-input.md").read_text(encoding="utf-8")
    from detal import check

    for kind, (level, _) in KINDS.items():
        assert f"`{kind}`" in doc, kind
        assert re.search(rf"^\s+{level}\s+{re.escape(kind)}\s", check.__doc__, re.M), kind


def test_line_break_in_a_file_name_is_left_out(tmp_path):
    y = make.dataset(tmp_path)
    odd = make.add_image(tmp_path, "train", "two\nlines.png")
    ds = load_dataset(y)
    report = check_dataset(ds)
    assert [(p.kind, p.path) for p in report.problems if p.level != "note"] == [("image-name", odd)]
    assert "\n" not in report.problems[0].message and odd not in usable(ds, report).train


def test_a_label_rule_detal_does_not_know_stops_the_run(tmp_path, monkeypatch):
    """A newer Ultralytics that drops a label file detal reads cleanly: caught, quoted, fatal."""
    from ultralytics.data import utils as yolo_data

    real = yolo_data.verify_image_label

    def stricter(args):
        if args[1].endswith("train1.txt"):
            return [None, None, None, None, None, 0, 1, 0, 1, f"{args[0]}: ignoring corrupt image/label: new rule"]
        return real(args)

    monkeypatch.setattr(yolo_data, "verify_image_label", stricter)
    y = make.dataset(tmp_path)
    report = check_dataset(load_dataset(y))
    lab = tmp_path / "labels" / "train" / "train1.txt"
    assert [(p.kind, p.path) for p in report.errors] == [("label-ultralytics", lab)]
    assert report.errors[0].message == f"{lab}: Ultralytics rejects this label file (new rule); fix the file"


def test_a_verdict_cache_skips_unchanged_images_and_rechecks_changed_ones(tmp_path, monkeypatch):
    # the scheduled job checks its pool every run: images unchanged since the last check are not opened again
    from detal import check
    from detal.synthetic import generate

    ds = load_dataset(generate(tmp_path / "d", 12, seed=1, imgsz=64, val_fraction=0.25))
    first = check.VerdictCache()
    base = check_dataset(ds, cache=first)
    assert len(first.new) == len(ds.train) + len(ds.val)
    opened = []
    real = check._verify_image
    monkeypatch.setattr(check, "_verify_image", lambda image, *a: opened.append(image) or real(image, *a))
    again = check.VerdictCache(first.rows)
    assert check_dataset(ds, cache=again).lines() == base.lines() and opened == [] and again.new == {}
    bad = ds.train[0]
    bad.write_bytes(b"not an image")  # changed since: verified again, and the change is found
    later = check.VerdictCache(first.rows)
    rep = check_dataset(ds, cache=later)
    assert opened == [bad] and list(later.new) == [str(bad)]
    assert [p.path for p in rep.problems if p.kind == "image-unreadable"] == [bad]
