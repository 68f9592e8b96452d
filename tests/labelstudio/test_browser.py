"""Headless Chromium opens a pushed task in the Label Studio UI: the pre-label regions are drawn.

Debian's Chromium (`apt-get install chromium`) driven by Playwright; Playwright's own browser
download is never used (no internet here).
"""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from detal.labelstudio import client as ls
from detal.types import Prediction

from tests.labelstudio.helpers import NAMES

pytestmark = pytest.mark.labelstudio
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
NAMES = ["red", "green"]


def test_prelabels_drawn_in_ui(ls_server, conn, tmp_path):
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM), "Chromium missing: apt-get install -y chromium (make test-deps does it)"
    folder = ls_server.document_root / "browser" / "images"
    folder.mkdir(parents=True)
    image = folder / "scene.png"
    pix = np.full((240, 320, 3), 220, np.uint8)
    boxes = np.array([[20, 20, 100, 90], [150, 100, 300, 220], [10, 150, 60, 200]], np.float32)
    for (x0, y0, x1, y1), c in zip(boxes.astype(int), (0, 1, 0)):
        cv2.rectangle(pix, (x0, y0), (x1, y1), (0, 0, 255) if c == 0 else (0, 255, 0), -1)
    cv2.imwrite(str(image), pix)
    pred = Prediction(path=image, width=320, height=240, boxes=boxes, conf=np.array([0.9, 0.8, 0.4], np.float32),
                      cls=np.array([0, 1, 0]), probs=np.zeros((3, 2), np.float32))
    pid = ls.ensure_project(conn, "test-browser", NAMES, document_root=ls_server.document_root, image_root=folder)
    res = ls.push(conn, pid, [pred], names=NAMES, document_root=ls_server.document_root, round_idx=1,
                  model_version="ui-model", scores={image: 1.5})
    task_id = res.task_ids[image.resolve()]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{ls_server.url}/user/login/")
            page.fill('input[name="email"]', ls_server.username)
            page.fill('input[name="password"]', ls_server.password)
            page.click('button[type="submit"]')
            page.wait_for_load_state("networkidle")
            page.goto(f"{ls_server.url}/projects/{pid}/data?task={task_id}")
            # regions listed in the outliner, and drawn as Konva rectangles on the image canvas
            page.wait_for_function(
                "document.querySelectorAll('.lsf-tree__node_type_rectangleregion').length >= 3", timeout=90_000)
            page.wait_for_function(
                "window.Konva && Konva.stages.some(s => s.find('Rect').length >= 3)", timeout=30_000)
            page.wait_for_function("[...document.querySelectorAll('img')].some("
                                   "i => i.src.includes('local-files') && i.complete && i.naturalWidth > 0)",
                                   timeout=30_000)
            state = page.evaluate("""() => ({
                rects: Konva.stages.map(s => s.find('Rect').length).reduce((a, b) => a + b, 0),
                regions: [...document.querySelectorAll('.lsf-tree__node_type_rectangleregion .lsf-outliner-item__title')]
                           .map(e => e.textContent.trim()),
                images: [...document.querySelectorAll('img')].filter(i => i.src.includes('local-files'))
                           .map(i => [i.naturalWidth, i.naturalHeight]),
            })""")
            shot = tmp_path / "task.png"
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert state["regions"] == ["red", "green", "red"]
    assert state["rects"] == 3
    assert state["images"] == [[320, 240]]  # the image itself came through the local-files storage
    assert shot.stat().st_size > 10_000
