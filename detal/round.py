"""ONE round of active learning, the same for both drivers (`simulate` and the scheduled job):

    collect -> train -> evaluate -> score + select -> request -> collect -> record

- collect: labels the annotator finished become the labels of record (detal.labels.LabelStore) and
  join the labelled set in the round they were requested for;
- train + evaluate: on exactly those labels, then mAP (overall and per class) on the fixed val split;
- score + select: the strategy asks the scoring callback for the ids it needs; one model pass serves
  scoring and pre-labels;
- request: hand the batch (pre-labels, uncertainty, model version) to the annotator;
- record: a RoundResult (the rows of metrics.csv and its companion tables); the driver writes them and
  saves the ArmState.
An annotator that finishes at once (the oracle, the simulated Label Studio bot) is collected in the same
round; people in Label Studio are collected at the start of the next run.
"""

from __future__ import annotations

import functools
import logging
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detal.acquisition.selection import Selection, resolve, select, strategy as strategy_spec
from detal.annotate import Annotations, Annotator, Request
from detal.config import Config, scoring_calibration
from detal.cost import ACTIONS, image_cost
from detal.data import atomic_write_text, write_split_yaml
from detal.labels import LabelStore
from detal.progress import Progress
from detal.scoring import ScoringPass, make_scorer
from detal.state import ArmState
from detal.types import ACTION_COLUMNS, BOX_EFFORT_KEYS, EFFORT_KEYS

log = logging.getLogger("detal")


def seed_set(n_pool: int, fraction: float, seed: int) -> np.ndarray:
    """The random seed set of one experiment seed (positions in the pool): shared by every arm."""
    rng = np.random.default_rng(seed)
    exact = fraction * n_pool
    if round(exact) < 1 and n_pool:
        _warn_once(f"schedule.seed_fraction: {fraction:g} of {n_pool} images is {exact:.2g} images, rounded up to a "
                   f"seed set of 1; set schedule.seed_fraction to at least {1 / n_pool:.2g} to choose it yourself")
    n = min(n_pool, max(1, round(exact)))
    return np.sort(rng.choice(n_pool, size=n, replace=False))


@functools.lru_cache(maxsize=64)
def _warn_once(msg: str) -> None:
    """A configuration warning once per process, not once per seed or round."""
    log.warning("%s", msg)


def selection_rng(seed: int, strategy: str) -> np.random.Generator:
    # stable across processes (unlike hash()): same seed + strategy, same draws; an alias
    # (`recommended`) draws what the rule it resolves to draws, so the study's arm is literally its run
    return np.random.default_rng([seed, zlib.crc32(resolve(strategy).encode())])


@dataclass
class Arm:
    """What the rounds of one arm share: the config, the pool as it is now, and the systems it talks to."""

    cfg: Config
    strategy: str
    seed: int
    images: tuple[Path, ...]  # the pool (train split) as it is now, sorted; ids are positions in it
    keys: tuple[str, ...]  # detal.labels.image_key of each image
    val: tuple[Path, ...]
    names: tuple[str, ...]
    backend: object  # detal.detector.Backend
    annotator: Annotator
    device: str
    store: LabelStore
    dir: Path  # round<R>/ folders go here
    progress: Progress = field(default_factory=lambda: Progress(quiet=True))
    experiment: str = ""
    live: bool = False  # a live project: rounds go on, there is no "of N"
    shared_dir: Path | None = None  # trainings from scratch shared with the other arms of the seed (shared_training)
    name: str = ""  # what progress lines call the arm (a study's variant arm: its name); default the strategy
    # the live job's cycle.audit_share: this share of each batch is drawn at random when the strategy draws none
    # of its own, so pre-label quality and seconds have an unbiased sample; experiments leave it at 0
    audit_share: float = 0.0

    def label(self, r: int) -> str:
        return f"{self.tag} round {r}" + ("" if self.live else f"/{self.cfg.schedule.rounds}")

    def model_version(self, r: int) -> str:
        return f"{self.experiment}-seed{self.seed}-{self.strategy}-round{r}"

    @property
    def tag(self) -> str:
        return f"[seed {self.seed} | {self.name or self.strategy}]"

    @property
    def threads(self) -> int | None:
        """CPU training threads: the config's, else every core when no dataloader worker needs one."""
        import os

        if self.cfg.model.threads is not None:
            return self.cfg.model.threads
        return os.cpu_count() if self.cfg.model.workers == 0 else None

    def path_of(self, key: str) -> Path:
        return self.images[self._index[key]]

    def __post_init__(self) -> None:
        self._index = {k: i for i, k in enumerate(self.keys)}


@dataclass
class RoundResult:
    metrics: dict  # one row of metrics.csv (METRIC_COLUMNS)
    selections: list[dict] = field(default_factory=list)  # SELECTION_COLUMNS
    per_class: list[dict] = field(default_factory=list)  # PER_CLASS_COLUMNS
    selected_classes: list[dict] = field(default_factory=list)  # SELECTED_CLASS_COLUMNS
    selected: int = 0


@dataclass
class Collected:
    annotations: Annotations
    joined: dict[int, list[str]] = field(default_factory=dict)  # round joined -> keys labelled now
    actions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACTIONS, 0))  # detal.cost, summed


# ---------------------------------------------------------------- steps

def collect(arm: Arm, state: ArmState) -> Collected:
    """Finished labels of pending images become labels of record (written before the state records them)."""
    waiting = [k for k in state.pending if k in arm._index]
    out = Collected(Annotations())
    if not waiting:
        return out
    ann = arm.annotator.collect([arm.path_of(k) for k in waiting])
    by_path = {arm.path_of(k): k for k in waiting}
    nc = len(arm.names)
    cost = arm.cfg.cost
    for path, labels in ann.labels.items():
        key = by_path.get(Path(path))
        if key is None:
            continue
        arm.store.put(key, path, labels)
        counts = np.bincount(np.asarray(labels)[:, 0].astype(np.int64), minlength=nc) if len(labels) else np.zeros(nc, np.int64)
        out.joined.setdefault(state.label(key, counts), []).append(key)
        # what this image cost the annotator: the pre-labels it was shown (none: drawn from scratch) -> its labels
        shown = ann.prelabels.get(path)
        pre, final, truth = ann.reviewed.get(path) or (shown[0] if shown is not None else np.zeros((0, 5)), labels, None)
        act, sec, scratch = image_cost(pre, final, cost.per_action, cost.per_image, ann.accept_iou, truth)
        state.seconds[key] = [round(sec, 3), round(scratch, 3)]
        for a in ACTIONS:
            out.actions[a] += act[a]
    for path in ann.skipped:
        if (key := by_path.get(Path(path))) is not None:
            state.skip(key)
    out.annotations = ann
    return out


def request(arm: Arm, state: ArmState, ids: np.ndarray, round_idx: int, *, scores: dict[Path, float] | None = None,
            scoring: ScoringPass | None = None, model_version: str = "seed", sources=None) -> float:
    """Hand pool ids to the annotator for `round_idx`, with pre-labels when it shows them.

    Returns the seconds the pre-label pass took (the model on the requested images it had not scored)."""
    images = tuple(arm.images[int(i)] for i in ids)
    # still-open requests get this model's pre-labels too: a task left with an older model_version loses
    # its pre-labels from the label stream once the project moves on
    open_ids = [i for i, k in enumerate(arm.keys) if k in state.pending]
    preds = {}
    t0 = time.perf_counter()
    if arm.annotator.needs_predictions and scoring is not None:
        # the round's ScoringPass keeps pre-labels (cut by cfg.prelabel): they are what annotators are shown
        preds = {p.path: p for p in scoring.predict([*map(int, ids), *open_ids])}
    spent = time.perf_counter() - t0
    state.request([arm.keys[int(i)] for i in ids], round_idx)
    arm.annotator.request(Request(round_idx, images, preds, scores or {}, model_version,
                                  refresh=tuple(arm.images[i] for i in open_ids) if preds else (),
                                  sources=dict(zip(images, sources or ()))))
    return spent


def train_and_evaluate(arm: Arm, state: ArmState, r: int, round_dir: Path):
    cfg = arm.cfg
    labelled = state.labelled_keys(arm.keys)
    data_yaml = write_split_yaml(round_dir / "data.yaml", [arm.store.image(k) for k in labelled], list(arm.val),
                                 arm.names)
    source = state.weights if (cfg.model.warm_start and state.weights) else cfg.model.arch
    n_boxes = int(state.class_counts(labelled, len(arm.names)).sum())
    epochs = cfg.schedule.epochs_for(len(labelled), cfg.model.batch)

    def train():
        arm.progress.line(f"{arm.label(r)}: training {epochs} epochs on {len(labelled)} images ({n_boxes} boxes)")
        return arm.backend.train(source, data_yaml, epochs, round_dir, imgsz=cfg.model.imgsz,
                                 batch=cfg.model.batch, device=arm.device, seed=arm.seed, workers=cfg.model.workers,
                                 extra=dict(cfg.model.train_args), threads=arm.threads,
                                 on_epoch=arm.progress.epoch(arm.label(r)))

    if arm.shared_dir is not None and source == cfg.model.arch:  # from scratch: the same for every arm of the seed
        from detal.shared_training import train_shared, training_key

        files = ((k, arm.store.label_file(k)) for k in labelled)  # a missing label file means no objects
        key = training_key(cfg, source, ((k, f.read_bytes() if f.is_file() else b"") for k, f in files), arm.val,
                           arm.names, epochs, arm.seed)
        tr, reused = train_shared(arm.shared_dir, key, round_dir, train)
        if reused:
            arm.progress.line(f"{arm.label(r)}: reusing the model another arm of seed {arm.seed} trained from scratch "
                              f"on the same {len(labelled)} images ({epochs} epochs, same labels, recipe and seed)")
    else:
        tr = train()
    t0 = time.perf_counter()
    ev = arm.backend.evaluate(tr.weights, data_yaml, imgsz=cfg.model.imgsz, batch=cfg.scoring.batch, device=arm.device)
    arm.progress.line(f"{arm.label(r)}: mAP50-95 {ev.map50_95:.3f}  mAP50 {ev.map50:.3f}  "
                      f"({tr.seconds:.0f} s training)")
    return tr, ev, labelled, n_boxes, time.perf_counter() - t0


def round_strategy(cfg, strategy: str, r: int) -> str:
    """The strategy that selects after round r: `selection.first_round` (when set) after round 1, else the arm's."""
    return cfg.selection.first_round if r == 1 and cfg.selection.first_round else strategy


def choose(arm: Arm, state: ArmState, weights: Path, rng: np.random.Generator,
           labelled: list[str], name: str) -> tuple[Selection, ScoringPass | None]:
    """Score what strategy `name` (the round's: `round_strategy`) asks for and select the next batch."""
    cfg = arm.cfg
    taken = state.taken()  # once: a set per key would make this quadratic in the pool
    pool_ids = np.array([i for i, k in enumerate(arm.keys) if k not in taken], dtype=np.int64)
    wanted = max(1, round(cfg.schedule.select_fraction * len(arm.images)))
    budget = min(wanted, pool_ids.size)
    if wanted > pool_ids.size:
        # a warning, shown with -q too: the batch is smaller than the config says
        log.warning("%s schedule.select_fraction asks for %d images, but only %d are left in the pool; selecting "
                    "those %d (lower schedule.select_fraction or add images)", arm.tag, wanted, pool_ids.size,
                    pool_ids.size)
    spec = strategy_spec(name)
    scoring = None
    if spec.scores or arm.annotator.needs_predictions:
        scorer = make_scorer(cfg, weights, device=arm.device, features=spec.features, backend=arm.backend)
        # expected seconds only for a strategy that ranks by them: they cost a pre-label pass per scored image
        scoring = ScoringPass(scorer, arm.images, cfg.scoring, arm.names, audit=cfg.scoring.audit,
                              cfg=cfg if spec.seconds else None, prelabel=cfg.prelabel)
        calibration = scoring_calibration(name, cfg.scoring) if spec.scores else "none"
        if calibration == "difficulty":
            scoring.class_weights = _difficulty_weights(arm, scorer, labelled)
        elif calibration == "temperature":
            scoring.temperature = _temperature(arm, scorer, labelled)
    counts = state.class_counts(labelled, len(arm.names)) if cfg.selection.class_balance > 0 else None
    n_audit = 0
    if arm.audit_share > 0 and not spec.random_share and budget >= 2:
        n_audit = min(budget - 1, max(1, round(arm.audit_share * budget)))
    sel = select(name, pool_ids, budget - n_audit, rng, scoring or _no_scoring, cfg.selection, counts)
    if n_audit:
        sel = _with_audit(sel, pool_ids, n_audit, rng)
    return sel, scoring


def _with_audit(sel: Selection, pool_ids: np.ndarray, n: int, rng: np.random.Generator) -> Selection:
    """`sel` plus n images drawn uniformly from the rest of the pool (source "random": the unbiased sample)."""
    rest = np.setdiff1d(pool_ids, sel.ids)
    extra = np.sort(rng.choice(rest, size=min(n, rest.size), replace=False)).astype(np.int64)
    return Selection(np.concatenate([sel.ids, extra]), np.concatenate([sel.scores, np.full(extra.size, np.nan)]),
                     (*sel.sources, *("random",) * extra.size), sel.n_scored)


def _labelled_set(arm: Arm, labelled: list[str]) -> tuple[list[Path], list[np.ndarray]]:
    """The labelled images and their labels of record, for a calibration on the labelled set."""
    from detal.data import read_labels

    return ([arm.store.image(k) for k in labelled],
            [read_labels(arm.store.label_file(k), len(arm.names)) for k in labelled])


def _difficulty_weights(arm: Arm, scorer, labelled: list[str]) -> np.ndarray:
    """Per-class box weights from the model's difficulty on the labelled set (scoring.calibration)."""
    from detal.acquisition.uncertainty import difficulty_weights
    from detal.scoring import labelled_difficulty

    d = labelled_difficulty(scorer, *_labelled_set(arm, labelled), len(arm.names), arm.cfg.scoring.conf)
    arm.progress.line(f"{arm.tag} class difficulty on the labelled set: "
                      + ", ".join(f"{n} {v:.2f}" for n, v in zip(arm.names, d)))
    return difficulty_weights(d)


def _temperature(arm: Arm, scorer, labelled: list[str]) -> float:
    """The temperature of the model's class scores fitted on the labelled set (scoring.calibration)."""
    from detal.scoring import labelled_temperature

    t, n = labelled_temperature(scorer, *_labelled_set(arm, labelled), len(arm.names), arm.cfg.scoring.conf)
    arm.progress.line(f"{arm.tag} temperature on the labelled set: {t:.3f} (fitted on {n} predicted boxes)")
    return t


def _no_scoring(ids):
    raise RuntimeError("this strategy declared that it scores nothing")


# ---------------------------------------------------------------- the round

def start(arm: Arm, seed_ids: np.ndarray) -> ArmState:
    """A new arm: the seed set (random, no pre-labels: there is no model yet) is requested for round 1."""
    state = ArmState(rng_state=selection_rng(arm.seed, arm.strategy).bit_generator.state)
    request(arm, state, seed_ids, 1)
    return state


def run_round(arm: Arm, state: ArmState, r: int, *, last: bool) -> RoundResult:
    """Round r: collect -> train -> evaluate -> score + select -> request -> collect. Mutates `state`.

    `last`: nothing is selected after it (an experiment's final round); a live project has none.
    """
    round_dir = arm.dir / f"round{r}"
    early = collect(arm, state)
    tr, ev, labelled, n_boxes, eval_s = train_and_evaluate(arm, state, r, round_dir)
    state.epochs_trained += tr.epochs
    rng = np.random.default_rng()
    rng.bit_generator.state = state.rng_state
    row = {"experiment": arm.experiment, "strategy": arm.strategy, "seed": arm.seed, "round": r,
           "epochs_trained": state.epochs_trained, "labeled_images": len(labelled), "labeled_boxes": n_boxes,
           "map50_95": ev.map50_95, "map50": ev.map50, "train_seconds": round(tr.seconds, 2),
           "eval_seconds": round(eval_s, 2), "select_seconds": 0.0, "scored_images": 0, "selected_images": 0,
           **dict.fromkeys(EFFORT_KEYS, 0), **dict.fromkeys(ACTION_COLUMNS, 0)}
    row["annotation_seconds"], row["scratch_seconds"] = (round(v, 1) for v in state.labelled_seconds(labelled))
    result = RoundResult(row)
    collected = [early]
    pool_left = len(state.pool(arm.keys))
    if not last and pool_left:
        t0 = time.perf_counter()
        by = round_strategy(arm.cfg, arm.strategy, r)
        sel, scoring = choose(arm, state, tr.weights, rng, labelled, by)
        row["select_seconds"] = round(time.perf_counter() - t0, 3)
        row["scored_images"] = scoring.n_scored if scoring is not None else 0
        images = [arm.images[int(i)] for i in sel.ids]
        scores = {p: float(s) for p, s in zip(images, sel.scores)}
        try:
            # the pre-label pass of picks the strategy did not score (random ones) counts as selection time
            row["select_seconds"] += round(request(arm, state, sel.ids, r + 1, scores=scores, scoring=scoring,
                                                   sources=sel.sources, model_version=arm.model_version(r)), 3)
        finally:
            if scoring is not None:
                scoring.scorer.close()
        row["selected_images"] = result.selected = int(sel.ids.size)
        result.selections = [{"experiment": arm.experiment, "strategy": arm.strategy, "seed": arm.seed, "round": r,
                              "image": str(p), "score": s, "source": src}
                             for p, s, src in zip(images, sel.scores, sel.sources)]
        if scoring is not None and scoring.audit_images:  # a strategy that scored nothing has no audit
            import pandas as pd

            for name, rows in (("scores.csv", scoring.audit_images), ("scores_boxes.csv", scoring.audit_boxes)):
                atomic_write_text(round_dir / name, pd.DataFrame(rows).to_csv(index=False))
        collected.append(collect(arm, state))
        arm.progress.line(f"{arm.label(r)}: selected {sel.ids.size} images" + (f" by {by}" if by != arm.strategy else "")
                          + f" (scored {row['scored_images']}, {row['select_seconds']:.1f} s)")
    for c in collected:
        for k in BOX_EFFORT_KEYS:
            row[k] += int(c.annotations.effort.get(k, 0))
        for k in ACTION_COLUMNS:
            row[k] += int(c.actions[k])
        row["skipped"] += len(c.annotations.skipped)
        result.selected_classes += class_rows(arm, state, c)
    result.per_class = [{"experiment": arm.experiment, "strategy": arm.strategy, "seed": arm.seed, "round": r,
                         "class_id": c, "class": arm.names[c], "instances": n, "ap50_95": ap, "ap50": ap50}
                        for c, n, ap, ap50 in ev.per_class if c < len(arm.names)]  # a foreign .pt may have more
    state.round_done, state.weights = r, str(tr.weights)
    state.rng_state = rng.bit_generator.state
    state.finished = last or not pool_left
    return result


def class_rows(arm: Arm, state: ArmState, c: Collected) -> list[dict]:
    """Boxes per class of the labels collected now, by the round whose selection asked for them (seed set: 0)."""
    rows = []
    nc = len(arm.names)
    for joined, keys in sorted(c.joined.items()):
        counts = state.class_counts(keys, nc)
        images = np.zeros(nc, np.int64)
        for k in keys:
            images += np.asarray(state.boxes[k]) > 0
        rows += [{"experiment": arm.experiment, "strategy": arm.strategy, "seed": arm.seed, "round": joined - 1,
                  "class_id": ci, "class": arm.names[ci], "boxes": int(counts[ci]), "images": int(images[ci])}
                 for ci in range(nc)]
    return rows
