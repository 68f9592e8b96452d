"""Bad metrics tables give one clear line naming the file and the fix; a cut last row is dropped, not reported."""

import logging

import pandas as pd
import pytest

from detal.errors import DetalError
from detal.report import load_metrics, load_runs, write_report
from tests.report.tables import RANDOM, gain_curves, metrics, write_run

GOOD = metrics(gain_curves([0.05, 0.06]))


def _run(tmp_path, content: bytes):
    (tmp_path / "metrics.csv").write_bytes(content)
    return tmp_path


def _one_line_error(run_dir, *fragments):
    with pytest.raises(DetalError) as exc:
        load_metrics(run_dir)
    msg = str(exc.value)
    assert "\n" not in msg and str(run_dir) in msg
    for f in fragments:
        assert f in msg, msg
    return msg


@pytest.mark.parametrize("content, fragments", [
    (b"", ["metrics.csv: empty file", "detal simulate"]),
    (b"  \n\n", ["empty file"]),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ["binary data, not a CSV table"]),
    (b"name,age\nada,36\n", ["not a detal metrics table (missing column(s) experiment, strategy, seed"]),
    (b"# just some notes\nnothing to see\n", ["not a detal metrics table"]),
    (",".join(GOOD.columns).encode() + b"\n", ["header only, no rows yet"]),
    (b"caf\xe9,1\n", ["not UTF-8 text (byte 3)"]),
])
def test_unusable_metrics_file(tmp_path, content, fragments):
    _one_line_error(_run(tmp_path, content), *fragments)


def test_non_numeric_value_names_the_line_and_column(tmp_path):
    df = GOOD.astype({"map50": object})
    df.loc[2, "map50"] = "n/a?"
    df.to_csv(tmp_path / "metrics.csv", index=False)
    _one_line_error(tmp_path, "metrics.csv, line 4: map50 is 'n/a?', not a number", "fix or delete that line")


def test_missing_value_and_fractional_round(tmp_path):
    df = GOOD.copy()
    df["map50_95"] = df["map50_95"].astype(object)
    df.loc[0, "map50_95"] = None
    df.to_csv(tmp_path / "metrics.csv", index=False)
    _one_line_error(tmp_path, "line 2: map50_95 is empty")
    df = GOOD.astype({"round": float})
    df.loc[1, "round"] = 1.5
    df.to_csv(tmp_path / "metrics.csv", index=False)
    _one_line_error(tmp_path, "line 3: round is '1.5', not a whole number")


def test_missing_folder_and_missing_file(tmp_path):
    _one_line_error(tmp_path, "no metrics.csv")
    _one_line_error(tmp_path / "nope", "not a folder")


def test_cut_last_row_is_dropped_with_a_warning(tmp_path, caplog):
    GOOD.to_csv(tmp_path / "metrics.csv", index=False)
    with open(tmp_path / "metrics.csv", "a") as fh:
        fh.write("e,mix,0,5,0,50,150,0.9")  # an interrupted append: no line end, columns missing
    with caplog.at_level(logging.WARNING):
        df = load_metrics(tmp_path)
    assert df["round"].max() == 4 and len(df) == len(GOOD)
    assert "cut mid-write" in caplog.text and "metrics.csv" in caplog.text
    md = (write_report(tmp_path).parent / "report.md").read_text()
    assert "dropped its last line, cut mid-write" in md
    assert "up to 4 rounds" in md and "0.900" not in md


def test_duplicate_round_rows_keep_the_last(tmp_path):
    extra = GOOD.iloc[[0]].copy()
    extra["map50_95"] = 0.99
    pd.concat([GOOD, extra]).to_csv(tmp_path / "metrics.csv", index=False)
    m = load_metrics(tmp_path)
    assert len(m) == len(GOOD)
    assert m[(m.strategy == "random") & (m.seed == 0) & (m["round"] == 1)]["map50_95"].item() == 0.99


def test_old_runs_without_effort_columns_load(tmp_path):
    GOOD.drop(columns=["accepted", "corrected", "deleted", "added", "skipped", "eval_seconds"]).to_csv(
        tmp_path / "metrics.csv", index=False)
    df = load_metrics(tmp_path)
    assert (df["accepted"] == 0).all() and len(df) == len(GOOD)


def test_same_rows_in_two_folders_are_refused(tmp_path):
    a = write_run(tmp_path / "a", GOOD)
    b = write_run(tmp_path / "b", GOOD)
    with pytest.raises(DetalError, match=r"a/metrics.csv and .*b/metrics.csv both hold experiment 'e'"):
        load_runs([a, b])


def test_labels_name_a_folders_arm_instead_of_its_strategy(tmp_path):
    # a study's variant arm: the same strategy under other settings, in its own folder, under its own name
    a = write_run(tmp_path / "a", metrics({("mix", 0): RANDOM}))
    b = write_run(tmp_path / "b", metrics({("mix", 0): RANDOM}))
    data = load_runs([a, b], labels={b: "mix_mean"})
    assert sorted(data.metrics["strategy"].unique()) == ["mix", "mix_mean"]
    assert sorted(data.per_class["strategy"].unique()) == ["mix", "mix_mean"]
    assert sorted(data.selected_classes["strategy"].unique()) == ["mix", "mix_mean"]


def test_seeds_of_one_experiment_in_two_folders_merge(tmp_path):
    a = write_run(tmp_path / "a", metrics({("random", 0): RANDOM, ("mix", 0): RANDOM}))
    b = write_run(tmp_path / "b", metrics({("random", 1): RANDOM, ("mix", 1): RANDOM}))
    data = load_runs([a, b])
    assert sorted(data.metrics["seed"].unique()) == [0, 1] and len(data.per_class) == 2 * len(GOOD) / 2 * 3


def test_damaged_optional_table_is_skipped_with_a_note(tmp_path):
    write_run(tmp_path, GOOD)
    (tmp_path / "per_class.csv").write_bytes(b"\x00\x01garbage")
    data = load_runs([tmp_path])
    assert data.per_class is None and data.selected_classes is not None
    assert any(n.startswith("per_class.csv skipped:") and "binary data" in n for n in data.notes)


def test_class_absent_from_val_has_empty_ap_and_the_table_still_loads(tmp_path):
    # Ultralytics gives no AP for a class without val instances; detal writes it empty (chess: 'bishop')
    write_run(tmp_path, GOOD)
    pc = pd.read_csv(tmp_path / "per_class.csv")
    pc.loc[pc["class_id"] == 0, ["instances", "ap50_95", "ap50"]] = [0, None, None]
    pc.to_csv(tmp_path / "per_class.csv", index=False)
    assert ",0,," in (tmp_path / "per_class.csv").read_text()
    data = load_runs([tmp_path])
    assert data.notes == [] and len(data.per_class) == len(pc)
    assert data.per_class.loc[data.per_class["class_id"] == 0, "ap50_95"].isna().all()
    # an empty class id is still damage
    pc.loc[0, "class_id"] = None
    pc.to_csv(tmp_path / "per_class.csv", index=False)
    data = load_runs([tmp_path])
    assert data.per_class is None and "class_id is empty" in data.notes[0]
