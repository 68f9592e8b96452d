"""Scoring throughput: bare forward vs Ultralytics `model.predict` vs the detal Scorer, side by side in one run.

    .venv/bin/python tools/bench_scoring.py                  # 512 synthetic 160 px images, batch 32, 5 repeats
    .venv/bin/python tools/bench_scoring.py --weights W.pt   # a trained model instead of the random-init one
    .venv/bin/python tools/bench_scoring.py --scale          # 5k / 10k / 20k pools: time and peak RSS growth

Model: by default a random-init YOLOv8n (80 classes, from yolov8n.yaml; nothing can be downloaded here).
Its class scores all sit near the Detect bias prior (~1e-4..1e-3), so with the default --conf 1e-4 almost
every anchor passes the threshold and NMS works on hundreds of boxes per image: a heavier NMS and
class-vector load than a trained model at the scoring threshold (a few boxes per image), i.e. the
unfavourable case for the scorer, which carries the full (n, 80) class vector of every kept box. The mean
number of kept boxes per image is printed for both predict and the scorer.

All three measurements use the same files, batch size, image size, device and thresholds:
  forward  - model(x) on tensors preprocessed once beforehand (no decode, no NMS): the ceiling;
  predict  - YOLO(weights).predict(paths, stream=True, batch=B, ...) consumed to the end;
  scorer   - detal.detector.Scorer.iter_predictions (decode + letterbox + forward + NMS + class vectors +
             pooled backbone features) followed by per-image entropy scores from detal.uncertainty.
Each is repeated --repeats times, interleaved, after one warm-up pass; medians are quoted.
The last line is `scorer_vs_predict=<ratio> scorer_vs_forward=<ratio>` (images/s ratios).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("YOLO_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_images(out: Path, n: int, sizes: tuple[int, ...], seed: int = 0) -> list[Path]:
    """Synthetic photos-ish: noisy gradient background, 1-6 filled shapes; PNG, one file per image."""
    import cv2

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        w, h = int(rng.choice(sizes)), int(rng.choice(sizes))
        base = rng.integers(40, 200, 3)
        img = (np.linspace(0, 60, w)[None, :, None] + base[None, None, :]).repeat(h, 0)
        img = np.clip(img + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        for _ in range(int(rng.integers(1, 7))):
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
            r = int(rng.integers(max(2, min(w, h) // 12), max(3, min(w, h) // 4)))
            if rng.random() < 0.5:
                cv2.circle(img, (cx, cy), r, colour, -1)
            else:
                cv2.rectangle(img, (cx - r, cy - r // 2), (cx + r, cy + r // 2), colour, -1)
        p = out / f"img_{i:06d}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def random_init_weights(path: Path) -> Path:
    from ultralytics import YOLO

    YOLO("yolov8n.yaml").save(str(path))
    return path


def run_scorer(scorer, paths, measure: str = "entropy", reduction: str = "sum") -> tuple[int, int]:
    """The full scoring path the loop runs: predictions -> per-image scores (kept), predictions dropped."""
    from detal.acquisition.uncertainty import image_scores

    n_img = n_box = 0
    chunk = []
    for p in scorer.iter_predictions(paths):
        chunk.append(p.probs)
        n_img += 1
        n_box += len(p.probs)
        if len(chunk) == 256:
            image_scores(chunk, measure=measure, reduction=reduction)
            chunk = []
    if chunk:
        image_scores(chunk, measure=measure, reduction=reduction)
    return n_img, n_box


def bench(args) -> None:
    import torch
    from ultralytics import YOLO

    from detal.detector import Scorer, resolve_device

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="detal-bench-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        paths = make_images(tmp / "images", args.images, (args.imgsz,), seed=0)
        print(f"generated {len(paths)} images of {args.imgsz} px in {time.perf_counter() - t:.1f} s")
        weights = Path(args.weights) if args.weights else random_init_weights(tmp / "yolov8n_random.pt")
        scorer = Scorer(weights, imgsz=args.imgsz, device=device, batch=args.batch, conf=args.conf, iou=args.iou,
                        workers=args.workers, features=True)
        yolo = YOLO(str(weights))
        pred_kw = dict(imgsz=args.imgsz, conf=args.conf, iou=args.iou, batch=args.batch, device=device,
                       verbose=False, stream=True)
        if scorer.fp16:
            pred_kw["quantize"] = 16  # same precision as the scorer (fp16 on CUDA only)

        # forward: the scorer's own fused AutoBackend model on tensors decoded and letterboxed beforehand
        batches = [scorer._load(paths[i:i + args.batch]).tensor for i in range(0, len(paths), args.batch)]
        tensors = [torch.from_numpy(b).to(scorer.device).permute(0, 3, 1, 2) for b in batches]

        def forward() -> tuple[int, int]:
            with torch.inference_mode():
                for x in tensors:
                    scorer._model((x.half() if scorer.fp16 else x.float()).div_(255))
            if scorer.device.type == "cuda":
                torch.cuda.synchronize()
            return len(paths), 0

        def predict() -> tuple[int, int]:
            n = b = 0
            for r in yolo.predict([str(p) for p in paths], **pred_kw):
                n += 1
                b += len(r.boxes)
            return n, b

        def score() -> tuple[int, int]:
            return run_scorer(scorer, paths)

        runs = {"forward": forward, "predict": predict, "scorer": score}
        rates: dict[str, list[float]] = {k: [] for k in runs}
        boxes: dict[str, float] = {}
        for name, fn in runs.items():  # warm-up: model setup, allocator, page cache
            fn()
        # Ultralytics' select_device sets torch threads to cpu_count - 1 (1 on 2 cores) when predict's model is
        # set up (first call only); pin one value for every method after that, so all run at the same count.
        if args.threads:
            torch.set_num_threads(args.threads)
        load0 = os.getloadavg()[0]
        order = list(runs)
        for rep in range(args.repeats):  # rotate the order so no method always runs right after the same one
            for name in order[rep % 3:] + order[:rep % 3]:
                fn = runs[name]
                t = time.perf_counter()
                n, b = fn()
                dt = time.perf_counter() - t
                rates[name].append(n / dt)
                boxes[name] = b / max(n, 1)
        print(f"device={device} torch_threads={torch.get_num_threads()} images={len(paths)} imgsz={args.imgsz} "
              f"batch={args.batch} conf={args.conf} iou={args.iou} workers={args.workers} "
              f"weights={'random-init yolov8n (80 classes)' if not args.weights else args.weights}")
        print(f"load average {load0:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
              "(other processes on the machine make single runs noisy; compare medians)")
        print(f"{'method':<8} {'median img/s':>12} {'min':>8} {'max':>8} {'boxes/img':>10}")
        med = {}
        for name in runs:
            med[name] = statistics.median(rates[name])
            bx = f"{boxes[name]:.1f}" if name != "forward" else "-"
            print(f"{name:<8} {med[name]:>12.1f} {min(rates[name]):>8.1f} {max(rates[name]):>8.1f} {bx:>10}")
        print(f"scorer_vs_predict={med['scorer'] / med['predict']:.3f} scorer_vs_forward={med['scorer'] / med['forward']:.3f}")


class _PeakRSS:
    """Samples this process's RSS every 20 ms in a thread; .peak is the maximum seen since start()."""

    def __init__(self):
        import psutil

        self._proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def rss(self) -> int:
        return self._proc.memory_info().rss

    def __enter__(self):
        self.peak = self.rss()
        self._stop.clear()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.rss())


def scale(args) -> None:
    from detal.detector import Scorer, resolve_device

    device = resolve_device(args.device)
    pools = [int(x) for x in args.pools.split(",")]
    with tempfile.TemporaryDirectory(prefix="detal-scale-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        paths = make_images(tmp / "images", max(pools), (64, 72, 80, 88, 96), seed=1)
        du = sum(p.stat().st_size for p in paths) / 1e6
        print(f"generated {len(paths)} distinct images of 64-96 px ({du:.0f} MB) in {time.perf_counter() - t:.1f} s")
        weights = Path(args.weights) if args.weights else random_init_weights(tmp / "yolov8n_random.pt")
        scorer = Scorer(weights, imgsz=args.imgsz, device=device, batch=args.batch, conf=args.conf, iou=args.iou,
                        workers=args.workers, features=True)
        run_scorer(scorer, paths[: args.batch * 2])  # warm-up
        print(f"device={device} imgsz={args.imgsz} batch={args.batch} conf={args.conf} workers={args.workers}; "
              "kept per image: one score + one 256-d feature (what selection needs)")
        print(f"{'pool':>7} {'seconds':>9} {'img/s':>8} {'boxes/img':>10} {'peak RSS growth MB':>19} {'s per 1k':>9}")
        rows = []
        for n in pools:
            with _PeakRSS() as mem:
                base = mem.rss()
                t = time.perf_counter()
                scores, feats, n_box = [], [], 0
                from detal.acquisition.uncertainty import image_scores

                chunk = []
                for p in scorer.iter_predictions(paths[:n]):
                    feats.append(p.feature)
                    chunk.append(p.probs)
                    n_box += len(p.probs)
                    if len(chunk) == 256:
                        scores.append(image_scores(chunk))
                        chunk = []
                if chunk:
                    scores.append(image_scores(chunk))
                dt = time.perf_counter() - t
            growth = (mem.peak - base) / 2**20
            assert sum(len(s) for s in scores) == n
            rows.append((n, dt, growth))
            print(f"{n:>7} {dt:>9.1f} {n / dt:>8.1f} {n_box / n:>10.1f} {growth:>19.1f} {1000 * dt / n:>9.2f}")
            del scores, feats
        per_k = [1000 * dt / n for n, dt, _ in rows]
        linear = max(per_k) / min(per_k)
        worst = max(g for _, _, g in rows)
        print(f"time per 1k images max/min = {linear:.2f} (1.0 = perfectly linear); worst peak RSS growth "
              f"{worst:.0f} MB ({'OK' if worst < 500 else 'OVER'} the 500 MB bar)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=512, help="number of synthetic images (default 512)")
    ap.add_argument("--imgsz", type=int, default=160, help="inference size (default 160)")
    ap.add_argument("--batch", type=int, default=32, help="batch size for every method (default 32)")
    ap.add_argument("--conf", type=float, default=1e-4, help="confidence threshold (default 1e-4: heavy NMS load)")
    ap.add_argument("--iou", type=float, default=0.7)
    ap.add_argument("--device", default="auto", help="auto | cpu | 0 ...")
    ap.add_argument("--workers", type=int, default=2, help="scorer decode threads (default 2)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch intra-op threads for every method (default 0: keep Ultralytics' cpu_count - 1)")
    ap.add_argument("--weights", help="a trained .pt instead of the random-init yolov8n")
    ap.add_argument("--scale", action="store_true", help="pools of --pools small images: time and peak RSS growth")
    ap.add_argument("--pools", default="5000,10000,20000")
    args = ap.parse_args(argv)
    scale(args) if args.scale else bench(args)


if __name__ == "__main__":
    main()
