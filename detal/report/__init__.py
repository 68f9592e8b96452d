"""The comparison report of one or several run folders: does active learning pay off against random?

`write_report` reads the run folders' tables (`load`), computes the paired numbers (`stats`), words the
verdict (`verdict`), draws the figures (`figures`), lays them out (`document`) and writes report.html
(self-contained), report.md and every figure as PNG (`render`). The statistics are pure and importable
on their own: `from detal.report.stats import labels_saved, paired_bootstrap, auc_normalised`.
"""

from __future__ import annotations

import os
from pathlib import Path

from detal.errors import DetalError
from detal.report.load import load_metrics, load_runs

__all__ = ["write_report", "load_metrics", "load_runs"]


def _write(path: Path, data: bytes) -> None:
    # temp file + rename: a reader never sees half a report, a failed write leaves the previous one intact
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # opened normally: the umask sets its mode
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_files(out_dir: Path, files: dict[str, bytes]) -> None:
    """Write the report's files into `out_dir` (created if needed), each atomically.

    Only builtins and os calls: the tests run it in a child that has dropped its privileges, where no
    further import may be needed (the checkout may sit in a folder that child cannot enter).
    Raises DetalError naming the folder and the fix when it is not a folder or not writable."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, payload in files.items():
            _write(out_dir / name, payload)
    except FileExistsError:
        raise DetalError(f"{out_dir}: exists and is not a folder; give a folder with --out DIR") from None
    except OSError as exc:
        raise DetalError(f"{out_dir}: cannot write the report there ({exc.strerror or exc}); give a writable "
                         "folder with --out DIR") from None


def _out_dir(run_dirs: list[Path], out: Path | None) -> Path:
    if out is None:
        if len(run_dirs) > 1:
            raise DetalError(f"{len(run_dirs)} run folders: say where the combined report goes with --out DIR "
                             "(e.g. --out runs/compare)")
        return run_dirs[0]
    return Path(out)


def cost_axis_of(run_dir: Path) -> str:
    """report.cost_axis of the config a run folder was made with (its config.yaml), else the default."""
    import yaml

    from detal.config import ReportConfig

    try:
        doc = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8")) or {}
        return ReportConfig.model_validate((doc.get("config") or {}).get("report") or {}).cost_axis
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError, ValueError):
        return ReportConfig().cost_axis  # no or another config: the report still judges, on the default


def write_report(run_dirs: Path | list[Path], out: Path | None = None, labels: dict[Path, str] | None = None,
                 cost_axis: str | None = None) -> Path:
    """Write report.html, report.md and the figures' PNGs; return the path of report.html.

    `run_dirs` is one run folder or a list of them (the same folder twice counts once). The report goes
    to `out`, created if needed; by default to the run folder itself when there is one. Several folders
    need an explicit `out`: writing a combined report into one of them would pass it off as that run's.
    `labels` renames the strategy of a folder's tables (see `load_runs`). `cost_axis` (images | boxes | seconds):
    what the verdicts' labels saved is measured in; default: report.cost_axis of the first folder's config.
    Raises DetalError (one line naming the file and the fix) for unreadable tables or an unwritable `out`.
    """
    from detal.report import document, render

    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, os.PathLike)) else [Path(d) for d in run_dirs]
    if not dirs:
        raise DetalError("no run folder given; give one such as runs/demo")
    dirs = list({d.resolve(): d for d in dirs}.values())
    out_dir = _out_dir(dirs, out)
    data = load_runs(dirs, labels)
    blocks, title, pngs = document.build(data, [str(d) for d in dirs], cost_axis or cost_axis_of(dirs[0]))
    files = {**pngs, "report.md": render.markdown(blocks).encode("utf-8"),
             "report.html": render.to_html(blocks, title).encode("utf-8")}
    write_files(out_dir, files)
    return out_dir / "report.html"
