"""The Ray scoring engine (detal.engines.ray_scoring) on a real local Ray cluster.

One cluster for the module: `ray start --head` on 127.0.0.1 with 2 CPUs (2 scoring actors, each its own
worker process), started in its own process group and stopped by ending that group (never `ray stop`,
which would stop every Ray of this user on the machine). On it: a scoring pass that must equal the local
engine's (predictions, scores, selection), an actor killed in the middle of a pass, and a whole
`detal simulate` run. The unreachable-cluster test needs no cluster.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests._tiny import tiny_trained

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"ray head did not listen on {port} within {timeout} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The address of a 2-CPU Ray head on 127.0.0.1, this process connected to it; stopped at module end."""
    import ray

    base = tmp_path_factory.mktemp("ray")
    port = _free_port()
    log = base / "ray-start.log"
    cmd = [str(RAY), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
           "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats",
           f"--ray-client-server-port={_free_port()}", f"--object-store-memory={300 * 2**20}",
           f"--temp-dir={base / 't'}"]
    env = {**os.environ, "YOLO_OFFLINE": "1", "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        _wait_port(port, proc, log)
        os.environ["RAY_AUTH_MODE"] = env["RAY_AUTH_MODE"]
        from detal.engines.ray_scoring import connect

        connect(address)
        yield address, proc
    finally:
        ray.shutdown()
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group holds gcs, raylet and the worker processes
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:  # it had already exited (a failed start)
            pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_trained(tmp_path_factory.mktemp("tiny-ray"))


def _cfg(engine: str, address: str | None = None, **scoring):
    from detal.config import parse_config

    raw = {"data": "unused.yaml", "model": {"imgsz": 64},
           "scoring": {"batch": 4, "workers": 1, "conf": 0.002, "engine": engine, **scoring},
           "prelabel": {"conf": 0.25}, "selection": {"subset_fraction": 0.5}}
    if engine == "ray":
        raw["ray"] = {"address": address, "actors": 2}
    return parse_config(raw)


def _same(a, b) -> bool:
    return (str(a.path) == str(b.path) and np.array_equal(a.boxes, b.boxes) and np.array_equal(a.probs, b.probs)
            and np.array_equal(a.conf, b.conf) and np.array_equal(a.cls, b.cls)
            and (a.feature is None) == (b.feature is None)
            and (a.feature is None or np.array_equal(a.feature, b.feature)))


def test_scoring_pass_and_selection_equal_local(cluster, tiny, tmp_path):
    """Same weights, pool and seed: identical predictions, scores and selections on both engines (mix with the
    flip measure; coreset with pooled features), an unreadable image included, and the Ray pass scores only
    the images the strategy asks for."""
    from detal.acquisition.selection import select
    from detal.engines.ray_scoring import RayScorer
    from detal.scoring import ScoringPass, make_scorer

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    pool = list(tiny.data.train) + [broken] + list(tiny.data.val)  # 33 images of 3 sizes: 9 batches of 4
    ids = np.arange(len(pool), dtype=np.int64)
    names = tiny.data.names
    for strategy, measure, features in (("mix", "flip", False), ("coreset", "entropy", True)):
        runs = []
        for engine in ("local", "ray"):
            cfg = _cfg(engine, cluster[0], measure=measure)
            scorer = make_scorer(cfg, tiny.weights, device="cpu", features=features)
            assert isinstance(scorer, RayScorer) == (engine == "ray")
            sp = ScoringPass(scorer, pool, cfg.scoring, names, audit=True)
            runs.append((select(strategy, ids, 8, np.random.default_rng(7), sp, cfg.selection), sp))
        (a, pa), (b, pb) = runs
        assert a.ids.tolist() == b.ids.tolist() and a.sources == b.sources
        np.testing.assert_array_equal(a.scores, b.scores)
        assert pa.n_scored == pb.n_scored and pa.audit_images == pb.audit_images
        assert pa.audit_boxes == pb.audit_boxes
        done = sorted(pa.predictions)
        mine, theirs = pa.predict(done), pb.predict(done)
        assert all(_same(x, y) for x, y in zip(mine, theirs))
        assert sum(len(x.cls) for x in mine) > 0  # boxes and class vectors compared, not only empty images
        if strategy == "mix":
            assert pb.n_scored < len(pool)  # only the random subset saw the model
            assert all(np.array_equal(x.flip, y.flip) for x, y in zip(mine, theirs) if x.ok)
        else:  # coreset: every image, each readable one with its pooled feature
            assert pb.n_scored == len(pool) and pb.predictions[len(tiny.data.train)].error
            assert all(y.feature is not None for y in theirs if y.ok)
    assert scorer.names == names and scorer.duplicates == 0
    scorer.close()


def _actor_pids(head: int) -> list[int]:
    import psutil

    out = []
    for p in psutil.Process(head).children(recursive=True):
        try:
            if "_ScoreActor" in " ".join(p.cmdline()):
                out.append(p.pid)
        except psutil.Error:
            continue
    return out


def test_actor_killed_mid_pass_every_image_once(cluster, tiny, tmp_path):
    """SIGKILL one of the two actors after the first results arrive: Ray restarts it and re-runs its batches;
    the pass returns each image exactly once, in order, with the predictions of an undisturbed pass."""
    from detal.scoring import make_scorer

    src = list(tiny.data.train)
    pool = []
    for i in range(480):  # 120 batches of 4: the pass lasts well beyond the kill
        p = tmp_path / f"img_{i:04d}.png"
        p.symlink_to(src[i % len(src)])
        pool.append(p)
    scorer = make_scorer(_cfg("ray", cluster[0]), tiny.weights, device="cpu")
    out, killed = [], None
    for pred in scorer.iter_predictions(pool):
        out.append(pred)
        if killed is None:
            pids = _actor_pids(cluster[1].pid)
            assert pids, "no scoring actor found under the Ray head"
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
            at = len(out)
    assert at < len(pool) / 2  # the kill landed early in the pass
    assert [str(p.path) for p in out] == [str(p) for p in pool]  # nothing missing, nothing twice, in order
    assert killed not in _actor_pids(cluster[1].pid)  # that process is gone; the pass finished without it
    reference = {src_path.name: pred for src_path, pred in zip(src, make_scorer(_cfg("local"), tiny.weights,
                                                                                  device="cpu").predict(src))}
    for i, pred in enumerate(out):
        ref = reference[src[i % len(src)].name]
        assert np.array_equal(pred.probs, ref.probs) and np.array_equal(pred.boxes, ref.boxes)


def test_simulate_runs_on_the_cluster(cluster, tiny, tmp_path):
    """A whole `detal simulate` (2 rounds, entropy) with scoring.engine: ray on the cluster. (That the Ray
    engine selects what the local one does is the first test's; this one is the driver end to end.)"""
    import pandas as pd

    cfg = {"experiment": "on-ray", "data": str(tiny.data.data_yaml), "output_dir": str(tmp_path / "runs"),
           "seeds": [0], "strategies": ["entropy"],
           "model": {"arch": "yolov8n.yaml", "imgsz": 64, "batch": 8, "device": "cpu"},
           "schedule": {"seed_fraction": 0.25, "select_fraction": 0.25, "epochs_per_round": 1, "total_epochs": 2},
           "selection": {"subset_fraction": 0.5},
           "scoring": {"engine": "ray", "batch": 4, "conf": 0.002},
           "ray": {"address": cluster[0], "actors": 2}}
    path = tmp_path / "on-ray.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "YOLO_OFFLINE": "1", "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}
    res = subprocess.run([sys.executable, "-m", "detal.cli", "simulate", "-c", str(path)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "runs" / "on-ray"
    metrics = pd.read_csv(run / "metrics.csv")
    assert len(metrics) == 2 and metrics["scored_images"].iloc[0] == 9  # entropy: a random half of the 18 left
    sel = pd.read_csv(run / "selections.csv")
    assert len(sel) == 6 and sel["image"].is_unique  # a quarter of the 24-image pool
    assert (sel["score"] >= 0).all()


def test_unreachable_cluster_is_one_line_exit_2(tiny, tmp_path):
    """`detal score` with scoring.engine ray and nobody at ray.address: one line naming it and the fix."""
    port = _free_port()  # closed: nothing listens there
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": str(tiny.data.data_yaml), "model": {"imgsz": 64}}))
    res = subprocess.run([sys.executable, "-m", "detal.cli", "score", "-c", str(cfg), "--weights", str(tiny.weights),
                          "--images", str(tiny.data.root / "images" / "val"), "--out", str(tmp_path / "s.csv"),
                          "--set", "scoring.engine=ray", "--set", f"ray.address=127.0.0.1:{port}"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert f"ray.address 127.0.0.1:{port}" in lines[0] and "ray start --head" in lines[0]
    assert "ray.address: null" in lines[0]


@pytest.mark.parametrize("address", ["localhost", "10.0.0.5:notaport", "http://10.0.0.5:6379", "ray://:10001",
                                     "10.0.0.5:70000"])
def test_bad_address_is_refused_at_load(address):
    from detal.config import parse_config
    from detal.errors import ConfigError

    with pytest.raises(ConfigError, match=r"ray\.address: expected HOST:PORT"):
        parse_config({"data": "d.yaml", "ray": {"address": address}}, "c.yaml")


@pytest.mark.parametrize("address", [None, "auto", "10.0.0.5:6379", "ray://head.example:10001", "[::1]:6379"])
def test_good_addresses_load(address):
    from detal.config import parse_config

    assert parse_config({"data": "d.yaml", "scoring": {"engine": "ray"}, "ray": {"address": address}}).ray.address == address


def test_ray_is_not_imported_by_the_local_engine():
    """`detal --help` and the local engine stay fast: ray loads only when scoring.engine is ray."""
    code = ("import sys, detal.cli, detal.scoring, detal.config; "
            "detal.config.parse_config({'data': 'd.yaml', 'scoring': {'engine': 'ray'}}); "
            "print('ray' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "False", res.stderr


def test_training_registers_no_ray_tune_callback(tiny, tmp_path):
    """With Ray installed Ultralytics adds its Ray Tune callback to every trainer (it warns once per process
    outside a Tune session); detal's trainer drops it."""
    from ultralytics.utils import SETTINGS

    from detal.detector.train import _trainer_class

    trainer = _trainer_class()(overrides={"model": "yolov8n.yaml", "data": str(tiny.data.data_yaml), "imgsz": 64,
                                          "device": "cpu", "epochs": 1, "project": str(tmp_path), "name": "t"})
    modules = {str(getattr(h, "__module__", "")) for hooks in trainer.callbacks.values() for h in hooks}
    assert SETTINGS["raytune"] is True  # the case this covers: Ultralytics' default
    assert not any(m.endswith("callbacks.raytune") for m in modules)
    assert any(m.startswith("ultralytics") for m in modules)  # the rest of Ultralytics' callbacks stay
