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

from detal.labelstudio import server

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
    from detal.labelstudio import client as ls

    return ls.connect(ls_server.url, ls_server.token, timeout=60)
