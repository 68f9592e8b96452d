"""Wall time of one scheduled cycle's non-training work (pull, score, select, push) against a real server.

Starts its own Label Studio (the project's `.labelstudio/venv`, a temporary data dir, a free port),
generates a pool of N images (160 px shapes, a labelled val split), runs `detal init` (a 2% seed set
pushed), lets a bot annotate the seed set, then times two cycles through `detal.cycle.run_cycle` with
the real detector: the first trains nothing new but runs every other step; before the second the bot
annotates half of the open tasks and leaves the rest open (so the cycle also refreshes open tasks to
the new model version). Training is replaced by a stub that returns fixed random-init weights: it is
what the target excludes. The parts are timed by wrapping the real functions:

    pull     LabelStudioAnnotator.collect (all calls of the cycle)
    score    ScoringPass: model passes over the ids the strategy asked for + pre-labels of what is pushed
    select   the strategy (acquisition.selection.select) minus its scoring calls
    push     LabelStudioAnnotator.request (import, refresh of open tasks, project model_version)
    other    the rest of the run: dataset check, reconciling with the server, the state transaction
    eval     evaluation on val (printed, not part of the overhead: model work, like training)

    .venv/bin/python tools/bench_cycle.py [--pool 5000]
    .venv/bin/python tools/bench_cycle.py --pool 100000 --open 20000 --fake-detector   # issue 25's size

`--open N`: each cycle pushes N images (schedule.select_fraction = N / pool), and before cycle 2 the bot
annotates 5% of the open tasks, so cycle 2 starts with ~0.95 N open tasks and pushes N more.
`--fake-detector`: the fake backend of the tests (tests/fake_backend.py: predictions from a hash, no pixels
read) instead of the real scorer, so the numbers are the pipeline's own work, not the model's; the pool is then
a few hundred generated images hard-linked under N names (seconds to make, not 20 minutes).
Peak RSS of the process is sampled during each cycle.

Last line: `cycle_overhead_s=<s> pool=<n> open=<n> peak_mb=<MB>`: the slower of the two cycles' wall time minus
evaluation (and the training stub): pull + score + select + push + other; the higher of their peak RSS.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("YOLO_OFFLINE", "1")

from detal import detector  # noqa: E402
from detal.labelstudio import server  # noqa: E402

TIMES: dict[str, float] = defaultdict(float)


def timed(name: str, fn):
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            TIMES[name] += time.perf_counter() - t0
    return wrapper


class Backend:
    """The real detector, except that training returns fixed weights (training time is excluded)."""

    def __init__(self, weights: Path):
        self.weights = weights
        self.resolve_device = detector.resolve_device
        self.Scorer = detector.Scorer
        self.evaluate = timed("eval", detector.evaluate)

    def train(self, model, data_yaml, epochs, out_dir, **kw):
        import shutil

        out = Path(out_dir) / "weights" / "last.pt"
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(self.weights, out)
        return detector.TrainResult(out.resolve(), epochs, 0.0)


def fake_backend_timed():
    """tests/fake_backend with its evaluation timed as "eval" (training there is already a stub)."""
    sys.path.insert(0, str(REPO))
    from tests import fake_backend

    fake_backend.evaluate = timed("eval", fake_backend.evaluate)
    return fake_backend


def hardlinked_pool(root: Path, n_all: int, base: int = 300) -> Path:
    """A dataset of n_all images: `base` generated ones (10% val) and the rest hard links of the train ones."""
    from detal.synthetic import generate

    data = generate(root, base, seed=0, imgsz=160, val_fraction=0.1)
    train = sorted((root / "images" / "train").glob("*.png"))
    width = len(str(n_all))
    for i in range(n_all - base):
        src = train[i % len(train)]
        name = f"x{i:0{width}d}"
        os.link(src, src.with_name(name + ".png"))
        lab = root / "labels" / "train" / (src.stem + ".txt")
        os.link(lab, lab.with_name(name + ".txt"))
    return data


def bot(conn, pid, names, share: float, rng) -> int:
    from detal.data import image_size, label_path, read_labels
    from detal.labelstudio import client as ls
    from detal.labelstudio.format import label_regions

    spec = ls.project_spec(conn, pid, names)
    root = Path(os.environ["BENCH_DOC_ROOT"])
    n = 0
    for t in conn.client.tasks.list(project=pid, fields="all"):
        if t.annotations or rng.random() > share:
            continue
        path = root / t.data["path"]
        truth = label_path(path).with_suffix(".truth")
        w, h = image_size(path)
        ls.submit_annotation(conn, t.id, label_regions(read_labels(truth, len(names)), w, h, names, spec))
        n += 1
    return n


def main() -> int:
    import numpy as np

    from detal import round as round_mod
    from detal import scoring
    from detal.config import parse_config
    from detal.cycle import init_project, run_cycle
    from detal.labelstudio import client as ls
    from detal.labelstudio.annotator import LabelStudioAnnotator
    from detal.synthetic import generate

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", type=int, default=5000, help="images in the pool (default 5000)")
    ap.add_argument("--open", type=int, default=None,
                    help="images pushed per cycle (default 5%% of the pool); cycle 2 starts with ~95%% of them open")
    ap.add_argument("--fake-detector", action="store_true",
                    help="the tests' fake backend (no model work) and a hard-linked pool: the pipeline's own cost")
    ap.add_argument("--venv", default=str(REPO / ".labelstudio" / "venv"), help="Label Studio venv")
    args = ap.parse_args()
    n_open = args.open or max(1, round(0.05 * args.pool))
    from bench_scoring import _PeakRSS

    # pull and push: every call of the annotator; score: every model pass; select: the strategy
    LabelStudioAnnotator.collect = timed("pull", LabelStudioAnnotator.collect)
    LabelStudioAnnotator.request = timed("push", LabelStudioAnnotator.request)
    scoring.ScoringPass.predict = timed("score", scoring.ScoringPass.predict)
    scoring.ScoringPass.__call__ = timed("score", scoring.ScoringPass.__call__)
    round_mod.select = timed("select+score", round_mod.select)

    with tempfile.TemporaryDirectory(prefix="detal-bench-cycle-") as tmp:
        tmp = Path(tmp)
        root = tmp / "root"
        os.environ["BENCH_DOC_ROOT"] = str(root)
        t = time.perf_counter()
        n_all = args.pool + 30 if args.fake_detector else int(args.pool / 0.9) + 1  # fake: 30 val images
        data = (hardlinked_pool(root / "pool", n_all) if args.fake_detector
                else generate(root / "pool", n_all, seed=0, imgsz=160, val_fraction=0.1))
        for p in (data.parent / "labels" / "train").glob("*.txt"):  # an unlabelled pool; the bot knows the truth
            p.rename(p.with_suffix(".truth"))
        names = yaml.safe_load(data.read_text())["names"]
        names = [names[i] for i in sorted(names)] if isinstance(names, dict) else names
        print(f"generated {n_all} images ({args.pool} pool) in {time.perf_counter() - t:.1f} s", flush=True)
        weights = tmp / "yolov8n_random.pt"
        if not args.fake_detector:  # (the fake never imports torch: its memory is the pipeline's own)
            from ultralytics import YOLO
            from ultralytics.nn.tasks import DetectionModel

            yolo = YOLO("yolov8n.yaml")  # random init with the dataset's classes, as a trained round would have
            yolo.model = DetectionModel("yolov8n.yaml", nc=len(names), verbose=False)
            yolo.model.names = dict(enumerate(names))
            yolo.save(str(weights))
        token = "b" + secrets.token_hex(16)
        server.install(Path(args.venv))
        info = server.start(data_dir=tmp / "data", document_root=root, username="bench@detal.local",
                            password="pw-" + secrets.token_hex(6), token=token, venv=Path(args.venv), timeout=300)
        os.environ["DETAL_BENCH_TOKEN"] = token
        try:
            cfg = parse_config({
                "experiment": "bench", "data": str(data), "output_dir": str(tmp / "runs"),
                "model": {"imgsz": 160, "device": "cpu"},
                "schedule": {"seed_fraction": 0.02, "select_fraction": n_open / args.pool, "epochs_per_round": 1,
                             "total_epochs": 3},
                "labelstudio": {"url": info.url, "api_key_env": "DETAL_BENCH_TOKEN", "document_root": str(root),
                                "timeout": 300},
                "cycle": {"strategy": "mix", "min_new_labels": 1}})
            backend = fake_backend_timed() if args.fake_detector else Backend(weights)
            t = time.perf_counter()
            print(init_project(cfg, backend=backend, quiet=True), f"({time.perf_counter() - t:.1f} s)", flush=True)
            conn = ls.connect(info.url, token, timeout=300)
            pid = ls.find_project(conn, ls.project_title(cfg))
            rng = np.random.default_rng(0)
            overheads, peaks = [], []
            for c, share in ((1, 1.0), (2, 0.05 if args.open else 0.5)):
                print(f"bot annotated {bot(conn, pid, names, share, rng)} tasks", flush=True)
                TIMES.clear()
                t = time.perf_counter()
                with _PeakRSS() as mem:
                    out = run_cycle(cfg, backend=backend, quiet=True)
                wall = time.perf_counter() - t
                peaks.append(mem.peak / 2**20)
                score = TIMES["score"]
                select = TIMES["select+score"] - min(TIMES["select+score"], score)
                parts = {"pull": TIMES["pull"], "score": score, "select": select, "push": TIMES["push"]}
                parts["other"] = wall - TIMES["eval"] - sum(parts.values())
                overhead = wall - TIMES["eval"]
                overheads.append(overhead)
                print(f"cycle {c}: {out.message}")
                print(f"  wall {wall:.1f} s = eval {TIMES['eval']:.1f} s + overhead {overhead:.1f} s ("
                      + ", ".join(f"{k} {v:.1f} s" for k, v in parts.items()) + f"), peak RSS {peaks[-1]:.0f} MB",
                      flush=True)
        finally:
            server.stop(info.data_dir)
    print(f"cycle_overhead_s={max(overheads):.1f} pool={args.pool} open={n_open} peak_mb={max(peaks):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
