"""Reading a run folder's tables for the report: validated once, here, with one clear line per problem.

metrics.csv is required and must be sound: an empty, binary, unrelated, header-only or non-numeric file
stops the report with a DetalError naming the file (and the line) and the fix. The optional tables
(per_class.csv, selected_classes.csv, pool_classes.csv) never stop it: when one is absent or damaged the
report skips its figure and says why in its notes.

The drivers append rows and end every row with a line end, so a last line without one is a write that
was interrupted mid-row: it is dropped with a warning, never read as the final result.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from detal.errors import DetalError
from detal.types import SECONDS_COLUMNS, METRIC_COLUMNS, PER_CLASS_COLUMNS, POOL_CLASS_COLUMNS, SELECTED_CLASS_COLUMNS

log = logging.getLogger(__name__)

KEY = ("experiment", "strategy", "seed", "round")
TEXT = {"experiment", "strategy", "class"}
INTEGER = {"seed", "round", "labeled_images", "labeled_boxes", "class_id", "instances", "boxes", "images"}
METRIC_REQUIRED = ("experiment", "strategy", "seed", "round", "labeled_images", "labeled_boxes", "map50_95", "map50")
PRELABEL_COLUMNS = ("prelabel_precision", "prelabel_recall", "prelabel_map50")
# optional tables: file name -> (columns, key a re-written round is deduplicated on)
OPTIONAL = {
    "per_class.csv": (PER_CLASS_COLUMNS, (*KEY, "class_id")),
    "selected_classes.csv": (SELECTED_CLASS_COLUMNS, (*KEY, "class_id")),
    "pool_classes.csv": (POOL_CLASS_COLUMNS, ("experiment", "class_id")),
}
FIX = "give a run folder written by `detal simulate` (e.g. runs/demo)"
# columns that may be empty: a class with no instance in val has no AP (written as an empty field)
MAY_BE_EMPTY = {"ap50_95", "ap50"}


@dataclass
class RunData:
    """The tables of one or several run folders, concatenated; `notes` lists what was skipped and why."""

    metrics: pd.DataFrame
    per_class: pd.DataFrame | None = None
    selected_classes: pd.DataFrame | None = None
    pool_classes: pd.DataFrame | None = None
    sources: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    experiments: list[str] = field(default_factory=list)  # in the order the folders were given


def _text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DetalError(f"{path}: cannot read it ({exc.strerror}); check the path and its permissions") from None
    if not raw.strip():
        raise DetalError(f"{path}: empty file; {FIX}, or wait until its first round has finished")
    if b"\x00" in raw:
        raise DetalError(f"{path}: binary data, not a CSV table; {FIX}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DetalError(f"{path}: not UTF-8 text (byte {exc.start}); {FIX}") from None


def read_table(path: Path, columns: tuple[str, ...], required: tuple[str, ...], what: str,
               notes: list[str]) -> pd.DataFrame:
    """One CSV table, checked: required columns present, numbers numeric, keys complete.

    A cut last line is dropped (warning appended to `notes` and logged). Raises DetalError.
    """
    text = _text(path)
    lines = text.splitlines(keepends=True)
    if len(lines) > 1 and not lines[-1].endswith(("\n", "\r")):
        cut = lines.pop().strip()
        msg = (f"{path}: dropped its last line, cut mid-write (no line end, e.g. an interrupted run): "
               f"{cut[:60]!r}")
        log.warning("%s: dropped its last line, cut mid-write: %r", path, cut[:60])
        notes.append(msg)
    body = "".join(lines)
    try:  # all as text first, so an error quotes the value as written
        df = pd.read_csv(io.StringIO(body), dtype=str, skipinitialspace=True)
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise DetalError(f"{path}: not a well-formed CSV table ({detail}); {FIX}") from None
    except pd.errors.EmptyDataError:
        raise DetalError(f"{path}: no header line; {FIX}") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DetalError(f"{path}: not a detal {what} table (missing column(s) {', '.join(missing)}); {FIX}")
    if df.empty:
        raise DetalError(f"{path}: header only, no rows yet; wait until a round has finished, or {FIX}")
    # data line numbers as an editor shows them (pandas skips blank lines)
    line_no = [i + 1 for i, ln in enumerate(lines) if ln.strip()][1:]
    for c in df.columns:
        if c in TEXT or c not in columns + PRELABEL_COLUMNS:
            continue
        raw = df[c]
        num = pd.to_numeric(raw, errors="coerce")
        bad = num.isna() & raw.notna()
        if c in required and c not in MAY_BE_EMPTY:
            bad |= raw.isna()
        if c in INTEGER:
            bad |= num.notna() & (num != num.round())
        if bad.any():
            i = int(bad.to_numpy().argmax())
            value = "empty" if pd.isna(raw.iloc[i]) else f"{raw.iloc[i]!r}"
            where = f"line {line_no[i]}" if i < len(line_no) else f"row {i + 1}"
            kind = "a whole number" if c in INTEGER else "a number"
            raise DetalError(f"{path}, {where}: {c} is {value}, not {kind}; "
                             "fix or delete that line (an interrupted round is re-run by `detal simulate`)")
        df[c] = num.astype("int64") if c in INTEGER and c in required else num
    for c in TEXT & set(required):
        empty = df[c].isna() | (df[c].str.strip() == "")
        if empty.any():
            i = int(empty.to_numpy().argmax())
            raise DetalError(f"{path}, line {line_no[i]}: {c} is empty; fix or delete that line")
        df[c] = df[c].str.strip()
    return df


def _keep_last(df: pd.DataFrame, key: tuple[str, ...]) -> pd.DataFrame:
    # a crash between writing metrics and state re-runs a round: its last rows win
    return df.drop_duplicates(list(key), keep="last").reset_index(drop=True)


def _metrics(run_dir: Path, notes: list[str]) -> pd.DataFrame:
    if not run_dir.is_dir():
        raise DetalError(f"{run_dir}: not a folder; {FIX}")
    path = run_dir / "metrics.csv"
    if not path.is_file():
        raise DetalError(f"{run_dir}: no metrics.csv; {FIX}")
    df = read_table(path, METRIC_COLUMNS, METRIC_REQUIRED, "metrics", notes)
    for c in METRIC_COLUMNS:  # older runs lack some columns (effort, timings): zero means "not recorded"
        if c not in df:
            # seconds are a cost axis: unknown, not free (the report then says it has none)
            df[c] = float("nan") if c in SECONDS_COLUMNS else 0
    df["source"] = str(path)
    return _keep_last(df, KEY)


def load_metrics(run_dir: Path) -> pd.DataFrame:
    """metrics.csv of one run folder: validated, one row per (experiment, strategy, seed, round), sorted."""
    df = _metrics(Path(run_dir), []).drop(columns="source")
    return df.sort_values(list(KEY)).reset_index(drop=True)


def _optional(run_dir: Path, name: str, notes: list[str]) -> pd.DataFrame | None:
    path = run_dir / name
    columns, key = OPTIONAL[name]
    if not path.is_file():
        return None
    try:
        return _keep_last(read_table(path, columns, columns, name.removesuffix(".csv"), notes), key)
    except DetalError as exc:
        notes.append(f"{name} skipped: {exc}")
        log.warning("%s", exc)
        return None


def _concat(frames: list[pd.DataFrame | None]) -> pd.DataFrame | None:
    frames = [f for f in frames if f is not None]
    return pd.concat(frames, ignore_index=True) if frames else None


def _relabel(df: pd.DataFrame | None, name: str | None) -> pd.DataFrame | None:
    if df is not None and name is not None and "strategy" in df:
        df = df.assign(strategy=name)
    return df


def load_runs(run_dirs: list[Path], labels: dict[Path, str] | None = None) -> RunData:
    """Every table of the given run folders. Folders may hold different experiments, or different seeds of
    the same experiment; the same (experiment, strategy, seed, round) in two folders is refused.

    `labels` maps a run folder to the arm name that replaces the strategy in its tables: a study's
    variant arm runs a registered strategy under other settings, and must not merge with that strategy.
    """
    notes: list[str] = []
    metrics, optional = [], {name: [] for name in OPTIONAL}
    labels = {Path(k).resolve(): v for k, v in (labels or {}).items()}
    for d in run_dirs:
        name = labels.get(Path(d).resolve())
        metrics.append(_relabel(_metrics(d, notes), name))
        for table in OPTIONAL:
            optional[table].append(_relabel(_optional(d, table, notes), name))
    df = pd.concat(metrics, ignore_index=True)
    experiments = list(dict.fromkeys(df["experiment"]))
    dup = df[df.duplicated(list(KEY), keep=False)]
    if len(dup):
        row = dup.iloc[0]
        files = " and ".join(sorted(dup.loc[(dup[list(KEY)] == row[list(KEY)]).all(axis=1), "source"].unique()))
        raise DetalError(f"{files} both hold experiment {row['experiment']!r}, strategy {row['strategy']!r}, seed "
                         f"{row['seed']}, round {row['round']}: report one of them, or give the runs distinct "
                         "`experiment:` names")
    df = df.sort_values(list(KEY)).reset_index(drop=True)
    return RunData(metrics=df, per_class=_concat(optional["per_class.csv"]),
                   selected_classes=_concat(optional["selected_classes.csv"]),
                   pool_classes=_concat(optional["pool_classes.csv"]), sources=list(run_dirs), notes=notes,
                   experiments=experiments)
