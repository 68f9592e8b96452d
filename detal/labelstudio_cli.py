"""`detal labelstudio serve|stop|push|pull`: run a local Label Studio and move pre-labels/annotations.

Token: the API token comes from the environment variable named by `labelstudio.api_key_env`
(default LABEL_STUDIO_API_KEY), never from a file in the repo. On the first `serve` of a fresh data
dir with the variable unset, `serve` generates a token and a password and prints them ONCE as
`export` lines; later starts of that data dir need the same token in the environment.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import socket
from pathlib import Path

from detal.errors import DetalError, LabelStudioError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PORT = 8080  # the config's default url; another free port when it is taken
DEFAULT_USER = "admin@detal.local"


def _home(args) -> Path:
    return Path(args.home).expanduser().resolve()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cmd_serve(args) -> int:
    from detal import labelstudio_server as srv

    home = _home(args)
    data_dir, venv = home / "data", Path(args.venv).resolve() if args.venv else home / "venv"
    running = srv.read_state(data_dir)
    if running is not None and srv._pid_is_label_studio(running.pid):
        print(f"Label Studio already running at {running.url} (pid {running.pid}, log {running.log_path})")
        return 0
    doc_root = Path(args.document_root).expanduser().resolve()
    doc_root.mkdir(parents=True, exist_ok=True)
    token = os.environ.get(args.api_key_env)
    password = os.environ.get(args.password_env)
    fresh = not srv.is_initialised(data_dir)
    exports = []
    if not token:
        if not fresh:
            raise LabelStudioError(f"${args.api_key_env} is unset; export the token printed when {data_dir} was first "
                                   f"served (or delete {data_dir} to start over)")
        token = secrets.token_hex(20)
        exports.append(f"export {args.api_key_env}={token}")
    if not password:
        password = secrets.token_urlsafe(12)
        if fresh:
            exports.append(f"export {args.password_env}={password}")
    print(f"installing/checking label-studio in {venv} (first time: 2-3 min, log {home / 'install.log'})", flush=True)
    srv.install(venv, log_path=home / "install.log")
    port = args.port or (DEFAULT_PORT if _port_free(DEFAULT_PORT) else srv.free_port())
    print(f"starting Label Studio on 127.0.0.1:{port} (first boot 30-70 s)", flush=True)
    info = srv.start(data_dir=data_dir, document_root=doc_root, username=args.username, password=password,
                     token=token, venv=venv, port=port, timeout=args.timeout)
    print(f"Label Studio running at {info.url} (pid {info.pid}); log {info.log_path}")
    print(f"login: {args.username}; images served from {doc_root}; stop with `detal labelstudio stop`")
    if port != DEFAULT_PORT:
        print(f"port {DEFAULT_PORT} was busy: use --set labelstudio.url={info.url}")
    if exports:
        print("Generated credentials, shown ONCE; keep them (e.g. in your shell profile), never commit them:")
        for line in exports:
            print("  " + line)
    else:
        print(f"API token: from ${args.api_key_env}")
    return 0


def cmd_stop(args) -> int:
    from detal import labelstudio_server as srv

    data_dir = _home(args) / "data"
    print("stopped Label Studio" if srv.stop(data_dir) else f"no Label Studio server recorded in {data_dir}")
    return 0


def _session(args):
    """Config, dataset, connection and project id shared by push and pull."""
    from detal import labelstudio as ls
    from detal.config import load_config
    from detal.data import load_dataset

    cfg = load_config(args.config, args.set)
    ds = load_dataset(cfg.data)
    lc = cfg.labelstudio
    root = Path(lc.document_root or ds.root.parent).resolve()
    conn = ls.connect(lc.url, os.environ.get(lc.api_key_env), timeout=lc.timeout, api_key_name=lc.api_key_env)
    pid = ls.ensure_project(conn, lc.project, list(ds.names), document_root=root, image_root=ds.root)
    return cfg, ds, conn, pid, root


def _model_version(weights: Path) -> str:
    """Stable per weights file: name plus a content hash, so a retrained model gets a new version."""
    h = hashlib.sha256()
    with open(weights, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return f"{weights.parent.parent.name or weights.stem}-{weights.stem}-{h.hexdigest()[:8]}"


def cmd_push(args) -> int:
    import numpy as np

    from detal import detector
    from detal import labelstudio as ls
    from detal.data import list_images
    from detal.scoring import image_scores_for, make_scorer

    cfg, ds, conn, pid, root = _session(args)
    weights = Path(args.weights)
    if not weights.is_file():
        raise DetalError(f"--weights {weights}: file not found; give a trained .pt")
    images = list_images(Path(args.images))
    if not images:
        raise DetalError(f"--images {args.images}: no images found (a folder or a .txt list)")
    sc = cfg.scoring
    scorer = make_scorer(cfg, weights, device=detector.resolve_device(cfg.model.device),
                         conf=min(sc.conf, cfg.prelabel.conf))
    preds = scorer.predict(images)
    scorer.close()
    scores = image_scores_for(preds, sc)
    for p in preds:  # pre-labels: only boxes above the pre-label threshold
        keep = p.conf >= cfg.prelabel.conf
        p.boxes, p.conf, p.cls, p.probs = p.boxes[keep], p.conf[keep], p.cls[keep], p.probs[keep]
    version = args.model_version or _model_version(weights)
    res = ls.push(conn, pid, preds, names=list(ds.names), document_root=root, round_idx=args.round,
                  model_version=version, scores=np.asarray(scores), batch_size=cfg.labelstudio.batch_size)
    print(f"project '{cfg.labelstudio.project}' (id {pid}) at {conn.url}: {res.created} tasks created, "
          f"{res.refreshed} refreshed, {res.unchanged} unchanged, {len(res.annotated)} already annotated, "
          f"{len(res.failed)} unreadable; model_version {version}")
    return 0


def cmd_pull(args) -> int:
    from detal import labelstudio as ls
    from detal.data import label_path, write_labels

    cfg, ds, conn, pid, root = _session(args)
    res = ls.pull(conn, pid, list(ds.names), document_root=root)
    if not args.dry_run:
        for path, labels in res.labels.items():
            write_labels(label_path(path), labels)
    totals = res.effort_totals()
    what = "would write" if args.dry_run else "wrote"
    print(f"{what} {len(res.labels)} label files; {len(res.skipped)} tasks skipped by annotators (not labelled)")
    print("annotator effort: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    for p in res.skipped[:20]:
        print(f"  skipped: {p}")
    return 0


def register(subparsers) -> None:
    """Add `labelstudio serve|stop|push|pull` to the `detal` command."""
    p = subparsers.add_parser("labelstudio", help="run a local Label Studio server; push pre-labels, pull annotations",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="ls_command", metavar="ACTION", required=True)

    def home_arg(q):
        q.add_argument("--home", default=str(REPO / ".labelstudio"),
                       help="folder holding the server venv, data dir and logs (default: <repo>/.labelstudio)")

    q = sub.add_parser("serve", help="install (own venv) and start a local server in the background",
                       description="Install label-studio into its own venv (first time 2-3 min), start it on "
                                   "127.0.0.1 with a data dir under --home, and return once it is healthy.")
    home_arg(q)
    q.add_argument("--document-root", default=str(REPO / "datasets"),
                   help="folder the server may serve images from; must contain the dataset (default: <repo>/datasets)")
    q.add_argument("--port", type=int, default=0,
                   help=f"port; default {DEFAULT_PORT} when free, else any free port")
    q.add_argument("--username", default=DEFAULT_USER, help=f"login email of the server user (default {DEFAULT_USER})")
    q.add_argument("--api-key-env", default="LABEL_STUDIO_API_KEY",
                   help="environment variable holding the API token; generated and printed once if unset on first start")
    q.add_argument("--password-env", default="LABEL_STUDIO_UI_PASSWORD",
                   help="environment variable holding the UI password; generated and printed once if unset on first start")
    q.add_argument("--venv", default=None, help="Label Studio venv (default: <home>/venv)")
    q.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for the server to become healthy")
    q.set_defaults(func=cmd_serve)

    q = sub.add_parser("stop", help="stop the server started by `serve`")
    home_arg(q)
    q.set_defaults(func=cmd_stop)

    def config_args(q):
        q.add_argument("-c", "--config", required=True, metavar="YAML", help="config with data: and labelstudio:")
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set labelstudio.url=http://127.0.0.1:8081 (repeatable)")

    q = sub.add_parser("push", help="predict images and push them as tasks with pre-labels",
                       description="Predict --images with --weights, score their uncertainty (config scoring:), and "
                                   "import them as tasks with one prediction each into the project labelstudio.project.")
    config_args(q)
    q.add_argument("--weights", required=True, help="trained weights (.pt) producing the pre-labels")
    q.add_argument("--images", required=True, help="image folder or .txt list to push (inside the dataset)")
    q.add_argument("--round", type=int, default=1, help="round number stored in each task (default 1)")
    q.add_argument("--model-version", default=None,
                   help="model_version of the predictions (default: weights name plus a content hash)")
    q.set_defaults(func=cmd_push)

    q = sub.add_parser("pull", help="write finished annotations as YOLO label files",
                       description="Fetch annotated tasks (latest non-cancelled annotation each), write their YOLO "
                                   "label files next to the images, report skipped tasks and annotator effort.")
    config_args(q)
    q.add_argument("--dry-run", action="store_true", help="report only; write no label files")
    q.set_defaults(func=cmd_pull)
