"""The active-learning experiment: arms (strategies) x seeds, rounds of train -> evaluate -> select -> label.

Every arm of a seed starts from the same random seed set and is evaluated on the same val split.
State is saved after every round (runs/<exp>/seed<S>/<strategy>/state.json), metrics are appended as
rounds finish, so a killed run resumes where it stopped and loses at most the round in progress.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np
import pandas as pd
import yaml

from detal.config import Config
from detal.data import Dataset, label_path, load_dataset, read_labels, write_split_yaml, atomic_write_text
from detal.errors import DetalError
from detal.oracle import Annotator, GroundTruthOracle
from detal.types import EFFORT_KEYS, METRIC_COLUMNS, SELECTION_COLUMNS
from detal.state import LabelState



class Progress:
    """Terminal progress on stderr; epoch lines overwrite each other on a terminal."""

    def __init__(self, quiet: bool = False, stream=sys.stderr):
        self.quiet, self.stream = quiet, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def line(self, msg: str) -> None:
        if not self.quiet:
            print(("\r\033[K" if self.tty else "") + msg, file=self.stream, flush=True)

    def epoch(self, prefix: str) -> Callable[[int, int, dict], None]:
        def report(epoch: int, epochs: int, info: dict) -> None:
            if self.quiet:
                return
            loss = info.get("loss")
            msg = f"{prefix} epoch {epoch}/{epochs}" + (f" loss {loss:.3f}" if loss is not None else "")
            if self.tty:
                print("\r\033[K" + msg, end="", file=self.stream, flush=True)
            elif epoch == epochs or epoch % 5 == 0:
                print(msg, file=self.stream, flush=True)
        return report


def _append_csv(path: Path, rows: list[dict], columns: tuple[str, ...]) -> None:
    if rows:
        pd.DataFrame(rows, columns=list(columns)).to_csv(path, mode="a", header=not path.exists(), index=False)


def config_fingerprint(cfg: Config) -> str:
    return hashlib.sha256(json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


def prepare_dataset(cfg: Config, progress: Progress) -> Dataset:
    """Load the dataset, generating it first when `synth:` is configured and data.yaml is missing."""
    if not cfg.data.exists() and cfg.synth is not None:
        from dataclasses import replace

        from detal.synthetic import DEFAULT_KNOBS, generate

        progress.line(f"generating {cfg.synth.images} synthetic images into {cfg.data.parent} (seed {cfg.synth.seed})")
        out = generate(cfg.data.parent, cfg.synth.images, seed=cfg.synth.seed, imgsz=cfg.synth.imgsz,
                       val_fraction=cfg.synth.val_fraction, knobs=replace(DEFAULT_KNOBS, palette_prob=cfg.synth.palette))
        if out.resolve() != cfg.data.resolve():
            raise DetalError(f"data: generator wrote {out}, but the config names {cfg.data}; point data: at {out}")
    return load_dataset(cfg.data)


def seed_set(n_pool: int, fraction: float, seed: int) -> np.ndarray:
    """The random seed set of one experiment seed: shared by every arm."""
    rng = np.random.default_rng(seed)
    n = min(n_pool, max(1, round(fraction * n_pool)))
    return np.sort(rng.choice(n_pool, size=n, replace=False))


def selection_rng(seed: int, strategy: str) -> np.random.Generator:
    # stable across processes (unlike hash()): same seed + strategy, same draws
    return np.random.default_rng([seed, zlib.crc32(strategy.encode())])


@dataclass
class Experiment:
    """Everything an arm needs that does not change between arms."""

    cfg: Config
    ds: Dataset
    backend: ModuleType
    annotator: Annotator
    device: str
    progress: Progress
    class_counts: dict = field(default_factory=dict)  # pool id -> boxes per class of its (final) labels

    @property
    def threads(self) -> int | None:
        """CPU training threads: the config's, else every core when no dataloader worker needs one."""
        import os

        if self.cfg.model.threads is not None:
            return self.cfg.model.threads
        return os.cpu_count() if self.cfg.model.workers == 0 else None

    @property
    def run_dir(self) -> Path:
        return self.cfg.run_dir

    def box_stats(self, ids: np.ndarray) -> tuple[int, np.ndarray]:
        """Labelled boxes and boxes per class, from the label files of the labelled images (read once each)."""
        counts = np.zeros(self.ds.nc, dtype=np.int64)
        for i in ids:
            if i not in self.class_counts:
                lab = read_labels(label_path(self.ds.train[i]), self.ds.nc)
                self.class_counts[i] = np.bincount(lab[:, 0].astype(np.int64), minlength=self.ds.nc)
            counts += self.class_counts[i]
        return int(counts.sum()), counts


def _score_fn(exp: Experiment, scorer, counter: dict, audit: list | None):
    """The callback a strategy calls with the ids it wants scored: only those images go through the model."""
    from detal.scoring import box_rows, image_rows, image_scores_for
    from detal.selection import Scored

    sc = exp.cfg.scoring

    def score(ids: np.ndarray) -> Scored:
        preds = list(scorer.iter_predictions([exp.ds.train[i] for i in ids]))
        counter["n"] += len(preds)
        scores = image_scores_for(preds, sc)
        feats = None
        dims = {p.feature.shape for p in preds if p.feature is not None}
        if dims:  # an unreadable image gets a zero feature row (normalises to zero: never "far" from anything)
            zero = np.zeros(dims.pop(), np.float32)
            feats = np.stack([zero if p.feature is None else p.feature for p in preds])
        if audit is not None:
            audit.extend(box_rows(preds, sc, exp.ds.names))
            counter.setdefault("images", []).extend(image_rows(preds, scores))
        return Scored(scores=scores, features=feats, classes=[p.cls[p.conf >= sc.conf] for p in preds])

    return score


def _select_and_label(exp: Experiment, seed: int, strategy: str, r: int, state: LabelState, rng: np.random.Generator,
                      weights: Path, class_counts: np.ndarray, row: dict, round_dir: Path) -> list[dict]:
    """End of round r: score what the strategy asks for, select, annotate, mark labelled in round r + 1.

    Fills the selection columns of the round's metrics `row`; returns the rows of selections.csv.
    """
    from detal.scoring import make_scorer
    from detal.selection import SelectionParams, select

    cfg, ds, be = exp.cfg, exp.ds, exp.backend
    pool = state.unlabelled
    budget = min(max(1, round(cfg.schedule.select_fraction * len(ds.train))), pool.size)
    t0 = time.perf_counter()
    counter = {"n": 0}
    audit: list | None = [] if cfg.scoring.audit else None
    scorer = make_scorer(cfg, weights, device=exp.device, conf=cfg.scoring.conf, features=(strategy == "diverse"),
                         backend=be)
    params = SelectionParams(subset_fraction=cfg.selection.subset_fraction, mix_ratio=cfg.selection.mix_ratio,
                             candidate_factor=cfg.selection.candidate_factor,
                             class_balance=cfg.selection.class_balance, labelled_class_counts=class_counts)
    sel = select(strategy, pool, budget, rng, _score_fn(exp, scorer, counter, audit), params)
    row["select_seconds"] = round(time.perf_counter() - t0, 3)
    row["scored_images"] = counter["n"]
    images = [ds.train[i] for i in sel.ids]
    scores = {p: float(s) for p, s in zip(images, sel.scores)}
    preds = None
    if exp.annotator.needs_predictions:  # pre-labels use their own confidence threshold
        pre = make_scorer(cfg, weights, device=exp.device, conf=cfg.prelabel.conf, backend=be)
        preds = list(pre.iter_predictions(images))
    version = f"{cfg.experiment}-seed{seed}-{strategy}-round{r}"
    labels, effort = exp.annotator.annotate(r + 1, images, preds, scores, version)
    done = np.array([i for i, p in zip(sel.ids, images) if p in labels], dtype=np.int64)
    state.mark(done, r + 1)
    row["selected_images"] = int(done.size)
    row.update({k: int(effort.get(k, 0)) for k in EFFORT_KEYS})
    if audit is not None:
        pd.DataFrame(counter.get("images", [])).to_csv(round_dir / "scores.csv", index=False)
        pd.DataFrame(audit).to_csv(round_dir / "scores_boxes.csv", index=False)
    exp.progress.line(f"[seed {seed} | {strategy}] round {r}/{cfg.schedule.rounds}: selected {done.size} images "
                      f"(scored {counter['n']}, {row['select_seconds']:.1f} s)")
    return [{"experiment": cfg.experiment, "strategy": strategy, "seed": seed, "round": r,
             "image": str(ds.train[i]), "score": s, "source": src}
            for i, s, src in zip(sel.ids, sel.scores, sel.sources)]


def run_arm(exp: Experiment, seed: int, strategy: str, seed_ids: np.ndarray) -> None:
    """All rounds of one (seed, strategy) arm, resuming from its saved state when there is one."""
    cfg, ds, be, progress = exp.cfg, exp.ds, exp.backend, exp.progress
    arm_dir = exp.run_dir / f"seed{seed}" / strategy
    state_path = arm_dir / "state.json"
    n_pool = len(ds.train)
    rounds = cfg.schedule.rounds
    tag = f"[seed {seed} | {strategy}]"

    if state_path.exists():
        state, doc = LabelState.load(state_path)
        rng = np.random.default_rng()
        rng.bit_generator.state = doc["rng_state"]
        start, weights, epochs_trained = doc["round_done"] + 1, doc.get("weights"), doc["epochs_trained"]
        if start > rounds or doc.get("finished"):
            progress.line(f"{tag} already finished ({doc['round_done']} rounds); skipping")
            return
        progress.line(f"{tag} resuming at round {start}")
    else:
        state, rng, start, weights, epochs_trained = LabelState(n_pool), selection_rng(seed, strategy), 1, None, 0
        exp.annotator.annotate(1, [ds.train[i] for i in seed_ids], None, None, "seed")
        state.mark(seed_ids, 1)

    for r in range(start, rounds + 1):
        labelled = state.labelled
        n_boxes, class_counts = exp.box_stats(labelled)
        round_dir = arm_dir / f"round{r}"
        data_yaml = write_split_yaml(round_dir / "data.yaml", [ds.train[i] for i in labelled], list(ds.val), ds.names)
        source = weights if (cfg.model.warm_start and weights) else cfg.model.arch
        progress.line(f"{tag} round {r}/{rounds}: training {cfg.schedule.epochs_per_round} epochs on "
                      f"{len(labelled)} images ({n_boxes} boxes)")
        tr = be.train(source, data_yaml, cfg.schedule.epochs_per_round, round_dir, imgsz=cfg.model.imgsz,
                      batch=cfg.model.batch, device=exp.device, seed=seed, workers=cfg.model.workers,
                      extra=dict(cfg.model.train_args), threads=exp.threads,
                      on_epoch=progress.epoch(f"{tag} round {r}/{rounds}"))
        epochs_trained += tr.epochs
        t0 = time.perf_counter()
        m = be.evaluate(tr.weights, data_yaml, imgsz=cfg.model.imgsz, batch=cfg.scoring.batch, device=exp.device)
        eval_s = time.perf_counter() - t0
        progress.line(f"{tag} round {r}/{rounds}: mAP50-95 {m['map50_95']:.3f}  mAP50 {m['map50']:.3f}  "
                      f"({tr.seconds:.0f} s training)")

        row = {"experiment": cfg.experiment, "strategy": strategy, "seed": seed, "round": r,
               "epochs_trained": epochs_trained, "labeled_images": len(labelled), "labeled_boxes": n_boxes,
               "map50_95": m["map50_95"], "map50": m["map50"], "train_seconds": round(tr.seconds, 2),
               "eval_seconds": round(eval_s, 2), "select_seconds": 0.0, "scored_images": 0, "selected_images": 0,
               **{k: 0 for k in EFFORT_KEYS}}
        sel_rows: list[dict] = []
        if r < rounds and state.unlabelled.size:
            sel_rows = _select_and_label(exp, seed, strategy, r, state, rng, tr.weights, class_counts, row, round_dir)
        # metrics first, then state: a crash between the two re-runs this round (duplicates are dropped by the report)
        _append_csv(exp.run_dir / "metrics.csv", [row], METRIC_COLUMNS)
        _append_csv(exp.run_dir / "selections.csv", sel_rows, SELECTION_COLUMNS)
        weights = str(tr.weights)
        state.save(state_path, extra={"round_done": r, "weights": weights, "epochs_trained": epochs_trained,
                                      "rng_state": rng.bit_generator.state, "finished": r == rounds or not state.unlabelled.size})
        if not state.unlabelled.size:
            progress.line(f"{tag} pool exhausted after round {r}")
            break


def _check_run_dir(cfg: Config, overwrite: bool) -> None:
    import shutil

    run_dir = cfg.run_dir
    saved = run_dir / "config.yaml"
    fp = config_fingerprint(cfg)
    if run_dir.exists() and overwrite:
        shutil.rmtree(run_dir)
    elif saved.exists():
        old = (yaml.safe_load(saved.read_text(encoding="utf-8")) or {}).get("fingerprint")
        if old != fp:
            raise DetalError(f"{run_dir}: holds results of a different config; pass --overwrite to start over "
                             f"or change `experiment:` to keep both")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, yaml.safe_dump({"fingerprint": fp, "config": cfg.model_dump(mode="json")}, sort_keys=False))


def make_annotator(cfg: Config, ds: Dataset) -> Annotator:
    if cfg.annotator == "oracle":
        return GroundTruthOracle(ds.nc)
    import os

    from detal.ls_oracle import LabelStudioOracle

    key = os.environ.get(cfg.labelstudio.api_key_env)
    if not key:
        raise DetalError(f"annotator: labelstudio needs the API token in ${cfg.labelstudio.api_key_env}; "
                         f"export it (see `detal labelstudio serve --help`)")
    root = cfg.labelstudio.document_root or ds.root.parent
    return LabelStudioOracle(url=cfg.labelstudio.url, api_key=key, project_title=f"{cfg.labelstudio.project}-{cfg.experiment}",
                             names=list(ds.names), document_root=Path(root), image_root=ds.root,
                             timeout=cfg.labelstudio.timeout, batch_size=cfg.labelstudio.batch_size)


@contextlib.contextmanager
def run_lock(cfg: Config):
    """One run per experiment at a time: a second concurrent run would interleave rounds and state."""
    import fcntl

    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    path = cfg.output_dir / f".{cfg.experiment}.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise DetalError(f"{cfg.run_dir}: another detal run holds {path} (pid {fh.read().strip() or '?'}); "
                             "wait for it to finish or use another `experiment:` name") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield  # the lock is released when the file closes, also on a crash


def run_experiment(cfg: Config, *, quiet: bool = False, overwrite: bool = False, backend: ModuleType | None = None,
                   annotator: Annotator | None = None) -> Path:
    """Run (or resume) every arm of every seed; returns the run folder holding metrics, selections and report."""
    with run_lock(cfg):
        return _run_experiment(cfg, quiet=quiet, overwrite=overwrite, backend=backend, annotator=annotator)


def _run_experiment(cfg: Config, *, quiet: bool, overwrite: bool, backend: ModuleType | None,
                    annotator: Annotator | None) -> Path:
    progress = Progress(quiet)
    ds = prepare_dataset(cfg, progress)
    if backend is None:
        from detal import detector as backend
    _check_run_dir(cfg, overwrite)
    exp = Experiment(cfg, ds, backend, annotator or make_annotator(cfg, ds), backend.resolve_device(cfg.model.device), progress)
    progress.line(f"experiment '{cfg.experiment}': pool {len(ds.train)} images, val {len(ds.val)}, "
                  f"{len(cfg.strategies)} strategies x {len(cfg.seeds)} seeds, {cfg.schedule.rounds} rounds, device {exp.device}")
    t0 = time.perf_counter()
    for seed in cfg.seeds:
        ids = seed_set(len(ds.train), cfg.schedule.seed_fraction, seed)
        for strategy in cfg.strategies:
            run_arm(exp, seed, strategy, ids)
    from detal.report import write_report

    report = write_report(exp.run_dir)
    progress.line(f"done in {time.perf_counter() - t0:.0f} s; report: {report}")
    return exp.run_dir
