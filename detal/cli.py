"""The `detal` command. Parses arguments, loads the config, calls one function per subcommand.

Heavy modules (torch, ultralytics, label_studio_sdk) are imported inside the handlers so that
`detal --help` stays fast. A DetalError becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detal import __version__
from detal.errors import DetalError

EPILOG = "Docs: README.md. Every config key is described in configs/demo.yaml."


def _add_config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("-c", "--config", required=required, metavar="YAML", help="experiment config, e.g. configs/demo.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set schedule.total_epochs=40 (repeatable)")


def cmd_synth(args) -> int:
    from dataclasses import replace

    from detal.synthetic import DEFAULT_KNOBS, generate

    if not 0 <= args.palette <= 1:
        raise DetalError(f"synth: --palette {args.palette} must be between 0 and 1")
    try:
        knobs = replace(DEFAULT_KNOBS, palette_prob=args.palette)
        out = generate(Path(args.out), args.images, seed=args.seed, imgsz=args.imgsz, val_fraction=args.val_fraction,
                       knobs=knobs)
    except ValueError as exc:  # the generator validates its arguments; show it as a usage error
        raise DetalError(f"synth: {exc}") from None
    print(f"wrote {args.images} images; dataset: {out}")
    return 0


def cmd_simulate(args) -> int:
    from detal.config import load_config
    from detal.loop import run_experiment

    cfg = load_config(args.config, args.set)
    run_dir = run_experiment(cfg, quiet=args.quiet, overwrite=args.overwrite)
    print(f"report: {run_dir / 'report.md'}")
    return 0


def cmd_report(args) -> int:
    from detal.report import write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "metrics.csv").exists():
        raise DetalError(f"{run_dir}: no metrics.csv; give a run folder such as runs/demo")
    print(f"report: {write_report(run_dir)}")
    return 0


def cmd_score(args) -> int:
    from detal.config import load_config
    from detal.scoring import score_folder

    cfg = load_config(args.config, args.set)
    out = score_folder(cfg, Path(args.weights), Path(args.images), Path(args.out), quiet=args.quiet)
    print(f"per-image scores: {out[0]}\nper-box audit: {out[1]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="detal", epilog=EPILOG,
        description="Active learning for object detection: YOLO pre-labels, uncertainty selection, Label Studio.")
    parser.add_argument("--version", action="version", version=f"detal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("synth", help="generate the embedded synthetic YOLO dataset (shapes)", epilog=EPILOG,
                       description="Generate a deterministic synthetic detection dataset in YOLO layout "
                                   "(images/, labels/, data.yaml with train and val splits).")
    p.add_argument("--out", required=True, help="output folder, e.g. datasets/shapes")
    p.add_argument("--images", type=int, default=1000, help="number of images, train + val (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed: same seed, same bytes (default 0)")
    p.add_argument("--imgsz", type=int, default=160, help="image side in pixels (default 160)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of images in val (default 0.2)")
    p.add_argument("--palette", type=float, default=0.8,
                   help="share of objects coloured by their confusable pair's hue family, 0..1 (default 0.8)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("simulate", help="run an active-learning experiment (strategies x seeds) with an oracle annotator",
                       epilog=EPILOG,
                       description="Run every strategy of the config for every seed from the same seed set: train, "
                                   "evaluate on the fixed val split, select, label, repeat. Resumes a killed run; "
                                   "writes runs/<experiment>/metrics.csv, selections.csv, report.md.")
    _add_config_args(p)
    p.add_argument("--overwrite", action="store_true", help="delete earlier results of this experiment and start over")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("report", help="(re)write the report of a run folder", epilog=EPILOG,
                       description="Rewrite report.md and map_vs_labeled.png from runs/<experiment>/metrics.csv.")
    p.add_argument("run_dir", help="run folder, e.g. runs/demo")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("score", help="score a folder of images with trained weights (uncertainty + audit table)",
                       epilog=EPILOG,
                       description="Predict every image with the full class vector of each box, compute the "
                                   "configured uncertainty measure and reduction, and write per-image scores and a "
                                   "per-box audit table.")
    _add_config_args(p)
    p.add_argument("--weights", required=True, help="trained weights (.pt)")
    p.add_argument("--images", required=True, help="image folder (searched recursively) or .txt list")
    p.add_argument("--out", required=True, help="per-image CSV to write; the audit goes next to it as <name>_boxes.csv")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_score)

    from detal.labelstudio_cli import register  # light: label_studio_sdk is imported inside its handlers

    register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DetalError as exc:
        print(f"detal: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("detal: interrupted; finished rounds are saved, run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
