"""Pool scoring on Ray (scoring.engine: ray) against the local scorer, side by side in one run, and the
driver's peak memory as the pool grows.

    .venv/bin/python tools/bench_ray.py          # 4000 images at 160 px, 3 repeats; driver memory at 20k and 100k
    .venv/bin/python tools/bench_ray.py --quick  # 1500 images, 1 repeat; memory at 2k and 10k, extrapolated (< 5 min)
    .venv/bin/python tools/bench_ray.py --no-memory  # the throughput part only (~4 min); last line ray2_vs_local=

Throughput: the same files, weights (a random-init YOLOv8n, 80 classes: nothing can be downloaded here),
image size, batch and thresholds for every engine; repeats interleaved (local, Ray with 1 actor, Ray with
2 actors) on one local Ray started once. A Ray pass is timed whole, as a round runs it: dataset planning,
actor start (a process importing torch and loading the weights) and the results streamed back; its start
(until the first result) and its steady rate after that are printed beside it. Medians are quoted.

Camera frames: 1280x720 JPEGs decoded and letterboxed to 640 px by the detector's own `batches.load_batch`
on one thread (the CPU work that feeds each GPU actor on a cluster), then the whole Scorer at 640 px on one
torch thread (a CPU actor's rate on such frames). Merge: the driver's own work per image (columns back to
Predictions), on 20k synthetic results.

Driver memory: a fresh process per pool size, images of 32-48 px made on the fly, scored at imgsz 32 by
2 actors; its peak RSS is sampled every 20 ms. Twice: the engine alone (results streamed and dropped, as
`detal score` turns them into rows), then through the round's own callback (`scoring.ScoringPass`, which
keeps every prediction so that the selected images become pre-labels without a second pass). The driver
never imports torch here: what it holds is Ray, the paths and the per-image results.

Last line: `ray2_vs_local=<ratio> driver_mb_100k=<MB>` (Ray with 2 actors over local, images/s of whole
passes; the round driver's peak RSS at 100k images, extrapolated linearly from the two pools with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))


def _config(engine: str, actors: int, imgsz: int, batch: int, conf: float):
    from detal.config import parse_config

    return parse_config({"data": "unused.yaml", "model": {"imgsz": imgsz},
                         "scoring": {"engine": engine, "batch": batch, "conf": conf, "workers": 2},
                         "prelabel": {"conf": max(conf, 0.25)}, "ray": {"actors": actors}})


def _pass(scorer, paths) -> tuple[float, float, float, int]:
    """(seconds, seconds to the first result, steady images/s, boxes) of one whole pass with per-image scores.

    Steady: the rate at which the last three quarters of the results arrived (results come a block at a time).
    """
    from detal.acquisition.uncertainty import image_scores

    t0 = time.perf_counter()
    first, boxes, chunk = None, 0, []
    quarter, t_quarter = len(paths) // 4, None
    for i, p in enumerate(scorer.iter_predictions(paths), start=1):
        if first is None:
            first = time.perf_counter() - t0
        if i == quarter:
            t_quarter = time.perf_counter()
        boxes += len(p.probs)
        chunk.append(p.probs)
        if len(chunk) == 256:
            image_scores(chunk)
            chunk = []
    if chunk:
        image_scores(chunk)
    end = time.perf_counter()
    steady = (len(paths) - quarter) / (end - t_quarter) if t_quarter and end > t_quarter else float("nan")
    return end - t0, first or 0.0, steady, boxes


def throughput(args, tmp: Path) -> float:
    from bench_scoring import make_images, random_init_weights

    from detal.engines.ray_scoring import connect
    from detal.scoring import make_scorer

    t = time.perf_counter()
    paths = make_images(tmp / "images", args.images, (args.imgsz,), seed=0)
    weights = random_init_weights(tmp / "yolov8n_random.pt")
    print(f"{len(paths)} images of {args.imgsz} px made in {time.perf_counter() - t:.1f} s; "
          f"batch {args.batch}, conf {args.conf}, {os.cpu_count()} CPUs")
    connect(None)  # one local Ray for every Ray pass
    engines = {"local": _config("local", 1, args.imgsz, args.batch, args.conf),
               "ray1": _config("ray", 1, args.imgsz, args.batch, args.conf),
               "ray2": _config("ray", 2, args.imgsz, args.batch, args.conf)}
    scorers = {name: make_scorer(cfg, weights, device="cpu") for name, cfg in engines.items()}
    _pass(scorers["local"], paths[: args.batch * 2])  # warm-up (the Ray passes start their actors each time)
    runs: dict[str, list[tuple[float, float, float, int]]] = {name: [] for name in engines}
    for r in range(args.repeats):
        for name, scorer in scorers.items():
            runs[name].append(_pass(scorer, paths))
            s, first, _, _ = runs[name][-1]
            print(f"  repeat {r + 1} {name}: {len(paths) / s:.1f} img/s ({s:.1f} s, first result at {first:.1f} s)",
                  flush=True)
    n = len(paths)
    print(f"{'engine':<7} {'img/s':>8} {'start s':>8} {'steady img/s':>13} {'boxes/img':>10}")
    rate, steady = {}, {}
    for name, rs in runs.items():
        rate[name] = statistics.median(n / s for s, _, _, _ in rs)
        start = statistics.median(f for _, f, _, _ in rs)
        steady[name] = statistics.median(r for _, _, r, _ in rs)
        print(f"{name:<7} {rate[name]:>8.1f} {start:>8.1f} {steady[name]:>13.1f} {rs[0][3] / n:>10.1f}")
    print(f"steady ray2/local {steady['ray2'] / steady['local']:.3f}; per-actor steady throughput "
          f"{steady['ray1']:.1f} img/s at {args.imgsz} px (1 CPU each, on a {os.cpu_count()}-CPU machine)")
    for s in scorers.values():
        s.close()
    return rate["ray2"] / rate["local"]


def decode(tmp: Path, n: int = 96) -> float:
    """Decode + letterbox per thread of camera-sized frames (1280x720 JPEG to 640 px): what feeds a GPU actor."""
    import cv2
    import numpy as np

    from detal.detector.batches import load_batch

    rng = np.random.default_rng(2)
    folder = tmp / "frames"
    folder.mkdir()
    paths = []
    for i in range(n):
        img = cv2.GaussianBlur(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), (0, 0), 3)
        cv2.rectangle(img, (100 + i, 200), (400 + 2 * i, 500), (40, 200, 40), -1)
        paths.append(folder / f"frame_{i:03d}.jpg")
        cv2.imwrite(str(paths[-1]), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    mb = sum(p.stat().st_size for p in paths) / n / 2**20
    load_batch(paths[:8], (640, 640), 32)  # warm-up
    rates = []
    for _ in range(3):
        t = time.perf_counter()
        for i in range(0, n, 32):
            load_batch(paths[i:i + 32], (640, 640), 32)
        rates.append(n / (time.perf_counter() - t))
    rate = statistics.median(rates)
    print(f"decode + letterbox, 1280x720 JPEG ({mb:.2f} MB each) to 640 px: {rate:.1f} img/s per thread")
    # the whole Scorer at 640 px on one torch thread: a CPU actor's rate on camera frames
    import torch

    from bench_scoring import random_init_weights
    from detal.detector import Scorer

    scorer = Scorer(random_init_weights(tmp / "yolov8n_640.pt"), imgsz=640, device="cpu", batch=16, conf=0.1, iou=0.7,
                    workers=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    scorer.predict(paths[:16])
    runs = []
    for _ in range(2):
        t = time.perf_counter()
        scorer.predict(paths[:64])
        runs.append(64 / (time.perf_counter() - t))
    torch.set_num_threads(threads)
    print(f"Scorer at 640 px on 1280x720 JPEG, 1 torch thread + 1 decode thread: {statistics.median(runs):.1f} img/s")
    return rate


def merge(n: int = 20000) -> float:
    """The driver's share per image: columns (as an actor returns them) back to Predictions, in order."""
    import numpy as np

    from detal.engines.ray_scoring import _columns, _prediction
    from detal.types import Prediction

    rng = np.random.default_rng(3)
    preds = [Prediction(Path(f"/pool/img_{i:07d}.jpg"), 1280, 720, rng.random((5, 4), np.float32) * 600,
                        rng.random(5).astype(np.float32), rng.integers(0, 80, 5), rng.random((5, 80)).astype(np.float32),
                        rng.random(256).astype(np.float32)) for i in range(n)]
    cols = _columns(list(range(n)), preds)
    t = time.perf_counter()
    out = [_prediction(cols, j, str(preds[j].path)) for j in range(n)]
    rate = len(out) / (time.perf_counter() - t)
    print(f"driver merge (columns to Predictions, 5 boxes x 80 classes + a 256-d feature each): {rate:.0f} img/s")
    return rate


def driver_memory(n: int, folder: Path, weights: Path, conf: float, keep: bool) -> dict:
    """In this (fresh) process: the first n images on 2 Ray actors; the peak RSS.

    keep: through a round's ScoringPass, which keeps every image's pre-labels (here every box: pre-label threshold
    = scoring threshold) and its score; else streamed and dropped (the engine alone, as `detal score` streams them
    into table rows).
    """
    import numpy as np
    from bench_scoring import _PeakRSS

    from detal.engines.ray_scoring import connect
    from detal.scoring import ScoringPass, make_scorer

    paths = sorted(folder.glob("*.png"))[:n]
    cfg = _config("ray", 2, 32, 64, conf)
    connect(None)
    with _PeakRSS() as mem:
        base = mem.rss()
        t = time.perf_counter()
        scorer = make_scorer(cfg, weights, device="cpu")
        if keep:
            # what a round's pass keeps: pre-labels, here at the scoring threshold (every box kept: the worst case)
            sp = ScoringPass(scorer, paths, cfg.scoring, [str(i) for i in range(80)],
                             prelabel=cfg.prelabel.model_copy(update={"conf": conf}))
            scored = sp(np.arange(len(paths)))
            got, boxes = len(scored.scores), sum(len(p.cls) for p in sp.predictions.values())
        else:
            got = boxes = 0
            for p in scorer.iter_predictions(paths):
                got, boxes = got + 1, boxes + len(p.cls)
        seconds = time.perf_counter() - t
    assert got == n
    return {"images": n, "boxes": boxes, "base_mb": base / 2**20, "peak_mb": mem.peak / 2**20, "seconds": seconds,
            "torch_loaded": "torch" in sys.modules}


def memory(args, tmp: Path) -> float:
    from bench_scoring import make_images, random_init_weights

    t = time.perf_counter()
    folder = tmp / "small"
    make_images(folder, max(args.pools), (32, 40, 48), seed=1)
    weights = random_init_weights(tmp / "yolov8n_random_small.pt")
    print(f"{max(args.pools)} images of 32-48 px made in {time.perf_counter() - t:.1f} s")
    print(f"{'driver':<28} {'pool':>7} {'seconds':>8} {'img/s':>7} {'base MB':>8} {'peak MB':>8} {'boxes/img':>10}")
    lo, hi = min(args.pools), max(args.pools)
    at_100k = {}
    for keep, what in ((False, "engine (results streamed)"), (True, "round (ScoringPass keeps)")):
        peaks = {}
        for n in args.pools:
            res = subprocess.run([sys.executable, __file__, "--driver-memory", str(n), "--folder", str(folder),
                                  "--weights", str(weights), "--conf", str(args.conf)] + (["--keep"] if keep else []),
                                 capture_output=True, text=True, timeout=3600)
            if res.returncode:
                raise SystemExit(f"driver-memory {n} failed:\n{res.stderr[-3000:]}")
            row = json.loads(res.stdout.strip().splitlines()[-1])
            peaks[n] = row["peak_mb"]
            print(f"{what:<28} {n:>7} {row['seconds']:>8.1f} {n / row['seconds']:>7.1f} {row['base_mb']:>8.0f} "
                  f"{row['peak_mb']:>8.0f} {row['boxes'] / n:>10.1f}" + ("  (torch loaded!)" if row["torch_loaded"] else ""),
                  flush=True)
        per_image = (peaks[hi] - peaks[lo]) / (hi - lo)
        at_100k[keep] = peaks[hi] + per_image * (100_000 - hi)
        print(f"{what}: peak at {hi} / at {lo} images {peaks[hi] / peaks[lo]:.2f}x, {per_image * 1024:.2f} KB more "
              f"per image" + ("" if hi == 100_000 else f"; at 100000 extrapolated linearly: {at_100k[keep]:.0f} MB"))
    return at_100k[True]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="1500 images, 1 repeat; driver memory at 2k and 10k, extrapolated to 100k")
    ap.add_argument("--images", type=int, default=4000, help="images of the throughput part (default 4000)")
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--conf", type=float, default=1e-4,
                    help="scoring threshold (default 1e-4: the random-init model then keeps ~6 boxes per 160 px image)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pools", default="20000,100000", help="pool sizes of the driver-memory part")
    ap.add_argument("--no-memory", action="store_true",
                    help="throughput, decode and merge only (the last line then has no driver_mb_100k)")
    ap.add_argument("--driver-memory", type=int, help=argparse.SUPPRESS)  # the child process of the memory part
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.driver_memory:
        print(json.dumps(driver_memory(args.driver_memory, args.folder, args.weights, args.conf, args.keep)))
        return
    if args.quick:
        args.images, args.repeats, args.pools = 1500, 1, "2000,10000"
    args.pools = [int(x) for x in args.pools.split(",")]
    with tempfile.TemporaryDirectory(prefix="detal-bench-ray-") as tmp:
        ratio = throughput(args, Path(tmp))
        decode(Path(tmp))
        merge()
        if args.no_memory:
            print(f"ray2_vs_local={ratio:.3f}")
            return
        mb = memory(args, Path(tmp))
    print(f"ray2_vs_local={ratio:.3f} driver_mb_100k={mb:.0f}")


if __name__ == "__main__":
    main()
