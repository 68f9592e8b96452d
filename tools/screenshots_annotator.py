"""What an annotator sees: a live detal project in a real Label Studio, photographed by headless Chromium.

Follows docs/live-project.md as a team lead would, with the CLI: a folder of unlabelled images, `detal
labelstudio serve`, `detal init`, the seed set annotated (by a script, with the generated ground truth),
`detal cycle` (a tiny training: pre-labels pushed), `detal status`. Then logs into Label Studio and
saves, under docs/img/ (or --out):
- annotator-uncertain-tab.png: the Data Manager tab "detal: most uncertain first";
- annotator-prelabels.png: the first task of that tab, with the model's boxes drawn;
- annotator-skip.png: the same task after pressing Skip.
Prints every command and its output, so the run doubles as a check of the guide.

    python tools/screenshots_annotator.py [--out docs/img] [--keep]

Needs `make test-deps` (the Label Studio venv and Debian's Chromium). About 3-5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DETAL = [sys.executable, "-m", "detal.cli"]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def sh(*args: str, env: dict) -> str:
    print("$ detal " + " ".join(args[len(DETAL):]) if list(args[:len(DETAL)]) == DETAL else "$ " + " ".join(args),
          flush=True)
    out = subprocess.run(list(args), env=env, cwd=REPO, capture_output=True, text=True)
    print(out.stdout + out.stderr, flush=True)
    if out.returncode:
        raise SystemExit(f"failed ({out.returncode}): {' '.join(args)}")
    return out.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def annotate_open_tasks(url: str, token: str, cfg_path: Path, root: Path) -> int:
    """Submit the ground truth for every open task, as an annotator would: the seed set."""
    from detal.config import load_config
    from detal.data import image_size, label_path, read_labels
    from detal.labelstudio import client as ls, format as fmt

    cfg = load_config(cfg_path)
    conn = ls.connect(url, token)
    pid = ls.find_project(conn, ls.project_title(cfg))
    names = yaml.safe_load(Path(cfg.data).read_text())["names"]
    spec = ls.project_spec(conn, pid, names)
    n = 0
    for t in conn.client.tasks.list(project=pid, fields="all"):
        if t.annotations:
            continue
        path = (root / t.data["path"]).resolve()
        truth = read_labels(label_path(path).with_suffix(".truth"), len(names))
        w, h = image_size(path)
        ls.submit_annotation(conn, t.id, fmt.label_regions(truth, w, h, names, spec))
        n += 1
    return n


def photograph(url: str, user: str, password: str, title: str, out: Path) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            page.goto(f"{url}/user/login/")
            page.fill('input[name="email"]', user)
            page.fill('input[name="password"]', password)
            page.click('button[type="submit"]')
            page.wait_for_load_state("networkidle")
            page.goto(f"{url}/projects/")
            page.get_by_text(title, exact=True).first.click()
            page.wait_for_load_state("networkidle")
            page.get_by_text("detal: most uncertain first").first.click()
            page.wait_for_timeout(2500)
            page.screenshot(path=str(out / "annotator-uncertain-tab.png"))
            page.get_by_text("Label All Tasks").first.click()
            page.wait_for_function("document.querySelectorAll('.lsf-tree__node_type_rectangleregion').length >= 1",
                                   timeout=90_000)
            page.wait_for_timeout(2000)
            regions = page.evaluate("document.querySelectorAll('.lsf-tree__node_type_rectangleregion').length")
            page.screenshot(path=str(out / "annotator-prelabels.png"))
            page.get_by_role("button", name="Skip").first.click()
            page.wait_for_timeout(3000)
            page.screenshot(path=str(out / "annotator-skip.png"))
        finally:
            browser.close()
    return {"regions_on_first_task": regions}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "img"), help="folder for the PNGs (default docs/img)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary project folder")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="detal-annotator-"))
    docroot, ds = root / "docroot", root / "docroot" / "my-images"
    token, password = "tk" + secrets.token_hex(16), "pw-" + secrets.token_hex(8)
    env = {**os.environ, "LABEL_STUDIO_API_KEY": token, "LABEL_STUDIO_UI_PASSWORD": password, "YOLO_OFFLINE": "1"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home = root / "ls"
    try:
        # 1. a folder of images with no labels (the generated ground truth hides as .truth, for the script
        #    annotator only), a labelled val split, and the data.yaml of docs/live-project.md
        sh(*DETAL, "synth", "--out", str(ds), "--images", "120", "--seed", "0", env=env)
        for p in (ds / "labels" / "train").glob("*.txt"):
            p.rename(p.with_suffix(".truth"))
        names = yaml.safe_load((ds / "data.yaml").read_text())["names"]
        (ds / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/val",
                                                      "names": names}, sort_keys=False))
        # 2. the config: configs/project.yaml, a tiny training so that the run takes minutes on a CPU
        cfg = yaml.safe_load((REPO / "configs" / "project.yaml").read_text())
        cfg.update(experiment="annotator-shots", data=str(ds / "data.yaml"), output_dir=str(root / "runs"))
        cfg["model"].update(arch="configs/models/yolov8-pico.yaml", imgsz=160, batch=8)
        cfg["schedule"].update(seed_fraction=0.5, select_fraction=0.1, epochs_per_round=20, min_steps_per_round=400)
        cfg["labelstudio"].update(url=url, document_root=str(docroot))
        cfg["cycle"].update(min_new_labels=1)
        cfg_path = root / "my-project.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        # 3.-6. the guide's commands
        sh(*DETAL, "labelstudio", "serve", "--home", str(home), "--venv", str(REPO / ".labelstudio" / "venv"),
           "--document-root", str(docroot), "--port", str(port), env=env)
        sh(*DETAL, "init", "-c", str(cfg_path), env=env)
        print(f"(script annotator: {annotate_open_tasks(url, token, cfg_path, docroot)} seed tasks submitted)")
        sh(*DETAL, "cycle", "-c", str(cfg_path), env=env)
        sh(*DETAL, "status", "-c", str(cfg_path), env=env)
        seen = photograph(url, "admin@detal.local", password, f"detal-{cfg['experiment']}", out)
        print(f"browser: {seen}; screenshots in {out}")
        if not seen["regions_on_first_task"]:
            raise SystemExit("the first task of the uncertain-first tab shows no pre-label")
    finally:
        subprocess.run([*DETAL, "labelstudio", "stop", "--home", str(home)], cwd=REPO, env=env)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
