"""A tiny real experiment: real YOLO training, real scoring, two arms, two rounds, real files.

Small enough for CI on 2 CPU cores (about half a minute per run): 64 px images, 1 epoch per round.
"""

import pandas as pd
import pytest

from detal.cli import main
from detal.types import METRIC_COLUMNS
from detal.synthetic import generate


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("integ")
    data = generate(root / "ds", 64, seed=2, imgsz=64, val_fraction=0.25)
    cfg = root / "tiny.yaml"
    cfg.write_text(f"""
experiment: tiny
data: {data}
output_dir: {root / 'runs'}
seeds: [0]
strategies: [random, mix]
model: {{arch: yolov8n.yaml, imgsz: 64, batch: 8, workers: 0, device: cpu}}
schedule: {{seed_fraction: 0.3, select_fraction: 0.25, epochs_per_round: 1, total_epochs: 2}}
scoring: {{conf: 0.001, audit: true}}
""")
    assert main(["simulate", "-c", str(cfg), "-q"]) == 0
    return root, cfg


def test_metrics_file(tiny):
    root, _ = tiny
    m = pd.read_csv(root / "runs" / "tiny" / "metrics.csv")
    assert list(m.columns) == list(METRIC_COLUMNS)
    assert sorted(m["strategy"].unique()) == ["mix", "random"] and m["round"].tolist() == [1, 2, 1, 2]
    assert m["labeled_images"].tolist() == [14, 26, 14, 26]  # pool 48: seed 30%, +25% per round
    assert m["map50_95"].between(0, 1).all() and m["map50"].between(0, 1).all()
    # mix's first round is random's training (same seed set, recipe and seed), copied, not trained again
    reused = (m.strategy == "mix") & (m["round"] == 1)
    assert (m.loc[~reused, "train_seconds"] > 0).all() and (m.loc[reused, "train_seconds"] == 0).all()
    assert m.loc[m["round"] == 1, "map50_95"].nunique() == 1
    run_seed = root / "runs" / "tiny" / "seed0"
    weights = [run_seed / s / "round1" / "weights" / "last.pt" for s in ("random", "mix")]
    assert weights[0].read_bytes() == weights[1].read_bytes()
    mix = m[m.strategy == "mix"].iloc[0]
    assert 0 < mix["scored_images"] <= round(0.2 * 34) + 1  # only the random subset was scored
    run = root / "runs" / "tiny"
    assert (run / "report.md").exists() and (run / "map_vs_labeled.png").exists()
    audit = pd.read_csv(run / "seed0" / "mix" / "round1" / "scores_boxes.csv")
    assert {"image", "class", "confidence", "entropy"} <= set(audit.columns)
    assert len(audit) > 0 and audit.filter(like="p_").shape[1] == 6  # full class vector per box


def test_rerun_is_resumed_and_same_config_gives_same_selections(tiny, tmp_path):
    root, cfg = tiny
    before = (root / "runs" / "tiny" / "metrics.csv").read_text()
    assert main(["simulate", "-c", str(cfg), "-q"]) == 0  # finished arms are skipped, nothing is appended
    assert (root / "runs" / "tiny" / "metrics.csv").read_text() == before
    # a fresh run of the same config in another folder: same seed set, same (real) selections
    assert main(["simulate", "-c", str(cfg), "-q", "--set", f"output_dir={tmp_path}"]) == 0
    a = pd.read_csv(root / "runs" / "tiny" / "selections.csv")
    b = pd.read_csv(tmp_path / "tiny" / "selections.csv")
    pd.testing.assert_frame_equal(a, b)
    assert (a[a.source == "uncertainty"]["score"] > 0).any()


def test_sigterm_during_training_leaves_the_round_undone(tmp_path):
    """SIGTERM while round 2 trains: exit 143, one line, round 2 not recorded; a re-run finishes the experiment."""
    import os
    import signal
    import subprocess
    import sys
    import time

    data = generate(tmp_path / "ds", 48, seed=3, imgsz=64, val_fraction=0.25)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
experiment: term
data: {data}
output_dir: {tmp_path / 'runs'}
strategies: [random]
model: {{arch: yolov8n.yaml, imgsz: 64, batch: 8, workers: 0, device: cpu}}
schedule: {{seed_fraction: 0.3, select_fraction: 0.25, epochs_per_round: 2, total_epochs: 6}}
""")
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "detal.cli", "simulate", "-c", str(cfg)], stderr=subprocess.PIPE,
                            text=True, env=env)
    lines = []
    for line in proc.stderr:  # progress goes to stderr: wait until round 2 is training
        lines.append(line)
        if "round 2/3: training" in line:
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            break
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 143, "".join(lines) + err
    assert "interrupted" in err and "Traceback" not in err
    run = tmp_path / "runs" / "term"
    assert pd.read_csv(run / "metrics.csv")["round"].tolist() == [1]
    from detal.state import ArmState

    assert ArmState.load(run / "seed0" / "random" / "state.json").round_done == 1
    assert main(["simulate", "-c", str(cfg), "-q"]) == 0
    assert pd.read_csv(run / "metrics.csv")["round"].tolist() == [1, 2, 3]
