"""`detal cost fit`: seconds per action fitted to the project's annotated tasks, and written into the config.

The fit is detal.cost.fit_seconds (non-negative least squares of lead_time on the action counts, pauses left out,
k-fold held-out error) on the single-pass timed tasks of the state (detal.cycle.leads). `--write` changes only the
values of the config file's `cost:` section, in place: every comment, every other line stays as it was.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detal.config import Config
from detal.cost import ACTIONS, FIT_TERMS, Fit, fit_seconds
from detal.cycle import leads
from detal.cycle.store import Store
from detal.errors import DetalError


class TooFewTasks(DetalError):
    """Not enough timed tasks to fit: one line naming how many are needed (exit 2)."""

    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class CostFit:
    fit: Fit
    config: dict[str, float]  # FIT_TERMS -> the config's seconds now
    seen: dict[str, int]  # FIT_TERMS -> how many fitted tasks have that action (per_image: every task)
    edited: int  # timed tasks left out: edited after the first pass (more than one pass in their lead_time)

    @property
    def values(self) -> dict[str, float]:
        """What --write puts into `cost:`: the fitted seconds, rounded; an action no fitted task has is not measured
        (its column is all zeros, NNLS leaves it 0): the config keeps its value."""
        return {t: round(self.fit.seconds[t], 2) if self.seen[t] else self.config[t] for t in FIT_TERMS}


FEW_TASKS = 10  # an action seen on fewer tasks than this is fitted loosely: format_fit says so beside its value


def _needed() -> int:
    return len(FIT_TERMS) + 2  # detal.cost.fit_seconds: the unknowns plus two


def fit_project(cfg: Config, store: Store | None = None) -> CostFit:
    """The fit on the project's state. Raises TooFewTasks (one line) when there are too few timed tasks."""
    own = store is None
    if own:
        path = cfg.run_dir / "project.sqlite"
        if not path.exists():
            raise DetalError(f"{cfg.run_dir}: no detal project here yet; run `detal init -c CONFIG` first")
        store = Store(path)
    try:
        known = store.leads()
    finally:
        if own:
            store.close()
    counts, lead, edited = leads.fit_rows(known)
    try:
        fit = fit_seconds(counts, lead)
    except ValueError:  # fewer tasks than unknowns (after pauses are left out)
        raise TooFewTasks(str(cfg.run_dir / "project.sqlite"), f"{len(lead)} annotated tasks with a Label Studio "
                          f"lead_time, a fit of seconds per action needs at least {_needed()} (after leaving out "
                          f"pauses{f' and {edited} edited tasks' if edited else ''}); annotate more tasks and run "
                          "`detal cycle` first") from None
    kept = counts[np.isfinite(lead) & (lead >= 0) & (lead <= fit.limit)]  # the rows fit_seconds fitted on
    seen = {"per_image": int(len(kept)), **{a: int((kept[:, i] > 0).sum()) for i, a in enumerate(ACTIONS)}}
    conf = {"per_image": float(cfg.cost.per_image), **cfg.cost.per_action}
    return CostFit(fit, conf, seen, edited)


def format_fit(cf: CostFit) -> str:
    f = cf.fit
    lines = [f"seconds per action fitted to {f.tasks} annotated tasks' lead_time"
             + (f" ({f.clipped} pauses above {f.limit:.0f} s left out" if f.clipped else " (no pause left out")
             + (f", {cf.edited} edited tasks left out)" if cf.edited else ")"),
             f"{'':>12}  {'fitted':>7}  {'config':>7}  {'tasks with it':>13}"]
    for t in FIT_TERMS:
        note = ("  (never seen: the config's value stays)" if not cf.seen[t] else
                f"  (only {cf.seen[t]} tasks have it: a loose fit; check it before --write)"
                if cf.seen[t] < FEW_TASKS else "")
        lines.append(f"{t:>12}  {f.seconds[t]:>7.2f}  {cf.config[t]:>7.2f}  {cf.seen[t]:>13}{note}")
    r2 = "" if math.isnan(f.heldout_r2) else f", R^2 {f.heldout_r2:.2f}"
    lines.append(f"held-out error (5-fold): median {f.heldout_mae:.1f} s per task ({f.heldout_rel:.0%} of the median "
                 f"task){r2}; predicting every task by the median: {f.baseline_mae:.1f} s")
    return "\n".join(lines)


# ---------------------------------------------------------------- the YAML file, edited in place

_TOP = re.compile(r"^(?P<key>[A-Za-z_][\w-]*)\s*:(?P<rest>.*)$")


def _value(v: float) -> str:
    return repr(float(round(v, 2)))


def rewrite_cost(text: str, values: dict[str, float], where: str = "config") -> str:
    """`text` (a YAML config) with the values of its top-level `cost:` section set to `values`; comments, spacing and
    every other line kept. A key absent from the section is added at its end; an absent section is appended.
    Raises DetalError (one line) for a section written inline (`cost: {...}`)."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if (m := _TOP.match(ln.rstrip("\r\n"))) and m["key"] == "cost"), None)
    if start is None:
        tail = "" if not text or text.endswith("\n") else "\n"
        return text + tail + "cost:\n" + "".join(f"  {k}: {_value(v)}\n" for k, v in values.items())
    rest = _TOP.match(lines[start].rstrip("\r\n"))["rest"]
    if rest.split("#", 1)[0].strip():
        raise DetalError(f"{where}, line {start + 1}: `cost:` is written inline; write it as a block (one key per "
                         "line) for `detal cost fit --write`, or copy the fitted values by hand")
    end = start + 1  # the section: indented, blank or comment lines up to the next top-level key
    while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t#"):
        end += 1
    todo = dict(values)
    indent, last = "  ", start
    for i in range(start + 1, end):
        m = re.match(r"^(?P<ind>[ \t]+)(?P<key>[A-Za-z_]\w*)(?P<colon>\s*:[ \t]*)(?P<val>[^#\r\n]*?)(?P<gap>[ \t]*)"
                     r"(?P<comment>#.*)?(?P<eol>\r?\n?)$", lines[i])
        if not m:
            continue
        indent, last = m["ind"], i
        if m["key"] not in todo:
            continue
        new = _value(todo.pop(m["key"]))
        # keep the comment's column where the new value leaves room for it
        gap = m["gap"] if not m["comment"] else " " * max(1, len(m["val"]) + len(m["gap"]) - len(new))
        lines[i] = f"{m['ind']}{m['key']}{m['colon']}{new}{gap}{m['comment'] or ''}{m['eol']}"
    if todo:
        eol = "\n" if lines[last].endswith("\n") else ""
        if not eol:
            lines[last] += "\n"
        lines[last + 1:last + 1] = [f"{indent}{k}: {_value(v)}\n" for k, v in todo.items()]
    return "".join(lines)


def write_cost(path: Path, values: dict[str, float]) -> None:
    """Rewrite the config file's `cost:` values in place (atomically), checked by reading the result back."""
    import yaml

    from detal.data import atomic_write_text

    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    new = rewrite_cost(text, values, str(path))
    doc = yaml.safe_load(new) or {}
    got = doc.get("cost") if isinstance(doc, dict) else None
    if not isinstance(got, dict) or any(not np.isclose(float(got.get(k, math.nan)), round(v, 2))
                                        for k, v in values.items()):
        raise DetalError(f"{path}: could not place the fitted values in its `cost:` section (an unusual layout); "
                         "nothing was written: copy them by hand")
    atomic_write_text(path, new)
