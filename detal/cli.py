"""The `detal` command tree. Each handler loads the Config, calls one function, prints the outcome.

Heavy modules (torch, ultralytics, label_studio_sdk) are imported inside the handlers so that
`detal --help` stays fast. A DetalError (bad input, failing environment) becomes one line on stderr and
exit code 2; tracebacks are kept for real bugs, and shown for everything only with --debug.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from detal import __version__
from detal.errors import DetalError

EPILOG = "Docs: README.md and docs/. Every config key: docs/configuration.md."
REPO = Path(__file__).resolve().parents[1]


def _config(args):
    from detal.config import load_config

    overrides = list(args.set)
    seeds = getattr(args, "seeds", None)
    if seeds:
        overrides.append(f"seeds={_seeds(seeds)}")
    return load_config(args.config, overrides)


def _seeds(text: str) -> str:
    """--seeds 3 means [0, 1, 2]; --seeds 0,4,7 is that list."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise DetalError(f"--seeds {text!r}: give a count (e.g. 3) or a comma-separated list (e.g. 0,1,2)")
    return str(list(range(int(parts[0])))) if len(parts) == 1 else "[" + ",".join(parts) + "]"


# ---------------------------------------------------------------- handlers

def cmd_synth(args) -> int:
    from dataclasses import replace

    from detal.synthetic import DEFAULT_KNOBS, generate

    if not 0 <= args.palette <= 1:
        raise DetalError(f"synth: --palette {args.palette} must be between 0 and 1")
    try:
        out = generate(Path(args.out), args.images, seed=args.seed, imgsz=args.imgsz, val_fraction=args.val_fraction,
                       knobs=replace(DEFAULT_KNOBS, palette_prob=args.palette))
    except ValueError as exc:  # the generator validates its arguments; show it as a usage error
        raise DetalError(f"synth: {exc}") from None
    print(f"wrote {args.images} images; dataset: {out}")
    return 0


def cmd_simulate(args) -> int:
    from detal.simulate import run_experiment

    run_dir = run_experiment(_config(args), quiet=args.quiet, overwrite=args.overwrite)
    print(f"report: {run_dir / 'report.html'} (and report.md)")
    return 0


def cmd_report(args) -> int:
    from detal.report import write_report

    dirs = [Path(d) for d in args.run_dirs]
    for d in dirs:
        if not (d / "metrics.csv").exists():
            raise DetalError(f"{d}: no metrics.csv; give a run folder such as runs/demo")
    out = write_report(dirs if len(dirs) > 1 else dirs[0], Path(args.out) if args.out else None,
                       cost_axis=args.cost_axis)
    print(f"report: {out}")
    return 0


def cmd_score(args) -> int:
    from detal.scoring import score_folder

    out = score_folder(_config(args), Path(args.weights), Path(args.images), Path(args.out), quiet=args.quiet)
    print(f"per-image scores: {out[0]}\nper-box audit: {out[1]}")
    return 0


def cmd_check(args) -> int:
    from detal.check import check_dataset
    from detal.data import load_dataset

    cfg = _config(args)
    report = check_dataset(load_dataset(cfg.data))
    print(report.summary())
    return 2 if report.fatal else 0


def _live_config(args):
    """The config of a live project (init, cycle): people review every pre-label they are shown."""
    from detal.errors import ConfigError

    cfg = _config(args)
    if cfg.prelabel.trust is not None:
        raise ConfigError(f"{args.config}: prelabel.trust is simulation only; a live project shows annotators every "
                          "pre-label to review: set prelabel.trust: null")
    return cfg


def cmd_init(args) -> int:
    from detal.cycle import init_project

    print(init_project(_live_config(args), quiet=args.quiet))
    return 0


def cmd_cycle(args) -> int:
    from detal.cycle import run_cycle

    out = run_cycle(_live_config(args), quiet=args.quiet)
    print(out.message)
    return 0


def cmd_status(args) -> int:
    import json

    from detal.cycle import format_status, project_status

    st = project_status(_config(args))
    print(json.dumps(st, indent=2, default=str) if args.json else format_status(st))
    return 0


def cmd_cost_fit(args) -> int:
    from detal.cycle.costfit import fit_project, format_fit, write_cost

    fit = fit_project(_config(args))
    print(format_fit(fit))
    if args.write:
        write_cost(Path(args.config), fit.values)
        print(f"wrote the fitted seconds into {args.config} (cost: section; every other line as it was)")
    return 0


def cmd_ls_serve(args) -> int:
    from detal.labelstudio import server

    served = server.serve(home=Path(args.home), document_root=Path(args.document_root), port=args.port,
                          username=args.username, api_key_env=args.api_key_env, password_env=args.password_env,
                          venv=Path(args.venv) if args.venv else None, timeout=args.timeout,
                          on_step=lambda msg: print(msg, flush=True))
    info = served.info
    if served.already_running:
        print(f"Label Studio already running at {info.url} (pid {info.pid}, log {info.log_path})")
        return 0
    print(f"Label Studio running at {info.url} (pid {info.pid}); log {info.log_path}")
    print(f"login: {args.username}; images served from {Path(args.document_root).resolve()}; "
          "stop with `detal labelstudio stop`")
    if info.port != server.DEFAULT_PORT:  # a config's default url points at 8080: say which url to use instead
        why = f"port {server.DEFAULT_PORT} was busy" if not args.port else f"port {info.port} as asked"
        print(f"{why}: use --set labelstudio.url={info.url}")
    if served.exports:
        print("Generated credentials, shown ONCE; keep them (e.g. in your shell profile), never commit them:")
        for line in served.exports:
            print("  " + line)
    else:
        print(f"API token: from ${args.api_key_env}")
    return 0


def cmd_ls_stop(args) -> int:
    from detal.labelstudio import server

    data_dir = Path(args.home).expanduser().resolve() / "data"
    print("stopped Label Studio" if server.stop(data_dir) else f"no Label Studio server recorded in {data_dir}")
    return 0


def _ls_session(args):
    """Config, dataset, connection, project id and document root shared by push and pull."""
    from detal.data import load_dataset
    from detal.labelstudio import client as ls

    cfg = _config(args)
    ds = load_dataset(cfg.data)
    lc = cfg.labelstudio
    root = ls.document_root(cfg, ds.root)
    conn = ls.connect(lc.url, os.environ.get(lc.api_key_env), timeout=lc.timeout, api_key_name=lc.api_key_env)
    pid = ls.ensure_project(conn, ls.project_title(cfg), list(ds.names), document_root=root, image_root=ds.root)
    return cfg, ds, conn, pid, root


def cmd_ls_push(args) -> int:
    from detal.labelstudio.sync import push_folder

    cfg, ds, conn, pid, root = _ls_session(args)
    res, version = push_folder(cfg, ds, conn, pid, root, weights=Path(args.weights), images=Path(args.images),
                               round_idx=args.round, version=args.model_version)
    print(f"project id {pid} at {conn.url}: {res.created} tasks created, {res.refreshed} refreshed, "
          f"{res.unchanged} unchanged, {len(res.annotated)} already annotated, {len(res.failed)} unreadable; "
          f"model_version {version}")
    return 0


def cmd_ls_pull(args) -> int:
    from detal.labelstudio.sync import pull_labels

    cfg, ds, conn, pid, root = _ls_session(args)
    out = Path(args.out) if args.out else cfg.run_dir / "labels"
    res, where = pull_labels(cfg, ds, conn, pid, root, out=out, into_dataset=args.into_dataset, dry_run=args.dry_run)
    totals = res.effort_totals()
    what = "would write" if args.dry_run else "wrote"
    print(f"{what} {len(res.labels)} label files ({where}); {len(res.skipped)} tasks skipped by annotators "
          "(not labelled)")
    print("annotator effort: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    for p in res.skipped[:20]:
        print(f"  skipped: {p}")
    return 0


# ---------------------------------------------------------------- the tree

def _config_args(p: argparse.ArgumentParser, what: str = "experiment config, e.g. configs/demo.yaml", *,
                 quiet: bool = False) -> None:
    p.add_argument("-c", "--config", required=True, metavar="YAML", help=what)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set schedule.total_epochs=40 (repeatable)")
    if quiet:
        p.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def _add(sub, name: str, func, help: str, description: str, **kw) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=description, epilog=EPILOG, **kw)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    from detal.config import SynthConfig

    synth = SynthConfig()  # the CLI's defaults are the config's
    parser = argparse.ArgumentParser(
        prog="detal", epilog=EPILOG,
        description="Active learning for object detection: YOLO pre-labels, uncertainty selection, Label Studio.")
    parser.add_argument("--version", action="version", version=f"detal {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = _add(sub, "synth", cmd_synth, "generate the embedded synthetic YOLO dataset (shapes)",
             "Generate a deterministic synthetic detection dataset in YOLO layout (images/, labels/, data.yaml "
             "with train and val splits).")
    p.add_argument("--out", required=True, help="output folder, e.g. datasets/shapes")
    p.add_argument("--images", type=int, default=synth.images, help=f"number of images, train + val (default {synth.images})")
    p.add_argument("--seed", type=int, default=synth.seed, help=f"random seed: same seed, same bytes (default {synth.seed})")
    p.add_argument("--imgsz", type=int, default=synth.imgsz, help=f"image side in pixels (default {synth.imgsz})")
    p.add_argument("--val-fraction", type=float, default=synth.val_fraction,
                   help=f"share of images in val (default {synth.val_fraction})")
    p.add_argument("--palette", type=float, default=synth.palette,
                   help=f"share of objects coloured by their confusable pair's hue family, 0..1 (default {synth.palette})")

    p = _add(sub, "simulate", cmd_simulate, "run an active-learning experiment (strategies x seeds) with a simulated annotator",
             "Run every strategy of the config for every seed from the same seed set: train, evaluate on the fixed "
             "val split, select, label, repeat. Resumes a killed run without redoing finished rounds; writes "
             "runs/<experiment>/metrics.csv, selections.csv, per_class.csv, report.html and report.md.")
    _config_args(p, quiet=True)
    p.add_argument("--seeds", default=None, metavar="N|LIST",
                   help="shorthand for --set seeds=...: a count (3 -> seeds 0,1,2) or a list (0,4,7)")
    p.add_argument("--overwrite", action="store_true", help="delete earlier results of this experiment and start over")

    p = _add(sub, "check", cmd_check, "check a config and its dataset before spending training time",
             "Validate the config, data.yaml, every image header and every label file. Collects every problem, "
             "prints counts per split and class and problems per kind; exits 2 when training would fail or "
             "silently drop data. What detal does with each kind of bad input: docs/bad-input.md.")
    _config_args(p)

    # the live project's scheduled commands: same config, same progress switch
    live = (("init", cmd_init, "start a live Label Studio project: state, project, val set, seed set",
             "Create the project's state (<output_dir>/<experiment>/project.sqlite) and its Label Studio project "
             "(labelling config, local-files storage, a view sorted by uncertainty). The val set is the data.yaml's "
             "labelled val split, else a sample of the pool pushed for annotation first. Images with a label file "
             "are imported as the labelled seed; otherwise a random seed set is pushed. Safe to run twice."),
            ("cycle", cmd_cycle, "one scheduled step: pull labels, retrain, select, push pre-labels",
             "One idempotent step for cron: collect finished annotations; once cycle.min_new_labels new labels "
             "arrived and the val set is annotated, retrain, evaluate on val, select the next batch and push it "
             "with pre-labels (open tasks get the new model's pre-labels too). Exit 0 when done or waiting, 2 with "
             "one line on failure; a second concurrent run exits at once. Killed, it resumes on the next run."))
    for name, func, short, long in live:
        _config_args(_add(sub, name, func, short, long), "project config: data, labelstudio, cycle "
                     "(see configs/project.yaml)", quiet=True)

    p = _add(sub, "status", cmd_status, "show a live project: counts, val mAP per round, pre-label quality, last run",
             "Show the project's state: labelled, waiting and pool counts; val mAP per round; the random-share "
             "estimates of pre-label quality; the last run's time, outcome and duration.")
    _config_args(p, "project config (see configs/project.yaml)")
    p.add_argument("--json", action="store_true", help="the same as JSON, for scripts and monitoring")

    p = sub.add_parser("cost", help="annotation seconds: fit the seconds per action to your annotators' time",
                       epilog=EPILOG, description="The cost model's seconds per action (config `cost:`, "
                       "docs/annotation-cost.md), measured on a live project.")
    q = _add(p.add_subparsers(dest="cost_command", metavar="ACTION", required=True), "fit", cmd_cost_fit,
             "fit seconds per action to the live project's Label Studio lead_time",
             "Fit the seconds per image and per action (accepted, moved, relabelled, deleted, drawn) to the lead_time "
             "Label Studio recorded on the project's annotated tasks (non-negative least squares; pauses above "
             "Q3 + 3 IQR and edited tasks left out). Prints them beside the config's, with the held-out error "
             "(5-fold) and the error of predicting every task by the median, for scale. Exit 2 with one line when "
             "there are too few tasks.")
    _config_args(q, "project config (see configs/project.yaml)")
    q.add_argument("--write", action="store_true",
                   help="rewrite the values of the config file's cost: section in place (comments and every other "
                        "line kept; an action no task has keeps its value)")

    p = _add(sub, "report", cmd_report, "(re)write the comparison report of one or more run folders",
             "Write report.html (self-contained), report.md and the figures from the tables of one or more run "
             "folders (runs/<experiment>).")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folder(s), e.g. runs/demo")
    p.add_argument("--out", default=None, help="folder for the report (default: the run folder, when there is one)")
    p.add_argument("--cost-axis", choices=("seconds", "images", "boxes"), default=None,
                   help="what the verdicts' labels saved is measured in (default: report.cost_axis of the run's "
                        "config, seconds: annotation time with pre-labels)")

    p = _add(sub, "score", cmd_score, "score a folder of images with trained weights (uncertainty + audit table)",
             "Predict every image with the full class vector of each box, compute the configured uncertainty "
             "measure and reduction, and write per-image scores and a per-box audit table.")
    _config_args(p, quiet=True)
    p.add_argument("--weights", required=True, help="trained weights (.pt)")
    p.add_argument("--images", required=True, help="image folder (searched recursively) or .txt list")
    p.add_argument("--out", required=True, help="per-image CSV to write; the audit goes next to it as <name>_boxes.csv")

    _labelstudio_tree(sub)
    return parser


def _labelstudio_tree(sub) -> None:
    from detal.labelstudio import server

    p = sub.add_parser("labelstudio", help="run a local Label Studio server; push pre-labels, pull annotations",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, description=(
                           "Run a local Label Studio and move pre-labels and annotations.\n\n"
                           "The API token comes from the environment variable named by labelstudio.api_key_env "
                           "(default LABEL_STUDIO_API_KEY), never from a file. On the first `serve` of a fresh data "
                           "dir with the variable unset, a token and a password are generated and printed ONCE as "
                           "`export` lines. The project is titled <labelstudio.project>-<experiment>."))
    ls_sub = p.add_subparsers(dest="ls_command", metavar="ACTION", required=True)

    def home(q):
        q.add_argument("--home", default=str(REPO / ".labelstudio"),
                       help="folder holding the server venv, data dir and logs (default: <repo>/.labelstudio)")

    q = _add(ls_sub, "serve", cmd_ls_serve, "install (own venv) and start a local server in the background",
             "Install label-studio into its own venv (first time 2-3 min), start it on 127.0.0.1 with a data dir "
             "under --home, and return once it is healthy. A running server is reported, not restarted.")
    home(q)
    q.add_argument("--document-root", default=str(REPO / "datasets"),
                   help="folder the server may serve images from; must contain the dataset (default: <repo>/datasets)")
    q.add_argument("--port", type=int, default=0, help=f"port; default {server.DEFAULT_PORT} when free, else any free port")
    q.add_argument("--username", default=server.DEFAULT_USER,
                   help=f"login email of the server user (default {server.DEFAULT_USER})")
    q.add_argument("--api-key-env", default="LABEL_STUDIO_API_KEY",
                   help="environment variable holding the API token; generated and printed once if unset on first start")
    q.add_argument("--password-env", default="LABEL_STUDIO_UI_PASSWORD",
                   help="environment variable holding the UI password; generated and printed once if unset on first start")
    q.add_argument("--venv", default=None, help="Label Studio venv (default: <home>/venv)")
    q.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for the server to become healthy")

    q = _add(ls_sub, "stop", cmd_ls_stop, "stop the server started by `serve`", "Stop the server started by `serve`.")
    home(q)

    q = _add(ls_sub, "push", cmd_ls_push, "predict images and push them as tasks with pre-labels",
             "Predict --images with --weights in one pass, score their uncertainty (config scoring:), and import "
             "them as tasks with one prediction each (boxes >= prelabel.conf) into the project.")
    _config_args(q, "config with data: and labelstudio:")
    q.add_argument("--weights", required=True, help="trained weights (.pt) producing the pre-labels")
    q.add_argument("--images", required=True, help="image folder or .txt list to push (inside the dataset)")
    q.add_argument("--round", type=int, default=1, help="round number stored in each task (default 1)")
    q.add_argument("--model-version", default=None,
                   help="model_version of the predictions (default: weights name plus a content hash)")

    q = _add(ls_sub, "pull", cmd_ls_pull, "write finished annotations as YOLO label files",
             "Fetch annotated tasks (latest non-cancelled annotation each) and write them as YOLO labels: by default "
             "into a run-owned label tree (<output_dir>/<experiment>/labels), never over your dataset's own files. "
             "Reports skipped tasks and annotator effort.")
    _config_args(q, "config with data: and labelstudio:")
    q.add_argument("--out", default=None, help="label tree to write (default: <output_dir>/<experiment>/labels)")
    q.add_argument("--into-dataset", action="store_true",
                   help="write next to the images instead; a different existing label file is kept as <name>.txt.orig")
    q.add_argument("--dry-run", action="store_true", help="report only; write no label files")


class _OneLine(logging.Formatter):
    """`detal: warning: <message>`: the same shape as detal's error lines."""

    def format(self, record: logging.LogRecord) -> str:
        return f"detal: {record.levelname.lower()}: {record.getMessage()}"


_ENV_ERRNOS = frozenset({28, 13, 30, 122, 1})  # ENOSPC, EACCES, EROFS, EDQUOT, EPERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (cron timeouts, `kill`, Kubernetes): unwinds like Ctrl-C, so locks and files close cleanly."""


def _on_sigterm(signum, frame):
    # Python swallows an exception raised inside a finalizer ("Exception ignored in ... __del__"; Ultralytics'
    # dataloaders have one), which would lose the signal: re-send it once the finalizer has returned.
    f = frame
    while f is not None:
        if f.f_code.co_name == "__del__":
            import os
            import threading

            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return
        f = f.f_back
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    import signal

    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the real command, not a test calling main(): take SIGTERM over
        signal.signal(signal.SIGTERM, _on_sigterm)
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLine())
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, handlers=[handler], force=True)
    try:
        return int(args.func(args) or 0)
    except DetalError as exc:
        if args.debug:
            raise
        print(f"detal: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # the environment, not a bug: a full, read-only or forbidden disk is one line (state stays as it was:
        # every state, label and table file is written to a temp file and renamed)
        if args.debug or exc.errno not in _ENV_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"detal: error: {where}{exc.strerror or exc}; free disk space or choose a writable output_dir "
              "(earlier results are intact)", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if args.debug or "out of memory" not in str(exc).lower():
            raise
        print("detal: error: out of memory while training or scoring; lower model.batch (or scoring.batch) or "
              "model.imgsz, then run the same command again to resume", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("detal: interrupted; finished rounds are saved, the round in progress is not: run the same command "
              "again to resume", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
