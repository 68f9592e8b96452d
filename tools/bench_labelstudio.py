"""Benchmark: push pre-labels to a real Label Studio server, detal's bulk import vs a naive per-task loop.

Starts its own server (the project's `.labelstudio/venv`, a temporary data dir, a free port), pushes
N tasks with 5 boxes each through `detal.labelstudio.client.push`, then creates a sample of tasks the naive
way (one task request, then one prediction request, per image) and extrapolates it to N.
Last line: `tasks_per_s=<x> speedup_vs_per_task=<y>` (targets: >= 500 tasks/s, >= 20x).

    .venv/bin/python tools/bench_labelstudio.py [--tasks 2000] [--sample 50]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detal.labelstudio import client as ls  # noqa: E402
from detal.labelstudio.format import prediction_regions  # noqa: E402
from detal.labelstudio import server  # noqa: E402
from detal.types import Prediction  # noqa: E402

NAMES = ["a", "b", "c"]
W, H = 160, 120


def make_predictions(folder: Path, n: int, rng: np.random.Generator) -> list[Prediction]:
    folder.mkdir(parents=True)
    tile = np.full((H, W, 3), 200, np.uint8)
    out = []
    for i in range(n):
        p = folder / f"img{i:05d}.png"
        cv2.imwrite(str(p), tile)
        x0, y0 = rng.uniform(0, W - 40, 5), rng.uniform(0, H - 40, 5)
        boxes = np.stack([x0, y0, x0 + rng.uniform(5, 40, 5), y0 + rng.uniform(5, 40, 5)], 1).astype(np.float32)
        out.append(Prediction(path=p, width=W, height=H, boxes=boxes, conf=rng.uniform(0.3, 1, 5).astype(np.float32),
                              cls=rng.integers(0, 3, 5), probs=np.zeros((5, 3), np.float32)))
    return out


def naive(conn: ls.Connection, pid: int, preds: list[Prediction], root: Path) -> float:
    """What a first script does: one POST per task, one POST per prediction."""
    client = conn.client
    t0 = time.perf_counter()
    for p in preds:
        key = ls.image_key(p.path, root)
        task = client.tasks.create(project=pid, data={"image": ls.image_url(key), "path": key})
        regions = prediction_regions(p.boxes, p.cls, p.conf, W, H, NAMES)
        client.predictions.create(task=task.id, result=regions, model_version="bench", score=float(p.conf.mean()))
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=2000, help="tasks pushed through detal (default 2000)")
    ap.add_argument("--sample", type=int, default=50, help="tasks created by the naive loop, extrapolated (default 50)")
    ap.add_argument("--batch-size", type=int, default=1000, help="tasks per import request (default 1000)")
    ap.add_argument("--venv", default=str(REPO / ".labelstudio" / "venv"), help="Label Studio venv")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench_ls_") as tmp:
        tmp = Path(tmp)
        root = tmp / "root"
        preds = make_predictions(root / "ds" / "images", args.tasks, rng)
        naive_preds = make_predictions(root / "naive" / "images", args.sample, rng)
        token = secrets.token_hex(20)
        server.install(Path(args.venv))
        t0 = time.perf_counter()
        info = server.start(data_dir=tmp / "data", document_root=root, username="bench@detal.local",
                            password=secrets.token_hex(8), token=token, venv=Path(args.venv), timeout=300)
        print(f"server up in {time.perf_counter() - t0:.1f} s at {info.url}", flush=True)
        try:
            conn = ls.connect(info.url, token, timeout=300)
            pid = ls.ensure_project(conn, "bench-detal", NAMES, document_root=root, image_root=root / "ds" / "images")
            scores = rng.uniform(0, 3, args.tasks)
            t0 = time.perf_counter()
            res = ls.push(conn, pid, preds, names=NAMES, document_root=root, round_idx=1, model_version="bench",
                          scores=scores, batch_size=args.batch_size)
            detal_s = time.perf_counter() - t0
            assert res.created == args.tasks, res
            t0 = time.perf_counter()
            again = ls.push(conn, pid, preds, names=NAMES, document_root=root, round_idx=1, model_version="bench",
                            scores=scores, batch_size=args.batch_size)
            repush_s = time.perf_counter() - t0
            assert again.created == 0 and again.unchanged == args.tasks, again

            pid2 = ls.ensure_project(conn, "bench-naive", NAMES, document_root=root, image_root=root / "naive" / "images")
            naive_s = naive(conn, pid2, naive_preds, root)
        finally:
            server.stop(info.data_dir)
    per_task = naive_s / args.sample
    naive_total = per_task * args.tasks
    rate = args.tasks / detal_s
    print(f"detal push: {args.tasks} tasks x 5 boxes in {detal_s:.2f} s ({rate:.0f} tasks/s, batches of {args.batch_size})")
    print(f"detal re-push (idempotent, nothing created): {repush_s:.2f} s")
    print(f"naive loop: {args.sample} tasks in {naive_s:.2f} s ({per_task * 1000:.1f} ms/task) "
          f"-> {naive_total:.1f} s extrapolated to {args.tasks}")
    print(f"tasks_per_s={rate:.1f} speedup_vs_per_task={naive_total / detal_s:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
