"""report.html in headless Chromium, opened from disk: every figure loads, nothing logs an error, nothing is
fetched from anywhere but the file itself.

Debian's Chromium driven by Playwright (its own browser download fails offline); `make test-deps`
installs it.
"""

from __future__ import annotations

import shutil

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def test_report_opens_from_disk(report, tmp_path):
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM), "Chromium missing: apt-get install -y chromium (make test-deps does it)"
    errors, requests = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri(), wait_until="load")
            images = page.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
            layout = page.evaluate("({width: document.documentElement.scrollWidth, "
                                   "imgs: [...document.images].map(i => i.getBoundingClientRect().width)})")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert len(images) == 4 and all(ok and w > 0 and h > 0 for ok, w, h in images), images
    assert errors == []
    assert {u.split(":")[0] for u in requests} <= {"file", "data"}, requests
    assert layout["width"] <= 1280 and all(500 < w <= 1140 for w in layout["imgs"])  # no sideways scroll
    assert shot.stat().st_size > 50_000
