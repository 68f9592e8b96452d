"""Generator speed: rendering alone vs the full `generate` (render + PNG encode + label files).

    .venv/bin/python tools/bench_synthetic.py --images 1000 --imgsz 160

Target: 1000 images at 160 px in a few seconds on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from detal.synthetic import generate, image_rng, render


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--imgsz", type=int, default=160)
    args = ap.parse_args()

    t0 = time.perf_counter()
    n_boxes = sum(len(render(image_rng(0, i), args.imgsz)[1]) for i in range(args.images))
    t_render = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate(Path(tmp) / "ds", args.images, seed=0, imgsz=args.imgsz)
        t_full = time.perf_counter() - t0
    print(f"{args.images} images at {args.imgsz} px, {n_boxes} boxes")
    print(f"render only : {t_render:6.2f} s  ({args.images / t_render:7.1f} images/s)")
    print(f"generate    : {t_full:6.2f} s  ({args.images / t_full:7.1f} images/s)")
    print(f"render share of generate: {t_render / t_full:.2f}")


if __name__ == "__main__":
    main()
