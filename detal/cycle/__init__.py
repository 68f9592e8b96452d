"""Driver 2, the scheduled job: `detal init / cycle / status` move a live Label Studio project forward.

`init` creates the project (labelling config, local-files storage, an annotators' view sorted by
uncertainty), picks the evaluation set (the data.yaml's labelled val split, else a fixed random sample
of the pool pushed for annotation first, flagged `split: val`), and hands out the seed set: images that
already have a label file are imported as labelled, else a random `seed_fraction` is pushed without
pre-labels (there is no model yet).

`cycle` is one idempotent step, meant for cron: reconcile with the server (`reconcile.py`: adopt tasks an
interrupted run pushed, push again tasks an admin deleted or drop them from the val set, follow
annotations edited after they were collected), collect finished annotations, and, once
`cycle.min_new_labels` new labels arrived and the val set is annotated, run THE round
(detal.round.run_round: train, evaluate, score + select, push pre-labels, refresh open tasks to the new
model). Nothing happens to the project's state until the
round has finished: it is saved in one SQLite transaction at the end, so a run killed at any point
leaves the previous state, and the next run redoes the work (pushes are keyed by image: no duplicate).

State lives in `<output_dir>/<experiment>/project.sqlite` (WAL): per image its status (pool, val,
pushed, labelled, skipped), round, source, task id and boxes per class; per annotated task its Label Studio
lead_time beside its actions (`leads.py`; `costfit.py` fits seconds per action to them: `detal cost fit`); per
round its metrics; per run its outcome. Labels of record live in `<output_dir>/<experiment>/labels/` (links + label files).
"""

from detal.cycle.cycle import CycleOutcome, run_cycle
from detal.cycle.init import init_project
from detal.cycle.status import format_status, project_status
from detal.cycle.store import (
           CYCLE_METRIC_COLUMNS,
           ESTIMATE_COLUMNS,
           SCHEMA_VERSION,
           Store,
           project_lock,
)

__all__ = ["CYCLE_METRIC_COLUMNS", "ESTIMATE_COLUMNS", "SCHEMA_VERSION", "CycleOutcome", "Store", "format_status",
           "init_project", "project_lock", "project_status", "run_cycle"]
