"""One real Label Studio server for the whole `labelstudio` test session (first boot 30-70 s).

The server runs from the project's Label Studio venv (`.labelstudio/venv`, created by `make test-deps`
or installed here on first use), with a fresh data dir and document root under pytest's tmp dir, a
random token, on a free loopback port, and is stopped at the end of the session.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from detal import labelstudio_server as server
from detal.data import write_labels

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LiveServer:
    url: str
    token: str
    username: str
    password: str
    document_root: Path
    data_dir: Path
    log_path: Path


@pytest.fixture(scope="session")
def ls_server(tmp_path_factory) -> LiveServer:
    venv = Path(os.environ.get("DETAL_LS_VENV", REPO / ".labelstudio" / "venv"))
    server.install(venv)  # no-op when the pinned version is already there
    base = tmp_path_factory.mktemp("labelstudio")
    root = base / "root"
    root.mkdir()
    token = "t" + secrets.token_hex(20)
    user, password = "tester@detal.local", "pw-" + secrets.token_hex(8)
    info = server.start(data_dir=base / "data", document_root=root, username=user, password=password,
                        token=token, venv=venv, timeout=300)
    try:
        yield LiveServer(info.url, token, user, password, root, info.data_dir, info.log_path)
    finally:
        server.stop(info.data_dir)


@pytest.fixture
def conn(ls_server):
    from detal import labelstudio as ls

    return ls.connect(ls_server.url, ls_server.token, timeout=60)


def make_images(folder: Path, n: int, *, seed: int, size=(96, 64), boxes_per_image: int = 2,
                nc: int = 3) -> list[tuple[Path, np.ndarray]]:
    """n PNG images with coloured rectangles and their ground-truth YOLO labels (written next to them)."""
    rng = np.random.default_rng(seed)
    w, h = size
    out = []
    for i in range(n):
        img = np.full((h, w, 3), 200, np.uint8)
        rows = []
        for _ in range(boxes_per_image):
            bw, bh = int(rng.integers(10, w // 2)), int(rng.integers(10, h // 2))
            x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            c = int(rng.integers(0, nc))
            cv2.rectangle(img, (x0, y0), (x0 + bw, y0 + bh), (60 * c, 200 - 60 * c, 40), -1)
            rows.append([c, (x0 + bw / 2) / w, (y0 + bh / 2) / h, bw / w, bh / h])
        p = folder / "images" / f"img{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), img)
        labels = np.asarray(rows, dtype=np.float64)
        write_labels(folder / "labels" / f"img{i:03d}.txt", labels)
        out.append((p, labels))
    return out
